"""Writing a benchmark's results into its own section of docs/benchmarks.md.

Each script owns the block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; rerunning it
replaces that block and leaves every other section (and hand-written notes around it) alone.
"""

from __future__ import annotations

from pathlib import Path

from murmur.io import atomic_open

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nMeasured in the same run as a peer, on the machine named in each section.\n"


def write_section(name: str, body: str, path: Path = DOCS) -> None:
    """Replace (or append) the ``name`` block of ``path`` with ``body``, atomically."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.is_file() else HEADER
    block = f"{start}\n{body.strip()}\n\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote the {name} section of {path}")
