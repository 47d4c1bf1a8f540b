"""Pen trajectories of the ten digits, a few styles each, drawn from how people write digits.

A template is a list of strokes (pen down → pen up); a stroke is a list of control points in a
unit box (x right, y down, the digit spanning y ∈ [0, 1]), smoothed by a Catmull–Rom spline when
rendered. Written from general knowledge of handwriting (never from the real splits): a 1 plain,
flagged or with a base, a 4 open or closed, a 7 plain, crossed or with a serif, a 9 straight,
curved or hooked, a 2 with or without a loop, …
"""

from __future__ import annotations

import math

Point = tuple[float, float]
Stroke = list[Point]


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int) -> Stroke:
    """``n`` points of an ellipse from angle ``a0`` to ``a1`` (degrees, counter-clockwise as
    seen on the page: 90 is the top, 180 the left)."""
    return [(cx + rx * math.cos(math.radians(a)), cy - ry * math.sin(math.radians(a)))
            for a in (a0 + (a1 - a0) * i / (n - 1) for i in range(n))]


def _eight(n: int = 17) -> Stroke:
    """One-stroke figure eight: from the top, down the left of the upper loop, across the
    waist, round the lower loop and back up."""
    return [(0.5 - 0.27 * math.sin(2 * t) * (0.8 if t < math.pi else 1.0), 0.5 - 0.5 * math.cos(t))
            for t in (2 * math.pi * i / (n - 1) for i in range(n))]


_TWO_TOP = arc(0.5, 0.28, 0.28, 0.27, 160, -35, 8)
_THREE_LOW = arc(0.47, 0.73, 0.3, 0.27, 95, -150, 9)
_FIVE_BOWL = arc(0.47, 0.7, 0.3, 0.28, 125, -155, 9)
_NINE_LOOP = arc(0.45, 0.27, 0.25, 0.26, 0, 360, 13)

TEMPLATES: dict[int, dict[str, list[Stroke]]] = {
    0: {"oval": [arc(0.5, 0.5, 0.3, 0.5, 90, 450, 14)],
        "overlap": [arc(0.5, 0.5, 0.3, 0.5, 80, 480, 15)],
        "narrow": [arc(0.5, 0.5, 0.2, 0.5, 90, 450, 14)]},
    1: {"plain": [[(0.5, 0.0), (0.5, 1.0)]],
        "flagged": [[(0.2, 0.32), (0.55, 0.0), (0.52, 1.0)]],
        "base": [[(0.22, 0.3), (0.55, 0.0), (0.52, 1.0)], [(0.25, 1.0), (0.78, 1.0)]]},
    2: {"plain": [_TWO_TOP + [(0.2, 1.0), (0.82, 1.0)]],
        "loop": [_TWO_TOP + [(0.28, 0.86), (0.18, 0.97), (0.27, 1.0), (0.36, 0.9), (0.5, 0.97), (0.82, 1.0)]]},
    3: {"round": [arc(0.47, 0.26, 0.26, 0.25, 150, -90, 8) + _THREE_LOW],
        "flat": [[(0.22, 0.0), (0.75, 0.0), (0.45, 0.42)] + arc(0.47, 0.72, 0.3, 0.28, 100, -150, 9)]},
    4: {"closed": [[(0.62, 0.0), (0.15, 0.68), (0.88, 0.68)], [(0.62, 0.0), (0.62, 1.0)]],
        "open": [[(0.25, 0.0), (0.18, 0.65), (0.85, 0.65)], [(0.65, 0.25), (0.65, 1.0)]]},
    5: {"lifted": [[(0.3, 0.0), (0.27, 0.45)] + _FIVE_BOWL, [(0.3, 0.0), (0.78, 0.0)]],
        "one-stroke": [[(0.78, 0.0), (0.3, 0.0), (0.27, 0.45)] + _FIVE_BOWL]},
    6: {"curved": [[(0.72, 0.02), (0.45, 0.1), (0.28, 0.35), (0.22, 0.66)] + arc(0.5, 0.72, 0.28, 0.27, 180, 530, 13)],
        "straight": [[(0.68, 0.0), (0.27, 0.6)] + arc(0.5, 0.72, 0.27, 0.27, 165, 520, 13)]},
    7: {"plain": [[(0.2, 0.0), (0.8, 0.0), (0.4, 1.0)]],
        "crossed": [[(0.2, 0.0), (0.8, 0.0), (0.4, 1.0)], [(0.38, 0.5), (0.8, 0.5)]],
        "serif": [[(0.2, 0.17), (0.2, 0.0), (0.8, 0.0), (0.4, 1.0)]]},
    8: {"stacked": [arc(0.5, 0.25, 0.22, 0.24, 90, 450, 13), arc(0.5, 0.73, 0.28, 0.26, 90, 450, 13)],
        "twisted": [_eight()]},
    9: {"straight": [_NINE_LOOP + [(0.7, 0.27), (0.69, 1.0)]],
        "curved": [_NINE_LOOP + [(0.7, 0.3), (0.66, 0.72), (0.52, 1.0)]],
        "hooked": [_NINE_LOOP + [(0.7, 0.3), (0.68, 0.82), (0.55, 1.0), (0.35, 0.94)]],
        "open": [[(0.27, 0.4), (0.24, 0.15), (0.45, 0.02), (0.68, 0.1), (0.72, 0.35), (0.7, 0.62), (0.6, 0.87),
                  (0.42, 1.0), (0.25, 0.92)], [(0.27, 0.4), (0.5, 0.45), (0.71, 0.36)]]},
}


def check_templates(templates: dict[int, dict[str, list[Stroke]]]) -> None:
    """Every digit 0–9 has at least one style; every stroke at least two finite points in the
    unit box (with a small margin). Raises ValueError naming the first bad one."""
    for d in range(10):
        styles = templates.get(d)
        if not isinstance(styles, dict) or not styles:
            raise ValueError(f"templates[{d}]: expected at least one style, got {styles!r}")
        for name, strokes in styles.items():
            where = f"templates[{d}][{name!r}]"
            if not isinstance(strokes, list) or not strokes:
                raise ValueError(f"{where}: expected a list of strokes, got {strokes!r}")
            for k, stroke in enumerate(strokes):
                if len(stroke) < 2:
                    raise ValueError(f"{where}[{k}]: expected a stroke of at least 2 points, got {len(stroke)}")
                for x, y in stroke:
                    if not (math.isfinite(x) and math.isfinite(y) and -0.1 <= x <= 1.1 and -0.1 <= y <= 1.1):
                        raise ValueError(f"{where}[{k}]: expected points in the unit box, got ({x}, {y})")


check_templates(TEMPLATES)
