"""Meta-Sim-style distribution matching (Kar et al., ICCV 2019), and its task fine-tuning variant.

``metasim`` moves θ so that the images it renders look like the real ones. For every proposed
θ the runner reports the per-image parameter values (``Feedback.draws``) and the MMD witness of
each image (``Feedback.per_image["witness"]``: higher = more like the real set). Maximising
E_{x∼p_θ}[witness(x)] with the witness held fixed is, up to a factor 2, gradient ascent on
−MMD²(synthetic, real), so each round takes one Adam step on the score-function estimate

    ∇θ E[w(x)] ≈ mean_i (w_i − mean w) ∇θ log p(x_i | θ)    (+ the uniform-range boundary terms)

computed by ``space.log_prob`` in torch. ``propose(k)`` returns k copies of the current θ: the
runner renders copies with seeds of their own, which is simply a k-times larger batch of draws.

``metasim+task`` runs the same gap matching for its first ``gap_rounds`` updates (asking for the
witness only: no detector is trained), then fine-tunes on the task score: a Gaussian REINFORCE
policy (as in ``reinforce``) centred on the matched θ, as Meta-Sim's second stage optimises the
downstream task.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from generator.space import ParameterSpace

from ._common import Adam, Box, GaussianPolicy, entropy_grad, propose_from_policy, score_function_grad, update_from_scores
from .base import Controller, Feedback, Options, number


def pooled_by_theta(thetas: list[np.ndarray], feedback: list[Feedback], signal: str,
                    standardise: bool = False):
    """Concatenate the draws and per-image ``signal`` values of identical θ (one gradient
    estimate per distinct θ). ``standardise``: each candidate's values to zero mean and unit
    variance first, so candidates trained on different images weigh alike."""
    groups: list[tuple[np.ndarray, list[dict], list[np.ndarray]]] = []
    for theta, fb in zip(thetas, feedback):
        values = fb.per_image.get(signal)
        if fb.draws is None or values is None or len(np.asarray(values)) == 0:
            continue                                   # a failed evaluation
        rewards = np.asarray(values, dtype=np.float64)
        if standardise:
            std = float(rewards.std())
            rewards = (rewards - rewards.mean()) / std if std > 0 else np.zeros_like(rewards)
        if not np.all(np.isfinite(rewards)):
            continue
        for t, draws, rs in groups:
            if np.array_equal(t, theta):
                draws.append(fb.draws), rs.append(rewards)
                break
        else:
            groups.append((theta, [fb.draws], [rewards]))
    for theta, draws, rs in groups:
        yield theta, {k: np.concatenate([np.asarray(d[k]) for d in draws]) for k in draws[0]}, np.concatenate(rs)


class MetaSimOptions(Options):
    lr: float = number(0.05, gt=0)
    """Adam step size in unit-box coordinates."""
    warmup: int = Field(5, ge=0)
    """Updates over which the step size ramps up linearly (see :class:`Adam`)."""


class MetaSim(Controller):
    """Score-function ascent of E_{x∼p_θ}[witness(x)]: match the real distribution."""

    name: ClassVar[str] = "metasim"
    signals: ClassVar[frozenset[str]] = frozenset({"witness"})
    final: ClassVar[str] = "current"
    Options: ClassVar[type] = MetaSimOptions
    reward_signal: ClassVar[str] = "witness"
    """The per-image signal whose expectation the score-function ascent maximises."""
    standardise_per_candidate: ClassVar[bool] = False
    """Standardise each candidate's per-image values before pooling (their scales differ)."""

    def __init__(self, space: ParameterSpace, *, seed: int, **options):
        super().__init__(space, seed=seed, **options)
        self.box = Box(space)
        self.u = self.box.to_unit(space.clip(space.to_vector()))
        self.opt = Adam(space.dim, self.options.lr, warmup=self.options.warmup)

    # ---- the per-image reward and any extra objective term (VADRA overrides) -----------------
    def _rewards(self, rewards: np.ndarray) -> np.ndarray:
        return rewards

    def _extra_grad(self, theta: np.ndarray) -> np.ndarray:
        """``entropy_coef`` × ∇ entropy, for controllers whose options have that weight."""
        coef = getattr(self.options, "entropy_coef", 0.0)
        return coef * entropy_grad(self.space, theta) if coef else np.zeros(self.space.dim)

    # ---- propose: the current θ, k times ----------------------------------------------------
    def _propose(self, k: int) -> list[np.ndarray]:
        return [self.box.to_theta(self.u) for _ in range(k)]

    # ---- update: one Adam step on the score-function gradient --------------------------------
    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        grads, weights = [], []
        for theta, draws, rewards in pooled_by_theta(thetas, feedback, self.reward_signal,
                                                     self.standardise_per_candidate):
            g = score_function_grad(self.space, theta, draws, self._rewards(rewards))
            grads.append(g + self._extra_grad(theta))
            weights.append(len(rewards))
        if not grads:
            return
        grad_theta = np.average(np.array(grads), axis=0, weights=weights)
        self.u = np.clip(self.u + self.opt.step(grad_theta * self.box.width), 0.0, 1.0)

    def _current(self) -> np.ndarray:
        return self.box.to_theta(self.u)

    def _state(self) -> dict[str, Any]:
        return {"u": self.u.tolist(), "opt": self.opt.state()}

    def _load_state(self, d: dict[str, Any]) -> None:
        self.u = np.asarray(d["u"], dtype=np.float64)
        self.opt.load(d["opt"])


# --------------------------------------------------------------------------------------------
# metasim+task: gap matching first, then REINFORCE on the task score
# --------------------------------------------------------------------------------------------

class MetaSimTaskOptions(Options):
    lr: float = number(0.05, gt=0)
    """Adam step size of the gap-matching stage (unit-box coordinates)."""
    warmup: int = Field(5, ge=0)
    """Gap-matching updates over which the step size ramps up linearly."""
    gap_rounds: int = Field(8, ge=0)
    """Updates spent on gap matching before switching to the task score."""
    task_lr: float = number(0.02, gt=0)
    """Adam step size of the task stage (unit-box coordinates)."""
    task_sigma: float = number(0.05, ge=0.01, le=0.5)
    """Exploration standard deviation of the task stage around the matched θ (unit box)."""


class MetaSimTask(MetaSim):
    """``metasim`` for ``gap_rounds`` updates, then Gaussian REINFORCE on the score."""

    name: ClassVar[str] = "metasim+task"
    signals: ClassVar[frozenset[str]] = frozenset({"witness", "score"})
    final: ClassVar[str] = "best"
    Options: ClassVar[type] = MetaSimTaskOptions

    def __init__(self, space: ParameterSpace, *, seed: int, **options):
        super().__init__(space, seed=seed, **options)
        self.policy: GaussianPolicy | None = None           # created when the task stage starts
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []

    def _in_task_stage(self) -> bool:
        return self.rounds >= self.options.gap_rounds

    def round_signals(self) -> frozenset[str]:
        return frozenset({"score"}) if self._in_task_stage() else frozenset({"witness"})

    def _make_policy(self) -> GaussianPolicy:
        o = self.options
        return GaussianPolicy(self.u, o.task_sigma, lr=o.task_lr, optimizer="adam", learn_sigma=True,
                              sigma_min=0.01, sigma_max=0.5, baseline_decay=0.8, antithetic=True)

    def _propose(self, k: int) -> list[np.ndarray]:
        if not self._in_task_stage():
            return super()._propose(k)
        if self.policy is None:
            self.policy = self._make_policy()
        self.pending = propose_from_policy(self.policy, self.box, k, self.rng)
        return [t.copy() for t, _ in self.pending]

    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        if not self._in_task_stage():
            return super()._update(thetas, feedback)
        if self.policy is None:                             # update without a propose: start here
            self.policy = self._make_policy()
        if update_from_scores(self.policy, self.box, self.pending, thetas, feedback):
            self.u = self.policy.mu.copy()
        self.pending = []

    def _state(self) -> dict[str, Any]:
        return super()._state() | {
            "policy": None if self.policy is None else self.policy.state(),
            "pending": [[t.tolist(), u.tolist()] for t, u in self.pending]}

    def _load_state(self, d: dict[str, Any]) -> None:
        super()._load_state(d)
        self.policy = None
        if d["policy"] is not None:
            self.policy = self._make_policy()
            self.policy.load(d["policy"])
        self.pending = [(np.asarray(t), np.asarray(u)) for t, u in d["pending"]]
