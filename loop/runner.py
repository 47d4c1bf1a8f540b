"""The closed loop: propose θs → render → evaluate on real val → update, round after round.

Rendering goes through the render actors (reused across rounds); each candidate's evaluation
(training + real-val scoring, or gap/witness metrics) is a Ray task with the config's
``num_cpus``/``num_gpus``. After every round the controller's state is checkpointed atomically, so
``--resume`` continues a killed run on exactly the θ trajectory an uninterrupted run would take:
per-image seeds derive from (run seed, round, candidate, index) and evaluations are seeded.
At the end the best distribution is retrained with several seeds and scored on real TEST.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from generator.base import derive_seed

from .config import ConfigError, ExperimentConfig
from .controllers import Feedback, make_controller
from .render_pool import RenderPool, ensure_ray
from .run_dir import RunDir
from .tasks import (concat, evaluate_candidate, fidelity, load_real, losses_candidate, real_features,
                    witness_candidate)

FINAL_KEY = 0xF17A1


@dataclass
class _Executor:
    """Runs per-candidate work as Ray tasks when Ray is up, else in this process."""

    use_ray: bool
    num_cpus: float
    num_gpus: float

    def __post_init__(self):
        self._refs: dict[int, Any] = {}
        if self.use_ray:
            import ray

            self._fns = {"evaluate": ray.remote(evaluate_candidate).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus),
                         "losses": ray.remote(losses_candidate).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus),
                         "witness": ray.remote(witness_candidate).options(num_cpus=self.num_cpus)}

    def put(self, obj: Any) -> Any:
        if not self.use_ray:
            return obj
        import ray

        return ray.put(obj)

    def submit(self, fn: str, *args, **kwargs) -> Any:
        if not self.use_ray:
            return {"evaluate": evaluate_candidate, "losses": losses_candidate, "witness": witness_candidate}[fn](
                *args, **kwargs)
        return self._fns[fn].remote(*args, **kwargs)

    def gather(self, handles: list[Any]) -> list[Any]:
        if not self.use_ray:
            return handles
        import ray

        return ray.get(handles)


def _fmt_s(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


def run_loop(cfg: ExperimentConfig, out: str | os.PathLike, *, resume: bool = False, address: str | None = None,
             stop_after_round: int | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the loop of ``cfg`` in run directory ``out``; returns ``best.json``'s content.

    ``stop_after_round`` ends the process's work after that round's checkpoint (tests use it to
    simulate a killed run)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    rd = RunDir(out)
    settings, loop = cfg.evaluator, cfg.loop
    if resume:
        state = rd.load_checkpoint()
        if state is None:
            raise ConfigError(f"--resume: expected a run directory with a checkpoint, {rd.checkpoint} not found")
    else:
        if rd.exists():
            raise ConfigError(f"--out: expected a new run directory, {rd.root} already holds a run "
                              f"(use --resume {rd.root} to continue it)")
        state = None

    wall0 = time.perf_counter()
    startup: dict[str, float] = {}
    last_lap = wall0

    def lap(name: str) -> None:
        """Record the seconds since the previous lap as start-up part ``name``."""
        nonlocal last_lap
        now = time.perf_counter()
        startup[name] = round(now - last_lap, 3)
        last_lap = now

    if cfg.render.workers > 0 or address:
        # render actors and evaluation tasks alternate within a round: count the actors'
        # reservation on top of the cores, so they do not starve the evaluation tasks
        # (before anything else starts Ray with fewer CPUs)
        ensure_ray(address, num_cpus=(os.cpu_count() or 1) + math.ceil(cfg.render.workers * cfg.render.num_cpus))
    lap("ray")
    logging.getLogger("optuna").setLevel(logging.WARNING)
    # the render actors start in the background (a few seconds of process start and imports)
    # while the driver loads the real set and builds the controller
    with RenderPool(cfg, address=address, wait=False) as pool:
        real = load_real(cfg, log=log)
        value_max = float(real.val.info.get("value_max", 255))
        lap("real_set")
        space = pool.generator.space
        try:
            controller = make_controller(loop.optimizer, space, seed=cfg.seed, **loop.options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"loop: {e}") from None
        needs = set(controller.needs)
        task_weights = None        # the adversarial controllers' task model, trained across rounds
        ex = _Executor(use_ray=pool.workers > 0 or bool(address), num_cpus=settings.num_cpus,
                       num_gpus=settings.num_gpus)
        real_ref = ex.put(real)
        real_feats_ref = ex.put(real_features(real, value_max=value_max, gap_images=settings.gap_images,
                                              seed=cfg.seed)) if "witness" in needs else None
        lap("controller")
        pool.ready()
        lap("render_actors")   # what is left of their start after the driver's own set-up
        per_image = bool(needs & {"witness", "sample_loss"})   # controllers that need each image's draws
        if state is None:
            rd.create(cfg.raw, cfg.seed, {"optimizer": loop.optimizer, "budget": loop.budget,
                                          "candidates": loop.candidates, "real": real.describe()})
            start, best, timing = 0, None, {"render": 0.0, "evaluate": 0.0, "total": 0.0}
        else:
            controller.load_state_dict(state["controller"])
            start, best, timing = state["round"] + 1, state["best"], state["timing"]
            task_weights = _load_weights(rd.checkpoint_dir / "task_model.pt")
            rd.truncate_rounds(start)
            log(f"resuming {rd.root} at round {start + 1}/{loop.budget}")
        fid = fidelity(settings)
        t_startup = time.perf_counter() - wall0   # Ray, render actors, real set, controller, run dir
        for r in range(start, loop.budget):
            t_round = time.perf_counter()
            thetas = [space.check_theta(t) for t in controller.propose(loop.candidates)]
            seeds = [derive_seed(cfg.seed, r, c) for c in range(len(thetas))]
            t0 = time.perf_counter()
            draws = [pool.generator.scene_draws(t, settings.images, s) for t, s in zip(thetas, seeds)]
            datasets = [pool.render_draws(d, s) for d, s in zip(draws, seeds)]
            t_render = time.perf_counter() - t0
            t0 = time.perf_counter()
            handles = {}
            if "score" in needs:
                handles["score"] = [ex.submit("evaluate", settings, real_ref, ds, fid, s)
                                    for ds, s in zip(datasets, seeds)]
            if "witness" in needs:
                handles["witness"] = [ex.submit("witness", real_feats_ref, ds, value_max=value_max, seed=cfg.seed)
                                      for ds in datasets]
            results = {k: ex.gather(v) for k, v in handles.items()}
            if "sample_loss" in needs:
                # VADRA: each image's loss under the current task model is its reward; the model then
                # keeps training on the whole round (warm start) and real val scores it
                results["losses"] = ex.gather([ex.submit("losses", settings, real_ref, ds, task_weights, cfg.seed)
                                               for ds in datasets])
                m = ex.gather([ex.submit("evaluate", settings, real_ref, concat(datasets), fid,
                                         derive_seed(cfg.seed, r, 0xADD), ("val",), True, task_weights)])[0]
                task_weights, m.weights = m.weights, None
                results["score"] = [m] * len(datasets)
            t_eval = time.perf_counter() - t0
            feedback, lines = [], []
            for c, (theta, s) in enumerate(zip(thetas, seeds)):
                extras: dict[str, float] = {}
                score = float("nan")
                rewards = None
                if "score" in results:
                    m = results["score"][c]
                    score, extras = float(m.score), dict(m.extras)
                    extras["train_seconds"] = m.timings.get("train", 0.0)
                if "losses" in results:
                    rewards = np.asarray(results["losses"][c])
                if "witness" in results:
                    gap, rewards = results["witness"][c]
                    extras.update(gap)
                    if "score" not in results:
                        score = -gap["gap_mmd2"]
                feedback.append(Feedback(score=score, extras=extras, draws=draws[c] if per_image else None,
                                         sample_rewards=rewards))
                lines.append({"round": r, "candidate": c, "seed": s, "score": _num(score),
                              "metrics": {k: _num(v) for k, v in sorted(extras.items())},
                              "theta": {k: round(float(v), 6) for k, v in space.named(theta).items()}})
                if math.isfinite(score) and (best is None or score > best["score"]):
                    best = {"score": score, "round": r, "candidate": c, "theta": theta.tolist()}
            controller.update(thetas, feedback)
            dt = time.perf_counter() - t_round
            timing = {"render": timing["render"] + t_render, "evaluate": timing["evaluate"] + t_eval,
                      "total": timing["total"] + dt}
            rd.append_round(lines)
            if task_weights is not None:
                _save_weights(rd.checkpoint_dir / "task_model.pt", task_weights)
            rd.save_checkpoint({"round": r, "controller": controller.state_dict(), "best": best, "timing": timing})
            per_round = timing["total"] / (r + 1)     # the timing totals cover rounds 0..r, resumed or not
            log(f"round {r + 1}/{loop.budget}  best val {best['score'] if best else float('nan'):.4f}  "
                f"{dt:.1f} s/round  ETA {_fmt_s(per_round * (loop.budget - r - 1))}")
            if stop_after_round is not None and r + 1 >= stop_after_round and r + 1 < loop.budget:
                return {"stopped_after_round": r + 1}
        # --- final: the best distribution, retrained with several seeds, scored on val and TEST ---
        # distribution-matching and adversarial controllers: their learned θ is their current mean
        use_current = "score" not in needs or "sample_loss" in needs or best is None
        theta_best = space.check_theta(controller.current() if use_current else np.asarray(best["theta"]))
        final_fid = fidelity(settings, final=True)
        t0 = time.perf_counter()
        final_seeds = [derive_seed(cfg.seed, FINAL_KEY, i) for i in range(settings.final_seeds)]
        final_sets = [pool.render(theta_best, final_fid.images, s) for s in final_seeds]
        t_render = time.perf_counter() - t0
        t0 = time.perf_counter()
        finals = ex.gather([ex.submit("evaluate", settings, real_ref, ds, final_fid, s, ("val", "test"))
                            for ds, s in zip(final_sets, final_seeds)])
        t_eval = time.perf_counter() - t0
    key = settings.score if settings.task == "detection" else "accuracy"
    val = [float(m.extras[f"val_{key}"]) for m in finals]
    test = [float(m.extras[f"test_{key}"]) for m in finals]
    wall = time.perf_counter() - wall0
    timing = {"render": timing["render"] + t_render, "evaluate": timing["evaluate"] + t_eval,
              "loop_total": timing["total"], "run_wall": wall, "startup": t_startup}
    inside = timing["render"] + timing["evaluate"]
    result = {
        "optimizer": loop.optimizer, "seed": cfg.seed, "rounds": loop.budget, "candidates": loop.candidates,
        "metric": key, "selected": "controller mean" if use_current else f"round {best['round'] + 1} candidate {best['candidate']}",
        "search_val": None if best is None else _num(best["score"]),
        "val": float(np.mean(val)), "test": float(np.mean(test)), "val_per_seed": val, "test_per_seed": test,
        "theta": {k: round(float(v), 6) for k, v in space.named(theta_best).items()},
        "timing": {**{k: round(v, 3) for k, v in timing.items()}, "startup_parts": startup},
        "outside_render_and_training_share": round(max(wall - inside, 0.0) / wall, 4) if wall > 0 else None,
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    rd.save_best(result)
    log(f"best distribution ({result['selected']}): val {key} {result['val']:.4f}, "
        f"TEST {key} {result['test']:.4f} (mean of {len(test)} seeds)")
    return result


def _save_weights(path, weights: dict) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(weights, tmp)
    os.replace(tmp, path)


def _load_weights(path) -> dict | None:
    import torch

    return torch.load(path, weights_only=True) if path.is_file() else None


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
