"""Images per second of the digits generators in one process (the issue's speed class: ≥ 1,000/s).

    python experiments/digits_speed.py [--n 2000]
"""

from __future__ import annotations

import argparse
import time

from generator.base import render_dataset
from loop.config import config_from_dict

VARIANTS = {"fonts (digits)": {"name": "digits"}, "strokes": {"name": "strokes"},
            "strokes + fonts": {"name": "strokes", "fonts": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    for label, gen in VARIANTS.items():
        g = config_from_dict({"generator": gen}).build_generator()
        theta = g.space.to_vector()
        render_dataset(g, theta, 50, 0)                       # warm caches (font glyphs)
        best = 0.0
        for rep in range(3):
            t0 = time.perf_counter()
            render_dataset(g, theta, n, rep + 1)
            best = max(best, n / (time.perf_counter() - t0))
        print(f"{label:16s} {best:7.0f} images/s  (best of 3 × {n} images, one process)")


if __name__ == "__main__":
    main()
