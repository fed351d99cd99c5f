"""Progress for long loops: a rich bar on a terminal, plain log lines with rate and ETA otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console

console = Console(stderr=True, highlight=False)


def log(message: str) -> None:
    """One plain log line on stderr (timestamped when not on a terminal)."""
    if console.is_terminal:
        console.print(message)
    else:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Count work done; show a bar on a TTY, else a log line every ``every`` seconds.

    Use as a context manager: ``with Progress("clean", total=n, unit="posts") as p: p.advance(k)``.
    """

    def __init__(self, description: str, total: int | None = None, unit: str = "items",
                 every: float = 10.0, enabled: bool = True):
        self.description, self.total, self.unit, self.every = description, total, unit, every
        self.enabled = enabled
        self.done = 0
        self._start = self._last = time.perf_counter()
        self._bar = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.enabled and console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                     TimeRemainingColumn(), console=console, transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, rate="")
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        rate = self.done / max(now - self._start, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=f"{rate:,.0f} {self.unit}/s")
        elif self.enabled and now - self._last >= self.every:
            self._last = now
            eta = ""
            if self.total:
                eta = f", ETA {format_duration((self.total - self.done) / max(rate, 1e-9))}"
            total = f"/{self.total:,}" if self.total else ""
            log(f"{self.description}: {self.done:,}{total} {self.unit} ({rate:,.0f} {self.unit}/s{eta})")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(et, ev, tb)
        elif self.enabled and et is None:
            rate = self.done / max(self.elapsed, 1e-9)
            log(f"{self.description}: {self.done:,} {self.unit} in {format_duration(self.elapsed)} "
                f"({rate:,.0f} {self.unit}/s)")
