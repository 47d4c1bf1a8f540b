"""REINFORCE over θ, after "Learning to Simulate" (Ruiz, Schulter & Chandraker, ICLR 2019).

The policy is a Gaussian N(μ, diag σ²) over θ in normalised box coordinates u ∈ [0, 1]^d,
started at the space's default θ. Each round it draws k candidates (clipped into the box), the
runner scores them on real validation data, and μ and log σ take one ascent step on
mean_i (score_i − baseline) ∇ log N(u_i | μ, σ²), with a moving-average baseline.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from generator.space import ParameterSpace

from ._common import Box, GaussianPolicy, propose_from_policy, update_from_scores
from .base import Controller, Feedback, Options, check_number, number


class ReinforceOptions(Options):
    lr: float = number(0.02, gt=0)
    """Step size, in unit-box coordinates (Adam: roughly the per-entry step per round). With a
    few candidates per round in tens of dimensions the gradient estimate is mostly noise, and
    Adam turns noise into full-size steps: a small step keeps the policy near where the scores
    put it rather than random-walking away."""
    sigma: float = number(0.05, gt=0)
    """Initial exploration standard deviation, in unit-box coordinates (in [sigma_min, sigma_max])."""
    antithetic: bool = True
    """Propose mirrored pairs μ ± σε (variance reduction; needs an even number of candidates
    to pair every draw)."""
    learn_sigma: bool = True
    """Also learn log σ (clamped to [sigma_min, sigma_max])."""
    sigma_min: float = number(0.01, gt=0)
    """The smallest σ."""
    sigma_max: float = number(0.5, gt=0)
    """The largest σ (at least sigma_min)."""
    baseline: Literal["moving", "round"] = "moving"
    """The reward baseline: "moving" (a moving average of earlier rounds' means) or "round" (this
    round's own mean). With common random numbers a round's candidates share its luck (±4 val
    points on the digits); the round's mean takes that luck out of the σ step, which a moving
    average does not. (The mean's step from mirrored pairs is free of any baseline.)"""
    baseline_decay: float = number(0.8, ge=0, le=0.999)
    """Moving-average factor of the "moving" baseline (0: last round's mean only)."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """"adam" or "sgd"."""
    final: Literal["best", "current", "better"] = "better"
    """What the run retrains at the end: "best" (the best-scored candidate), "current" (the
    policy's mean μ) or "better" (both, keeping the higher real val; see ``Controller.final``)."""

    def check(self, name: str) -> None:
        check_number(f"{name}.sigma_max", self.sigma_max, low=self.sigma_min)
        check_number(f"{name}.sigma", self.sigma, low=self.sigma_min, high=self.sigma_max)


def make_policy(mu_u: np.ndarray, o: ReinforceOptions, *, sigma: float | None = None) -> GaussianPolicy:
    return GaussianPolicy(mu_u, o.sigma if sigma is None else sigma, lr=o.lr, optimizer=o.optimizer,
                          learn_sigma=o.learn_sigma, sigma_min=o.sigma_min, sigma_max=o.sigma_max,
                          baseline_decay=o.baseline_decay, antithetic=o.antithetic, baseline=o.baseline)


class Reinforce(Controller):
    """Gaussian policy over the unit box, REINFORCE on the real-val score."""

    name: ClassVar[str] = "reinforce"
    signals: ClassVar[frozenset[str]] = frozenset({"score"})
    Options: ClassVar[type] = ReinforceOptions

    def __init__(self, space: ParameterSpace, *, seed: int, **options):
        super().__init__(space, seed=seed, **options)
        self.final = self.options.final
        self.box = Box(space)
        self.policy = make_policy(self.box.to_unit(space.clip(space.to_vector())), self.options)
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []   # (θ proposed, its unclipped u)

    # ---- propose: k draws from the policy ----------------------------------------------------
    def _propose(self, k: int) -> list[np.ndarray]:
        self.pending = propose_from_policy(self.policy, self.box, k, self.rng)
        return [t.copy() for t, _ in self.pending]

    # ---- update: one REINFORCE step on the scores --------------------------------------------
    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        update_from_scores(self.policy, self.box, self.pending, thetas, feedback)
        self.pending = []

    def _current(self) -> np.ndarray:
        return self.box.to_theta(self.policy.mu)

    def _state(self) -> dict[str, Any]:
        return {"policy": self.policy.state(),
                "pending": [[t.tolist(), u.tolist()] for t, u in self.pending]}

    def _load_state(self, d: dict[str, Any]) -> None:
        self.policy.load(d["policy"])
        self.pending = [(np.asarray(t), np.asarray(u)) for t, u in d["pending"]]
