"""The TrueType faces shipped inside matplotlib that draw the ten digits.

matplotlib's ``mpl-data/fonts/ttf`` holds ~40 files; only some are usable for digits:

- several STIX "size"/"NonUni" faces and the DejaVu "Display" faces have no '0'..'9' at all;
- LastResort maps every code point to one placeholder glyph (ten identical renders);
- cmsy10 and cmex10 (TeX symbol and extension fonts) *do* map '0'..'9', but to symbols
  (prime, infinity, brackets…): their glyph names give them away.

A face is kept when its charmap covers '0'..'9', each digit's glyph is named after the digit
(``zero`` … ``nine``, old-style ``zerooldstyle`` … as in cmmi10, or ``uni0030`` …), and the ten
rendered glyphs are non-empty and pairwise different.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def draw_digit(path: str | Path, digit: int, size: int, canvas: int) -> np.ndarray:
    """The anti-aliased glyph of ``digit`` at font size ``size``, centred (PIL anchor "mm",
    the middle of the advance width and of ascender..descender) on a ``canvas``² uint8 image."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(path), size)
    im = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(im).text((canvas / 2, canvas / 2), str(digit), font=font, fill=255, anchor="mm")
    return np.asarray(im)


def _draws_digits(path: Path) -> bool:
    from matplotlib.ft2font import FT2Font

    try:
        face = FT2Font(str(path))
        charmap = face.get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False
    for d, word in enumerate(DIGIT_NAMES):
        code = ord("0") + d
        if code not in charmap:
            return False
        name = face.get_glyph_name(charmap[code])
        if not (name.startswith(word) or name == f"uni{code:04X}"):
            return False
    glyphs = [draw_digit(path, d, 32, 48) for d in range(10)]
    if any(not (g > 127).any() for g in glyphs):
        return False
    return len({g.tobytes() for g in glyphs}) == 10


@functools.lru_cache(maxsize=None)
def digit_fonts() -> tuple[Path, ...]:
    """Paths of the faces that draw all ten digits, sorted by file name."""
    return tuple(p for p in sorted(font_dir().glob("*.ttf"), key=lambda p: p.name) if _draws_digits(p))


def font_stems() -> tuple[str, ...]:
    """File names without ``.ttf`` of :func:`digit_fonts`, e.g. ``DejaVuSans-Bold``."""
    return tuple(p.stem for p in digit_fonts())
