"""What each part of the handwriting generator is worth on the real UCI digits: the shipped
config, without elastic distortion, without style variants (one style per digit), fonts only,
strokes only. Each row is the mean real TEST accuracy of 3 search seeds (each run's selected
distribution retrained with 3 training seeds) with a 95 % interval; ``--prior`` scores each
variant's own default θ instead (no search, much cheaper). Runs live under ``--out`` and a
finished one is skipped when the script runs again.

    python experiments/digits_ablation.py [--prior] [--seeds 0,1,2] [--out out/digits-ablation]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from loop.bench.loop import CONTROLLERS, TASKS, interval

CONFIG, FONTS, STROKES = ("experiments/digits/default.toml", "experiments/digits/fonts.toml",
                          "experiments/digits/strokes.toml")
NO_ELASTIC = ('space."elastic.alpha".range=[0.0, 0.0]', 'space."font.elastic.alpha".range=[0.0, 0.0]')
VARIANTS = {
    "shipped (strokes + fonts)": (CONFIG, ()),
    "without elastic": (CONFIG, NO_ELASTIC),
    "without style variants": (CONFIG, ("generator.variants=false",)),
    "fonts only": (FONTS, ()),
    "strokes only": (STROKES, ()),
}


def run(config: str, overrides: tuple[str, ...], seed: int, out: Path) -> dict:
    if not (out / "best.json").is_file():
        cmd = [sys.executable, "-m", "loop.front.cli", "run", config, "--seed", str(seed), "--out", str(out)]
        if (out / "metadata.json").is_file():
            cmd = [sys.executable, "-m", "loop.front.cli", "run", "--resume", str(out)]
        else:
            for kv in overrides:
                cmd += ["--set", kv]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{out}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads((out / "best.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", action="store_true", help="score each variant's default θ (no search)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="out/digits-ablation")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    mode = "prior" if args.prior else "search"
    fidelity = TASKS["digits"].overrides                     # the benchmark's fidelity and budget
    extra = CONTROLLERS["prior"][1] if args.prior else ()
    print(f"digits ablation ({'default θ, no search' if args.prior else 'the shipped optimizer and budget'}; "
          f"{' '.join(fidelity)}); real TEST accuracy, mean of seeds {seeds} ± 95 % interval")
    rows = {}
    for name, (config, overrides) in VARIANTS.items():
        tests = []
        for seed in seeds:
            out = Path(args.out) / mode / f"{name.split(' (')[0].replace(' ', '-')}-s{seed}"
            over = (*fidelity, *overrides, *extra) + (('loop.optimizer="random"',) if args.prior else ())
            tests.append(run(config, over, seed, out)["test"])
        mean, half = interval(tests)
        rows[name] = {"test": [mean, half], "test_per_seed": tests}
        print(f"  {name:28s} {mean:.3f} ± {half:.3f}   ({', '.join(f'{t:.3f}' for t in tests)})", flush=True)
    Path(args.out, f"{mode}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
