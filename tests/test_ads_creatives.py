"""Ad images: X's sizes, the audience palette, a logo pasted in, a missing image refused."""

from __future__ import annotations

import pytest
from PIL import Image

from murmur.ads.creatives import SIZES, palette, write_creatives
from murmur.errors import InputError


def test_every_size_as_png_with_logo(tmp_path):
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (64, 64), (200, 30, 30, 255)).save(logo)
    pal = palette("#c81e1e", "cooking")
    paths = write_creatives("The Kalo pan for weeknight dinners. #cooking https://kalo.example/p", "Kalo", pal,
                            tmp_path / "out", logo)
    assert [p.name for p in paths] == [f"{s}.png" for s in SIZES]
    for p, (w, h) in zip(paths, SIZES.values(), strict=True):
        with Image.open(p) as img:
            assert img.format == "PNG" and img.size == (w, h)
            assert img.getpixel((w // 20 + 5, h // 2)) [:3] == (200, 30, 30)   # the logo
            assert img.getpixel((w - 3, 3)) == pal.background
    assert palette("#c81e1e", "cooking") != palette("#c81e1e", "football")


def test_missing_image_is_refused(tmp_path):
    with pytest.raises(InputError) as e:
        write_creatives("copy", "Kalo", palette("#112233", "a"), tmp_path / "o", tmp_path / "nope.png")
    assert e.value.field == "image" and not (tmp_path / "o" / "card.png").exists()
    with pytest.raises(InputError, match="#rrggbb"):
        palette("red", "a")
