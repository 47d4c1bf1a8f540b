"""The digits generator: font glyphs made the way the UCI handwritten digits were made.

UCI "optdigits" (sklearn's ``load_digits``): NIST forms were scanned as binary images, each
digit's bounding box was scaled to fill a 32×32 bitmap, and the bitmap was cut into 4×4 blocks
whose on-pixels were counted, giving 8×8 images with values 0..16. Here the pen is a font:

1. the glyph of (font, digit), anti-aliased, cached as a signed distance field (SDF);
2. stroke width: the SDF's zero level moved out (thicker) or in (thinner);
3. affine about the glyph's centre: aspect stretch, shear (slant), rotation;
4. elastic distortion (Simard, Steinkraus & Platt 2003): a smooth random displacement field;
5. scanning: the anti-aliased grey coverage of each pixel, blurred by a small point spread,
   binarised at ``threshold``;
6. ``normalize=True``: the ink's bounding box scaled to fill the 32×32 box (aspect kept,
   centred), then the final ``scale`` and ``translate`` jitter; ``normalize=False`` is the naive
   render instead: the glyph drawn at font size = box size, centred, then the same jitter;
7. 4×4 block counts → 8×8.

Steps 2–5 are one backward map from sample points to glyph space, so the glyph is sampled once:
at the output pixels for the naive render; with ``normalize``, on a "scan" grid around the
deformed glyph, whose ink bounding box is found and which is then resampled into the 32×32 box,
as the NIST scans were. Lengths — stroke width, translation, elastic α and σ — are in pixels of
the 32×32 bitmap ("box px"): with ``normalize``, 1/32 of the face's tallest digit before
normalisation (the scan's pitch); naive, 1/32 of the em.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from .base import Generator, Sample
from .dataset import ObjectAnnotation
from .fonts import digit_fonts, draw_digit
from .space import ParameterSpace

CATEGORIES = tuple(str(d) for d in range(10))
BOX = 32                # the UCI bitmap
BLOCK = 4               # 32×32 → 8×8 by counting 4×4 blocks (values 0..16)
FONT_SIZE = 64          # base glyph size, px per em
CANVAS = 128            # base glyph canvas (2 em), glyph centred
FIELD_EXTENT = 64.0     # box px covered (periodically) by the elastic displacement grid
FIELD_CELLS = 2.0       # elastic grid cells per σ: the field is smooth at σ, so σ/2 cells suffice


def default_space(fonts: Sequence[str]) -> ParameterSpace:
    """Every knob of the digit renderer: a moderate default, wide hard bounds."""
    return ParameterSpace.from_dict(default_space_specs(fonts))


def default_space_specs(fonts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The parameter specs of :func:`default_space` (the stroke generator embeds them)."""

    def u(bounds, rng=None, family="uniform"):
        return {"family": family, "bounds": list(bounds), "range": list(rng or bounds)}

    return {
        "digit": {"family": "categorical", "choices": list(range(10))},
        "font": {"family": "categorical", "choices": list(fonts)},
        "stroke_width": u((-2.0, 4.0), (-0.5, 1.0)),             # box px added to each side
        "rotation": u((-45.0, 45.0), (-10.0, 10.0)),             # degrees, counter-clockwise
        "shear": u((-1.0, 1.0), (-0.2, 0.2)),                    # x += shear·height; > 0 leans right
        "scale": u((0.4, 1.6), (0.8, 1.1), "loguniform"),        # of the (normalised) glyph
        "aspect": u((0.4, 2.5), (0.8, 1.25), "loguniform"),      # width/height stretch
        "translate.x": u((-8.0, 8.0), (-2.0, 2.0)),              # box px, > 0 right
        "translate.y": u((-8.0, 8.0), (-2.0, 2.0)),              # box px, > 0 down
        "elastic.alpha": u((0.0, 4.0), (0.0, 1.0)),              # RMS displacement, box px
        "elastic.sigma": u((1.0, 12.0), (3.0, 6.0), "loguniform"),  # smoothness, box px
        "threshold": u((0.05, 0.95), (0.3, 0.7)),                # on grey coverage in [0, 1]
    }


# --------------------------------------------------------------------------------------------
# Cached glyphs and elastic smoothing
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Face:
    sdf: np.ndarray      # (10, CANVAS, CANVAS) float32, canvas px, < 0 inside the ink
    boxes: np.ndarray    # (10, 4) ink box x0, y0, x1, y1 relative to the canvas centre
    height: float        # the tallest digit's ink height, canvas px


@functools.lru_cache(maxsize=None)
def _face(path: str) -> _Face:
    sdfs, boxes = [], []
    for d in range(10):
        ink = draw_digit(path, d, FONT_SIZE, CANVAS) >= 128
        sdfs.append(ndimage.distance_transform_edt(~ink) - ndimage.distance_transform_edt(ink))
        ys, xs = np.nonzero(ink)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    boxes = np.asarray(boxes, np.float64) - CANVAS / 2
    return _Face(np.asarray(sdfs, np.float32), boxes, float((boxes[:, 3] - boxes[:, 1]).max()))


@functools.lru_cache(maxsize=64)
def _smoother(n: int) -> tuple[np.ndarray, float]:
    """The rfft2 transfer function of a Gaussian of σ = FIELD_CELLS cells on an n×n periodic
    grid, and the RMS it leaves of U(−1, 1) noise (Parseval: Σk² = mean |K|²)."""
    f2 = np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2
    full = np.exp(-2.0 * (math.pi * FIELD_CELLS) ** 2 * f2)
    return full[:, : n // 2 + 1], math.sqrt(float(np.mean(full**2)) / 3.0)


def _elastic_field(sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Simard's field: U(−1, 1) noise per cell, Gaussian-smoothed; scaled here to unit RMS per
    component, so ``elastic.alpha`` is the RMS displacement and does not shrink as σ grows
    (Simard's α=34, σ=4 on MNIST is about α=1.4 here). Returns the periodic (2, n, n) field
    (x and y displacements) and its cell size."""
    cell = sigma / FIELD_CELLS
    n = 8 * max(1, math.ceil(FIELD_EXTENT / cell / 8))                # FFT-friendly sizes
    transfer, rms = _smoother(n)
    noise = rng.uniform(-1.0, 1.0, (2, n, n))
    return np.fft.irfft2(np.fft.rfft2(noise) * transfer, s=(n, n)) / rms, cell


def _sample_field(field: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A periodic (2, n, n) field interpolated on the axis-aligned grid u × v (in cells):
    linear along rows, then along columns; (2, len(v), len(u))."""
    n = field.shape[-1]

    def lerp_index(w):
        f = np.floor(w)
        i = f.astype(np.intp) % n
        return i, (i + 1) % n, w - f

    i0, i1, t = lerp_index(v)
    rows = field[:, i0, :] * (1.0 - t)[:, None] + field[:, i1, :] * t[:, None]
    j0, j1, t = lerp_index(u)
    return rows[:, :, j0] * (1.0 - t) + rows[:, :, j1] * t


def _bilinear(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``a[y, x]`` interpolated at float array coordinates, clamped at the edges."""
    h, w = a.shape
    x0 = np.minimum(np.maximum(np.floor(x), 0), w - 2)
    y0 = np.minimum(np.maximum(np.floor(y), 0), h - 2)
    tx = np.minimum(np.maximum(x - x0, 0.0), 1.0)
    ty = np.minimum(np.maximum(y - y0, 0.0), 1.0)
    i = (y0 * w + x0).astype(np.intp)
    flat = a.ravel()
    top = flat[i] + (flat[i + 1] - flat[i]) * tx
    bottom = flat[i + w] + (flat[i + w + 1] - flat[i + w]) * tx
    return top + (bottom - top) * ty


def _coverage(sdf: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased grey in [0, 1] from a distance field, for pixels ``pixel`` wide."""
    return np.minimum(np.maximum(0.5 - sdf / pixel, 0.0), 1.0)


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------

class DigitsGenerator(Generator):
    """The ten digits in matplotlib's fonts, deformed, binarised, normalised to 32×32 and
    counted into 8×8 blocks like the UCI handwritten digits. One label per image."""

    categories = CATEGORIES

    def __init__(self, *, normalize: bool = True, fonts: Sequence[str] | None = None):
        if not isinstance(normalize, bool):
            raise ValueError(f"generator.normalize: expected true or false, got {normalize!r}")
        known = {p.stem: p for p in digit_fonts()}
        if fonts is None:
            fonts = list(known)
        elif (not isinstance(fonts, (list, tuple)) or not fonts
              or not all(isinstance(f, str) for f in fonts) or len(set(fonts)) != len(fonts)):
            raise ValueError(f"generator.fonts: expected a non-empty list of distinct font names, got {fonts!r}")
        unknown = [f for f in fonts if f not in known]
        if unknown:
            raise ValueError(f"generator.fonts: expected names among {sorted(known)}, got {unknown[0]!r}")
        self.normalize = normalize
        self.fonts = tuple(fonts)
        self._paths = {f: str(known[f]) for f in known}
        self.space = default_space(self.fonts)

    def config(self) -> dict[str, Any]:
        import matplotlib

        return {"generator": "digits", "normalize": self.normalize, "fonts": list(self.fonts),
                "matplotlib": matplotlib.__version__}

    def render(self, params: dict[str, np.ndarray], seed: int) -> Sample:
        return uci_sample(self.bitmap(params, seed), self.digit(params))

    def digit(self, params: dict[str, np.ndarray]) -> int:
        return int(self.space["digit"].family.choices[int(params["digit"])])

    def bitmap(self, params: dict[str, np.ndarray], seed: int) -> np.ndarray:
        """The binary 32×32 bitmap that :meth:`render` counts into 8×8 blocks."""
        font = str(self.space["font"].family.choices[int(params["font"])])
        if font not in self._paths:
            raise ValueError(f"font: expected one of {sorted(self._paths)}, got {font!r}")
        p = {k: float(v) for k, v in params.items() if k not in ("digit", "font")}
        return self._bitmap(_face(self._paths[font]), self.digit(params), p, np.random.default_rng(seed))

    def _bitmap(self, face: _Face, digit: int, p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
        """Coordinates are canvas px relative to the glyph's centre:
        glyph space ←A⁻¹− deformed space (after affine and elastic) ←− the box."""
        unit = (face.height if self.normalize else FONT_SIZE) / BOX        # canvas px per box px
        grow = p["stroke_width"] * unit
        th = p["threshold"]
        sdf = face.sdf[digit]

        a = math.sqrt(p["aspect"])
        c, s = math.cos(math.radians(p["rotation"])), math.sin(math.radians(p["rotation"]))
        k = p["shear"]
        fwd = np.array([[c, s], [-s, c]]) @ np.array([[1.0, -k], [0.0, 1.0]]) @ np.diag([a, 1 / a])
        inv = np.diag([1 / a, a]) @ np.array([[1.0, k], [0.0, 1.0]]) @ np.array([[c, -s], [s, c]])
        alpha = p["elastic.alpha"] * unit
        field, cell = _elastic_field(p["elastic.sigma"], rng) if alpha > 0 else (None, 1.0)
        cell *= unit

        def grey(xs: np.ndarray, ys: np.ndarray, pixel: float) -> np.ndarray:
            """The scanned grey image on the deformed-space grid xs × ys (``pixel`` apart)."""
            x, y = xs[None, :], ys[:, None]
            if field is not None:
                dx, dy = alpha * _sample_field(field, xs / cell, ys / cell)
                x, y = x + dx, y + dy
            gx, gy = inv[0, 0] * x + inv[0, 1] * y, inv[1, 0] * x + inv[1, 1] * y
            o = CANVAS / 2 - 0.5                                        # pixel centres at integers
            return _blur(_coverage(_bilinear(sdf, gx + o, gy + o) - grow, pixel))

        scale = p["scale"]
        o = np.arange(BOX) + 0.5 - BOX / 2                       # output pixel centres, box px
        if not self.normalize:  # naive: the box is the em square around the glyph's anchor
            xs = (o - p["translate.x"]) / scale * unit
            ys = (o - p["translate.y"]) / scale * unit
            return grey(xs, ys, unit / scale) > th

        # the scan: the deformed glyph sampled at one box px, with a margin for the elastic field
        x0, y0, x1, y1 = face.boxes[digit] + np.array([-1, -1, 1, 1]) * max(grow, 0.0)
        corners = fwd @ np.array([[x0, x1, x0, x1], [y0, y0, y1, y1]])
        margin = 3.0 * alpha + 2.0 * unit
        xs = np.arange(corners[0].min() - margin, corners[0].max() + margin, unit)
        ys = np.arange(corners[1].min() - margin, corners[1].max() + margin, unit)
        scan = grey(xs, ys, unit)
        # the bounding box of {scan > threshold}, in scan pixels (linear between samples)
        left, right = _crossings(scan.max(axis=0), th)
        top, bottom = _crossings(scan.max(axis=1), th)
        if left is None:
            return np.zeros((BOX, BOX), bool)
        # size normalisation, then the jitter: output pixel centres → scan pixels, resampled
        per_box_px = max(right - left, bottom - top) / BOX
        sx = (left + right) / 2 + (o - p["translate.x"]) / scale * per_box_px
        sy = (top + bottom) / 2 + (o - p["translate.y"]) / scale * per_box_px
        return _bilinear(np.pad(scan, 1), sx[None, :] + 1, sy[:, None] + 1) > th


def uci_sample(bitmap: np.ndarray, digit: int) -> Sample:
    """A 32×32 binary bitmap as a UCI digit: 4×4 block counts → 8×8 (values 0–16), labelled
    with one whole-image annotation."""
    image = bitmap.reshape(BOX // BLOCK, BLOCK, BOX // BLOCK, BLOCK).sum(axis=(1, 3)).astype(np.uint8)
    side = float(BOX // BLOCK)
    return Sample(image, [ObjectAnnotation(category_id=digit + 1, bbox=(0.0, 0.0, side, side), area=side * side)])


def _blur(grey: np.ndarray) -> np.ndarray:
    """The scanner's point spread: a separable [1, 2, 1]/4 kernel (σ ≈ 0.7 px), zero outside.
    With it the threshold is more than a stroke offset: high values drop thin strokes, low ones
    close small counters and merge nearby strokes, as in binarised scans."""
    for _ in range(2):                       # down the columns, then (transposed) the rows
        out = grey * 0.5
        out[1:] += grey[:-1] * 0.25
        out[:-1] += grey[1:] * 0.25
        grey = out.T
    return grey


def _crossings(profile: np.ndarray, level: float) -> tuple[float | None, float | None]:
    """Where a profile sampled at 0, 1, 2… first rises above ``level`` and last falls below
    it, linearly interpolated between samples; (None, None) if it never does."""
    above = np.flatnonzero(profile > level)
    if len(above) == 0:
        return None, None
    i, j = above[0], above[-1]
    lo = i - 0.5 if i == 0 else i - 1 + (level - profile[i - 1]) / (profile[i] - profile[i - 1])
    hi = j + 0.5 if j == len(profile) - 1 else j + (profile[j] - level) / (profile[j] - profile[j + 1])
    return float(lo), float(hi)
