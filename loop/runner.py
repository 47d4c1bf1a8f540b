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
from .controllers import Controller, Feedback, check_options, make_controller
from .render_pool import RenderPool, check_resources, ensure_ray
from .run_dir import RunDir, RunDirError, read_json
from .signals import SIGNALS, get_signals
from .tasks import (CandidateJob, CandidateResult, check_evaluator, concat, evaluate_or_fail,
                    evaluator_class, fidelity, load_real, round_seeds)

FINAL_KEY = 0xF17A1
TASK_MODEL_KEY = 0xADD
FINAL_TIE_ORDER = ("start", "current", "best")
"""Final choices with equal real val: the later one is kept (the candidate, then the controller's
θ, then the config's θ)."""


class RunError(ConfigError):
    """The run cannot go on (every evaluation of a round failed): one line, exit status 2."""


@dataclass
class _Executor:
    """Runs evaluation jobs as Ray tasks when Ray is up, else in this process."""

    use_ray: bool
    num_cpus: float
    num_gpus: float

    def __post_init__(self):
        if self.use_ray:
            import ray

            self._remote = ray.remote(evaluate_or_fail).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus)

    def put(self, obj: Any) -> Any:
        if not self.use_ray:
            return obj
        import ray

        return ray.put(obj)

    def run(self, jobs: list[CandidateJob], real_ref: Any) -> list[CandidateResult]:
        """One result per job; a job that failed (an exception in the task, a worker that died
        more often than Ray retries it) comes back as a result with ``failed`` set."""
        if not self.use_ray:
            return [evaluate_or_fail(job, real_ref) for job in jobs]
        import ray

        results = []
        for ref in [self._remote.remote(job, real_ref) for job in jobs]:
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as e:
                results.append(CandidateResult(score=math.nan, failed=f"{type(e).__name__}: "
                                                                      f"{str(e).strip().splitlines()[0][:200]}"))
        return results


def _fmt_s(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


def run_loop(cfg: ExperimentConfig, out: str | os.PathLike, *, resume: bool = False, address: str | None = None,
             stop_after_round: int | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the loop of ``cfg`` in run directory ``out``; returns ``best.json``'s content.

    ``stop_after_round`` ends the process's work after that round's checkpoint (tests use it to
    simulate a killed run)."""
    loop = Loop(cfg, out, resume=resume, address=address, log=log)
    try:
        with loop.start() as pool:
            for r in range(loop.start_round, cfg.loop.budget):
                loop.round(r)
                if stop_after_round is not None and r + 1 >= stop_after_round and r + 1 < cfg.loop.budget:
                    return {"stopped_after_round": r + 1}
            return loop.finish(pool)
    finally:
        loop.rd.unlock()


class Loop:
    """One run's state: the run directory, Ray, the render pool, the controller, the best θ."""

    def __init__(self, cfg: ExperimentConfig, out: str | os.PathLike, *, resume: bool, address: str | None,
                 log: Callable[[str], None] | None):
        self.cfg, self.address = cfg, address
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.rd = RunDir(out)
        self.resume = resume
        if resume and not self.rd.root.is_dir():
            raise RunDirError(f"--resume: expected a run directory with a checkpoint, {self.rd.root} not found")
        self.rd.lock(new=not resume)          # before anything else: no second run writes this folder
        if resume:
            try:
                if not self.rd.checkpoints() and not self.rd.metadata.is_file():
                    raise RunDirError(f"--resume: expected a run directory with a checkpoint, "
                                      f"{self.rd.checkpoint} not found")
                if self.rd.load_best() is not None:
                    raise RunDirError(f"--resume: expected an unfinished run, {self.rd.root} has finished "
                                      f"(its result is in {self.rd.best})")
                self.rd.check_config_unchanged()
            except BaseException:
                self.rd.unlock()
                raise
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
        try:                                      # and so is a bad optimizer or loop option
            check_options(cfg.loop.optimizer, cfg.loop.options)
        except ValueError as e:
            raise ConfigError(f"loop: {e}") from None
        self.use_ray = bool(cfg.render.workers > 0 or self.address or cfg.evaluator.ray)
        if cfg.evaluator.ray is False and (cfg.render.workers > 0 or self.address):
            raise ConfigError("evaluator.ray: expected true (or unset) when the render actors run on Ray "
                              f"(render.workers = {cfg.render.workers}), got false")
        if self.use_ray:
            # render actors and evaluation tasks alternate within a round: count the actors'
            # reservation on top of the cores, so they do not starve the evaluation tasks
            ensure_ray(self.address, num_cpus=(os.cpu_count() or 1) + math.ceil(cfg.render.workers * cfg.render.num_cpus))
            check_resources({"evaluator": (cfg.evaluator.num_cpus, cfg.evaluator.num_gpus)})
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
        real = load_real(cfg, log=self.log, categories=pool.generator.categories)
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
        if self.resume and self.rd.checkpoints():
            self._restore()
        else:       # a new run, or one killed before its first round's checkpoint: start at round 1
            if self.resume:
                self.log(f"resuming {self.rd.root}: no round had finished, starting at round 1")
                self.rd.check_rounds(0, cfg.loop.candidates)
            self.rd.create(cfg.raw, cfg.seed, {"optimizer": cfg.loop.optimizer, "budget": cfg.loop.budget,
                                               "candidates": cfg.loop.candidates, "real": real.describe()})
            self.start_round, self.best = 0, None
            self.timing = {"render": 0.0, "evaluate": 0.0, "total": 0.0}
        self.t_startup = time.perf_counter() - self.wall0   # Ray, render actors, real set, controller, run dir

    def _restore(self) -> None:
        """The newest checkpoint that passes its checks (the previous one when the newest is
        damaged), and the log cut back to the rounds it covers."""
        problems = []
        for path in self.rd.checkpoints():
            try:
                state = read_json(path, "a checkpoint")
                controller = make_controller(self.cfg.loop.optimizer, self.space, seed=self.cfg.seed,
                                             **self.cfg.loop.options)
                weights = restore_state(state, controller, self.cfg, self.rd.checkpoint_dir)
            except RunDirError as e:
                problems.append(str(e))
                continue
            if problems:
                self.log(f"warning: {problems[0]}; resuming from the previous checkpoint {path.name}")
            self.controller, self.task_weights = controller, weights
            self.start_round, self.best, self.timing = state["round"] + 1, state["best"], state["timing"]
            self.rd.check_rounds(self.start_round, self.cfg.loop.candidates, warn=self.log)
            self.log(f"resuming {self.rd.root} at round {self.start_round + 1}/{self.cfg.loop.budget}"
                     if self.start_round < self.cfg.loop.budget else
                     f"resuming {self.rd.root}: all {self.cfg.loop.budget} rounds ran, redoing the final retraining")
            return
        raise RunDirError(f"--resume: expected a readable checkpoint, got none: " + "; ".join(problems))

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
        failed = [res.failed for res in results if res.failed]
        if len(failed) == len(results):
            raise RunError(f"round {r + 1}: expected at least one candidate evaluated, every one failed "
                           f"({failed[0]}); the run stopped at the checkpoint of round {r}")
        for i, res in enumerate(results):
            if res.failed:
                self.log(f"warning: round {r + 1} candidate {i} failed ({res.failed}); the controller skips it")
        per_image = any(SIGNALS[n].per_image for n in signals)
        feedback = [Feedback(score=math.nan, draws=None) if res.failed else
                    Feedback(score=res.score, extras=res.extras, draws=d if per_image else None,
                             per_image=res.per_image) for res, d in zip(results, draws)]
        lines = [{"round": r, "candidate": i, "seed": s, "score": _num(res.score),
                  "metrics": {k: _num(v) for k, v in sorted(res.extras.items())},
                  "theta": {k: round(float(v), 6) for k, v in space.named(theta).items()},
                  **({"failed": res.failed} if res.failed else {})}
                 for i, (theta, s, res) in enumerate(zip(thetas, seeds, results))]
        if "score" in signals or c.task_model:
            self._keep_best(r, thetas, [res.score for res in results])
        c.update(thetas, feedback)
        dt = time.perf_counter() - t_round
        self.timing = {"render": self.timing["render"] + t_render, "evaluate": self.timing["evaluate"] + t_eval,
                       "total": self.timing["total"] + dt}
        self.rd.append_round(lines)
        task_model = None
        if self.task_weights is not None:   # its own file per round, named by the checkpoint: the pair is atomic
            task_model = f"task_model-{r}.pt"
            _save_weights(self.rd.checkpoint_dir / task_model, self.task_weights)
        self.rd.save_checkpoint({"round": r, "controller": c.state_dict(), "best": self.best, "timing": self.timing,
                                 "task_model": task_model})
        _prune_task_models(self.rd)
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
            if m.failed:
                raise RunError(f"round {r + 1}: expected the task model to train, it failed ({m.failed})")
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
    def _final_choices(self) -> dict[str, np.ndarray]:
        """The θs the final retraining scores: the best-scored candidate ("best"), the
        controller's own θ ("current"), or both ("better") when they differ; for a learning
        controller with ``loop.keep_start`` also the config's θ it started from ("start")."""
        c, space = self.controller, self.space
        if self.best is None or c.final == "current":
            choices = {"current": space.check_theta(c.current())}
        else:
            choices = {"best": space.check_theta(np.asarray(self.best["theta"]))}
            if c.final == "better":
                current = space.check_theta(c.current())
                if not np.array_equal(choices["best"], current):
                    choices["current"] = current
        if c.learning and self.cfg.loop.keep_start:
            start = space.check_theta(space.clip(space.to_vector()))
            if not any(np.array_equal(start, t) for t in choices.values()):
                choices["start"] = start
        return choices

    def _final_scores(self, name: str, final_sets, final_seeds, final_fid) -> list:
        settings = self.cfg.evaluator
        finals = self.ex.run([CandidateJob(settings, ds, final_fid, s, ("score",), splits=("val", "test"))
                              for ds, s in zip(final_sets, final_seeds)], self.real_ref)
        for m in finals:
            if m.failed:
                self.log(f"warning: a final retraining of the {name} θ failed ({m.failed}); it is left out of the mean")
        finals = [m for m in finals if not m.failed]
        if not finals:
            raise RunError(f"final retraining of the {name} θ: expected at least one of the retrainings to finish, "
                           "every one failed (see the warnings above)")
        return finals

    def finish(self, pool: RenderPool) -> dict[str, Any]:
        """The selected distribution, retrained with several seeds, scored on val and TEST."""
        cfg, settings, space = self.cfg, self.cfg.evaluator, self.space
        final_fid = fidelity(settings, final=True)
        final_seeds = [derive_seed(cfg.seed, FINAL_KEY, i) for i in range(settings.final_seeds)]
        choices = self._final_choices()
        t_render = t_eval = 0.0
        retrained: dict[str, list] = {}
        for name, theta in choices.items():
            t0 = time.perf_counter()
            final_sets = [pool.render(theta, final_fid.images, s) for s in final_seeds]
            t_render += time.perf_counter() - t0
            t0 = time.perf_counter()
            retrained[name] = self._final_scores(name, final_sets, final_seeds, final_fid)
            t_eval += time.perf_counter() - t0
        # Of the θs retrained on the same final seeds the higher mean real val is kept (TEST only
        # reported). Ties keep the candidate, then the controller's θ, then the start.
        mean_val = {n: float(np.mean([m.extras[f"val_{self.metric}"] for m in ms])) for n, ms in retrained.items()}
        chosen = max(retrained, key=lambda n: (mean_val[n], FINAL_TIE_ORDER.index(n)))
        theta_best, finals = choices[chosen], retrained[chosen]
        val = [float(m.extras[f"val_{self.metric}"]) for m in finals]
        test = [float(m.extras[f"test_{self.metric}"]) for m in finals]
        wall = time.perf_counter() - self.wall0
        timing = {"render": self.timing["render"] + t_render, "evaluate": self.timing["evaluate"] + t_eval,
                  "loop_total": self.timing["total"], "run_wall": wall, "startup": self.t_startup}
        inside = timing["render"] + timing["evaluate"]
        best = self.best
        selected = ("controller mean" if chosen == "current" else "the config's θ (the search's start)"
                    if chosen == "start" else f"round {best['round'] + 1} candidate {best['candidate']}"
                    + (f" (mean of {best['copies']} copies)" if best.get("copies", 1) > 1 else ""))
        result = {
            "optimizer": cfg.loop.optimizer, "seed": cfg.seed, "rounds": cfg.loop.budget,
            "candidates": cfg.loop.candidates, "metric": self.metric, "selected": selected,
            "search_val": None if best is None else _num(best["score"]),
            "val": float(np.mean(val)), "test": float(np.mean(test)), "val_per_seed": val, "test_per_seed": test,
            "theta": {k: round(float(v), 6) for k, v in space.named(theta_best).items()},
            "final_choices": {n: {"val": v} for n, v in mean_val.items()},   # the real val of each θ retrained
            "timing": {**{k: round(v, 3) for k, v in timing.items()}, "startup_parts": self.startup},
            "outside_render_and_training_share": round(max(wall - inside, 0.0) / wall, 4) if wall > 0 else None,
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        self.rd.save_best(result)
        self.log(f"best distribution ({result['selected']}): val {self.metric} {result['val']:.4f}, "
                 f"TEST {self.metric} {result['test']:.4f} (mean of {len(test)} seeds)")
        return result


def restore_state(state: Any, controller: Controller, cfg: ExperimentConfig, checkpoint_dir) -> dict | None:
    """Check a checkpoint against the run's config and load it into ``controller``; returns the
    task model's weights (or None). Anything wrong is a :class:`RunDirError` naming it."""
    import copy

    def bad(what: str) -> RunDirError:
        return RunDirError(f"checkpoint: expected {what}")

    if not isinstance(state, dict) or not {"round", "controller", "best", "timing"} <= set(state):
        raise bad(f"an object with round, controller, best and timing, got "
                  f"{sorted(state)[:5] if isinstance(state, dict) else type(state).__name__}")
    r = state["round"]
    if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r < cfg.loop.budget:
        raise bad(f"round in [0, {cfg.loop.budget - 1}] (the config's loop.budget), got {r!r}")
    dim = controller.space.dim
    best = state["best"]
    if best is not None and not (isinstance(best, dict) and isinstance(best.get("score"), (int, float))
                                 and isinstance(best.get("theta"), list) and len(best["theta"]) == dim
                                 and isinstance(best.get("round"), int) and best["round"] <= r):
        raise bad(f"best to be null or a score with a θ of {dim} numbers from a round <= {r}, got {str(best)[:80]}")
    timing = state["timing"]
    if not (isinstance(timing, dict) and all(isinstance(timing.get(k), (int, float))
                                             for k in ("render", "evaluate", "total"))):
        raise bad(f"timing with render, evaluate and total seconds, got {str(timing)[:80]}")
    try:
        controller.load_state_dict(state["controller"])
        probe = copy.deepcopy(controller)       # propose on a copy: the controller's own RNG is untouched
        for theta in probe.propose(cfg.loop.candidates) + [probe.current()]:
            controller.space.check_theta(theta)
    except Exception as e:      # any damage to the controller's state, whatever form it takes
        raise bad(f"the state of a {cfg.loop.optimizer} controller over this space, got one it cannot use "
                  f"({type(e).__name__}: {str(e)[:120]})") from None
    name = state.get("task_model")
    if not controller.task_model:
        return None
    path = checkpoint_dir / (name or "task_model.pt")
    if name is None and not path.is_file():
        return None
    try:
        return _load_weights(path)
    except Exception as e:      # a missing or damaged weights file
        raise bad(f"the task model {path.name} it names, got an unreadable file ({type(e).__name__})") from None


def _prune_task_models(rd: RunDir) -> None:
    """Delete task-model files neither the checkpoint nor the previous one names."""
    keep = set()
    for path in rd.checkpoints():
        try:
            keep.add(read_json(path, "a checkpoint").get("task_model"))
        except (RunDirError, AttributeError):
            pass
    for p in rd.checkpoint_dir.glob("task_model*.pt"):
        if p.name not in keep:
            p.unlink(missing_ok=True)


def _save_weights(path, weights: dict) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(weights, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:       # torch reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"{path}: could not write the task model ({e}); the previous checkpoint is kept") from None


def _load_weights(path) -> dict:
    import torch

    return torch.load(path, weights_only=True)


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
