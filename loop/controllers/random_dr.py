"""Plain domain randomization: one fixed, wide distribution, proposed every round.

The baseline every learning controller must beat. With ``widen=True`` (the default) each
uniform / log-uniform range is set to its full hard bounds, each truncated normal and count is
centred in its bounds with a standard deviation as wide as them (nearly flat), and categoricals
are uniform; with ``widen=False`` it proposes the space's default θ unchanged (the user's own
hand-tuned randomization). ``update`` only keeps the incumbent.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from generator.space import Categorical, IntCount, ParameterSpace, TruncatedNormal, Uniform

from .base import Controller, Feedback, Options


class RandomOptions(Options):
    widen: bool = True
    """Widen every parameter to its hard bounds (True) or keep the space's default θ (False)."""


def wide_theta(space: ParameterSpace) -> np.ndarray:
    """The widest sensible distribution of every parameter, as θ."""
    parts = []
    for p in space.learned:
        fam = p.family
        if isinstance(fam, Uniform):                       # and LogUniform
            parts.append([fam.lo, fam.hi])
        elif isinstance(fam, IntCount):
            lo, hi = fam.value_bounds()
            parts.append([(fam.lo + fam.hi) / 2, min(math.log(fam.hi - fam.lo + 1), hi[1])])
        elif isinstance(fam, TruncatedNormal):
            lo, hi = fam.value_bounds()
            parts.append([(fam.lo + fam.hi) / 2, min(math.log(fam.hi - fam.lo), hi[1])])
        elif isinstance(fam, Categorical):
            parts.append([0.0] * len(fam.choices))
        else:                                              # an unknown family: keep its default
            parts.append(fam.values().tolist())
    return space.clip(np.concatenate([np.asarray(v, dtype=np.float64) for v in parts]))


class RandomDR(Controller):
    """Fixed domain randomization (``learning = False``)."""

    name: ClassVar[str] = "random"
    signals: ClassVar[frozenset[str]] = frozenset({"score"})
    learning: ClassVar[bool] = False
    Options: ClassVar[type] = RandomOptions

    def __init__(self, space: ParameterSpace, *, seed: int, **options):
        super().__init__(space, seed=seed, **options)
        self.theta = wide_theta(space) if self.options.widen else space.clip(space.to_vector())

    def _propose(self, k: int) -> list[np.ndarray]:
        return [self.theta.copy() for _ in range(k)]

    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        pass  # the base class records the incumbent

    def _current(self) -> np.ndarray:
        return self.theta
