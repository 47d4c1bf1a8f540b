"""How much does one search evaluation on the shapes target tell a controller?

At the benchmark's search fidelity (300 images / 150 steps per candidate), this scores on the
target's real val split, over several training seeds with common random numbers (each seed
renders the same per-image seeds and trains with the same seed for every θ):

- the config's θ (where every search starts);
- one ideal Adam step from it towards the hidden target's θ (every learned entry moved by the
  step size ``--lr`` of the unit box in the target's direction: the most a perfect first
  round of reinforce can do);
- ten such steps;
- the target's own θ (no camera model).

It prints each θ's mean val and the paired differences from the config's θ with a 95 %
t-interval, and the training-seed spread of one evaluation: a controller that sees a few such
evaluations per round must find the target's direction through that noise.

    python experiments/shapes_signal.py [--seeds 6] [--lr 0.02] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.base import derive_seed  # noqa: E402
from loop.bench.loop import interval  # noqa: E402
from loop.config import load_config  # noqa: E402
from loop.controllers._common import Box  # noqa: E402
from loop.engine import Engine, load_real  # noqa: E402
from loop.engine.render_pool import RenderPool, ensure_ray  # noqa: E402

CONFIG = "experiments/shapes/default.toml"
SEARCH = ["evaluator.images=300", "evaluator.steps=150"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6, help="training seeds (default 6)")
    ap.add_argument("--lr", type=float, default=0.02, help="the step, in unit-box coordinates (default 0.02)")
    ap.add_argument("--workers", type=int, default=2, help="evaluation processes (default 2)")
    args = ap.parse_args()
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

    cfg = load_config(CONFIG, SEARCH)
    ensure_ray(num_cpus=args.workers)                    # evaluation tasks: the runner's Ray path
    pool = RenderPool(cfg, workers=0)                    # rendering in this process
    real = load_real(cfg, categories=pool.generator.categories)   # made once from the target, if missing
    engine = Engine(cfg, pool, real, {"score"}, use_ray=True)
    space = pool.generator.space
    target = load_config(cfg.evaluator.target_config).build_generator().space
    box = Box(space)
    u0, ut = box.to_unit(space.clip(space.to_vector())), box.to_unit(space.clip(target.to_vector()))
    direction = np.sign(ut - u0) * (np.abs(ut - u0) > 1e-9)
    one = np.where(np.abs(ut - u0) < args.lr, ut, u0 + args.lr * direction)
    ten = np.where(np.abs(ut - u0) < 10 * args.lr, ut, u0 + 10 * args.lr * direction)
    thetas = {"config's θ": u0, f"1 step of {args.lr:g}": one, f"10 steps of {args.lr:g}": ten, "target's θ": ut}
    print(f"{space.dim} learned entries; the target's θ differs in {int((np.abs(ut - u0) > 1e-9).sum())}, "
          f"L1 distance {np.abs(ut - u0).sum():.2f} in unit-box coordinates")

    fid, scores = engine.fidelity, {}
    t0 = time.perf_counter()
    for i in range(args.seeds):        # one round of the four θs per training seed (common random numbers)
        seed = derive_seed(cfg.seed, 0x516, i)
        results = engine.evaluate([box.to_theta(u) for u in thetas.values()], [seed] * len(thetas), {"score"})
        scores.update({(name, i): res.score for name, res in zip(thetas, results)})
    pool.close()
    print(f"{len(scores)} evaluations at {fid.images} images / {fid.steps} steps in {time.perf_counter() - t0:.0f} s "
          f"(real val AP50, {args.seeds} training seeds, common random numbers)\n")
    base = [scores[("config's θ", i)] for i in range(args.seeds)]
    print(f"{'θ':<18} {'val AP50':>16} {'minus config θ (paired)':>26} {'seed sd':>8}")
    for name in thetas:
        s = [scores[(name, i)] for i in range(args.seeds)]
        m, h = interval(s)
        dm, dh = interval([a - b for a, b in zip(s, base)])
        print(f"{name:<18} {m:8.4f} ± {h:.4f} {dm:+16.4f} ± {dh:.4f} {np.std(s, ddof=1):8.4f}")
    d1 = [scores[(f"1 step of {args.lr:g}", i)] - b for i, b in enumerate(base)]
    sd = float(np.std(d1, ddof=1))
    snr = abs(float(np.mean(d1))) / sd if sd > 0 else math.inf
    print(f"\none ideal step's gain / the spread of a paired difference: {snr:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
