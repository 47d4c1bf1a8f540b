"""Automatic domain randomization (OpenAI et al., "Solving Rubik's Cube with a Robot Hand", 2019).

ADR grows the randomization as far as the task allows. Each uniform / log-uniform parameter's
range starts narrow around the centre of its default range (``init_width`` of its hard bounds;
log-uniforms work in log space) and each of its two ends moves on its own: the end is
evaluated by pinning the parameter to it while everything else is drawn from the current
ranges; once ``buffer`` such scores have been collected, their mean decides. At or above
``high`` the end moves outward by ``step`` (a fraction of the hard bounds); below ``low`` it
moves inward; in between it stays. Other families (truncated normals, counts, categoricals)
stay at their defaults.

Fit to propose/update: every proposed θ is the current ranges with exactly one end of one
parameter pinned (its range collapsed onto that end), chosen uniformly at random with
``self.rng``; ``update`` files each score under the end that θ pinned. ``current()`` is the
current ranges, unpinned: the distribution the runner should train on and report.

Thresholds are in the runner's score units (AP50 or accuracy in [0, 1] by default). ADR's goal
is the widest distribution the task tolerates, not the best-scoring one.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from generator.space import ParameterSpace, Uniform

from ._common import match_pending
from .base import Controller, Feedback, Options, number


class ADROptions(Options):
    low: float = number(0.5)
    """Mean boundary score below which that end moves inward (the range shrinks)."""
    high: float = number(0.8)
    """Mean boundary score at or above which that end moves outward (the range widens)."""
    step: float = number(0.05, gt=0, le=1)
    """How far an end moves, as a fraction of the parameter's hard bounds."""
    buffer: int = Field(2, ge=1)
    """Boundary evaluations averaged before an end moves."""
    init_width: float = number(0.02, ge=0, le=1)
    """Initial width of each range, as a fraction of its hard bounds."""

    def check(self, name: str) -> None:
        if not self.low < self.high:
            raise ValueError(f"{name}.high: expected a value above low ({self.low}), got {self.high}")


class ADR(Controller):
    """Per-end range expansion / contraction driven by boundary scores."""

    name: ClassVar[str] = "adr"
    signals: ClassVar[frozenset[str]] = frozenset({"score"})
    Options: ClassVar[type] = ADROptions

    def __init__(self, space: ParameterSpace, *, seed: int, **options):
        super().__init__(space, seed=seed, **options)
        self.default = space.clip(space.to_vector())
        # the ranged parameters: (slice into θ, family), each with a range [a, b] in sample space
        self.ranged: list[tuple[slice, Uniform]] = []
        self.ranges: list[list[float]] = []
        start = 0
        for p in space.learned:
            sl = slice(start, start + p.family.dim)
            start += p.family.dim
            if isinstance(p.family, Uniform):
                s_lo, s_hi = p.family._space_bounds()
                centre = float(np.mean([self._to_space(p.family, v) for v in self.default[sl]]))
                half = self.options.init_width * (s_hi - s_lo) / 2
                self.ranges.append([max(centre - half, s_lo), min(centre + half, s_hi)])
                self.ranged.append((sl, p.family))
        self.buffers: list[list[float]] = [[] for _ in range(2 * len(self.ranged))]   # end 2i: low, 2i+1: high
        self.pending: list[tuple[np.ndarray, int]] = []

    @staticmethod
    def _to_space(fam: Uniform, v: float) -> float:
        return math.log(v) if fam.kind == "loguniform" else float(v)

    @staticmethod
    def _from_space(fam: Uniform, v: float) -> float:
        return min(max(math.exp(v) if fam.kind == "loguniform" else v, fam.lo), fam.hi)

    def _theta(self, pin: int | None = None) -> np.ndarray:
        """The current ranges as θ; ``pin`` = an end index collapses that parameter onto it."""
        theta = self.default.copy()
        for i, ((sl, fam), (a, b)) in enumerate(zip(self.ranged, self.ranges)):
            if pin is not None and pin // 2 == i:
                a = b = (a, b)[pin % 2]
            theta[sl] = [self._from_space(fam, a), self._from_space(fam, b)]
        return theta

    # ---- propose: each candidate pins one end of one range -----------------------------------
    def _propose(self, k: int) -> list[np.ndarray]:
        if not self.ranged:                 # nothing to randomize adaptively
            return [self._theta() for _ in range(k)]
        ends = self.rng.integers(0, len(self.buffers), size=k)
        self.pending = [(self._theta(int(e)), int(e)) for e in ends]
        return [t.copy() for t, _ in self.pending]

    # ---- update: file each score under its end; move ends whose buffer is full ----------------
    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        o = self.options
        for theta, fb in zip(thetas, feedback):
            end = match_pending(self.pending, theta)
            if end is None or not math.isfinite(fb.score):
                continue
            self.buffers[end].append(float(fb.score))
            if len(self.buffers[end]) < o.buffer:
                continue
            mean = float(np.mean(self.buffers[end]))
            self.buffers[end] = []
            if o.low <= mean < o.high:
                continue
            i, side = divmod(end, 2)
            sl, fam = self.ranged[i]
            s_lo, s_hi = fam._space_bounds()
            move = o.step * (s_hi - s_lo) * (1 if mean >= o.high else -1)   # + widens, − shrinks
            a, b = self.ranges[i]
            if side == 0:
                self.ranges[i][0] = min(max(a - move, s_lo), b)
            else:
                self.ranges[i][1] = max(min(b + move, s_hi), a)
        self.pending = []

    def _current(self) -> np.ndarray:
        return self._theta()

    def _state(self) -> dict[str, Any]:
        return {"ranges": [list(r) for r in self.ranges], "buffers": [list(b) for b in self.buffers],
                "pending": [[t.tolist(), e] for t, e in self.pending]}

    def _load_state(self, d: dict[str, Any]) -> None:
        self.ranges = [[float(a), float(b)] for a, b in d["ranges"]]
        self.buffers = [[float(v) for v in b] for b in d["buffers"]]
        self.pending = [(np.asarray(t), int(e)) for t, e in d["pending"]]
