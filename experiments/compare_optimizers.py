"""Compare controllers on the hidden shapes target domain, one seed each, from one command.

    .venv/bin/python experiments/compare_optimizers.py [--budget 20] [--optimizers random,reinforce,metasim+task,optuna]
        [--set key=value ...] [--out out/compare] [--json]

Prints, per optimizer, the best distribution's real val and TEST scores (mean of the final
retrainings), wall time, the share of wall time outside rendering and training, and the driver's
peak memory; writes each run directory under --out. Each optimizer runs as its own
``dropt run`` process (its own local Ray), so its wall time and peak memory are its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from loop.config import ConfigError, load_config

DEFAULT_OPTIMIZERS = "random,reinforce,metasim+task,optuna"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/shapes/default.toml")
    p.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS)
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--out", default="out/compare")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    names = args.optimizers.split(",")
    try:   # every setting is checked before the first run starts
        for name in names:
            load_config(args.config, [*args.overrides, f'loop.optimizer="{name}"'])
    except ConfigError as e:
        print(f"compare_optimizers: error: {e}", file=sys.stderr)
        return 2
    for name in names:
        out = Path(args.out) / f"{name.replace('+', '_')}-s{args.seed}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-c", "import sys; from loop.front.cli import main; sys.exit(main())", "run", args.config,
               "--optimizer", name, "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(out)]
        for kv in args.overrides:
            cmd += ["--set", kv]
        if subprocess.run(cmd).returncode != 0:
            print(f"compare_optimizers: error: the {name} run failed (see above)", file=sys.stderr)
            return 1
        best = json.loads((out / "best.json").read_text())
        rows.append(best)
        print(f"{name}: val {best['val']:.4f} test {best['test']:.4f}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'optimizer':<14} {'val':>7} {'test':>7} {'wall s':>7} {'outside %':>9} {'start-up s':>10} "
          f"{'driver MB':>9}  selected")
    for b in rows:
        print(f"{b['optimizer']:<14} {b['val']:7.4f} {b['test']:7.4f} {b['timing']['run_wall']:7.0f} "
              f"{100 * b['outside_render_and_training_share']:9.1f} {b['timing'].get('startup', float('nan')):10.1f} "
              f"{b['driver_peak_rss_mb']:9.0f}  {b['selected']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
