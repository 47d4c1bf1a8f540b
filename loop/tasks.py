"""Building the evaluator a config asks for, and the per-candidate work the runner farms out.

``evaluate_candidate`` and ``witness_candidate`` are plain functions: the runner calls them as
Ray tasks (``num_cpus``/``num_gpus`` from ``[evaluator]``) or in-process when Ray is off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evaluator.base import Evaluator, Fidelity, Metrics
from evaluator.real import RealSplits, load_coco_real, load_digits_real
from generator.dataset import Dataset

from .config import ConfigError, EvaluatorSettings, ExperimentConfig


def load_real(cfg: ExperimentConfig, *, make_missing: bool = True, log=print) -> RealSplits:
    """The real splits of ``[evaluator] real``: "digits", or a COCO dir (made from
    ``target_config`` with make-target first when it does not exist yet)."""
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


def build_evaluator(settings: EvaluatorSettings, real: RealSplits) -> Evaluator:
    kwargs: dict[str, Any] = {"device": settings.device, "threads": settings.threads}
    if settings.width is not None:
        kwargs["width"] = settings.width
    if settings.task == "classification":
        from evaluator.classification import ClassificationEvaluator

        return ClassificationEvaluator(real, **kwargs)
    from evaluator.detection import DetectionEvaluator

    return DetectionEvaluator(real, score=settings.score, **kwargs)


def fidelity(settings: EvaluatorSettings, *, final: bool = False) -> Fidelity:
    if final:
        return Fidelity(steps=settings.final_steps or 2 * settings.steps, batch_size=settings.batch_size,
                        images=settings.final_images or 2 * settings.images)
    return Fidelity(steps=settings.steps, batch_size=settings.batch_size, images=settings.images)


def evaluate_candidate(settings: EvaluatorSettings, real: RealSplits, dataset: Dataset, fid: Fidelity, seed: int,
                       splits: tuple[str, ...] = ("val",), keep_weights: bool = False,
                       warm_start: dict | None = None) -> Metrics:
    m = build_evaluator(settings, real).evaluate(dataset, fid, seed, warm_start=warm_start, splits=splits)
    if not keep_weights:
        m.weights = None
    return m


def losses_candidate(settings: EvaluatorSettings, real: RealSplits, dataset: Dataset, weights: dict | None,
                     seed: int) -> np.ndarray:
    """Per-image loss of the current task model on a candidate's images (VADRA's rewards)."""
    return build_evaluator(settings, real).sample_losses(dataset, weights, seed)


def concat(datasets: list[Dataset]) -> Dataset:
    """One dataset from several (the adversarial task model trains on a whole round)."""
    first = datasets[0]
    return Dataset([im for d in datasets for im in d.images], [a for d in datasets for a in d.annotations],
                   list(first.categories), dict(first.info))


def real_features(real: RealSplits, *, value_max: float = 255.0, gap_images: int = 200, seed: int = 0) -> np.ndarray:
    """Random-conv features of the first ``gap_images`` real val images (extracted once per run)."""
    from evaluator.features import RandomConvFeatures

    return RandomConvFeatures(seed)(np.stack(real.val.images[:min(gap_images, len(real.val))]), value_max=value_max)


def witness_candidate(real_feats: np.ndarray, dataset: Dataset, *, value_max: float = 255.0,
                      seed: int = 0) -> tuple[dict[str, float], np.ndarray]:
    """Gap metrics of a rendered batch against the real val features (see :func:`real_features`),
    and per-image witness values (higher = more like real): the Meta-Sim controller's per-sample rewards."""
    from evaluator.features import RandomConvFeatures
    from evaluator.gap import gap_from_features

    fx = RandomConvFeatures(seed)(np.stack(dataset.images), value_max=value_max)
    gap, witness = gap_from_features(fx, real_feats)
    return {f"gap_{k}": float(v) for k, v in gap.items() if k in ("mmd2", "frechet")}, witness
