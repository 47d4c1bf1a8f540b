"""A (1 + k) hill climber over θ in unit-box coordinates: keep the best θ seen, perturb it."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from loop.controllers.base import Controller, Options, number


class HillClimbOptions(Options):
    step: float = number(0.1, gt=0, le=1)
    """The perturbation's standard deviation in unit-box coordinates."""


class HillClimb(Controller):
    name: ClassVar[str] = "example-hill-climb"
    signals: ClassVar[frozenset[str]] = frozenset({"score", "example-brightness-gap"})
    Options: ClassVar[type] = HillClimbOptions

    def __init__(self, space, *, seed: int, **options: Any):
        super().__init__(space, seed=seed, **options)
        self.incumbent = (space.clip(space.to_vector()) - self.lo) / (self.hi - self.lo)
        self.incumbent_score = -math.inf

    def _propose(self, k):
        unit = [self.incumbent] + [np.clip(self.incumbent + self.options.step * self.rng.standard_normal(self.space.dim),
                                           0.0, 1.0) for _ in range(k - 1)]
        return [self.lo + u * (self.hi - self.lo) for u in unit]

    def _update(self, thetas, feedback):
        for theta, fb in zip(thetas, feedback):
            if math.isfinite(fb.score) and fb.score > self.incumbent_score:
                self.incumbent_score = float(fb.score)
                self.incumbent = (theta - self.lo) / (self.hi - self.lo)

    def _current(self):
        return self.lo + self.incumbent * (self.hi - self.lo)

    def _state(self):
        score = self.incumbent_score if math.isfinite(self.incumbent_score) else None
        return {"incumbent": self.incumbent.tolist(), "incumbent_score": score}

    def _load_state(self, d):
        self.incumbent = np.asarray(d["incumbent"], dtype=np.float64)
        self.incumbent_score = -math.inf if d["incumbent_score"] is None else float(d["incumbent_score"])
