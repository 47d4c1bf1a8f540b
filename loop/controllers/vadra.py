"""VADRA-style adversarial domain randomization (Khirodkar, Yoo & Kitani, 2019).

The reward of an image is the *current task model's* loss on it: θ moves towards images the
model gets wrong (hard examples), by the same score-function estimator as ``metasim``,
maximising E_{x∼p_θ}[loss(x)] (losses standardised per batch, so the step size is free of the
loss's units) plus ``entropy_coef`` × the space's entropy, which keeps the distribution from
collapsing onto a handful of pathological scenes. Adam bounds the step per round (about ``lr``
per entry in unit-box coordinates), which acts as a trust region.

This only makes sense with the task model's warm start: the ``sample_loss`` signal keeps it training
across rounds (each round's model starts from the previous one), so the losses reported here
are those of a model that has already seen the earlier rounds' images, and the real validation
score, not this adversarial reward, selects the model that is kept and reported.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from .base import Options, number
from .metasim import MetaSim


class VadraOptions(Options):
    lr: float = number(0.05, gt=0)
    """Adam step size in unit-box coordinates."""
    warmup: int = Field(0, ge=0)
    """Updates over which the step size ramps up linearly (see ``metasim``); none by default:
    the adversary should move from the first round on, while the task model is weakest."""
    entropy_coef: float = number(0.3, ge=0)
    """Weight of the entropy bonus, in standardised-loss units per nat."""


class VADRA(MetaSim):
    """Score-function ascent of the task model's per-image loss, with an entropy bonus."""

    name: ClassVar[str] = "vadra"
    signals: ClassVar[frozenset[str]] = frozenset({"sample_loss"})
    Options: ClassVar[type] = VadraOptions
    reward_signal: ClassVar[str] = "sample_loss"

    def _rewards(self, rewards: np.ndarray) -> np.ndarray:
        std = float(rewards.std())
        return (rewards - rewards.mean()) / std if std > 0 else np.zeros_like(rewards)
