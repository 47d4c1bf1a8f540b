"""One candidate's evaluation task: a :class:`CandidateJob` in, a :class:`CandidateResult` out.

:func:`evaluate_or_fail` is what runs in a Ray task (or in this process); it builds the
evaluator, trains once for every signal measured during training, computes the others, and
turns any exception into a failed result, so one bad candidate never ends a run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluator.base import Fidelity
from evaluator.real import RealSplits
from generator.dataset import Dataset

from ..config import EvaluatorSettings
from .devices import placed_device, ray_assignment
from .remote_dataset import local
from .evaluators import build_evaluator


@dataclass
class CandidateJob:
    settings: EvaluatorSettings
    dataset: Dataset
    fidelity: Fidelity
    seed: int
    signals: tuple[type, ...]
    """The :class:`loop.signals.Signal` classes to compute, sorted by name."""
    splits: tuple[str, ...] = ("val",)
    warm_start: dict | None = None
    keep_weights: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.signals)


@dataclass
class CandidateResult:
    score: float
    extras: dict[str, float] = field(default_factory=dict)
    """Named figures of the evaluation (val_ap50, gap_mmd2, ...); deterministic for a seed."""
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict | None = None
    failed: str | None = None
    """Why the evaluation failed (an exception in the task, a diverged training); None if it did not."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds (train_seconds of wall clock, cpu_seconds of the task's process): kept apart from ``extras``, which a seed determines."""
    draws: dict[str, np.ndarray] | None = None
    """The images' drawn parameter values, set by the engine in the driver when asked for."""
    device: str | None = None
    """The torch device the evaluation ran on (on Ray: from the GPUs Ray assigned the task)."""
    gpu_ids: list[int] = field(default_factory=list)
    """The GPU ids Ray assigned the task (none in this process or without a GPU request)."""
    lost_images: bool = False
    """The task failed because its remote images were lost with their node (the engine renders them again)."""


def evaluate_job(job: CandidateJob, real: RealSplits, inputs: dict[str, Any] | None = None) -> CandidateResult:
    """Compute ``job.signals`` for one candidate's images: one training run for the signals
    measured during training (the score, per-image credit), then the others, each given its
    ``inputs[name]`` (the signal's :meth:`task_input` of this round)."""
    inputs = inputs or {}
    dataset = local(job.dataset)         # a remote dataset's chunks come from the nodes that rendered them
    assignment = ray_assignment()        # the GPUs Ray assigned this task (None: not on Ray)
    settings = job.settings.model_copy(update={"device": placed_device(job.settings.device, assignment)})
    evaluator = build_evaluator(settings, real)
    out = CandidateResult(score=math.nan, device=str(getattr(evaluator, "device", settings.device)),
                          gpu_ids=list(assignment.gpu_ids) if assignment else [])
    in_training = [s for s in job.signals if s.in_training]
    if in_training:
        m = evaluator.evaluate(dataset, job.fidelity, job.seed, warm_start=job.warm_start, splits=job.splits,
                               per_image=tuple(s.name for s in in_training if s.per_image))
        out.score, out.extras, out.per_image = float(m.score), dict(m.extras), dict(m.per_image)
        out.timings["train_seconds"] = m.timings.get("train", 0.0)
        out.weights = m.weights if job.keep_weights else None
    for s in job.signals:
        if not s.in_training:
            extras, values = s.compute(evaluator, dataset, inputs.get(s.name))
            out.extras.update(extras)
            if values is not None:
                out.per_image[s.name] = np.asarray(values, dtype=np.float64)
    if "score" not in job.names:
        fallback = [v for s in job.signals if (v := s.fallback_score(out.extras)) is not None]
        out.score = float(fallback[0]) if fallback else math.nan
    return out


def evaluate_or_fail(job: CandidateJob, real: RealSplits, inputs: dict[str, Any] | None = None) -> CandidateResult:
    """:func:`evaluate_job`, but a failure is a result: the runner records it and goes on, and
    the controller skips the candidate (a NaN score)."""
    cpu0 = time.process_time()
    try:
        res = evaluate_job(job, real, inputs)
    except Exception as e:   # noqa: BLE001 - any failure inside one candidate's evaluation
        return CandidateResult(score=math.nan, failed=failure_line(e) + _on_worker_hint(e), lost_images=_lost(e))
    res.timings["cpu_seconds"] = time.process_time() - cpu0
    if "score" in job.names and not math.isfinite(res.score):
        res.failed = f"the real-val score is {res.score} (training diverged?)"
        res.score = math.nan
    return res


def _lost(e: BaseException) -> bool:
    if ray_assignment() is None:
        return False
    import ray

    # a chunk lost with its node, or one whose render actor died before it was made
    return isinstance(e, (ray.exceptions.ObjectLostError, ray.exceptions.RayActorError))


def _on_worker_hint(e: BaseException) -> str:
    """What to do when a plug-in the driver imports is missing on the Ray node that ran the task."""
    if "expected an importable" not in str(e) or ray_assignment() is None:
        return ""
    import ray

    return (f" on the Ray node {ray.util.get_node_ip_address()}: ship it with ray.py_modules or ray.working_dir, "
            f"or install it on every node")


def failure_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}".strip()
