"""The Evaluator abstraction: a synthetic dataset in, the number the search maximises out.

``Fidelity`` says how much work one evaluation may do (images, training steps); multi-fidelity
searches (ASHA, PBT) raise it. ``Metrics`` carries the score on the real *validation* split plus
named extras; the real *test* split is scored only when the caller asks for it (the final report),
never inside the search.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from generator.dataset import Dataset

SPLITS = ("val", "test")


class EvaluatorError(ValueError):
    """Bad input to an evaluator (empty dataset, wrong annotation layout, bad fidelity)."""


@dataclass(frozen=True)
class Fidelity:
    """How much one evaluation may spend."""

    steps: int = 600                 # optimizer steps
    images: int | None = None        # synthetic images used (None = all given)
    batch_size: int = 32             # images per step

    def __post_init__(self):
        for key, lo in (("steps", 1), ("batch_size", 1)):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise EvaluatorError(f"fidelity.{key}: expected an integer >= {lo}, got {v!r}")
        if self.images is not None and (not isinstance(self.images, int) or isinstance(self.images, bool)
                                        or self.images < 1):
            raise EvaluatorError(f"fidelity.images: expected an integer >= 1 or None, got {self.images!r}")


#: per-image outputs an evaluator can compute inside its training run (``evaluate(per_image=...)``)
PER_IMAGE = ("credit",)


@dataclass
class Metrics:
    """One evaluation's result. ``score`` is what the search maximises (higher is better);
    ``per_image`` holds arrays with one value per training image (e.g. ``"credit"``)."""

    score: float
    extras: dict[str, float] = field(default_factory=dict)
    loss_curve: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    weights: dict[str, Any] | None = field(default=None, repr=False)   # state_dict for warm starts
    per_image: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (weights left out)."""
        def clean(v: float) -> float | None:
            return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)

        return {"score": clean(self.score), **{k: clean(v) for k, v in sorted(self.extras.items())},
                "loss_curve": [round(float(v), 5) for v in self.loss_curve],
                "timings": {k: round(float(v), 4) for k, v in sorted(self.timings.items())}}


ProgressFn = Callable[[int, int, float], None]   # (step, total steps, running loss)


class Evaluator(abc.ABC):
    """Trains a downstream model on a synthetic dataset and scores it on real data.

    Constructed as ``Cls(real_splits, device=..., threads=..., **options)``; a plug-in evaluator
    (``[evaluator] task = "mypkg.models:MyEvaluator"``) follows the same signature."""

    #: name of the score in reports ("ap50", "accuracy", ...)
    score_name: str = "score"
    higher_is_better: bool = True
    #: the per-image outputs (of :data:`PER_IMAGE`) this evaluator's ``evaluate`` can compute
    per_image_outputs: frozenset[str] = frozenset()

    @abc.abstractmethod
    def evaluate(self, dataset: Dataset, fidelity: Fidelity, seed: int, warm_start: dict | None = None, *,
                 splits: Sequence[str] = ("val",), progress: ProgressFn | None = None,
                 per_image: Sequence[str] = ()) -> Metrics:
        """Train on ``dataset`` (from ``warm_start`` weights when given) and score on ``splits``.

        ``Metrics.score`` is the val score; every split's figures are in ``extras`` as
        ``"{split}_{metric}"`` and the trained weights in ``Metrics.weights``. ``per_image``
        names outputs (of ``per_image_outputs``) to compute per training image during the run,
        returned in ``Metrics.per_image``."""

    def sample_losses(self, dataset: Dataset, weights: dict | None, seed: int = 0):
        """Per-image task loss under ``weights`` (adversarial controllers reward hard images)."""
        raise NotImplementedError(f"{type(self).__name__} does not compute per-image losses")


def check_per_image(evaluator: "Evaluator", per_image: Sequence[str]) -> tuple[str, ...]:
    per_image = tuple(per_image)
    bad = [p for p in per_image if p not in evaluator.per_image_outputs]
    if bad:
        raise EvaluatorError(f"per_image: expected outputs among {sorted(evaluator.per_image_outputs)} of "
                             f"{type(evaluator).__name__}, got {bad[0]!r}")
    return per_image


def check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    splits = tuple(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise EvaluatorError(f"splits: expected a non-empty subset of {list(SPLITS)}, got {list(splits)}")
    return splits
