"""Ray Tune front door: any dropt controller as a Tune ``Searcher``, and a trainable that reports
the real-val score at growing training budgets, so ASHA can stop and PBT can clone distributions.

In a user's own ``Tuner``::

    searcher = ControllerSearcher(make_controller("reinforce", space, seed=0), batch=4)
    Tuner(tune.with_resources(make_trainable(cfg), {"cpu": 1}),
          tune_config=TuneConfig(search_alg=searcher, scheduler=ASHAScheduler(), metric="score", mode="max"))

A trial's config holds θ as named values (``{"theta": {name: value}}``); the trainable renders
``[evaluator] images`` images from it once, then trains the evaluator's model in rungs of
``[evaluator] steps`` steps, warm-starting each rung from the last, and reports after each. It
goes through the runner's own candidate path (:class:`loop.engine.Engine`, the same fidelity,
seeds from :func:`loop.engine.round_seeds`; its first rung scores a θ exactly as a runner's
candidate), and every trial renders with the same image seeds and trains with the same seeds
(common random numbers), so two trials differ only by θ.

The searcher compares like with like: a controller learns only from trials that ran every rung;
a trial the scheduler stopped early reaches it as a skipped (NaN) candidate, not as a
low-fidelity score beside full-fidelity ones.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune
from ray.tune.search import Searcher

from ..config import ConfigError, ExperimentConfig, config_from_dict
from ..controllers import Controller, Feedback
from ..errors import RunFailure

THETA_PREFIX = "theta/"


class ControllerSearcher(Searcher):
    """Hands out a controller's proposals one trial at a time; updates it once per batch."""

    def __init__(self, controller: Controller, *, batch: int = 4, metric: str = "score", mode: str = "max",
                 full_rung: int | None = None):
        if controller.signals != {"score"}:
            raise ConfigError(f"optimizer: expected a controller that learns from scores alone for Ray Tune, "
                              f"got {controller.name!r} (signals {sorted(controller.signals)})")
        if mode != "max":
            raise ConfigError(f"mode: expected 'max' (dropt scores are higher-is-better), got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.controller, self.space, self.batch = controller, controller.space, batch
        self.full_rung = full_rung
        """Only results with ``rung`` >= this reach the controller (None: every completed trial's)."""
        self._queue: list[np.ndarray] = []
        self._live: dict[str, np.ndarray] = {}
        self._done: list[tuple[np.ndarray, Feedback]] = []

    def suggest(self, trial_id: str) -> dict[str, Any]:
        if not self._queue:
            self._queue = list(self.controller.propose(self.batch))
        theta = self._queue.pop(0)
        self._live[trial_id] = theta
        return {THETA_PREFIX + k: v for k, v in self.space.named(theta).items()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        theta = self._live.pop(trial_id, None)
        if theta is None:
            return
        score = float(result[self.metric]) if result and not error and self.metric in result else math.nan
        extras = {}
        if self.full_rung is not None and result and int(result.get("rung", 0)) < self.full_rung:
            score, extras = math.nan, {"stopped_at_rung": float(result.get("rung", 0))}   # not like with like
        self._done.append((theta, Feedback(score=score, extras=extras)))
        if len(self._done) >= self.batch or (not self._live and not self._queue):
            thetas, feedback = zip(*self._done)
            self.controller.update(list(thetas), list(feedback))
            self._done = []

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.controller.state_dict()))

    def restore(self, checkpoint_path: str) -> None:
        self.controller.load_state_dict(json.loads(Path(checkpoint_path).read_text()))


def theta_of(config: dict[str, Any], space) -> np.ndarray:
    """θ from a trial config, clipped to the box (PBT's perturbations scale values past the bounds)."""
    try:
        theta = np.array([float(config[THETA_PREFIX + n]) for n in space.theta_names()])
    except KeyError as e:
        raise ConfigError(f"trial config: expected every θ entry as {THETA_PREFIX}<name>, missing {e}") from None
    return space.clip(theta)


def make_trainable(cfg: ExperimentConfig, *, rungs: int = 4, checkpoints: bool = True):
    """A function trainable for ``cfg``: reports ``score`` (real val) after each of ``rungs``
    training rungs; with ``checkpoints`` it saves the model after each, so PBT can clone a trial
    (Tune copies them to its storage, which every node must reach: ``--storage``).

    Wrapped in ``tune.with_parameters(trainable, real=real)`` the real set reaches each trial
    through the object store; unwrapped, each trial reads ``evaluator.real`` by path."""
    raw, real_path = cfg.raw, os.path.abspath(cfg.evaluator.real)

    def trainable(config: dict[str, Any], real: Any = None) -> None:
        import torch

        from generator.base import derive_seed

        from ..engine import Engine, load_real, round_seeds
        from ..engine.render_pool import RenderPool

        c = config_from_dict({**raw, "evaluator": {**raw.get("evaluator", {}), "real": real_path}})
        torch.set_num_threads(c.evaluator.threads)
        with RenderPool(c, workers=0) as pool:
            if real is None:
                real = load_real(c, make_missing=False, categories=pool.generator.categories, log=lambda m: None)
            engine = Engine(c, pool, real, {"score"}, use_ray=False)
            theta = theta_of(config, pool.generator.space)
            seed = round_seeds(c.seed, 0, [theta])[0]      # the same for every trial: common random numbers
            ds = engine.render(theta, c.evaluator.images, seed)
        weights, start = None, 0
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                state = torch.load(Path(d) / "model.pt", weights_only=True)
                weights, start = state["weights"], int(state["rung"]) + 1
        for rung in range(start, rungs):
            # rung 0 trains as the runner's candidate does (the same seed), later rungs fine-tune
            m = engine.train([ds], [seed if rung == 0 else derive_seed(seed, rung)], warm_start=weights,
                             keep_weights=True)[0]
            if m.failed:
                raise RunFailure(f"trial: expected rung {rung + 1} to train, it failed ({m.failed})")
            weights = m.weights
            metrics = {"score": m.score, "steps": (rung + 1) * c.evaluator.steps, "rung": rung + 1,
                       "device": m.device}
            if not checkpoints:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as d:
                torch.save({"weights": weights, "rung": rung}, Path(d) / "model.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    return trainable


def _asha(cfg: ExperimentConfig, space, *, budget: int, rungs: int) -> tuple[Any, dict[str, Any]]:
    """ASHA stops trials early; the config's controller proposes them (it learns only from
    trials that ran every rung)."""
    from ray.tune.schedulers import ASHAScheduler

    from ..controllers import make_controller

    try:
        controller = make_controller(cfg.loop.optimizer, space, seed=cfg.seed, **cfg.loop.options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loop: {e}") from None
    return tune.TuneConfig(search_alg=ControllerSearcher(controller, batch=cfg.loop.candidates, full_rung=rungs),
                           scheduler=ASHAScheduler(time_attr="rung", max_t=rungs, grace_period=1, reduction_factor=2),
                           metric="score", mode="max", num_samples=budget), {}


def _pbt(cfg: ExperimentConfig, space, *, budget: int) -> tuple[Any, dict[str, Any]]:
    """PBT explores by perturbing θ entries of cloned trials; the population starts at the
    config's θ ± noise. (Tune's PBT draws its perturbations from Python's global random
    module: not seeded here.)"""
    from ray.tune.schedulers import PopulationBasedTraining

    lo, hi = space.bounds()
    names = space.theta_names()
    mutations = {THETA_PREFIX + n: tune.uniform(float(a), float(b)) for n, a, b in zip(names, lo, hi)}
    rng = np.random.default_rng(cfg.seed)
    theta0 = space.to_vector()
    param_space = {THETA_PREFIX + n: tune.sample_from(
        lambda _, i=i: float(np.clip(theta0[i] + 0.1 * (hi[i] - lo[i]) * rng.standard_normal(), lo[i], hi[i])))
        for i, n in enumerate(names)}
    return tune.TuneConfig(scheduler=PopulationBasedTraining(time_attr="rung", perturbation_interval=1,
                                                             hyperparam_mutations=mutations),
                           metric="score", mode="max", num_samples=budget), param_space


def _check_before_ray(cfg: ExperimentConfig, scheduler: str):
    """A bad scheduler or loop option is one line before the target is made; then the real set
    (made now if missing) is checked once. Returns the generator's space and the real set."""
    from ..controllers import check_options
    from ..engine import load_real

    if scheduler not in ("asha", "pbt"):
        raise ConfigError(f"--scheduler: expected 'asha' or 'pbt', got {scheduler!r}")
    if scheduler == "asha":
        try:
            check_options(cfg.loop.optimizer, cfg.loop.options)
        except ValueError as e:
            raise ConfigError(f"loop: {e}") from None
    gen = cfg.build_generator()
    real = load_real(cfg, categories=gen.categories)
    return gen.space, real


def run_tune(cfg: ExperimentConfig, *, scheduler: str, budget: int, out: str, address: str | None = None,
             rungs: int = 4, storage: str | None = None) -> dict[str, Any]:
    """``dropt tune``: ``budget`` trials of the config's controller under ASHA or PBT.

    The real set reaches the trials through the object store. ASHA's trials keep no
    checkpoints, so they need no storage shared by the nodes; PBT clones trials from
    checkpoints, kept under ``storage`` (a URI such as ``s3://bucket/path`` or a path every node
    shares; default: beside ``out``, enough on one machine)."""
    import logging

    from ..engine.cluster import check_resources, ensure_ray, evaluator_request
    from ..run.state import check_gpu_request

    logging.getLogger("optuna").setLevel(logging.WARNING)
    space, real = _check_before_ray(cfg, scheduler)
    check_gpu_request(cfg)
    ensure_ray(address, settings=cfg.ray)
    check_resources([evaluator_request(cfg)])   # a trial's request
    tune_config, param_space = (_asha(cfg, space, budget=budget, rungs=rungs) if scheduler == "asha"
                                else _pbt(cfg, space, budget=budget))
    s = cfg.evaluator
    trainable = tune.with_parameters(make_trainable(cfg, rungs=rungs, checkpoints=scheduler == "pbt"), real=real)
    trainable = tune.with_resources(trainable, {"cpu": s.num_cpus, "gpu": s.num_gpus, **s.resources})
    storage_path = storage or str(Path(out).resolve().parent)
    tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                       run_config=tune.RunConfig(name=Path(out).name, storage_path=storage_path, verbose=1))
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    done = [r for r in results if r.error is None and r.metrics and "score" in r.metrics]
    if not done:
        raise RunFailure(f"tune: expected at least one trial to report a score, all {len(results)} failed "
                         f"({_error_line(errors[0]) if errors else 'no trial reported'})")
    best = max(done, key=lambda r: float(r.metrics["score"]))
    named = {k[len(THETA_PREFIX):]: float(v) for k, v in best.config.items() if k.startswith(THETA_PREFIX)}
    summary = {"scheduler": scheduler, "trials": len(results), "best_val": float(best.metrics["score"]),
               "best_steps": int(best.metrics.get("steps", 0)), "theta": named, "errors": len(errors),
               "storage": storage_path}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "best.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    if errors:
        raise RunFailure(f"tune: {len(errors)} of {len(results)} trials failed ({_error_line(errors[0])}); "
                         f"the best of the others is in {Path(out) / 'best.json'}")
    return summary


def _error_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[-1][:200] if lines else ''}"
