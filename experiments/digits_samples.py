"""One picture: samples of a run's learned digits distribution beside real UCI digits (val split).

    python experiments/digits_samples.py RUN_DIR [--out docs/digits-learned-vs-real.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from evaluator.real import class_labels, load_digits_real
from generator.base import render_dataset
from loop.config import load_config

PER_CLASS = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", default="docs/digits-learned-vs-real.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(args.run_dir)
    cfg = load_config(run / "config.toml")
    gen = cfg.build_generator()
    theta = gen.space.from_named(json.loads((run / "best.json").read_text())["theta"])
    ds = render_dataset(gen, theta, 400, cfg.seed + 1)
    real = load_digits_real(seed=0).val
    sets = {"learned": (np.stack(ds.images), class_labels(ds)), "real UCI (val)": (np.stack(real.images), class_labels(real))}
    fig, axes = plt.subplots(10, 2 * PER_CLASS + 1, figsize=(2 * PER_CLASS * 0.55 + 0.3, 10 * 0.58))
    for d in range(10):
        for s, (label, (images, labels)) in enumerate(sets.items()):
            picks = images[labels == d][:PER_CLASS]
            for k, image in enumerate(picks):
                ax = axes[d, s * (PER_CLASS + 1) + k]
                ax.imshow(image, cmap="gray_r", vmin=0, vmax=16, interpolation="nearest")
            if d == 0:
                axes[0, s * (PER_CLASS + 1)].set_title(label, fontsize=7, loc="left")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout(pad=0.2)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
