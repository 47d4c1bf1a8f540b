"""Per-image credit ascent: learn θ from every image's contribution to the real-val loss.

A scalar score per candidate carries ±2–3 points of training noise and a handful of numbers per
round in 50–80 dimensions. Here each candidate's training run also measures, for every one of its
hundreds of synthetic images, how much learning from that image lowered the loss on the real
validation set (TracIn credit, :mod:`evaluator.credit`). The controller then ascends the expected
credit of the images θ draws,

    ∇θ E_{x∼p_θ}[c(x)] ≈ mean_i (c_i − mean c) ∇θ log p(x_i | θ)    (+ the uniform-range boundary terms)

by the same score-function estimator as ``metasim`` (``score_function_grad`` with the draws),
the idea of "Dataset Policy Gradient" (arXiv 2604.08423) with a first-order credit instead of an
exact metagradient. Each candidate's credits are standardised first (training runs differ in
scale), and Adam's bounded step in unit-box coordinates is the trust region: θ leaves the
config's distribution only as fast as the per-image evidence keeps pointing one way.

``propose(k)`` returns k copies of the current θ (the runner gives copies seeds of their own, so a
round is one k-times larger batch of images); the run keeps the θ whose copies scored best on real
val (the first round scores the config's own θ), so a round that moved the wrong way is never the
result.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .base import Options, number
from .metasim import MetaSim


class CreditOptions(Options):
    lr: float = number(0.03, gt=0)
    """Adam step size in unit-box coordinates (about the per-entry move per round)."""
    warmup: int = Field(2, ge=0)
    """Updates over which the step size ramps up linearly (see ``metasim``)."""
    entropy_coef: float = number(0.0, ge=0)
    """Weight of an entropy bonus (standardised-credit units per nat); 0 leaves the spread of
    every parameter to the credit alone."""


class CreditAscent(MetaSim):
    """Score-function ascent of the expected per-image TracIn credit (``metasim``'s update on
    another per-image signal, each candidate's credits standardised)."""

    name: ClassVar[str] = "credit"
    signals: ClassVar[frozenset[str]] = frozenset({"credit", "score"})
    final: ClassVar[str] = "best"
    Options: ClassVar[type] = CreditOptions
    reward_signal: ClassVar[str] = "credit"
    standardise_per_candidate: ClassVar[bool] = True
