"""The closed loop: propose θs → render → evaluate on real val → update, round after round.

Rendering goes through the render actors (reused across rounds); each candidate's evaluation is
one :class:`loop.tasks.CandidateJob` computing the signals its controller asks for, run as a Ray
task with the config's ``num_cpus``/``num_gpus``. Candidates of a round share their image and
training seeds (common random numbers, :func:`loop.tasks.round_seeds`). After every round the
controller's state is checkpointed atomically, so ``--resume`` continues a killed run on exactly
the θ trajectory an uninterrupted run would take. At the end the selected distribution is
retrained with several seeds and scored on real TEST.

:func:`run_loop` reads top to bottom: :meth:`Loop.start` (set-up), :meth:`Loop.round` (one
round), :meth:`Loop.finish` (the final retraining and ``best.json``).
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
from .controllers import Controller, Feedback, make_controller
from .render_pool import RenderPool, ensure_ray
from .run_dir import RunDir
from .signals import SIGNALS, get_signals
from .tasks import (CandidateJob, CandidateResult, check_evaluator, concat, evaluate_job, evaluator_class, fidelity,
                    load_real, round_seeds)

FINAL_KEY = 0xF17A1
TASK_MODEL_KEY = 0xADD


@dataclass
class _Executor:
    """Runs evaluation jobs as Ray tasks when Ray is up, else in this process."""

    use_ray: bool
    num_cpus: float
    num_gpus: float

    def __post_init__(self):
        if self.use_ray:
            import ray

            self._remote = ray.remote(evaluate_job).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus)

    def put(self, obj: Any) -> Any:
        if not self.use_ray:
            return obj
        import ray

        return ray.put(obj)

    def run(self, jobs: list[CandidateJob], real_ref: Any) -> list[CandidateResult]:
        if not self.use_ray:
            return [evaluate_job(job, real_ref) for job in jobs]
        import ray

        return ray.get([self._remote.remote(job, real_ref) for job in jobs])


def _fmt_s(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


def run_loop(cfg: ExperimentConfig, out: str | os.PathLike, *, resume: bool = False, address: str | None = None,
             stop_after_round: int | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the loop of ``cfg`` in run directory ``out``; returns ``best.json``'s content.

    ``stop_after_round`` ends the process's work after that round's checkpoint (tests use it to
    simulate a killed run)."""
    loop = Loop(cfg, out, resume=resume, address=address, log=log)
    with loop.start() as pool:
        for r in range(loop.start_round, cfg.loop.budget):
            loop.round(r)
            if stop_after_round is not None and r + 1 >= stop_after_round and r + 1 < cfg.loop.budget:
                return {"stopped_after_round": r + 1}
        return loop.finish(pool)


class Loop:
    """One run's state: the run directory, Ray, the render pool, the controller, the best θ."""

    def __init__(self, cfg: ExperimentConfig, out: str | os.PathLike, *, resume: bool, address: str | None,
                 log: Callable[[str], None] | None):
        self.cfg, self.address = cfg, address
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.rd = RunDir(out)
        if resume:
            self.state = self.rd.load_checkpoint()
            if self.state is None:
                raise ConfigError(f"--resume: expected a run directory with a checkpoint, {self.rd.checkpoint} not found")
        else:
            if self.rd.exists():
                raise ConfigError(f"--out: expected a new run directory, {self.rd.root} already holds a run "
                                  f"(use --resume {self.rd.root} to continue it)")
            self.state = None
        self.wall0 = time.perf_counter()
        self.startup: dict[str, float] = {}
        self._last_lap = self.wall0

    # --- set-up ----------------------------------------------------------------------------
    def _lap(self, name: str) -> None:
        """Record the seconds since the previous lap as start-up part ``name``."""
        now = time.perf_counter()
        self.startup[name] = round(now - self._last_lap, 3)
        self._last_lap = now

    def start(self) -> RenderPool:
        """Ray, the render actors (starting in the background), the real set, the evaluator check,
        the controller and the run directory (new, or restored from the checkpoint)."""
        cfg = self.cfg
        evaluator_class(cfg.evaluator.task)       # a bad task name is one line before Ray starts
        self.use_ray = bool(cfg.render.workers > 0 or self.address or cfg.evaluator.ray)
        if cfg.evaluator.ray is False and (cfg.render.workers > 0 or self.address):
            raise ConfigError("evaluator.ray: expected true (or unset) when the render actors run on Ray "
                              f"(render.workers = {cfg.render.workers}), got false")
        if self.use_ray:
            # render actors and evaluation tasks alternate within a round: count the actors'
            # reservation on top of the cores, so they do not starve the evaluation tasks
            ensure_ray(self.address, num_cpus=(os.cpu_count() or 1) + math.ceil(cfg.render.workers * cfg.render.num_cpus))
        self._lap("ray")
        logging.getLogger("optuna").setLevel(logging.WARNING)
        pool = RenderPool(cfg, address=self.address, wait=False)
        try:
            self._set_up(pool)
        except BaseException:
            pool.close()
            raise
        return pool

    def _set_up(self, pool: RenderPool) -> None:
        cfg, settings = self.cfg, self.cfg.evaluator
        self.pool, self.space = pool, pool.generator.space
        real = load_real(cfg, log=self.log)
        self._lap("real_set")
        try:
            self.controller: Controller = make_controller(cfg.loop.optimizer, self.space, seed=cfg.seed,
                                                          **cfg.loop.options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"loop: {e}") from None
        self.metric = check_evaluator(settings, real, self.controller.signals).score_name
        self.ex = _Executor(use_ray=self.use_ray, num_cpus=settings.num_cpus,
                            num_gpus=settings.num_gpus)
        self.real_ref = self.ex.put(real)
        value_max = float(real.val.info.get("value_max", 255))
        self.context: dict[str, Any] = {"value_max": value_max, "feature_seed": cfg.seed, "model_seed": cfg.seed}
        for s in get_signals(self.controller.signals):
            prepared = s.prepare(real, settings, cfg.seed)
            if prepared is not None:
                self.context[s.name] = self.ex.put(prepared)
        self._lap("controller")
        pool.ready()
        self._lap("render_actors")   # what is left of their start after the driver's own set-up
        self.task_weights = None     # the adversarial controllers' task model, trained across rounds
        if self.state is None:
            self.rd.create(cfg.raw, cfg.seed, {"optimizer": cfg.loop.optimizer, "budget": cfg.loop.budget,
                                               "candidates": cfg.loop.candidates, "real": real.describe()})
            self.start_round, self.best = 0, None
            self.timing = {"render": 0.0, "evaluate": 0.0, "total": 0.0}
        else:
            self.controller.load_state_dict(self.state["controller"])
            self.start_round, self.best, self.timing = self.state["round"] + 1, self.state["best"], self.state["timing"]
            self.task_weights = _load_weights(self.rd.checkpoint_dir / "task_model.pt")
            self.rd.truncate_rounds(self.start_round)
            self.log(f"resuming {self.rd.root} at round {self.start_round + 1}/{cfg.loop.budget}")
        self.t_startup = time.perf_counter() - self.wall0   # Ray, render actors, real set, controller, run dir

    # --- one round -------------------------------------------------------------------------
    def round(self, r: int) -> None:
        cfg, settings, space, c = self.cfg, self.cfg.evaluator, self.space, self.controller
        t_round = time.perf_counter()
        signals = c.round_signals()
        thetas = [space.check_theta(t) for t in c.propose(cfg.loop.candidates)]
        seeds = round_seeds(cfg.seed, r, thetas)
        t0 = time.perf_counter()
        draws = [self.pool.generator.scene_draws(t, settings.images, s) for t, s in zip(thetas, seeds)]
        datasets = [self.pool.render_draws(d, s) for d, s in zip(draws, seeds)]
        t_render = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = self._evaluate(r, datasets, seeds, signals)
        t_eval = time.perf_counter() - t0
        per_image = any(SIGNALS[n].per_image for n in signals)
        feedback = [Feedback(score=res.score, extras=res.extras, draws=d if per_image else None,
                             per_image=res.per_image) for res, d in zip(results, draws)]
        lines = [{"round": r, "candidate": i, "seed": s, "score": _num(res.score),
                  "metrics": {k: _num(v) for k, v in sorted(res.extras.items())},
                  "theta": {k: round(float(v), 6) for k, v in space.named(theta).items()}}
                 for i, (theta, s, res) in enumerate(zip(thetas, seeds, results))]
        if "score" in signals or c.task_model:
            self._keep_best(r, thetas, [res.score for res in results])
        c.update(thetas, feedback)
        dt = time.perf_counter() - t_round
        self.timing = {"render": self.timing["render"] + t_render, "evaluate": self.timing["evaluate"] + t_eval,
                       "total": self.timing["total"] + dt}
        self.rd.append_round(lines)
        if self.task_weights is not None:
            _save_weights(self.rd.checkpoint_dir / "task_model.pt", self.task_weights)
        self.rd.save_checkpoint({"round": r, "controller": c.state_dict(), "best": self.best, "timing": self.timing})
        per_round = self.timing["total"] / (r + 1)     # the timing totals cover rounds 0..r, resumed or not
        best = self.best["score"] if self.best else float("nan")
        self.log(f"round {r + 1}/{cfg.loop.budget}  best val {best:.4f}  {dt:.1f} s/round  "
                 f"ETA {_fmt_s(per_round * (cfg.loop.budget - r - 1))}")

    def _evaluate(self, r: int, datasets, seeds, signals) -> list[CandidateResult]:
        settings, fid = self.cfg.evaluator, fidelity(self.cfg.evaluator)
        context = dict(self.context)
        if self.controller.task_model:
            context["sample_loss"] = self.task_weights
        jobs = [CandidateJob(settings, ds, fid, s, tuple(sorted(signals)), context=context)
                for ds, s in zip(datasets, seeds)]
        results = self.ex.run(jobs, self.real_ref)
        if self.controller.task_model:
            # the task model keeps training on the whole round (warm start); real val scores it
            job = CandidateJob(settings, concat(datasets), fid, derive_seed(self.cfg.seed, r, TASK_MODEL_KEY),
                               ("score",), warm_start=self.task_weights, keep_weights=True)
            m = self.ex.run([job], self.real_ref)[0]
            self.task_weights = m.weights
            for res in results:
                res.score = m.score
                res.extras.update(m.extras)
        return results

    def _keep_best(self, r: int, thetas: list[np.ndarray], scores: list[float]) -> None:
        """The best θ so far by real-val score; copies of one θ in a round count by their mean."""
        for i, theta in enumerate(thetas):
            copies = [s for t, s in zip(thetas, scores) if np.array_equal(t, theta) and math.isfinite(s)]
            if any(np.array_equal(theta, t) for t in thetas[:i]) or not copies:
                continue
            score = float(np.mean(copies))
            if self.best is None or score > self.best["score"]:
                self.best = {"score": score, "round": r, "candidate": i, "theta": theta.tolist(),
                             "copies": len(copies)}

    # --- the end ---------------------------------------------------------------------------
    def finish(self, pool: RenderPool) -> dict[str, Any]:
        """The selected distribution, retrained with several seeds, scored on val and TEST."""
        cfg, settings, space, c = self.cfg, self.cfg.evaluator, self.space, self.controller
        use_current = c.final == "current" or self.best is None
        theta_best = space.check_theta(c.current() if use_current else np.asarray(self.best["theta"]))
        final_fid = fidelity(settings, final=True)
        t0 = time.perf_counter()
        final_seeds = [derive_seed(cfg.seed, FINAL_KEY, i) for i in range(settings.final_seeds)]
        final_sets = [pool.render(theta_best, final_fid.images, s) for s in final_seeds]
        t_render = time.perf_counter() - t0
        t0 = time.perf_counter()
        finals = self.ex.run([CandidateJob(settings, ds, final_fid, s, ("score",), splits=("val", "test"))
                              for ds, s in zip(final_sets, final_seeds)], self.real_ref)
        t_eval = time.perf_counter() - t0
        val = [float(m.extras[f"val_{self.metric}"]) for m in finals]
        test = [float(m.extras[f"test_{self.metric}"]) for m in finals]
        wall = time.perf_counter() - self.wall0
        timing = {"render": self.timing["render"] + t_render, "evaluate": self.timing["evaluate"] + t_eval,
                  "loop_total": self.timing["total"], "run_wall": wall, "startup": self.t_startup}
        inside = timing["render"] + timing["evaluate"]
        best = self.best
        selected = ("controller mean" if use_current else
                    f"round {best['round'] + 1} candidate {best['candidate']}"
                    + (f" (mean of {best['copies']} copies)" if best.get("copies", 1) > 1 else ""))
        result = {
            "optimizer": cfg.loop.optimizer, "seed": cfg.seed, "rounds": cfg.loop.budget,
            "candidates": cfg.loop.candidates, "metric": self.metric, "selected": selected,
            "search_val": None if best is None else _num(best["score"]),
            "val": float(np.mean(val)), "test": float(np.mean(test)), "val_per_seed": val, "test_per_seed": test,
            "theta": {k: round(float(v), 6) for k, v in space.named(theta_best).items()},
            "timing": {**{k: round(v, 3) for k, v in timing.items()}, "startup_parts": self.startup},
            "outside_render_and_training_share": round(max(wall - inside, 0.0) / wall, 4) if wall > 0 else None,
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        self.rd.save_best(result)
        self.log(f"best distribution ({result['selected']}): val {self.metric} {result['val']:.4f}, "
                 f"TEST {self.metric} {result['test']:.4f} (mean of {len(test)} seeds)")
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
