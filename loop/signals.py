"""Signals: what a controller needs computed for each candidate, one object per signal.

A signal names what the evaluation task computes from a candidate's rendered images and what
comes back: one number per candidate (``score``) or an array with one value per image
(``credit``, ``witness``, ``sample_loss``), which the controller pairs with the images' drawn
parameters (``Feedback.draws``). A controller lists the signals it needs
(``Controller.round_signals()``, per round when its stages differ); the runner, the gymnasium
env and the Ray Tune trainable all evaluate candidates through :func:`loop.tasks.evaluate_job`,
so a new signal is one object here (plus, if it is measured during training, the evaluators'
support for it) and the controller that uses it.

Signals measured during the candidate's training run (``in_training``) share that one run:
asking for ``score`` and ``credit`` together trains once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from evaluator.base import Evaluator
    from evaluator.real import RealSplits

    from .config import EvaluatorSettings
    from .tasks import CandidateJob


@dataclass(frozen=True)
class Signal:
    name: str
    per_image: bool
    """True: an array with one value per image; False: one number per candidate."""
    doc: str
    in_training: bool = False
    """Measured inside the candidate's training run (an evaluator ``per_image`` output, or the score)."""

    def prepare(self, real: "RealSplits", settings: "EvaluatorSettings", seed: int) -> Any:
        """Run-level input the evaluation task needs (computed once, in the driver); None if none."""
        return None

    def compute(self, evaluator: "Evaluator", job: "CandidateJob") -> tuple[dict[str, float], np.ndarray | None]:
        """Signals outside the training run: (named figures, the per-image array or None)."""
        raise NotImplementedError(f"signal {self.name!r} is measured during training")

    def fallback_score(self, extras: dict[str, float]) -> float | None:
        """The candidate's score when no ``score`` signal was asked for (None: no score)."""
        return None


class _Witness(Signal):
    def prepare(self, real, settings, seed):
        from .tasks import real_features

        return real_features(real, value_max=float(real.val.info.get("value_max", 255)),
                             gap_images=settings.gap_images, seed=seed)

    def compute(self, evaluator, job):
        from evaluator.features import RandomConvFeatures
        from evaluator.gap import gap_from_features

        value_max = float(job.context["value_max"])
        fx = RandomConvFeatures(job.context["feature_seed"])(np.stack(job.dataset.images), value_max=value_max)
        gap, witness = gap_from_features(fx, job.context[self.name])
        return {f"gap_{k}": float(v) for k, v in gap.items() if k in ("mmd2", "frechet")}, witness

    def fallback_score(self, extras):
        return -extras["gap_mmd2"]


class _SampleLoss(Signal):
    def compute(self, evaluator, job):
        # the task model's weights are the run's round state (None before the first round)
        return {}, np.asarray(evaluator.sample_losses(job.dataset, job.context.get(self.name), job.context["model_seed"]))


SCORE = Signal("score", per_image=False, in_training=True,
               doc="the real-val score of a model trained on the candidate's images")
CREDIT = Signal("credit", per_image=True, in_training=True,
                doc="each image's TracIn credit: how much training on it lowered the real-val loss")
WITNESS = _Witness("witness", per_image=True,
                   doc="each image's MMD witness against the real val features (higher = more like real)")
SAMPLE_LOSS = _SampleLoss("sample_loss", per_image=True,
                          doc="each image's loss under the run's current task model (hard examples score high)")

SIGNALS: dict[str, Signal] = {s.name: s for s in (SCORE, CREDIT, WITNESS, SAMPLE_LOSS)}


def get_signals(names) -> list[Signal]:
    unknown = [n for n in names if n not in SIGNALS]
    if unknown:
        raise ValueError(f"signals: expected names among {sorted(SIGNALS)}, got {unknown[0]!r}")
    return [SIGNALS[n] for n in sorted(names)]


__all__ = ["CREDIT", "SAMPLE_LOSS", "SCORE", "SIGNALS", "WITNESS", "Signal", "get_signals"]
