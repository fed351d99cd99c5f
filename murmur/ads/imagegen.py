"""Generated ad pictures through ``diffusers``, for a network that supplies an image model.

A text-to-image pipeline in diffusers' directory format (e.g. a Stable Diffusion checkpoint saved
with ``save_pretrained``) is loaded from a local directory, never downloaded. For each of X's sizes
it paints a picture from a prompt built from the copy (without its link), the brand and the
audience's hashtags, at the size's aspect ratio (sides rounded to multiples of 64, the longer one
``long_side`` pixels), and :func:`murmur.ads.creatives.write_creatives` draws the copy, brand and
logo over it. Useful pictures need real weights and a GPU (``device="cuda"``, fp16); the tests run
a tiny pipeline built from configs with random weights, which checks the plumbing, not the art.
Install with ``pip install 'murmur[images]'``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from murmur.ads.creatives import SIZES, Palette, write_creatives
from murmur.errors import InputError

MAX_PROMPT_WORDS = 60


def load_pipeline(path: str | Path, device: str | None = None):
    """The diffusers pipeline saved in ``path`` (local files only), on ``device`` (cuda in fp16 when present)."""
    try:
        import torch
        from diffusers import DiffusionPipeline
    except ImportError:
        raise InputError("generated images need diffusers: pip install 'murmur[images]'") from None
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise InputError("not a diffusers pipeline directory (no model_index.json)", path=path, field="image_model")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"cannot load the image pipeline: {str(e).splitlines()[0]}", path=path,
                         field="image_model") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def image_prompt(copy: str, brand: str, hashtags: Sequence[str] = ()) -> str:
    """What to paint: the copy's words (no links, no hashtags), the brand and the audience's themes."""
    words = re.sub(r"https?://\S+|#\w+", " ", copy).split()[:MAX_PROMPT_WORDS]
    themes = ", ".join(h.lstrip("#") for h in hashtags[:3])
    return (f"advertising photograph for {brand}: {' '.join(words)}"
            + (f"; themes: {themes}" if themes else "") + "; no text, no letters")


def canvas(size: str, long_side: int) -> tuple[int, int]:
    """Width and height to paint for an X size: its aspect ratio, sides multiples of 64."""
    if size not in SIZES:
        raise InputError(f"size must be one of {', '.join(SIZES)} (got {size!r})", field="size")
    w, h = SIZES[size]
    scale = long_side / max(w, h)
    return max(64, round(w * scale / 64) * 64), max(64, round(h * scale / 64) * 64)


def paint(pipe, prompt: str, sizes: Sequence[str], steps: int = 30, long_side: int = 768, seed: int = 0,
          guidance: float = 7.0) -> dict:
    """One picture per size (the same seed for each), as Pillow images."""
    import torch

    if not 1 <= steps <= 200:
        raise InputError(f"steps must be 1-200 (got {steps})", field="steps")
    out = {}
    for size in sizes:
        w, h = canvas(size, long_side)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        out[size] = pipe(prompt, num_inference_steps=steps, width=w, height=h, guidance_scale=guidance,
                         generator=gen).images[0]
    return out


def write_generated_creatives(pipe, copy: str, brand: str, pal: Palette, out_dir: str | Path,
                              hashtags: Sequence[str] = (), logo: str | Path | None = None,
                              sizes: Sequence[str] = tuple(SIZES), steps: int = 30, long_side: int = 768,
                              seed: int = 0) -> list[Path]:
    """Paint a picture per size and draw the creative over it (``out_dir/<size>.png``); returns the paths."""
    if logo is not None and not Path(logo).is_file():
        raise InputError("creative image not found", path=logo, field="image")  # before minutes of painting
    pictures = paint(pipe, image_prompt(copy, brand, hashtags), sizes, steps, long_side, seed)
    return write_creatives(copy, brand, pal, out_dir, logo, tuple(sizes), backgrounds=pictures)
