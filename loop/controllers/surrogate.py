"""A local linear surrogate over the recent rounds' evaluations, with guided-ES proposals.

Reinforce's step rests on one round's scores (four, in 50–80 dimensions). Here every round's
candidates — antithetic pairs μ ± σε around the current μ, in unit-box coordinates — join a
history, and each step is the slope of a linear model of score on u fitted to the last
``window`` rounds at once (each round's mean score and mean u removed: the round's common-random-
numbers luck, and the checkpoint a warm-started round shares, are offsets a linear model should
not read as slope; see :func:`fit_slope`). With ``window = 1`` the step is reinforce's mean step
exactly; Adam's bounded step in unit coordinates is the trust region, as in reinforce.

``guide > 0`` draws the perturbations from Guided ES (Maheswaranathan et al., ICML 2019,
arXiv 1806.10230): ε ∼ N(0, α·I + (1 − α)·(d/k)·U Uᵀ) with U an orthonormal basis of the last
k surrogate slopes, so a share 1 − α of the exploration searches the subspace where the recent
evidence points while the rest keeps the estimate unbiased over the whole box.

``surrogate-metagrad`` takes the guide from elsewhere: every ``every`` rounds its candidates
also measure each image's exact metagradient (:mod:`evaluator.metagrad`), and the guided
subspace is spanned by the last ``guide`` such rounds' mean direction in θ (each candidate's
metagradients through the score-function estimator). A biased direction is what Guided ES is
for: the step is still the surrogate's slope of the scores.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from generator.space import ParameterSpace

from ._common import Adam, Box, per_image_direction
from .base import Controller, Feedback, Options, number


class SurrogateOptions(Options):
    lr: float = number(0.02, gt=0)
    """Adam step size in unit-box coordinates (about the per-entry move per round)."""
    sigma: float = number(0.05, gt=0)
    """Perturbation size of the antithetic pairs, in unit-box coordinates."""
    window: int = Field(5, ge=1)
    """Rounds of evaluations the surrogate is fitted to (1: the round alone, like reinforce)."""
    guide: int = Field(0, ge=0)
    """Recent surrogate slopes spanning the guided subspace (0: isotropic perturbations)."""
    alpha: float = number(0.5, gt=0, le=1)
    """Guided ES: the share of the perturbation's variance kept isotropic."""
    final: Literal["best", "current", "better"] = "better"
    """What the run retrains at the end (see ``reinforce``)."""


def fit_slope(rounds: list[dict[str, Any]], sigma: float) -> np.ndarray | None:
    """The slope of a linear model of score on u over ``rounds``, each round's mean score and mean
    u removed: mean over candidates of (s − s̄ᵣ)(u − ūᵣ) / σ², the least-squares slope with the
    design's own covariance σ²·I in place of its sample estimate (with guided perturbations,
    Guided ES's estimator). None when no round has two finite scores.

    The sample covariance of a few dozen points in 50–80 dimensions is singular, and inverting it
    (ridge with its penalty chosen by leave-one-out) fits the noise: on the conformance suite's
    toy objective that ended below reinforce, this pooled estimate above it."""
    xs, ys = [], []
    for r in rounds:
        u, s = np.asarray(r["u"], dtype=np.float64), np.asarray(r["scores"], dtype=np.float64)
        ok = np.isfinite(s)
        if ok.sum() >= 2:
            xs.append(u[ok] - u[ok].mean(0)), ys.append(s[ok] - s[ok].mean())
    if not xs:
        return None
    x, y = np.vstack(xs), np.concatenate(ys)
    return x.T @ y / (len(y) * sigma ** 2)


class Surrogate(Controller):
    """Adam ascent of a linear surrogate's slope over the last rounds' antithetic evaluations."""

    name: ClassVar[str] = "surrogate"
    signals: ClassVar[frozenset[str]] = frozenset({"score"})
    Options: ClassVar[type] = SurrogateOptions

    def __init__(self, space: ParameterSpace, *, seed: int, **options):
        super().__init__(space, seed=seed, **options)
        self.final = self.options.final
        self.box = Box(space)
        self.mu = self.box.to_unit(space.clip(space.to_vector()))
        self.opt = Adam(space.dim, self.options.lr)
        self.history: list[dict[str, Any]] = []     # {"u": [[...]], "scores": [...]} per round
        self.slopes: list[list[float]] = []          # the last ``guide`` slopes

    def _perturbations(self, n: int) -> np.ndarray:
        d = len(self.mu)
        z = self.rng.standard_normal((n, d))
        if not self.options.guide or not self.slopes:
            return z
        basis, _ = np.linalg.qr(np.asarray(self.slopes).T)          # d × k, orthonormal columns
        k, a = basis.shape[1], self.options.alpha
        return np.sqrt(a) * z + np.sqrt((1 - a) * d / k) * self.rng.standard_normal((n, k)) @ basis.T

    def _propose(self, k: int) -> list[np.ndarray]:
        eps = self._perturbations((k + 1) // 2)
        return [self.box.to_theta(u) for u in self.mu + self.options.sigma * np.concatenate([eps, -eps])[:k]]

    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        # the regression is on where each candidate was evaluated: its θ, clipped into the box
        round_ = {"u": [self.box.to_unit(t).tolist() for t in thetas], "scores": [float(f.score) for f in feedback]}
        self.history = (self.history + [round_])[-self.options.window:]
        slope = fit_slope(self.history, self.options.sigma)
        if slope is None:
            return
        self._add_guide(slope, thetas, feedback)
        self.mu = np.clip(self.mu + self.opt.step(slope), 0.0, 1.0)

    def _add_guide(self, slope: np.ndarray, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        """Keep the direction that spans the guided subspace: here the surrogate's slope."""
        if self.options.guide and np.any(slope):
            self.slopes = (self.slopes + [slope.tolist()])[-self.options.guide:]

    def _current(self) -> np.ndarray:
        return self.box.to_theta(self.mu)

    def _state(self) -> dict[str, Any]:
        return {"mu": self.mu.tolist(), "opt": self.opt.state(), "history": self.history, "slopes": self.slopes}

    def _load_state(self, d: dict[str, Any]) -> None:
        self.mu = np.asarray(d["mu"], dtype=np.float64)
        self.opt.load(d["opt"])
        self.history, self.slopes = d["history"], d["slopes"]


class SurrogateMetagradOptions(SurrogateOptions):
    guide: int = Field(2, ge=1)
    """Metagradient rounds whose mean directions span the guided subspace."""
    every: int = Field(5, ge=1)
    """Rounds from one metagradient round to the next (a candidate's metagradients cost about
    three evaluations on the digits, five on shapes; 1: every round)."""


class SurrogateMetagrad(Surrogate):
    """The surrogate's ascent, guided by the directions of exact per-image metagradients."""

    name: ClassVar[str] = "surrogate-metagrad"
    signals: ClassVar[frozenset[str]] = frozenset({"score", "metagrad"})
    Options: ClassVar[type] = SurrogateMetagradOptions

    def round_signals(self) -> frozenset[str]:
        return self.signals if self.rounds % self.options.every == 0 else frozenset({"score"})

    def _add_guide(self, slope: np.ndarray, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        dirs = [per_image_direction(self.space, self.box, t, f.draws, f.per_image["metagrad"])
                for t, f in zip(thetas, feedback)
                if "metagrad" in f.per_image and f.draws is not None and np.isfinite(f.score)]
        mean = np.mean(dirs, axis=0) if dirs else None
        if mean is not None and np.any(mean):
            self.slopes = (self.slopes + [mean.tolist()])[-self.options.guide:]
