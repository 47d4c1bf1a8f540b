"""``dropt bench loop``: does the loop end with better data than the distribution written by hand?

For each task (the real UCI digits; the hidden shapes target) and each controller, over several
search seeds: one ``dropt run`` process per (task, controller, seed), its selected distribution
retrained with ``final_seeds`` training seeds at the final fidelity and scored on real val and
TEST. Printed per controller: the mean and a 95 % t-interval over search seeds of real val and
TEST, the evaluations (trainings) the search used, and the wall time per run. Beside them:

- ``prior``: the config's own θ with no search (one evaluation, then the same retraining);
- ``random``: plain wide domain randomization;
- for shapes, the oracle — a detector trained on as many images of the target domain itself,
  camera model included, at the same final fidelity — with every TEST figure's ratio to it,
  and the target's own θ rendered without its camera model, as a reference.

One plot (``curves.png``): the best real-val score found against evaluations, one line per
controller with its interval over seeds. Runs are directories under ``--out``: a finished run
(``best.json``) is skipped when the benchmark is run again, a killed one is resumed, so the
benchmark survives an interruption. Real TEST is only ever read from the final retrainings.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import stats

from ..config import ConfigError, load_config
from ..errors import RunFailure

SCALES = ("quick", "default", "full")
"""How big a run is. ``full``: the fidelities and budgets the README's tables and the issue's
targets are measured at (about four hours on 2 cores; every controller); ``default``: six
controllers on 3 seeds with 8 rounds at smaller fidelities (76 minutes measured); ``quick``: a
first look in 17 minutes (4 controllers, 2 seeds, 2 final training seeds)."""
SUFFIX = {"quick": "-quick", "default": "", "full": "-full"}
"""The scale's part of ``--out``'s default and of the result, curve and reference file names."""


@dataclass(frozen=True)
class Task:
    name: str
    config: str
    fidelities: dict[str, tuple[str, ...]]
    """Per scale: the ``--set`` overrides (fidelity and budget) of every run of this task."""
    oracle: bool = False
    warm_rounds: float = 1.0
    """Rounds a warm-started row (``WARM_ROWS``) runs per round of the scale's budget: what the
    same wall time buys when a candidate fine-tunes 100 steps instead of training from scratch."""

    def rounds(self, scale: str) -> int:
        return int(next(s for s in self.fidelities[scale] if s.startswith("loop.budget=")).split("=")[1])


def _fidelity(images: int, steps: int, final_images: int, final_steps: int, rounds: int,
              candidates: int | None = None, final_seeds: int | None = None) -> tuple[str, ...]:
    sets = (f"evaluator.images={images}", f"evaluator.steps={steps}", f"evaluator.final_images={final_images}",
            f"evaluator.final_steps={final_steps}", f"loop.budget={rounds}")
    return (sets + ((f"loop.candidates={candidates}",) if candidates else ())
            + ((f"evaluator.final_seeds={final_seeds}",) if final_seeds else ()))


TASKS = {
    "digits": Task("digits", "experiments/digits/default.toml", {
        "full": _fidelity(400, 300, 4000, 2000, 15, 4),
        "default": _fidelity(300, 200, 1000, 600, 8, 4),
        "quick": _fidelity(300, 200, 400, 300, 4, 4, final_seeds=2)},
        warm_rounds=1.35),  # 3.0 against 2.2 CPU-s an evaluation (dropt bench signal); not run: warm does not help here
    "digits-fonts": Task("digits-fonts", "experiments/digits/fonts.toml", {
        "full": _fidelity(400, 300, 1600, 1000, 15, 4),
        "default": _fidelity(300, 200, 1000, 600, 8, 4),
        "quick": _fidelity(300, 200, 400, 300, 4, 4, final_seeds=2)}),
    "shapes": Task("shapes", "experiments/shapes/default.toml", {
        "full": _fidelity(300, 150, 600, 300, 20),          # the config's own candidates (4)
        "default": _fidelity(200, 100, 400, 200, 8, 2),
        "quick": _fidelity(200, 100, 200, 100, 3, 2, final_seeds=2)}, oracle=True,
        warm_rounds=1.3),   # 26 rounds of 4 at 100 warm steps in the wall time of 20 from scratch (measured)
    # Blender (the optional extra) renders about 100× slower than the shapes GL path: small fidelities
    "blender": Task("blender", "experiments/blender/default.toml", {
        "full": _fidelity(200, 150, 400, 300, 12, 4),
        "default": _fidelity(120, 100, 300, 200, 6, 4),       # the config's own
        "quick": _fidelity(80, 80, 160, 100, 3, 2, final_seeds=2)}, oracle=True),
}

#: benchmark name → (dropt optimizer, extra --set overrides)
CONTROLLERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "prior": ("random", ("loop.options.widen=false", "loop.budget=1", "loop.candidates=1")),
    "random": ("random", ()),
    "reinforce": ("reinforce", ()),
    # warm-started evaluations (``dropt bench signal``: a 100-step fine-tune from the config θ's
    # checkpoint has ~10× the SNR per CPU-second of a training from scratch on shapes), with the
    # rounds the same wall time buys (``Task.warm_rounds``)
    "reinforce-warm": ("reinforce", ("evaluator.warm_steps=100", 'evaluator.warm_anchor="config"')),
    "surrogate-warm": ("surrogate", ("evaluator.warm_steps=100", 'evaluator.warm_anchor="config"')),
    # a fit to every past evaluation (from scratch), and the same guided by exact per-image metagradients
    "surrogate": ("surrogate", ()),
    "surrogate-metagrad": ("surrogate-metagrad", ()),
    "credit": ("credit", ()),
    "descent": ("attribute-descent", ()),
    "tpe": ("optuna", ('loop.options.sampler="tpe"',)),
    "cmaes": ("optuna", ('loop.options.sampler="cmaes"', "loop.options.sigma0=0.05", "loop.options.n_startup_trials=0")),
}
WARM_ROWS = frozenset({"reinforce-warm", "surrogate-warm"})
FULL_CONTROLLERS = tuple(CONTROLLERS)
DEFAULT_CONTROLLERS = ("prior", "random", "reinforce", "credit", "tpe", "cmaes")
"""The default run: the baselines (the config's θ, wide randomization, Optuna's TPE and CMA-ES), the
shipped learner and the per-image-credit controller; attribute descent only in ``--full``."""
QUICK_CONTROLLERS = ("prior", "random", "reinforce", "tpe")
"""``--quick``: the baselines a reader asks for first, the shipped learner, and TPE (the yardstick of
sample efficiency); the other learners only in the default and full runs."""
LEARNERS = ("reinforce", "credit", "descent", "tpe", "cmaes")


@dataclass
class Plan:
    tasks: tuple[str, ...]
    controllers: tuple[str, ...]
    seeds: tuple[int, ...]
    scale: str
    """One of :data:`SCALES`."""
    out: Path
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    report_only: bool = False
    """Aggregate the finished runs only; a controller with a missing run is left out (and said so)."""

    def overrides(self, task: str, controller: str) -> list[str]:
        t = TASKS[task]
        warm = [f"loop.budget={math.ceil(t.rounds(self.scale) * t.warm_rounds)}"] if controller in WARM_ROWS else []
        return [*t.fidelities[self.scale], *CONTROLLERS[controller][1], *warm, *self.extra.get(task, ())]

    @property
    def suffix(self) -> str:
        return SUFFIX[self.scale]

    def run_dir(self, task: str, controller: str, seed: int) -> Path:
        return self.out / task / f"{controller}-s{seed}"


def run_overrides(plan: Plan, task: str, controller: str, seed: int | None = None) -> list[str]:
    """Every ``--set`` of one benchmark run: the scale's fidelity, the controller and its options,
    the search seed."""
    sets = [*plan.overrides(task, controller), f'loop.optimizer="{CONTROLLERS[controller][0]}"']
    return sets if seed is None else [*sets, f"seed={seed}"]


def check_plan(plan: Plan) -> None:
    """Every run's config is loaded (and so validated) before the first one starts."""
    if plan.scale not in SCALES:
        raise ConfigError(f"scale: expected one of {list(SCALES)}, got {plan.scale!r}")
    for name in plan.tasks:
        if name not in TASKS:
            raise ConfigError(f"--tasks: expected names among {sorted(TASKS)}, got {name!r}")
    for name in plan.controllers:
        if name not in CONTROLLERS:
            raise ConfigError(f"--controllers: expected names among {sorted(CONTROLLERS)}, got {name!r}")
    for task in plan.tasks:
        for c in plan.controllers:
            load_config(TASKS[task].config, run_overrides(plan, task, c))


def check_same_run(plan: Plan, task: str, controller: str, seed: int) -> None:
    """A run folder found under ``--out`` is reused (or resumed) only when it is this very run:
    its config.toml must equal the config this plan would run, so a run of another scale, or of a
    config edited since, is never mixed into the figures."""
    import tomllib

    out = plan.run_dir(task, controller, seed)
    want = load_config(TASKS[task].config, run_overrides(plan, task, controller, seed)).raw
    try:
        have = tomllib.loads((out / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{out}: expected a dropt run with its config.toml, got {e}") from None
    if have != want:
        raise ConfigError(f"{out}: expected a run of this benchmark's {plan.scale} scale and the current "
                          f"{TASKS[task].config}, got a run with another config; pass another --out or remove it")


# --------------------------------------------------------------------------------------------
# Running (skip what finished, resume what was killed)
# --------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In a child before it runs: Linux sends it SIGTERM when the bench dies, so a killed bench
    leaves no run going on alone (``prctl(PR_SET_PDEATHSIG)``)."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)     # 1 = PR_SET_PDEATHSIG


def run_one(plan: Plan, task: str, controller: str, seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    from ..run.run_dir import RunDir

    out = plan.run_dir(task, controller, seed)
    if RunDir(out).in_use():
        raise RunFailure(f"{out}: expected a run folder no other process writes, got one a live dropt run holds "
                         f"(a bench killed a moment ago ends its runs within seconds; rerun then)")
    started = any((out / "checkpoint" / name).is_file() for name in ("state.json", "state.prev.json"))
    if (out / "best.json").is_file() or started:
        check_same_run(plan, task, controller, seed)
    if (out / "best.json").is_file():
        return json.loads((out / "best.json").read_text())
    base = [sys.executable, "-c", "import sys; from loop.front.cli import main; sys.exit(main())", "run"]
    if started:
        log(f"  {task}/{controller} seed {seed}: resuming {out}")
        cmd = [*base, "--resume", str(out)]
    else:
        if out.exists():                              # killed before its first checkpoint
            import shutil

            shutil.rmtree(out)
        cmd = [*base, TASKS[task].config, "--out", str(out)]
        for kv in run_overrides(plan, task, controller, seed):
            cmd += ["--set", kv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_die_with_parent)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RunFailure(f"{task}/{controller} seed {seed} failed (exit {proc.returncode}): " + " | ".join(tail))
    best = json.loads((out / "best.json").read_text())
    log(f"  {task}/{controller} seed {seed}: val {best['val']:.4f}  TEST {best['test']:.4f}  "
        f"({time.perf_counter() - t0:.0f} s)")
    return best


def curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(evaluations used, best real-val score so far) after each round, as the run selects
    (:func:`loop.run.runner.best_of_round`: copies of a θ count by their mean)."""
    from ..run.run_dir import RunDir
    from ..run.runner import best_of_round

    rows = RunDir(run_dir).read_rounds()
    xs, ys, best, used = [], [], -math.inf, 0
    for r in sorted({row["round"] for row in rows}):
        group = [row for row in rows if row["round"] == r]
        thetas = [np.array([v for _, v in sorted(row["theta"].items())]) for row in group]
        scores = [math.nan if row["score"] is None else float(row["score"]) for row in group]
        found = best_of_round(thetas, scores)
        used += len(group)
        best = max(best, found[1]) if found is not None else best
        xs.append(used)
        ys.append(best)
    return np.asarray(xs), np.asarray(ys)


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95 % t-interval (0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))


# --------------------------------------------------------------------------------------------
# References for a hidden target: the oracle and the target's own θ
# --------------------------------------------------------------------------------------------

def _references_path(plan: Plan, task: str) -> Path:
    return plan.out / task / f"references{plan.suffix}.json"


def references(plan: Plan, task: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Oracle (target-domain images, camera included) and the target's θ (no camera), each
    trained with the final fidelity and seeds of the task's runs, scored on real val and TEST
    (a task whose real set is a hidden target: shapes, blender)."""
    path = _references_path(plan, task)
    if path.is_file():
        return json.loads(path.read_text())
    from generator.base import derive_seed, render_dataset

    from ..engine import Engine, fidelity, load_real
    from ..run.final import FINAL_KEY
    from ..engine.target import apply_camera_model, target_settings

    cfg = load_config(TASKS[task].config, plan.overrides(task, "prior"))
    real = load_real(cfg, log=log)
    engine = Engine(cfg, None, real, {"score"}, use_ray=False)     # the runner's final retraining path
    target_cfg = load_config(cfg.evaluator.target_config)
    camera = target_settings(target_cfg).camera.model_dump()
    gen = target_cfg.build_generator()
    fid = fidelity(cfg.evaluator, final=True)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name, with_camera in (("oracle", True), ("target_theta", False)):
        vals, tests = [], []
        for seed in plan.seeds:        # one training per search seed, with that run's first final seed
            s = derive_seed(seed, FINAL_KEY, 0)
            ds = render_dataset(gen, gen.space.to_vector(), fid.images, derive_seed(s, 0x0AC1E))
            if with_camera:
                ds.images = [apply_camera_model(im, np.random.default_rng(derive_seed(s, 2, j)), **camera)
                             for j, im in enumerate(ds.images)]
            res = engine.train([ds], [s], fidelity=fid, splits=("val", "test"))[0]
            if res.failed:
                raise RunFailure(f"{task}/{name}: expected the reference to train, it failed ({res.failed})")
            vals.append(res.extras[f"val_{cfg.evaluator.score}"])
            tests.append(res.extras[f"test_{cfg.evaluator.score}"])
        out[name] = {"val": vals, "test": tests}
        log(f"  {task}/{name}: val {np.mean(vals):.4f}  TEST {np.mean(tests):.4f}  ({len(tests)} trainings)")
    gen.close()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------

def bench_loop(plan: Plan, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    check_plan(plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"scale": plan.scale, "seeds": list(plan.seeds), "tasks": {}}
    for task in plan.tasks:
        log(f"{task}: {len(plan.controllers)} controllers × {len(plan.seeds)} search seeds "
            f"({plan.scale}: {' '.join(TASKS[task].fidelities[plan.scale])})")
        rows, skipped, metric = {}, [], None      # metric None: every controller was left out
        for c in plan.controllers:
            if plan.report_only and not all((plan.run_dir(task, c, s) / "best.json").is_file() for s in plan.seeds):
                skipped.append(c)
                log(f"  {task}/{c}: not run (--report-only), left out")
                continue
            runs = [run_one(plan, task, c, s, log) for s in plan.seeds]
            metric = runs[0]["metric"]
            curves = [curve(plan.run_dir(task, c, s)) for s in plan.seeds]
            rows[c] = summarise(runs, curves)
        entry: dict[str, Any] = {"metric": metric, "controllers": rows, "not_run": skipped}
        if TASKS[task].oracle and not (plan.report_only and not _references_path(plan, task).is_file()):
            ref = references(plan, task, log)
            entry["references"] = {k: {"val": interval(v["val"]), "test": interval(v["test"])}
                                   for k, v in ref.items() if isinstance(v, dict)}
            oracle = float(np.mean(ref["oracle"]["test"]))
            for row in rows.values():
                row["test_over_oracle"] = row["test"][0] / oracle if oracle > 0 else None
        entry["sample_efficiency"] = sample_efficiency(rows)
        result["tasks"][task] = entry
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    name = "curves" + plan.suffix + ("" if plan.tasks == ("digits", "shapes") else f"-{'-'.join(plan.tasks)}")
    result["plot"] = str(plot_curves(result, plan.out / f"{name}.png"))
    return result


def summarise(runs: list[dict[str, Any]], curves: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    xs = curves[0][0]
    ys = np.array([np.interp(xs, x, y) for x, y in curves])
    return {"val": interval([r["val"] for r in runs]), "test": interval([r["test"] for r in runs]),
            "val_per_seed": [r["val"] for r in runs], "test_per_seed": [r["test"] for r in runs],
            "evaluations": int(xs[-1]) if len(xs) else 0,
            "wall_seconds": float(np.mean([r["timing"]["run_wall"] for r in runs])),
            "selected": [r["selected"] for r in runs],
            "curve": {"evaluations": xs.tolist(), "mean": ys.mean(0).tolist(),
                      "half_width": [interval(list(col))[1] for col in ys.T]}}


def sample_efficiency(rows: dict[str, Any]) -> dict[str, Any]:
    """For each learner: the evaluations at which its mean best-val curve first reaches TPE's
    final mean best val, and that as a share of TPE's evaluations."""
    if "tpe" not in rows:
        return {}
    goal, tpe_evals = rows["tpe"]["curve"]["mean"][-1], rows["tpe"]["evaluations"]
    out = {"tpe_final_best_val": goal, "tpe_evaluations": tpe_evals}
    for name in LEARNERS:
        if name in rows and name != "tpe":
            cv = rows[name]["curve"]
            hit = next((x for x, y in zip(cv["evaluations"], cv["mean"]) if y >= goal), None)
            out[name] = {"evaluations": hit, "share_of_tpe": None if hit is None else hit / tpe_evals}
    return out


def plot_curves(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = result["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, (task, entry) in zip(axes[0], tasks.items()):
        for name, row in entry["controllers"].items():
            cv = row["curve"]
            x, m, h = np.asarray(cv["evaluations"]), np.asarray(cv["mean"]), np.asarray(cv["half_width"])
            if len(x) == 1:
                ax.axhline(m[0], ls=":", lw=1.2, label=f"{name} (no search)", color="grey" if name == "prior" else None)
                continue
            ax.plot(x, m, label=name, lw=1.6)
            ax.fill_between(x, m - h, m + h, alpha=0.15)
        ax.set_title(f"{task}: best real-val {entry['metric']} found (mean, 95 % CI over seeds)", fontsize=9)
        ax.set_xlabel("evaluations (trainings)")
        ax.set_ylabel(f"best real-val {entry['metric']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(result: dict[str, Any]) -> str:
    lines = []
    for task, entry in result["tasks"].items():
        m = entry["metric"]
        lines.append(f"\n{task} (real {m}; mean ± 95 % CI over {len(result['seeds'])} search seeds, each the mean "
                     f"of its final retrainings)")
        head = f"{'controller':<11} {'val':>16} {'TEST':>16} {'evals':>6} {'wall s':>7}"
        if "references" in entry:
            head += f" {'TEST/oracle':>11}"
        lines.append(head)
        for name, row in entry["controllers"].items():
            line = (f"{name:<11} {row['val'][0]:8.4f} ± {row['val'][1]:.4f} {row['test'][0]:8.4f} ± {row['test'][1]:.4f} "
                    f"{row['evaluations']:6d} {row['wall_seconds']:7.0f}")
            if "test_over_oracle" in row:
                line += f" {100 * row['test_over_oracle']:10.1f}%"
            lines.append(line)
        if entry.get("not_run"):
            lines.append(f"not run: {', '.join(entry['not_run'])}")
        for name, ref in entry.get("references", {}).items():
            lines.append(f"{name:<11} {ref['val'][0]:8.4f} ± {ref['val'][1]:.4f} {ref['test'][0]:8.4f} ± "
                         f"{ref['test'][1]:.4f}   (reference)")
        eff = entry.get("sample_efficiency", {})
        if eff:
            parts = [f"{k}: {v['evaluations']} ({100 * v['share_of_tpe']:.0f} %)" if v["evaluations"] else f"{k}: never"
                     for k, v in eff.items() if isinstance(v, dict)]
            lines.append(f"evaluations to reach TPE's final best val {eff['tpe_final_best_val']:.4f} "
                         f"(TPE used {eff['tpe_evaluations']}): " + ", ".join(parts))
    lines.append(f"\nwall time {result['wall_seconds']:.0f} s; plot {result['plot']}")
    return "\n".join(lines)
