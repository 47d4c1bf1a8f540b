"""The driver's peak memory on a run with many candidates: `python experiments/driver_memory.py`.

Runs `dropt run` in this process (so the figure is the driver's own peak resident set, not a Ray
worker's) on the shapes default config with 16 candidates of 400 images for 2 rounds at a
training budget of 5 steps (the images, not the training, are what the driver might carry), and
prints the peak RSS and the bytes rendered per round. Extra arguments go to `dropt run`.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from loop.front.cli import main

SETS = ["loop.candidates=16", "evaluator.images=400", "evaluator.steps=5", "evaluator.final_seeds=1",
        "evaluator.final_steps=5", "evaluator.final_images=400", "loop.keep_start=false"]

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        argv = ["run", "experiments/shapes/default.toml", "--budget", "2", "--out", str(Path(d) / "run"),
                *[a for s in SETS for a in ("--set", s)], *sys.argv[1:]]
        t0 = time.perf_counter()
        code = main(argv)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        per_round_mb = 16 * 400 * 64 * 64 * 3 / 1e6
        print(f"driver peak RSS {peak_mb:.0f} MB; {per_round_mb:.1f} MB of images rendered per round; "
              f"{time.perf_counter() - t0:.0f} s; exit {code}")
