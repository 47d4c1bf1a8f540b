"""The evaluator of a config: its class from the registry, its keyword options, its fidelity."""

from __future__ import annotations

from typing import Any

from evaluator.base import Evaluator, EvaluatorError, Fidelity
from evaluator.real import RealSplits
from generator.dataset import DatasetError

from ..config import ConfigError, EvaluatorSettings
from ..registry import lookup


def evaluator_class(task: str) -> type[Evaluator]:
    """The Evaluator class of ``[evaluator] task``: a registered name or "pkg.module:Class"."""
    return lookup("evaluator", task)


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


def check_evaluator(settings: EvaluatorSettings, real: RealSplits, signals) -> Evaluator:
    """Build the evaluator once in the driver, so a bad setting or a signal it cannot compute is
    one line before any rendering, not a remote traceback after it. ``signals``: Signal classes."""
    try:
        evaluator = build_evaluator(settings, real)
    except EvaluatorError as e:
        raise ConfigError(str(e)) from None
    except DatasetError as e:   # the real set does not fit the task (e.g. classification on a detection set)
        raise ConfigError(f"evaluator.real: {e} (evaluator.task = {settings.task!r})") from None
    missing = [s.name for s in signals if s.in_training and s.per_image and s.name not in evaluator.per_image_outputs]
    if missing:
        raise ConfigError(f"evaluator.task: expected an evaluator that computes {missing[0]!r} per image, "
                          f"got {settings.task!r} (it computes {sorted(evaluator.per_image_outputs)})")
    return evaluator
