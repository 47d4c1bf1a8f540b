"""One run's state between rounds, and how a run is opened: new, or restored from its checkpoint.

:func:`open_run` takes the run directory's lock, starts Ray and the render actors, loads and
checks the real set, builds the controller and the :class:`loop.engine.Engine`, then either
creates the run directory or restores the newest checkpoint that passes its checks (the previous
one when the newest is damaged), cutting ``rounds.jsonl`` back to the rounds it covers.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..config import ConfigError, ExperimentConfig
from ..controllers import Controller, check_options, make_controller
from ..engine import Engine, evaluator_class, load_real
from ..engine.cluster import check_local_workers, check_resources, ensure_ray, evaluator_request, render_request
from ..engine.render_pool import RenderPool
from .run_dir import RunDir, RunDirError, read_json

Log = Callable[[str], None]


@dataclass
class RunState:
    """What a round needs and what the checkpoint holds (``start_round``, ``best``, ``timing``,
    the controller's and the stateful signals' state)."""

    cfg: ExperimentConfig
    rd: RunDir
    pool: RenderPool
    engine: Engine
    controller: Controller
    log: Log
    start_round: int = 0
    best: dict | None = None
    timing: dict[str, float] = field(default_factory=lambda: {"render": 0.0, "evaluate": 0.0, "total": 0.0})
    startup: dict[str, float] = field(default_factory=dict)
    wall0: float = 0.0
    t_startup: float = 0.0

    def checkpoint(self, r: int) -> None:
        """The state after round ``r``: the signals' files first, then the checkpoint naming them."""
        files = self.engine.save_signals(self.rd.checkpoint_dir, r)
        self.rd.save_checkpoint({"round": r, "controller": self.controller.state_dict(), "best": self.best,
                                 "timing": self.timing, "signals": files})
        self.rd.prune_checkpoint_files()


class _Laps:
    """Seconds of each start-up part (``best.json``'s ``startup_parts``)."""

    def __init__(self):
        self.parts: dict[str, float] = {}
        self.t0 = self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.parts[name], self._last = round(now - self._last, 3), now


def lock_run_dir(out: str | os.PathLike, *, resume: bool) -> RunDir:
    """The run directory, locked (no second run writes it); a resume must find an unfinished run."""
    rd = RunDir(out)
    if resume and not rd.root.is_dir():
        raise RunDirError(f"--resume: expected a run directory with a checkpoint, {rd.root} not found")
    rd.lock(new=not resume)
    if resume:
        try:
            if not rd.checkpoints() and not rd.metadata.is_file():
                raise RunDirError(f"--resume: expected a run directory with a checkpoint, {rd.checkpoint} not found")
            if rd.load_best() is not None:
                raise RunDirError(f"--resume: expected an unfinished run, {rd.root} has finished "
                                  f"(its result is in {rd.best})")
            rd.check_config_unchanged()
        except BaseException:
            rd.unlock()
            raise
    return rd


def _build_controller(cfg: ExperimentConfig, space) -> Controller:
    try:
        return make_controller(cfg.loop.optimizer, space, seed=cfg.seed, **cfg.loop.options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loop: {e}") from None


def _start_ray(cfg: ExperimentConfig, address: str | None) -> bool:
    """Whether the run uses Ray; starts (or joins) it when it does."""
    use_ray = bool(cfg.render.workers > 0 or address or cfg.evaluator.ray)
    if cfg.evaluator.ray is False and (cfg.render.workers > 0 or address):
        raise ConfigError("evaluator.ray: expected true (or unset) when the render actors run on Ray "
                          f"(render.workers = {cfg.render.workers}), got false")
    if use_ray:
        check_gpu_request(cfg)
        check_local_workers(cfg.render.workers, address)
        # render actors and evaluation tasks alternate within a round: a local Ray counts the
        # actors' reservation on top of the cores, so they do not starve the evaluation tasks
        ensure_ray(address, num_cpus=(os.cpu_count() or 1) + math.ceil(cfg.render.workers * cfg.render.num_cpus),
                   settings=cfg.ray)
        check_resources([render_request(cfg), evaluator_request(cfg)])
    return use_ray


def check_gpu_request(cfg: ExperimentConfig) -> None:
    """On Ray a task uses only the GPUs Ray assigned it: ``device = 'cuda'`` needs a GPU request."""
    e = cfg.evaluator
    if e.device.startswith("cuda") and e.num_gpus <= 0:
        raise ConfigError(f"evaluator.num_gpus: expected > 0 with evaluator.device = {e.device!r} on Ray (a task "
                          f"uses only the GPUs Ray assigns it), got {e.num_gpus:g}")


@contextmanager
def open_run(cfg: ExperimentConfig, rd: RunDir, *, resume: bool, address: str | None, log: Log) -> Iterator[RunState]:
    """A :class:`RunState` ready for its next round; the render actors close on exit."""
    laps = _Laps()
    evaluator_class(cfg.evaluator.task)       # a bad task name is one line before Ray starts
    try:                                      # and so is a bad optimizer or loop option
        check_options(cfg.loop.optimizer, cfg.loop.options)
    except ValueError as e:
        raise ConfigError(f"loop: {e}") from None
    use_ray = _start_ray(cfg, address)
    laps("ray")
    logging.getLogger("optuna").setLevel(logging.WARNING)
    with RenderPool(cfg, address=address, wait=False) as pool:
        real = load_real(cfg, log=log, categories=pool.generator.categories, make_missing=not resume)
        if resume:
            rd.check_real_unchanged(real.sha256())
        laps("real_set")
        controller = _build_controller(cfg, pool.generator.space)
        engine = Engine(cfg, pool, real, controller.signals, use_ray=use_ray)
        laps("controller")
        pool.ready()
        laps("render_actors")   # what is left of their start after the driver's own set-up
        run = RunState(cfg, rd, pool, engine, controller, log, startup=laps.parts, wall0=laps.t0)
        if resume and rd.checkpoints():
            _restore(run)
        else:       # a new run, or one killed before its first round's checkpoint: start at round 1
            if resume:
                rd.check_rounds(0, cfg.loop.candidates)
                log(f"resuming {rd.root}: no round had finished, starting at round 1")
            rd.create(cfg.raw, cfg.seed, {"optimizer": cfg.loop.optimizer, "budget": cfg.loop.budget,
                                          "candidates": cfg.loop.candidates, "real": real.describe(),
                                          "real_sha256": real.sha256()})
        run.t_startup = time.perf_counter() - laps.t0   # Ray, render actors, real set, controller, run dir
        yield run


def _restore(run: RunState) -> None:
    """The newest checkpoint that passes its checks, and the log cut back to the rounds it covers."""
    cfg, rd, problems = run.cfg, run.rd, []
    for path in rd.checkpoints():
        try:
            state = read_json(path, "a checkpoint")
            controller = _build_controller(cfg, run.controller.space)
            restore_state(state, controller, cfg)
            _restore_signals(run.engine, rd, state)
        except RunDirError as e:
            problems.append(str(e))
            continue
        if problems:
            run.log(f"warning: {problems[0]}; resuming from the previous checkpoint {path.name}")
        run.controller = controller
        run.start_round, run.best, run.timing = state["round"] + 1, state["best"], state["timing"]
        rd.check_rounds(run.start_round, cfg.loop.candidates, warn=run.log)
        run.log(f"resuming {rd.root} at round {run.start_round + 1}/{cfg.loop.budget}"
                if run.start_round < cfg.loop.budget else
                f"resuming {rd.root}: all {cfg.loop.budget} rounds ran, redoing the final retraining")
        return
    raise RunDirError("--resume: expected a readable checkpoint, got none: " + "; ".join(problems))


def _restore_signals(engine: Engine, rd: RunDir, state: dict) -> None:
    files = state.get("signals")
    if files is None:           # checkpoints before the signals' table named the task model alone
        files = {"sample_loss": state.get("task_model")}
    if not isinstance(files, dict):
        raise RunDirError(f"checkpoint: expected signals as a table of file names, got {str(files)[:80]}")
    for name, signal in engine.signals.items():
        try:
            signal.load(rd.checkpoint_dir, files.get(name))
        except Exception as e:      # a missing or damaged state file
            raise RunDirError(f"checkpoint: expected the {name} state {files.get(name)} it names, "
                              f"got an unreadable file ({type(e).__name__})") from None


def restore_state(state: Any, controller: Controller, cfg: ExperimentConfig) -> None:
    """Check a checkpoint against the run's config and load it into ``controller``. Anything
    wrong is a :class:`RunDirError` naming it."""
    def bad(what: str) -> RunDirError:
        return RunDirError(f"checkpoint: expected {what}")

    if not isinstance(state, dict) or not {"round", "controller", "best", "timing"} <= set(state):
        raise bad(f"an object with round, controller, best and timing, got "
                  f"{sorted(state)[:5] if isinstance(state, dict) else type(state).__name__}")
    r = state["round"]
    if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r < cfg.loop.budget:
        raise bad(f"round in [0, {cfg.loop.budget - 1}] (the config's loop.budget), got {r!r}")
    dim, best = controller.space.dim, state["best"]
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
