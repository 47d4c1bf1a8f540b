"""The handwriting digits generator: pen strokes with learnable style frequencies.

Each digit has a few style templates (``stroke_templates.py``: a 1 plain, flagged or with a base,
a 7 crossed or not, …); which style is drawn is a categorical parameter per digit
(``style.<d>``), so the loop can learn how often 7s are crossed. Per image:

1. the template's control points jittered (``jitter``), smoothed by a Catmull–Rom spline;
2. the pen: an end hook (``hook``), a pen-lift gap (``gap``, a probability per stroke), a width
   (``pen.width``) that tapers along the stroke (``pen.pressure``);
3. an affine about the centre (``aspect``, ``slant``, ``rotation``) and an elastic displacement
   of the trajectory (``elastic.alpha``/``elastic.sigma``, as in the font digits);
4. the UCI scan: the ink's bounding box scaled to fill the 32×32 box (then ``scale`` and
   ``translate`` jitter), the pen's distance field rasterised anti-aliased, blurred by the
   scanner's point spread, binarised, and counted in 4×4 blocks to 8×8 with values 0–16.

Lengths are in box px of a digit 32 px tall before the size normalisation. ``fonts = true``
adds the font digits (``generator.digits``) under a ``source`` categorical, their knobs prefixed
``font.``: one space holds both, and the loop learns the mix.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .base import Generator, Sample
from .digits import BOX, CATEGORIES, DigitsGenerator, _blur, _elastic_field, default_space_specs, uci_sample
from .space import ParameterSpace
from .stroke_templates import TEMPLATES, Stroke, check_templates

HEIGHT = 32.0            # box px per unit of template height, before size normalisation
SPLINE_STEPS = 4         # Catmull–Rom points per control-point span
SOURCES = ("stroke", "font")


def stroke_space_specs(templates: dict[int, dict[str, list[Stroke]]]) -> dict[str, dict[str, Any]]:
    def u(bounds, rng, family="uniform"):
        return {"family": family, "bounds": list(bounds), "range": list(rng)}

    specs: dict[str, dict[str, Any]] = {"digit": {"family": "categorical", "choices": list(range(10))}}
    for d in range(10):
        specs[f"style.{d}"] = {"family": "categorical", "choices": list(templates[d])}
    specs.update({
        "pen.width": u((0.5, 12.0), (5.0, 7.5)),                  # box px (the UCI scans are bold)
        "pen.pressure": u((0.0, 0.9), (0.0, 0.4)),                # width taper along a stroke, ±share
        "jitter": u((0.0, 0.12), (0.0, 0.035)),                   # control-point σ, share of the height
        "slant": u((-0.8, 0.8), (-0.1, 0.35)),                    # x += slant·height above centre; > 0 leans right
        "aspect": u((0.4, 2.5), (0.75, 1.25), "loguniform"),      # width/height stretch
        "rotation": u((-45.0, 45.0), (-8.0, 8.0)),                # degrees, counter-clockwise
        "hook": u((0.0, 0.3), (0.0, 0.08)),                       # end-hook length, share of the height
        "gap": u((0.0, 1.0), (0.0, 0.1)),                         # probability of a pen lift per stroke
        "elastic.alpha": u((0.0, 4.0), (0.0, 1.5)),               # RMS displacement, box px
        "elastic.sigma": u((1.0, 12.0), (3.0, 6.0), "loguniform"),  # smoothness, box px
        "scale": u((0.4, 1.6), (0.85, 1.05), "loguniform"),       # of the normalised digit
        "translate.x": u((-8.0, 8.0), (-1.0, 1.0)),               # box px, > 0 right
        "translate.y": u((-8.0, 8.0), (-1.0, 1.0)),               # box px, > 0 down
    })
    return specs


def catmull_rom(points: np.ndarray, steps: int = SPLINE_STEPS) -> np.ndarray:
    """A centripetal-free (uniform) Catmull–Rom curve through ``points`` (n, 2), ``steps``
    points per span, ends kept."""
    n = len(points)
    if n < 3:
        t = np.linspace(0.0, 1.0, steps + 1)[:, None]
        return points[0] + t * (points[-1] - points[0])
    p = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    t = (np.arange(steps) / steps)[:, None, None]
    p0, p1, p2, p3 = p[:-3], p[1:-2], p[2:-1], p[3:]
    curve = 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
    return np.concatenate([curve.transpose(1, 0, 2).reshape(-1, 2), points[-1:]])


class StrokeDigitsGenerator(Generator):
    """Handwritten-style digits from pen strokes, rendered as the UCI digits were made."""

    categories = CATEGORIES

    def __init__(self, *, fonts: bool = False, variants: bool = True, font_faces: Sequence[str] | None = None,
                 templates: dict[int, dict[str, list[Stroke]]] | None = None):
        """``fonts`` mixes in the font digits; ``variants = false`` keeps one style per digit
        (its first: the ablation without style variants)."""
        for key, v in (("fonts", fonts), ("variants", variants)):
            if not isinstance(v, bool):
                raise ValueError(f"generator.{key}: expected true or false, got {v!r}")
        self.templates = TEMPLATES if templates is None else templates
        if not variants:
            self.templates = {d: dict([next(iter(styles.items()))]) for d, styles in self.templates.items()}
        try:
            check_templates(self.templates)
        except ValueError as e:
            raise ValueError(f"generator.{e}") from None
        specs = stroke_space_specs(self.templates)
        self._fonts = DigitsGenerator(fonts=font_faces) if fonts else None
        if self._fonts is not None:
            specs["source"] = {"family": "categorical", "choices": list(SOURCES)}
            for k, v in default_space_specs(self._fonts.fonts).items():
                if k != "digit":
                    specs[f"font.{'face' if k == 'font' else k}"] = v
        self.space = ParameterSpace.from_dict(specs)
        self._styles = {d: list(self.templates[d]) for d in range(10)}

    def config(self) -> dict[str, Any]:
        return {"generator": "strokes", "fonts": self._fonts is not None,
                "styles": {str(d): list(names) for d, names in self._styles.items()}}

    def digit(self, params: dict[str, np.ndarray]) -> int:
        return int(self.space["digit"].family.choices[int(params["digit"])])

    def style(self, params: dict[str, np.ndarray]) -> str:
        d = self.digit(params)
        return str(self.space[f"style.{d}"].family.choices[int(params[f"style.{d}"])])

    def source(self, params: dict[str, np.ndarray]) -> str:
        if self._fonts is None:
            return "stroke"
        return str(self.space["source"].family.choices[int(params["source"])])

    def styles(self) -> list[tuple[int, str]]:
        """Every (digit, style) pair, in template order."""
        return [(d, name) for d in range(10) for name in self._styles[d]]

    def styled(self, params: dict[str, np.ndarray], digit: int, style: str) -> dict[str, np.ndarray]:
        """``params`` (one image's row) drawn as ``digit`` in ``style`` by the pen."""
        if style not in self._styles.get(digit, []):
            raise ValueError(f"style: expected one of {self._styles.get(digit)} for digit {digit}, got {style!r}")
        row = dict(params, digit=np.int64(list(self.space["digit"].family.choices).index(digit)))
        row[f"style.{digit}"] = np.int64(self._styles[digit].index(style))
        if "source" in row:
            row["source"] = np.int64(SOURCES.index("stroke"))
        return row

    def render(self, params: dict[str, np.ndarray], seed: int) -> Sample:
        return uci_sample(self.bitmap(params, seed), self.digit(params))

    def bitmap(self, params: dict[str, np.ndarray], seed: int) -> np.ndarray:
        """The binary 32×32 bitmap that :meth:`render` counts into 8×8 blocks."""
        if self.source(params) == "font":
            font_params = {"digit": params["digit"]}
            for k, v in params.items():
                if k.startswith("font."):
                    font_params["font" if k == "font.face" else k[5:]] = v
            return self._fonts.bitmap(font_params, seed)
        p = {k: float(v) for k, v in params.items() if not k.startswith(("font.", "style.")) and k != "digit"}
        strokes = self.templates[self.digit(params)][self.style(params)]
        return self._stroke_bitmap(strokes, p, np.random.default_rng(seed))

    # --- the pen -------------------------------------------------------------------------------
    def _trajectories(self, strokes: list[Stroke], p: dict[str, float], rng: np.random.Generator):
        """Each stroke's smoothed, hooked, possibly gapped points (unit box) and half widths."""
        out = []
        for stroke in strokes:
            ctrl = np.asarray(stroke, np.float64)
            ctrl = ctrl + rng.normal(0.0, p["jitter"], ctrl.shape)
            pts = catmull_rom(ctrl)
            end = pts[-1] - pts[-2]
            length = float(np.hypot(*end))
            if p["hook"] > 0 and length > 1e-9:
                t = end / length
                side = np.array([-t[1], t[0]]) * (1.0 if rng.random() < 0.5 else -1.0)
                h = p["hook"]
                pts = np.concatenate([pts, pts[-1:] + h * (0.35 * t + 0.35 * side), pts[-1:] + h * (0.2 * t + side)])
            seg = np.hypot(*np.diff(pts, axis=0).T)
            u = np.concatenate([[0.0], np.cumsum(seg)]) / max(seg.sum(), 1e-9)
            sign = 1.0 if rng.random() < 0.5 else -1.0
            half = 0.5 * p["pen.width"] / HEIGHT * (1.0 + p["pen.pressure"] * sign * (2.0 * u - 1.0))
            if rng.random() < p["gap"] and len(pts) > 6:     # a pen lift: one short span left out
                i = int(rng.integers(2, len(pts) - 3))
                out += [(pts[:i + 1], half[:i + 1]), (pts[i + 2:], half[i + 2:])]
            else:
                out.append((pts, half))
        return out

    def _stroke_bitmap(self, strokes: list[Stroke], p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
        parts = self._trajectories(strokes, p, rng)
        pts = np.concatenate([q for q, _ in parts]) - 0.5            # unit box, about the centre
        a = math.sqrt(p["aspect"])
        c, s = math.cos(math.radians(p["rotation"])), math.sin(math.radians(p["rotation"]))
        # stretch, slant (y is down: the top moves right), rotate (counter-clockwise on the page)
        fwd = np.array([[c, s], [-s, c]]) @ np.array([[1.0, -p["slant"]], [0.0, 1.0]]) @ np.diag([a, 1 / a])
        pts = pts @ fwd.T * HEIGHT                                    # box px of a 32 px digit
        if p["elastic.alpha"] > 0:
            field, cell = _elastic_field(p["elastic.sigma"], rng)
            pts = pts + p["elastic.alpha"] * _field_at(field, pts / cell)
        half = np.concatenate([h for _, h in parts]) * HEIGHT
        # size normalisation: the ink's box (the trajectory ± the pen) fills the 32×32 box
        lo, hi = (pts - half[:, None]).min(0), (pts + half[:, None]).max(0)
        zoom = BOX / max(float((hi - lo).max()), 1e-9) * p["scale"]
        centre = (lo + hi) / 2
        shift = np.array([BOX / 2 + p["translate.x"], BOX / 2 + p["translate.y"]])
        pts, half = (pts - centre) * zoom + shift, half * zoom
        # segments of every stroke (none across a pen lift)
        starts = np.cumsum([0] + [len(q) for q, _ in parts])
        keep = np.ones(len(pts) - 1, bool)
        keep[starts[1:-1] - 1] = False
        a0, a1, h0, h1 = pts[:-1][keep], pts[1:][keep], half[:-1][keep], half[1:][keep]
        return _blur(_coverage_of_segments(a0, a1, h0, h1)) > 0.5


def _field_at(field: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The periodic (2, n, n) displacement field, bilinear at scattered points ``uv`` (m, 2) in
    cells; (m, 2)."""
    n = field.shape[-1]
    f = np.floor(uv)
    t = uv - f
    i0 = f.astype(np.intp) % n
    i1 = (i0 + 1) % n
    x0, y0, x1, y1 = i0[:, 0], i0[:, 1], i1[:, 0], i1[:, 1]
    tx, ty = t[:, 0], t[:, 1]
    top = field[:, y0, x0] * (1 - tx) + field[:, y0, x1] * tx
    bottom = field[:, y1, x0] * (1 - tx) + field[:, y1, x1] * tx
    return (top * (1 - ty) + bottom * ty).T


def _coverage_of_segments(a0: np.ndarray, a1: np.ndarray, h0: np.ndarray, h1: np.ndarray) -> np.ndarray:
    """Anti-aliased grey in [0, 1] on the 32×32 pixel centres of a pen of half width h0 → h1
    along each segment a0 → a1 (box px). Each segment is measured only on a window of pixels
    around it (all windows one size, so it stays one vectorised step); the pen's distance field
    is the minimum over the segments at each pixel."""
    reach = np.maximum(h0, h1) + 1.0
    lo = np.floor(np.minimum(a0, a1) - reach[:, None]).astype(np.intp)
    size = int(np.ceil((np.abs(a1 - a0) + 2 * reach[:, None] + 1).max()))
    size = min(size, BOX)
    lo = np.clip(lo, 0, BOX - size)
    offsets = np.arange(size)
    px = lo[:, 0, None, None] + offsets[None, None, :]                 # (segments, 1, size)
    py = lo[:, 1, None, None] + offsets[None, :, None]                 # (segments, size, 1)
    d = (a1 - a0)[:, None, None, :]
    dd = np.maximum((d * d).sum(-1), 1e-12)
    rx, ry = px + 0.5 - a0[:, 0, None, None], py + 0.5 - a0[:, 1, None, None]
    t = np.clip((rx * d[..., 0] + ry * d[..., 1]) / dd, 0.0, 1.0)
    gx, gy = rx - t * d[..., 0], ry - t * d[..., 1]
    sdf = np.sqrt(gx * gx + gy * gy) - (h0[:, None, None] + (h1 - h0)[:, None, None] * t)
    field = np.full(BOX * BOX, np.inf)
    np.minimum.at(field, (py * BOX + px).ravel(), sdf.ravel())
    return np.clip(0.5 - field, 0.0, 1.0).reshape(BOX, BOX)
