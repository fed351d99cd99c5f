"""Ad images in X's standard sizes, rendered with Pillow from the copy, a logo or product image and
an audience palette.

Sizes (``SIZES``): website card 800×418 (1.91:1) and 800×800, standalone image 1200×628 and 1200×1200;
PNG, kept under X's 5 MB. The palette comes from the brand colour and a hue drawn from the audience's
top hashtag, so each audience gets its own look for the same brand. The text is wrapped to fit the
card with a font size found by halving; the link is left out of the image (it goes in the post).
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from murmur.errors import InputError
from murmur.io import atomic_path

SIZES = {"card": (800, 418), "card_square": (800, 800), "image": (1200, 628), "image_square": (1200, 1200)}
MAX_BYTES = 5 * 2**20


@dataclass(frozen=True)
class Palette:
    background: tuple[int, int, int]
    accent: tuple[int, int, int]
    text: tuple[int, int, int]


def _hex(color: str) -> tuple[int, int, int]:
    if not re.match(r"^#[0-9a-fA-F]{6}$", color or ""):
        raise InputError(f"colour {color!r} is not #rrggbb", field="color")
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def palette(brand_color: str, audience_key: str) -> Palette:
    """The brand colour as accent, on a light background of a hue drawn from the audience."""
    accent = _hex(brand_color)
    hue = int(hashlib.sha256(audience_key.encode()).hexdigest()[:4], 16) / 0xFFFF
    bg = tuple(round(c * 255) for c in colorsys.hls_to_rgb(hue, 0.92, 0.45))
    lum = 0.299 * accent[0] + 0.587 * accent[1] + 0.114 * accent[2]
    text = (20, 20, 28) if lum > 140 else accent
    return Palette(bg, accent, text)  # type: ignore[arg-type]


def _font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        cand = f"{line} {word}".strip()
        if draw.textlength(cand, font=font) <= width or not line:
            line = cand
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def render(copy: str, brand: str, pal: Palette, size: str = "card", logo: str | Path | None = None,
           background=None):
    """One creative as a Pillow image (on ``background``, a Pillow image, when given: a generated picture
    under a translucent panel of the palette's background so the copy stays readable)."""
    from PIL import Image, ImageDraw

    if size not in SIZES:
        raise InputError(f"size must be one of {', '.join(SIZES)} (got {size!r})", field="size")
    w, h = SIZES[size]
    img = Image.new("RGB", (w, h), pal.background)
    if background is not None:
        img = background.convert("RGB").resize((w, h))
        panel = Image.new("RGBA", (w, h), (*pal.background, 170))
        img = Image.alpha_composite(img.convert("RGBA"), panel).convert("RGB")
    draw = ImageDraw.Draw(img)
    pad = w // 20
    left = pad
    if logo is not None:
        path = Path(logo)
        if not path.is_file():
            raise InputError("creative image not found", path=path, field="image")
        try:
            with Image.open(path) as src:
                pic = src.convert("RGBA")
        except OSError as e:
            raise InputError(f"not a readable image ({e})", path=path, field="image") from None
        side = min(h - 2 * pad, w // 3)
        pic.thumbnail((side, side))
        img.paste(pic, (pad, (h - pic.height) // 2), pic)
        left = pad * 2 + pic.width
    draw.rectangle([0, h - h // 12, w, h], fill=pal.accent)
    text = re.sub(r"https?://\S+", "", copy).strip()
    box_w, box_h = w - left - pad, h - h // 12 - 3 * pad - h // 10
    fsize = h // 8
    while fsize > 10:
        font = _font(fsize)
        lines = _wrap(draw, text, font, box_w)
        if len(lines) * fsize * 1.25 <= box_h:
            break
        fsize = int(fsize * 0.85)
    y = pad
    for line in lines:
        draw.text((left, y), line, font=font, fill=pal.text)
        y += int(fsize * 1.25)
    draw.text((left, h - h // 12 - pad - h // 10), brand, font=_font(h // 10), fill=pal.accent)
    return img


def write_creatives(copy: str, brand: str, pal: Palette, out_dir: str | Path, logo: str | Path | None = None,
                    sizes: tuple[str, ...] = tuple(SIZES), backgrounds: dict | None = None) -> list[Path]:
    """Render every size as ``out_dir/<size>.png`` (atomically); returns the paths. ``backgrounds`` maps a
    size to a Pillow image to draw on (:mod:`murmur.ads.imagegen`)."""
    out = []
    for size in sizes:
        img = render(copy, brand, pal, size, logo, (backgrounds or {}).get(size))
        target = Path(out_dir) / f"{size}.png"
        with atomic_path(target) as tmp:
            img.save(tmp, format="PNG", optimize=True)
            if tmp.stat().st_size > MAX_BYTES:
                raise InputError(f"the {size} image is over 5 MB", field="image")
        out.append(target)
    return out
