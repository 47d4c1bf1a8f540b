"""The one candidate-evaluation path, and building what it needs.

A :class:`CandidateJob` is everything one evaluation task needs (the candidate's rendered
images, the fidelity, the seed, the signals to compute and their run-level inputs);
:func:`evaluate_job` computes its signals (see :mod:`loop.signals`) and returns a
:class:`CandidateResult`. The runner ships jobs to Ray tasks (``num_cpus``/``num_gpus`` from
``[evaluator]``) or runs them in-process; the gymnasium env and the Ray Tune trainable call it
directly. Seeds come from :func:`round_seeds` everywhere.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evaluator.base import Evaluator, EvaluatorError, Fidelity
from evaluator.real import RealSplits, load_coco_real, load_digits_real
from generator.base import derive_seed
from generator.dataset import Dataset, DatasetError

from .config import ConfigError, EvaluatorSettings, ExperimentConfig
from .signals import get_signals

#: built-in evaluators by ``[evaluator] task``; anything else is a dotted path "pkg.module:Class"
BUILTIN_EVALUATORS = {"detection": "evaluator.detection:DetectionEvaluator",
                      "classification": "evaluator.classification:ClassificationEvaluator"}


#: fewer real val images than this get a warning (a score on a handful of images is mostly noise)
FEW_VAL_IMAGES = 20


def load_real(cfg: ExperimentConfig, *, make_missing: bool = True, log=print,
              categories: Sequence[str] | None = None) -> RealSplits:
    """The real splits of ``[evaluator] real``: "digits", or a COCO dir (made from
    ``target_config`` with make-target first when it does not exist yet). With the generator's
    ``categories`` the set is checked against them once, here (see :func:`check_real`)."""
    real = _read_real(cfg, make_missing=make_missing, log=log)
    return real if categories is None else check_real(real, categories, log=log)


def check_real(real: RealSplits, categories: Sequence[str], log=print) -> RealSplits:
    """A real set the loop can score against: at least 2 images and some annotations in each
    split, images of one size and channel count, and the generator's categories by name (a set
    whose category ids are permuted is put in the generator's order)."""
    for split in ("val", "test"):
        ds: Dataset = getattr(real, split)
        if len(ds) < 2:
            raise ConfigError(f"evaluator.real: expected at least 2 images in the {split} split, got {len(ds)} "
                              f"({real.source})")
        if not any(ds.annotations):
            raise ConfigError(f"evaluator.real: expected annotations in the {split} split, got none ({real.source})")
        shapes = sorted({im.shape for im in ds.images})
        if len(shapes) > 1:
            raise ConfigError(f"evaluator.real: expected {split} images of one size and channel count, got "
                              f"{' and '.join('×'.join(map(str, s)) for s in shapes[:3])} ({real.source})")
    names = list(real.val.categories)
    if sorted(names) != sorted(categories):
        missing = [c for c in categories if c not in names]
        extra = [c for c in names if c not in categories]
        raise ConfigError(f"evaluator.real: expected the generator's categories {list(categories)} (matched by "
                          f"name), got {names}" + (f"; missing {missing}" if missing else "")
                          + (f"; not drawn by the generator {extra}" if extra else ""))
    if len(real.val) < FEW_VAL_IMAGES:
        log(f"warning: evaluator.real has only {len(real.val)} val images; its score is mostly noise")
    if names != list(categories):
        real = RealSplits(real.val.with_categories(categories), real.test.with_categories(categories), real.source)
    return real


def _read_real(cfg: ExperimentConfig, *, make_missing: bool, log) -> RealSplits:
    ev = cfg.evaluator
    if ev.real == "digits":
        return load_digits_real(seed=0)
    root = Path(ev.real)
    if not root.exists() and ev.target_config and make_missing:
        from .config import load_config
        from .target import make_target

        log(f"real set {root} not found: making it from the hidden target domain {ev.target_config}")
        make_target(load_config(ev.target_config), root, progress=False)
    if not root.exists():
        raise ConfigError(f"evaluator.real: expected an existing real set (a COCO dir or 'digits'), {root} not found"
                          + ("" if ev.target_config else "; set evaluator.target_config to make one"))
    return load_coco_real(root)


def evaluator_class(task: str) -> type[Evaluator]:
    """The Evaluator class of ``[evaluator] task``: a built-in name or "pkg.module:Class"."""
    spec = BUILTIN_EVALUATORS.get(task, task)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"evaluator.task: expected one of {sorted(BUILTIN_EVALUATORS)} or "
                          f"'package.module:Class', got {task!r}")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"evaluator.task: expected an importable evaluator, got {task!r} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Evaluator)):
        raise ConfigError(f"evaluator.task: expected a subclass of evaluator.base.Evaluator, got {task!r}")
    return cls


def build_evaluator(settings: EvaluatorSettings, real: RealSplits) -> Evaluator:
    kwargs: dict[str, Any] = {"device": settings.device, "threads": settings.threads, **settings.options}
    if settings.width is not None:
        kwargs["width"] = settings.width
    if settings.task == "detection":
        kwargs["score"] = settings.score
    cls = evaluator_class(settings.task)
    try:
        return cls(real, **kwargs)
    except TypeError as e:
        raise ConfigError(f"evaluator: expected options accepted by {settings.task!r}, got {e}") from None


def fidelity(settings: EvaluatorSettings, *, final: bool = False) -> Fidelity:
    if final:
        return Fidelity(steps=settings.final_steps or 2 * settings.steps, batch_size=settings.batch_size,
                        images=settings.final_images or 2 * settings.images)
    return Fidelity(steps=settings.steps, batch_size=settings.batch_size, images=settings.images)


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


# --------------------------------------------------------------------------------------------
# The evaluation task
# --------------------------------------------------------------------------------------------

@dataclass
class CandidateJob:
    settings: EvaluatorSettings
    dataset: Dataset
    fidelity: Fidelity
    seed: int
    signals: tuple[str, ...]
    splits: tuple[str, ...] = ("val",)
    warm_start: dict | None = None
    keep_weights: bool = False
    context: dict[str, Any] = field(default_factory=dict)
    """Run-level inputs of the signals, by signal name (real features, task-model weights), and
    the run's ``value_max``, ``feature_seed`` and ``model_seed``."""


@dataclass
class CandidateResult:
    score: float
    extras: dict[str, float] = field(default_factory=dict)
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict | None = None
    failed: str | None = None
    """Why the evaluation failed (an exception in the task, a diverged training); None if it did not."""


def evaluate_job(job: CandidateJob, real: RealSplits) -> CandidateResult:
    """Compute ``job.signals`` for one candidate's images: one training run for the signals
    measured during training (the score, per-image credit), then the others."""
    evaluator = build_evaluator(job.settings, real)
    signals = get_signals(job.signals)
    out = CandidateResult(score=math.nan)
    in_training = [s for s in signals if s.in_training]
    if in_training:
        m = evaluator.evaluate(job.dataset, job.fidelity, job.seed, warm_start=job.warm_start, splits=job.splits,
                               per_image=tuple(s.name for s in in_training if s.per_image))
        out.score, out.extras, out.per_image = float(m.score), dict(m.extras), dict(m.per_image)
        out.extras["train_seconds"] = m.timings.get("train", 0.0)
        out.weights = m.weights if job.keep_weights else None
    for s in signals:
        if not s.in_training:
            extras, values = s.compute(evaluator, job)
            out.extras.update(extras)
            if values is not None:
                out.per_image[s.name] = np.asarray(values, dtype=np.float64)
    if "score" not in job.signals:
        fallback = [v for s in signals if (v := s.fallback_score(out.extras)) is not None]
        out.score = float(fallback[0]) if fallback else math.nan
    return out


def evaluate_or_fail(job: CandidateJob, real: RealSplits) -> CandidateResult:
    """:func:`evaluate_job`, but a failure is a result: the runner records it and goes on, and
    the controller skips the candidate (a NaN score)."""
    try:
        res = evaluate_job(job, real)
    except Exception as e:   # noqa: BLE001 - any failure inside one candidate's evaluation
        lines = str(e).strip().splitlines()
        return CandidateResult(score=math.nan, failed=f"{type(e).__name__}: {lines[0][:200] if lines else ''}".strip())
    if "score" in job.signals and not math.isfinite(res.score):
        res.failed = f"the real-val score is {res.score} (training diverged?)"
        res.score = math.nan
    return res


def check_evaluator(settings: EvaluatorSettings, real: RealSplits, signals) -> Evaluator:
    """Build the evaluator once in the driver, so a bad setting or a signal it cannot compute is
    one line before any rendering, not a remote traceback after it."""
    try:
        evaluator = build_evaluator(settings, real)
    except EvaluatorError as e:
        raise ConfigError(str(e)) from None
    except DatasetError as e:   # the real set does not fit the task (e.g. classification on a detection set)
        raise ConfigError(f"evaluator.real: {e} (evaluator.task = {settings.task!r})") from None
    missing = [s.name for s in get_signals(signals) if s.in_training and s.per_image
               and s.name not in evaluator.per_image_outputs]
    if missing:
        raise ConfigError(f"evaluator.task: expected an evaluator that computes {missing[0]!r} per image, "
                          f"got {settings.task!r} (it computes {sorted(evaluator.per_image_outputs)})")
    return evaluator


def concat(datasets: list[Dataset]) -> Dataset:
    """One dataset from several (the adversarial task model trains on a whole round)."""
    first = datasets[0]
    return Dataset([im for d in datasets for im in d.images], [a for d in datasets for a in d.annotations],
                   list(first.categories), dict(first.info))


def real_features(real: RealSplits, *, value_max: float = 255.0, gap_images: int = 200, seed: int = 0) -> np.ndarray:
    """Random-conv features of the first ``gap_images`` real val images (extracted once per run)."""
    from evaluator.features import RandomConvFeatures

    return RandomConvFeatures(seed)(np.stack(real.val.images[:min(gap_images, len(real.val))]), value_max=value_max)
