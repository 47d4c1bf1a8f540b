"""Attribute descent (Yao et al., "Simulating content consistent vehicle datasets with attribute
descent", ECCV 2020): greedy coordinate-wise search over the parameters' means.

The incumbent starts at the space's default θ. A *move* changes one attribute by a step in
unit-box coordinates: a uniform / log-uniform range slides as a whole (width kept) or widens
or narrows about its centre, a truncated normal or count shifts its mean or its spread, a
categorical raises or lowers one logit. (How much a knob is randomised matters as much as
where: on the real digits, wider elastic and shear ranges are the gains.) Moves are tried in
a random order (a fresh permutation per cycle); each round proposes the incumbent once and
k − 1 moves. The best move that beats the incumbent is kept and tried again next round (keep
going while it helps); after a whole cycle of moves without improvement the step shrinks.

``compare = "paired"`` (the default) compares each move with the incumbent's score *of the
same round*: the runner gives a round's candidates common random numbers (the same images'
seeds and the same training seed), so the difference is θ's effect with most of the training
noise cancelled. ``"mean"`` compares with the mean of the incumbent's scores so far.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np

from generator.space import IntCount, ParameterSpace, TruncatedNormal, Uniform

from ._common import Box, match_pending
from .base import Controller, Feedback, Options, check_number, number

INCUMBENT = -1


class AttributeDescentOptions(Options):
    step: float = number(0.15, gt=0, le=1)
    """Initial move size in unit-box coordinates."""
    shrink: float = number(0.5, gt=0, le=1)
    """Step multiplier after a full cycle of moves without improvement."""
    min_step: float = number(0.01, gt=0)
    """The step never shrinks below this (at most ``step``)."""
    reevaluate: bool = True
    """Re-score the incumbent every round (when k ≥ 2)."""
    compare: Literal["paired", "mean"] = "paired"
    """"paired": a move against the incumbent's score of the same round (common random
    numbers); "mean": against the mean of the incumbent's scores so far."""
    widths: bool = True
    """Also move the spread of ranges and normals (widen/narrow), not only their position."""

    def check(self, name: str) -> None:
        check_number(f"{name}.min_step", self.min_step, low=0, low_open=True, high=self.step)


SLIDE, SPREAD = "slide", "spread"


def attribute_groups(space: ParameterSpace, widths: bool = True) -> list[tuple[list[int], str]]:
    """θ indices that move together, and how: a range's two ends (slide; with ``widths`` also
    spread), a normal's mean (slide) and log-std (spread), or one logit."""
    groups, start = [], 0
    for p in space.learned:
        fam = p.family
        if isinstance(fam, Uniform):
            groups.append(([start, start + 1], SLIDE))
            if widths:
                groups.append(([start, start + 1], SPREAD))
        elif isinstance(fam, (TruncatedNormal, IntCount)):
            groups.append(([start], SLIDE))
            if widths:
                groups.append(([start + 1], SLIDE))          # log-std: its own coordinate
        else:                                               # categorical logits and anything else
            groups.extend(([start + j], SLIDE) for j in range(fam.dim))
        start += fam.dim
    return groups


class AttributeDescent(Controller):
    """Greedy coordinate search over attribute means with a shrinking step."""

    name: ClassVar[str] = "attribute-descent"
    signals: ClassVar[frozenset[str]] = frozenset({"score"})
    Options: ClassVar[type] = AttributeDescentOptions

    def __init__(self, space: ParameterSpace, *, seed: int, **options):
        super().__init__(space, seed=seed, **options)
        self.box = Box(space)
        self.groups = attribute_groups(space, self.options.widths)
        self.moves = [(g, s) for g in range(len(self.groups)) for s in (1, -1)]
        self.incumbent = self.box.to_unit(space.clip(space.to_vector()))
        self.incumbent_scores: list[float] = []
        self.step = self.options.step
        self.queue: list[int] = []              # move indices still to try in this cycle
        self.since_improvement = 0              # moves evaluated since the last improvement
        self.pending: list[tuple[np.ndarray, list]] = []   # (θ, [move, u])

    def _moved(self, m: int) -> np.ndarray | None:
        """The incumbent after move m, or None when the box stops it entirely."""
        group, sign = self.moves[m]
        idx, kind = self.groups[group]
        u = self.incumbent.copy()
        if kind == SLIDE:
            direction = np.full(len(idx), float(sign))
        else:                                   # spread a range about its centre: ends apart (+) or together (−)
            lo_first = u[idx[0]] <= u[idx[1]]
            direction = np.array([-1.0, 1.0] if lo_first else [1.0, -1.0]) * sign
        room = min((1.0 - u[i]) if d > 0 else u[i] for i, d in zip(idx, direction))
        if kind == SPREAD and sign < 0:
            room = min(room, abs(u[idx[1]] - u[idx[0]]) / 2)
        delta = min(self.step, max(room, 0.0))
        if delta <= 1e-12:
            return None
        u[idx] += direction * delta
        return u

    # ---- propose: the incumbent plus the next moves ------------------------------------------
    def _propose(self, k: int) -> list[np.ndarray]:
        cands: list[tuple[int, np.ndarray]] = []
        if not self.incumbent_scores or (self.options.reevaluate and k >= 2):
            cands.append((INCUMBENT, self.incumbent))
        blocked = 0
        while len(cands) < k:
            if blocked > len(self.moves):       # every move is blocked by the box: re-score
                cands.append((INCUMBENT, self.incumbent))
                continue
            if not self.queue:
                self.queue = [int(m) for m in self.rng.permutation(len(self.moves))]
            m = self.queue.pop(0)
            u = self._moved(m)
            if u is None:
                blocked += 1
                continue
            cands.append((m, u))
        self.pending = [(self.box.to_theta(u), [m, u]) for m, u in cands]
        return [t.copy() for t, _ in self.pending]

    # ---- update: keep the best improving move, else count towards shrinking the step ---------
    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        tried: list[tuple[float, int, np.ndarray]] = []
        this_round: list[float] = []
        for theta, fb in zip(thetas, feedback):
            hit = match_pending(self.pending, theta)
            if hit is None or not math.isfinite(fb.score):
                continue
            m, u = hit
            if m == INCUMBENT:
                self.incumbent_scores.append(float(fb.score))
                this_round.append(float(fb.score))
            else:
                tried.append((float(fb.score), m, u))
        self.pending = []
        if self.options.compare == "paired" and this_round:
            reference = float(np.mean(this_round))
        else:
            reference = np.mean(self.incumbent_scores) if self.incumbent_scores else -math.inf
        best = max(tried, key=lambda c: c[0], default=None)
        if best is not None and best[0] > reference:
            score, m, u = best
            self.incumbent, self.incumbent_scores = np.asarray(u, dtype=np.float64), [score]
            self.queue.insert(0, m)             # the same direction again next round
            self.since_improvement = 0
            return
        self.since_improvement += len(tried)
        if self.since_improvement >= len(self.moves):
            self.step = max(self.step * self.options.shrink, self.options.min_step)
            self.since_improvement = 0

    def _current(self) -> np.ndarray:
        return self.box.to_theta(self.incumbent)

    def _state(self) -> dict[str, Any]:
        return {"incumbent": self.incumbent.tolist(), "incumbent_scores": list(self.incumbent_scores),
                "step": self.step, "queue": list(self.queue), "since_improvement": self.since_improvement,
                "pending": [[t.tolist(), m, np.asarray(u).tolist()] for t, (m, u) in self.pending]}

    def _load_state(self, d: dict[str, Any]) -> None:
        self.incumbent = np.asarray(d["incumbent"], dtype=np.float64)
        self.incumbent_scores = [float(v) for v in d["incumbent_scores"]]
        self.step = float(d["step"])
        self.queue = [int(m) for m in d["queue"]]
        self.since_improvement = int(d["since_improvement"])
        self.pending = [(np.asarray(t), [int(m), np.asarray(u)]) for t, m, u in d["pending"]]
