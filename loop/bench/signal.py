"""``dropt bench signal``: how much evidence one search evaluation gives, per CPU-second.

On a target whose θ is known (the hidden shapes target; or a θ known to be better, such as a
finished run's selection on the real digits), over several training seeds (each seed one round of
common random numbers: every candidate renders the same per-image seeds and trains with the
same seed), for each evaluation mode — from scratch (what the loop does today) and fine-tuned
K steps from a checkpoint trained on the config θ's images (rendered with other seeds) — it
measures:

- the paired signal-to-noise ratio of one ideal step (every learned entry moved ``step`` of
  the unit box towards the target's θ): the mean gain in real val over the spread of the paired
  gain, with a bootstrap interval over seeds;
- the CPU-seconds of one evaluation (the task's process time, its rendering in this process,
  and a warm mode's checkpoint shared by ``round_size`` candidates); SNR per CPU-second, and
  SNR² per CPU-second (the rate that does not depend on how many evaluations are averaged:
  n evaluations of c CPU-seconds give SNR·√n);
- every gradient estimate's cosine with the true direction u_target − u_config on the learned
  entries (a random direction gives about ±1/√d): antithetic pairs of one round (``round_size``
  candidates), all the pairs of a seed, the ``surrogate`` controller's linear slope fitted to
  every evaluation of every seed (each seed's offset removed: a controller that reuses all its
  past evaluations), and the
  per-image TracIn credit and the exact per-image metagradient (:mod:`evaluator.metagrad`) of the
  config θ's evaluation, each through the score-function estimator the credit controller uses;
- how well each per-image credit predicts what it claims: a random tenth of the config θ's
  images dropped (loss weight 0, the rest of the run unchanged), ``drops`` times, and the
  correlation of the real-val loss change with the sum of the dropped images' credits.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evaluator.base import Fidelity
from generator.base import derive_seed

from ..config import load_config
from ..controllers._common import Box, per_image_direction
from ..engine import Engine, load_real
from ..errors import RunFailure, UsageError
from ..engine.cluster import ensure_ray
from ..engine.render_pool import RenderPool
from .loop import interval

CONFIG = "experiments/shapes/default.toml"
SEED_KEY, EPS_KEY, CHECKPOINT_KEY, DROP_KEY = 0x516, 0xE95, 0xC4E, 0xD80


@dataclass(frozen=True)
class SignalPlan:
    config: str = CONFIG
    sets: tuple[str, ...] = ()
    """``--set`` overrides of the config."""
    images: int | None = None
    """Images per candidate (None: the config's)."""
    steps: int | None = None
    """Training steps from scratch (None: the config's)."""
    toward: str | None = None
    """A run's ``best.json`` whose θ is the known-better direction (None: the config's
    ``evaluator.target_config``, a hidden target's own θ)."""
    seeds: int = 6
    """Training seeds (one round of common random numbers each)."""
    warm_steps: tuple[int, ...] = (25, 50, 100)
    """Fine-tune budgets of the warm-started modes."""
    pairs: int = 4
    """Antithetic pairs u ± σε per seed."""
    sigma: float = 0.05
    step: float = 0.02
    round_size: int = 4
    """Candidates per round: a warm checkpoint is shared by this many; one round's antithetic estimate."""
    drops: int = 6
    """Random subsets (a tenth of the images each) whose removal checks each credit's prediction
    (from scratch and at the largest warm budget; 0: none)."""
    workers: int = 2
    out: Path = field(default=Path("out/bench-signal"))

    def key(self) -> dict[str, Any]:
        """What the raw measurements depend on (a rerun reuses finished seeds of the same key)."""
        d = asdict(self)
        d.pop("out"), d.pop("seeds"), d.pop("workers")
        d["warm_steps"], d["sets"] = list(self.warm_steps), list(self.sets)
        return d


@dataclass
class Setup:
    engine: Engine
    pool: RenderPool
    box: Box
    u0: np.ndarray
    ut: np.ndarray
    seed: int

    @property
    def space(self):
        return self.pool.generator.space


def _setup(plan: SignalPlan) -> Setup:
    sets = [f"evaluator.{k}={v}" for k, v in (("images", plan.images), ("steps", plan.steps)) if v is not None]
    cfg = load_config(plan.config, [*plan.sets, *sets])
    space = cfg.build_generator().space
    target = _toward(plan, cfg, space)
    ensure_ray(num_cpus=plan.workers)
    pool = RenderPool(cfg, workers=0)
    real = load_real(cfg, categories=pool.generator.categories)
    engine = Engine(cfg, pool, real, {"score", "credit", "metagrad"}, use_ray=True)
    box = Box(space)
    return Setup(engine, pool, box, box.to_unit(space.clip(space.to_vector())), box.to_unit(space.clip(target)), cfg.seed)


def _toward(plan: SignalPlan, cfg, space) -> np.ndarray:
    """The known-better θ: a run's selected θ (``--toward best.json``) or the hidden target's own."""
    if plan.toward is not None:
        try:
            theta = json.loads(Path(plan.toward).read_text())["theta"]
            return np.array([float(theta[n]) for n in space.theta_names()])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"--toward: expected a run's best.json with this config's θ, got {plan.toward} "
                             f"({type(e).__name__}: {e})") from None
    if cfg.evaluator.target_config is None:
        raise UsageError(f"{plan.config}: expected evaluator.target_config (a hidden target's θ) or --toward "
                         f"BEST_JSON, got neither")
    hidden = load_config(cfg.evaluator.target_config).build_generator().space
    named = hidden.named(hidden.to_vector())        # by name: the two spaces may order or narrow differently
    missing = [n for n in space.theta_names() if n not in named]
    if missing:
        raise UsageError(f"evaluator.target_config: expected the target's space to have every θ entry of the "
                         f"run's, got none for {missing[0]} (pass --toward BEST_JSON instead)")
    return np.array([float(named[n]) for n in space.theta_names()])


def ideal_step(u0: np.ndarray, ut: np.ndarray, size: float) -> np.ndarray:
    """Every entry moved ``size`` towards ``ut`` (or onto it when closer)."""
    return np.where(np.abs(ut - u0) < size, ut, u0 + size * np.sign(ut - u0))


def candidates(s: Setup, plan: SignalPlan, i: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Seed i's θs in unit coordinates: the config's, the ideal step, then u0 + σε₁, u0 − σε₁, …"""
    eps = np.random.default_rng([s.seed, EPS_KEY, i]).standard_normal((plan.pairs, len(s.u0)))
    us = [s.u0, ideal_step(s.u0, s.ut, plan.step)]
    for e in eps:
        us += [s.u0 + plan.sigma * e, s.u0 - plan.sigma * e]
    return us, eps


# --------------------------------------------------------------------------------------------
# Measurement: one seed, every mode
# --------------------------------------------------------------------------------------------

def _cpu(res) -> float:
    return float(res.timings.get("cpu_seconds", math.nan))


def _scored(s: Setup, results, thetas, draws, meta) -> dict[str, Any]:
    """A mode's figures: the scores, CPU-seconds, and the config θ's credit and metagradient
    directions (the credit controller's estimator, in unit coordinates)."""
    failed = [r.failed for r in [*results, meta] if r.failed]
    if failed:
        raise RunFailure(f"an evaluation failed: {failed[0]}")
    direction = lambda values: per_image_direction(s.space, s.box, thetas[0], draws[0], values).tolist()  # noqa: E731
    return {"scores": [r.score for r in results], "cpu": [_cpu(r) for r in results],
            "credit": direction(results[0].per_image["credit"]),
            "metagrad": direction(meta.per_image["metagrad"]), "metagrad_cpu": _cpu(meta)}


def drop_effects(s: Setup, plan: SignalPlan, dataset, seed: int, fid: Fidelity, warm: dict | None,
                 base: float, signals: dict[str, np.ndarray]) -> dict[str, Any]:
    """Retrain on ``dataset`` with a random tenth of its images' weights set to 0, ``plan.drops``
    times (same seed, batches and start weights); each subset's real-val loss change from
    ``base`` (the run with every weight 1: the metagradient's own) beside every signal's
    first-order prediction of it (the sum of its dropped images' values: metagrad is −dL/dw,
    TracIn credit how much an image lowered the loss)."""
    from ..engine.evaluators import build_evaluator

    evaluator = build_evaluator(s.engine.settings, s.engine.real)
    n = min(len(dataset), fid.images or len(dataset))
    rng = np.random.default_rng([s.seed, DROP_KEY, seed])
    actual, predicted = [], {k: [] for k in signals}
    for _ in range(plan.drops):
        dropped = rng.choice(n, size=max(n // 10, 1), replace=False)
        w = np.ones(n)
        w[dropped] = 0.0
        actual.append(evaluator.evaluate(dataset, fid, seed, warm, image_weights=w).extras["val_loss"] - base)
        for k, v in signals.items():
            predicted[k].append(float(np.asarray(v)[dropped].sum()))
    return {"actual": actual, "predicted": predicted}


def measure_seed(s: Setup, plan: SignalPlan, i: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Every mode's scores, CPU-seconds and credit directions for training seed ``i``; the drop
    check of the credits from scratch and at the largest warm budget."""
    seed = derive_seed(s.seed, SEED_KEY, i)
    us, eps = candidates(s, plan, i)
    thetas = [s.box.to_theta(u) for u in us]
    cpu0 = time.process_time()
    draws, datasets = s.engine.draw_and_render(thetas, [seed] * len(thetas))
    _, (ckpt_ds,) = s.engine.draw_and_render([thetas[0]], [derive_seed(seed, CHECKPOINT_KEY)])
    render_cpu = (time.process_time() - cpu0) / (len(thetas) + 1)
    signals = ("credit", "score")
    first = s.engine.train(datasets + [ckpt_ds], [seed] * (len(thetas) + 1), signals=signals, keep_weights=True)
    ckpt = first.pop()
    runs = {"scratch": (s.engine.fidelity, None, first)}
    for k in plan.warm_steps:
        fid = Fidelity(steps=k, images=plan.images, batch_size=s.engine.fidelity.batch_size)
        runs[f"warm {k}"] = (fid, ckpt.weights, s.engine.train(datasets, [seed] * len(thetas), signals=signals,
                                                              fidelity=fid, warm_start=ckpt.weights))
    modes, drops = {}, {}
    dropped_modes = ["scratch", *([f"warm {max(plan.warm_steps)}"] if plan.warm_steps else [])] if plan.drops else []
    for mode, (fid, warm, res) in runs.items():
        (meta,) = s.engine.train([datasets[0]], [seed], signals=("metagrad",), fidelity=fid, warm_start=warm)
        modes[mode] = _scored(s, res, thetas, draws, meta)
        if mode in dropped_modes:
            drops[mode] = drop_effects(s, plan, datasets[0], seed, fid, warm, meta.extras["val_loss"],
                                       {"credit (TracIn)": res[0].per_image["credit"],
                                        "metagrad (exact)": meta.per_image["metagrad"]})
    log(f"  seed {i}: " + ", ".join(f"{m} Δ {d['scores'][1] - d['scores'][0]:+.3f}" for m, d in modes.items()))
    return {"seed": i, "eps": eps.tolist(), "render_cpu": render_cpu, "checkpoint_cpu": _cpu(ckpt), "modes": modes,
            "drops": drops}


# --------------------------------------------------------------------------------------------
# Analysis: SNR, CPU-seconds, cosines
# --------------------------------------------------------------------------------------------

def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def snr(gains: np.ndarray) -> float:
    sd = float(np.std(gains, ddof=1))
    return float(np.mean(gains)) / sd if sd > 0 else math.inf


def bootstrap(values: np.ndarray, stat: Callable[[np.ndarray], float], *, n: int = 2000, seed: int = 0
              ) -> tuple[float, float]:
    """A 95 % percentile interval of ``stat`` over resamples of ``values`` (rows)."""
    rng = np.random.default_rng(seed)
    draws = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(n)]
    draws = [d for d in draws if math.isfinite(d)]
    return (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) if draws else (math.nan, math.nan)


def antithetic(scores: list[float], eps: np.ndarray, sigma: float, pairs: int) -> np.ndarray:
    """Σ (s₊ − s₋) ε / (2σN) over the first ``pairs`` pairs (scores: u0, step, then the pairs)."""
    s = np.asarray(scores[2:2 + 2 * pairs]).reshape(pairs, 2)
    return ((s[:, 0] - s[:, 1])[:, None] * eps[:pairs]).sum(0) / (2 * sigma * pairs)


def surrogate(rows: list[dict], mode: str, plan: SignalPlan) -> np.ndarray:
    """The ``surrogate`` controller's slope (:func:`loop.controllers.surrogate.fit_slope`) fitted to
    every evaluation of every seed but the ideal step's, each seed one round (its own
    common-random-numbers offset removed)."""
    from ..controllers.surrogate import fit_slope

    rounds = []
    for r in rows:
        eps = np.asarray(r["eps"])
        u = np.vstack([np.zeros(eps.shape[1])] + [v for e in eps for v in (plan.sigma * e, -plan.sigma * e)])
        sc = r["modes"][mode]["scores"]
        rounds.append({"u": u, "scores": [sc[0]] + sc[2:2 + 2 * plan.pairs]})
    return fit_slope(rounds, plan.sigma)


def analyse(rows: list[dict], plan: SignalPlan, true_dir: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": len(rows), "dim": len(true_dir), "random_cosine_sd": 1 / math.sqrt(len(true_dir)),
                           "modes": {}}
    one_round = min(max(plan.round_size // 2, 1), plan.pairs)
    for mode in rows[0]["modes"]:
        per = [r["modes"][mode] for r in rows]
        gains = np.asarray([p["scores"][1] - p["scores"][0] for p in per])
        cpu = float(np.mean([np.mean(p["cpu"]) + r["render_cpu"] for p, r in zip(per, rows)]))
        if mode != "scratch":
            cpu += float(np.mean([r["checkpoint_cpu"] + r["render_cpu"] for r in rows])) / plan.round_size
        ratio = snr(gains)
        cos = {
            f"antithetic, {one_round} pairs (one round)": [cosine(antithetic(p["scores"], np.asarray(r["eps"]), plan.sigma, one_round), true_dir)
                                                            for p, r in zip(per, rows)],
            f"antithetic, {plan.pairs} pairs": [cosine(antithetic(p["scores"], np.asarray(r["eps"]), plan.sigma, plan.pairs), true_dir)
                                                for p, r in zip(per, rows)],
            "credit (TracIn), one evaluation": [cosine(np.asarray(p["credit"]), true_dir) for p in per],
            "metagrad (exact), one evaluation": [cosine(np.asarray(p["metagrad"]), true_dir) for p in per],
        }
        loo = [cosine(surrogate([r for j, r in enumerate(rows) if j != i], mode, plan), true_dir) for i in range(len(rows))]
        out["modes"][mode] = {
            "gain": interval(list(gains)), "gain_sd": float(np.std(gains, ddof=1)),
            "val_config": interval([p["scores"][0] for p in per]),
            "snr": ratio, "snr_interval": bootstrap(gains, snr), "cpu_seconds": cpu,
            "snr_per_cpu_second": ratio / cpu, "snr2_per_cpu_second": ratio ** 2 / cpu,
            "cosines": {k: interval(v) for k, v in cos.items()},
            f"surrogate, all {len(rows)} seeds' evaluations": cosine(surrogate(rows, mode, plan), true_dir),
            "surrogate, leave one seed out": interval(loo),
            "metagrad_cpu_seconds": float(np.mean([p["metagrad_cpu"] for p in per])),
            "pooled": {k: cosine(np.sum([np.asarray(p[k]) for p in per], axis=0), true_dir)
                       for k in ("credit", "metagrad")},
        }
        if all(mode in r.get("drops", {}) for r in rows):
            out["modes"][mode]["drop_correlation"] = drop_correlations([r["drops"][mode] for r in rows])
    return out


def drop_correlations(drops: list[dict]) -> dict[str, Any]:
    """Per signal: the Pearson correlation of its predicted with the actual real-val loss change
    of dropping a subset, within each seed (mean ± half-width over seeds)."""
    out = {}
    for name in drops[0]["predicted"]:
        r = [float(np.corrcoef(d["predicted"][name], d["actual"])[0, 1]) for d in drops]
        out[name] = interval([v for v in r if math.isfinite(v)])
    return out


# --------------------------------------------------------------------------------------------
# The benchmark: measure (resumable by seed), analyse, print
# --------------------------------------------------------------------------------------------

def _load_raw(path: Path, plan: SignalPlan) -> list[dict]:
    if not path.exists():
        return []
    raw = json.loads(path.read_text())
    return raw["rows"] if raw.get("plan") == plan.key() else []


def bench_signal(plan: SignalPlan, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    s = _setup(plan)
    path = plan.out / "raw.json"
    rows = [r for r in _load_raw(path, plan) if r["seed"] < plan.seeds]
    learned = np.abs(s.ut - s.u0) > 1e-9
    fid = s.engine.fidelity
    log(f"{s.space.dim} learned entries; the known-better θ differs in {int(learned.sum())}; {plan.seeds} training "
        f"seeds at {fid.images} images / {fid.steps} steps ({len(rows)} measured before)")
    t0 = time.perf_counter()
    try:
        for i in range(len(rows), plan.seeds):
            rows.append(measure_seed(s, plan, i, log))
            plan.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"plan": plan.key(), "rows": rows}))
    finally:
        s.pool.close()
    res = analyse(rows, plan, s.ut - s.u0)
    fid = s.engine.fidelity
    res.update(plan=plan.key(), images=fid.images, steps=fid.steps, wall_seconds=time.perf_counter() - t0)
    return res


def format_table(res: dict[str, Any]) -> str:
    p = res["plan"]
    towards = f"towards {p['toward']}" if p["toward"] else "towards the hidden target's θ"
    lines = [f"{p['config']}, {res['images']} images / {res['steps']} steps, {res['seeds']} training seeds; ideal step "
             f"{p['step']:g} of the unit box {towards}; checkpoint shared by {p['round_size']} candidates",
             f"{'mode':<10} {'val (config θ)':>16} {'gain of the step':>18} {'SNR [95 % boot]':>20} {'CPU-s':>6} "
             f"{'SNR/CPU-s':>9} {'SNR²/CPU-s':>10}"]
    for mode, m in res["modes"].items():
        lo, hi = m["snr_interval"]
        lines.append(f"{mode:<10} {m['val_config'][0]:8.3f} ± {m['val_config'][1]:.3f} {m['gain'][0]:+9.4f} ± "
                     f"{m['gain'][1]:.4f} {m['snr']:6.2f} [{lo:5.2f}, {hi:5.2f}] {m['cpu_seconds']:6.1f} "
                     f"{m['snr_per_cpu_second']:9.3f} {m['snr2_per_cpu_second']:10.4f}")
    lines.append(f"\ncosine with the true direction ({res['dim']} learned entries; random ±{res['random_cosine_sd']:.2f})")
    for mode, m in res["modes"].items():
        lines.append(f"  {mode}")
        for name, (mean, half) in m["cosines"].items():
            lines.append(f"    {name:<40} {mean:+.3f} ± {half:.3f}")
        key = next(k for k in m if k.startswith("surrogate, all"))
        loo = m["surrogate, leave one seed out"]
        lines.append(f"    {key:<40} {m[key]:+.3f} (leave one seed out {loo[0]:+.3f} ± {loo[1]:.3f})")
        lines.append(f"    {'credit / metagrad, all seeds summed':<40} {m['pooled']['credit']:+.3f} / "
                     f"{m['pooled']['metagrad']:+.3f}")
    drops = {mode: m["drop_correlation"] for mode, m in res["modes"].items() if "drop_correlation" in m}
    if drops:
        lines.append(f"\ncorrelation of each credit's prediction with the real-val loss change of dropping a tenth "
                     f"of the images ({p['drops']} subsets a seed; exact metagradients cost "
                     + ", ".join(f"{m['metagrad_cpu_seconds']:.1f}" for m in res["modes"].values()) + " CPU-s)")
        for mode, corr in drops.items():
            lines.append(f"  {mode}: " + ", ".join(f"{k} {v[0]:+.3f} ± {v[1]:.3f}" for k, v in corr.items()))
    return "\n".join(lines)
