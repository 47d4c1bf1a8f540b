"""The one evaluation path: θs and seeds in, scored candidates out.

Every front door (the runner, the gymnasium env, the Ray Tune trainable, the benchmarks and
the experiment scripts) evaluates through an :class:`Engine`: it draws each candidate's
per-image parameters, renders them (render actors or this process), runs one evaluation task
per candidate computing the signals asked for (Ray tasks or this process), and lets stateful
signals act on the whole round.
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable

import numpy as np

from evaluator.base import Fidelity
from evaluator.real import RealSplits
from generator.base import RenderFailed, derive_seed

from ..config import EvaluatorSettings, ExperimentConfig
from ..signals.base import Signal, signal_classes
from .evaluators import check_evaluator, fidelity
from .cluster import Waits, evaluator_request
from .executor import Executor
from .jobs import CandidateJob, CandidateResult
from .remote_dataset import RemoteDataset, concat
from .warm import WarmStart


def round_seeds(run_seed: int, round_index: int, thetas: list[np.ndarray]) -> list[int]:
    """Common random numbers: every distinct θ of a round renders with the same per-image seeds
    and trains with the same seed, so two candidates differ only by θ (an antithetic pair is a
    paired comparison). Copies of one θ in a round get seeds of their own (copy 0, 1, …), so
    proposing a θ k times is a k-times larger batch, not k identical ones."""
    seeds = []
    for c, theta in enumerate(thetas):
        copy = sum(1 for t in thetas[:c] if np.array_equal(t, theta))
        seeds.append(derive_seed(run_seed, round_index, copy))
    return seeds


class Engine:
    """Turns θs and seeds into :class:`CandidateResult` s for one run's config and real set.

    ``renderer`` is a :class:`loop.engine.render_pool.RenderPool` (render actors, or ``workers = 0``
    for this process); ``signals`` are the names the run may ask for (one instance of each is
    built here and keeps its state for the run)."""

    def __init__(self, cfg: ExperimentConfig, renderer: Any, real: RealSplits, signals: Iterable[str], *,
                 use_ray: bool):
        self.settings: EvaluatorSettings = cfg.evaluator
        self.renderer, self.real, self.seed = renderer, real, cfg.seed
        classes = signal_classes(set(signals) | {"score"})
        # on Ray the device is checked where the work runs (a CPU-only head may send work to GPU nodes)
        driver_settings = self.settings.model_copy(update={"device": "cpu"}) if use_ray else self.settings
        self.metric = check_evaluator(driver_settings, real, classes).score_name
        self.signals: dict[str, Signal] = {c.name: c(real=real, settings=self.settings, seed=cfg.seed)
                                           for c in classes}
        self.executor = Executor(use_ray=use_ray, request=evaluator_request(cfg), waits=Waits(cfg.ray))
        self.real_ref = self.executor.put(real)
        self.remote = use_ray
        """Rendered images stay on the render actors' nodes (:mod:`loop.engine.remote_dataset`)."""
        self.fidelity: Fidelity = fidelity(self.settings)
        self.warm = (WarmStart(self, anchor=self.settings.warm_anchor, steps=self.settings.warm_steps, seed=cfg.seed)
                     if self.settings.warm_steps else None)
        self.seconds = {"render": 0.0, "evaluate": 0.0}
        """Seconds spent rendering and evaluating so far (the runner's timing)."""

    # --- the candidates of one round ---------------------------------------------------------
    def evaluate(self, thetas: list[np.ndarray], seeds: list[int], signals: Iterable[str], *,
                 round_index: int = 0, keep_draws: bool = False, fidelity: Fidelity | None = None,
                 warm_start: dict | None = None) -> list[CandidateResult]:
        """Render and evaluate ``thetas`` with ``seeds``, computing ``signals`` for each; with
        ``keep_draws`` each result carries its images' drawn parameter values; ``fidelity`` and
        ``warm_start`` as in :meth:`train` (unset with ``evaluator.warm_steps``: the round's shared
        checkpoint, :mod:`loop.engine.warm`)."""
        if warm_start is None and self.warm is not None:
            warm_start, fidelity = self.warm.weights(self, thetas, round_index), fidelity or self.warm.fidelity
        draws, datasets, failed = self._render_each(thetas, seeds)
        ok = [i for i in range(len(thetas)) if i not in failed]
        trained = self.train([datasets[i] for i in ok], [seeds[i] for i in ok], signals=signals, fidelity=fidelity,
                             warm_start=warm_start) if ok else []
        for n in sorted(signals):   # a stateful signal's own training counts itself (Engine.train)
            self.signals[n].after_round(self, round_index, [datasets[i] for i in ok], trained)
        results = [CandidateResult(score=math.nan, failed=failed[i]) if i in failed else None for i in range(len(thetas))]
        for i, res in zip(ok, trained):
            results[i] = res
        if keep_draws:
            for res, d in zip(results, draws):
                res.draws = None if res.failed else d
        return results

    def draw_and_render(self, thetas: list[np.ndarray], seeds: list[int]) -> tuple[list[dict], list]:
        """Each candidate's per-image draws and its rendered dataset (a renderer's failure raises)."""
        draws, datasets, failed = self._render_each(thetas, seeds)
        if failed:
            raise RenderFailed(next(iter(failed.values())).removeprefix("render: "))
        return draws, datasets

    def _render_each(self, thetas: list[np.ndarray], seeds: list[int]) -> tuple[list[dict], list, dict[int, str]]:
        """Draws and datasets as :meth:`draw_and_render`; a candidate whose renderer fails
        (:class:`generator.base.RenderFailed`: a command that failed) gets None for a dataset and
        its one-line reason in the third item, by index, so that only it fails."""
        t0 = time.perf_counter()
        draws = [self.renderer.generator.scene_draws(t, self.settings.images, s) for t, s in zip(thetas, seeds)]
        datasets, failed = [], {}
        for i, (d, s) in enumerate(zip(draws, seeds)):
            try:
                datasets.append(self.renderer.render_draws(d, s, remote=self.remote))
            except RenderFailed as e:
                datasets.append(None)
                failed[i] = f"render: {e}"
        self.seconds["render"] += time.perf_counter() - t0
        return draws, datasets, failed

    # --- models trained on given images, scored by real val (and TEST) -----------------------
    def train(self, datasets: list, seeds: list[int], *, signals: Iterable[str] = ("score",),
              fidelity: Fidelity | None = None, splits: tuple[str, ...] = ("val",),
              warm_start: dict | None = None, keep_weights: bool = False) -> list[CandidateResult]:
        """One evaluation task per dataset computing ``signals`` (the score alone for final
        retrainings, Tune's rungs and oracles), at ``fidelity`` (the config's unless given),
        fine-tuning from ``warm_start`` weights when given."""
        t0 = time.perf_counter()
        names = sorted(signals)
        classes = tuple(type(self.signals[n]) for n in names)
        inputs = self.executor.put({n: self.signals[n].task_input() for n in names})
        jobs = [CandidateJob(self.settings, ds, fidelity or self.fidelity, s, classes, splits=splits,
                             warm_start=warm_start, keep_weights=keep_weights) for ds, s in zip(datasets, seeds)]
        results = self.executor.run(jobs, self.real_ref, inputs)
        lost = [i for i, res in enumerate(results) if res.lost_images and isinstance(jobs[i].dataset, RemoteDataset)]
        if lost:        # a node died with images no task had fetched: render them again (same bytes), once
            for i in lost:
                jobs[i].dataset = self._render_again(jobs[i].dataset)
            for i, res in zip(lost, self.executor.run([jobs[i] for i in lost], self.real_ref, inputs)):
                results[i] = res
        self.seconds["evaluate"] += time.perf_counter() - t0
        return results

    def _render_again(self, dataset: RemoteDataset) -> RemoteDataset:
        parts = [self.renderer.render_draws(d, s, remote=True) for d, s in dataset.recipe]
        again = concat(parts)
        again.info = dict(dataset.info)
        return again

    def render(self, theta: np.ndarray, n: int, seed: int):
        t0 = time.perf_counter()
        ds = self.renderer.render(theta, n, seed, remote=self.remote)
        self.seconds["render"] += time.perf_counter() - t0
        return ds

    # --- checkpointing of stateful signals ----------------------------------------------------
    def save_signals(self, directory, round_index: int) -> dict[str, str]:
        """Each stateful signal's state file for this round's checkpoint, by signal name."""
        saved = {n: s.save(directory, round_index) for n, s in self.signals.items()}
        return {n: name for n, name in saved.items() if name}

    def load_signals(self, directory, files: dict[str, str | None]) -> None:
        for n, s in self.signals.items():
            s.load(directory, files.get(n))
