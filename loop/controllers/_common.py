"""Shared pieces: the unit box, Adam, a Gaussian REINFORCE policy, the score-function gradient."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from generator.space import ParameterSpace, Uniform


# --------------------------------------------------------------------------------------------
# θ ⇄ the unit box
# --------------------------------------------------------------------------------------------

class Box:
    """Affine map between θ and u ∈ [0, 1]^d, so one step size fits every entry."""

    def __init__(self, space: ParameterSpace):
        self.lo, self.hi = space.bounds()
        self.width = self.hi - self.lo

    def to_unit(self, theta: Any) -> np.ndarray:
        return (np.asarray(theta, dtype=np.float64) - self.lo) / self.width

    def to_theta(self, u: Any) -> np.ndarray:
        return np.clip(self.lo + np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0) * self.width,
                       self.lo, self.hi)


# --------------------------------------------------------------------------------------------
# Optimisers (ascent), JSON-serialisable
# --------------------------------------------------------------------------------------------

class Adam:
    """Adam on a numpy vector; ``step(grad)`` returns the ascent step to add.

    ``warmup`` > 0 ramps the step size linearly over that many steps. Bias-corrected Adam's
    first step is ``lr · sign(grad)`` in every coordinate; with a noisy gradient estimate in
    many dimensions that moves every coordinate a full step in a random direction, which the
    ramp avoids while the moment estimates average the noise out."""

    def __init__(self, dim: int, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 warmup: int = 0):
        self.lr, self.beta1, self.beta2, self.eps, self.warmup = lr, beta1, beta2, eps, warmup
        self.t, self.m, self.v = 0, np.zeros(dim), np.zeros(dim)

    def step(self, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        lr = self.lr * min(1.0, self.t / self.warmup) if self.warmup > 0 else self.lr
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad**2
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state(self) -> dict[str, Any]:
        return {"t": self.t, "m": self.m.tolist(), "v": self.v.tolist()}

    def load(self, d: Mapping[str, Any]) -> None:
        self.t, self.m, self.v = int(d["t"]), np.asarray(d["m"], dtype=np.float64), np.asarray(d["v"], dtype=np.float64)


class SGD:
    """Plain gradient ascent with the same interface as :class:`Adam`."""

    def __init__(self, dim: int, lr: float):
        self.lr = lr

    def step(self, grad: np.ndarray) -> np.ndarray:
        return self.lr * grad

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, d: Mapping[str, Any]) -> None:
        pass


def make_optimizer(kind: str, dim: int, lr: float) -> Adam | SGD:
    return Adam(dim, lr) if kind == "adam" else SGD(dim, lr)


# --------------------------------------------------------------------------------------------
# Gaussian policy over the unit box (REINFORCE on the score)
# --------------------------------------------------------------------------------------------

class GaussianPolicy:
    """N(μ, diag σ²) over u ∈ [0, 1]^d, trained by REINFORCE with a moving-average baseline
    (``baseline = "moving"``) or the round's own mean (``"round"``).

    Samples are drawn unclipped and clipped only when mapped to θ; the log-density gradient uses
    the unclipped draw, which keeps the estimator unbiased for the clipped objective's policy.
    """

    def __init__(self, mu: np.ndarray, sigma: float, *, lr: float, optimizer: str, learn_sigma: bool,
                 sigma_min: float, sigma_max: float, baseline_decay: float, antithetic: bool = False,
                 baseline: str = "moving"):
        d = len(mu)
        self.antithetic = antithetic
        self.baseline_kind = baseline
        self.mu = np.clip(np.asarray(mu, dtype=np.float64), 0.0, 1.0)
        self.log_sigma = np.full(d, math.log(sigma))
        self.learn_sigma = learn_sigma
        self.log_sigma_range = (math.log(sigma_min), math.log(sigma_max))
        self.decay = baseline_decay
        self.baseline: float | None = None
        self.opt = make_optimizer(optimizer, 2 * d, lr)

    def sample(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """k draws; antithetic draws come in mirrored pairs μ ± σε, so in the mean's gradient each
        pair contributes (f₊ − f₋)·ε, free of the baseline and of much of the noise."""
        if not self.antithetic:
            return self.mu + np.exp(self.log_sigma) * rng.standard_normal((k, len(self.mu)))
        eps = rng.standard_normal(((k + 1) // 2, len(self.mu)))
        return self.mu + np.exp(self.log_sigma) * np.concatenate([eps, -eps])[:k]

    def update(self, us: np.ndarray, scores: np.ndarray) -> None:
        if len(scores) == 0:
            return
        batch_mean = float(np.mean(scores))
        reference = batch_mean if self.baseline is None or self.baseline_kind == "round" else self.baseline
        adv = scores - reference
        sigma = np.exp(self.log_sigma)
        z = (us - self.mu) / sigma
        # ∇ log N(u | μ, σ²): d/dμ = z/σ, d/dlog σ = z² − 1
        g_mu = np.mean(adv[:, None] * z / sigma, axis=0)
        g_log_sigma = np.mean(adv[:, None] * (z**2 - 1.0), axis=0)
        step = self.opt.step(np.concatenate([g_mu, g_log_sigma]))
        d = len(self.mu)
        self.mu = np.clip(self.mu + step[:d], 0.0, 1.0)
        if self.learn_sigma:
            self.log_sigma = np.clip(self.log_sigma + step[d:], *self.log_sigma_range)
        self.baseline = batch_mean if self.baseline is None else self.decay * self.baseline + (1 - self.decay) * batch_mean

    def state(self) -> dict[str, Any]:
        return {"mu": self.mu.tolist(), "log_sigma": self.log_sigma.tolist(), "baseline": self.baseline,
                "opt": self.opt.state()}

    def load(self, d: Mapping[str, Any]) -> None:
        self.mu = np.asarray(d["mu"], dtype=np.float64)
        self.log_sigma = np.asarray(d["log_sigma"], dtype=np.float64)
        self.baseline = d["baseline"]
        self.opt.load(d["opt"])


def propose_from_policy(policy: GaussianPolicy, box: Box, k: int, rng: np.random.Generator
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
    """k draws from ``policy`` as (θ, its unclipped u) pairs, kept until the scores come back."""
    return [(box.to_theta(u), u) for u in policy.sample(k, rng)]


def update_from_scores(policy: GaussianPolicy, box: Box, pending: list[tuple[np.ndarray, np.ndarray]],
                       thetas: list[np.ndarray], feedback: list[Any]) -> bool:
    """One REINFORCE step on the finite scores of ``thetas`` (each matched to its pending draw,
    or mapped into the box when it was not proposed here); False when no score was finite."""
    us, scores = [], []
    for theta, fb in zip(thetas, feedback):
        u = match_pending(pending, theta)
        if np.isfinite(fb.score):
            us.append(box.to_unit(theta) if u is None else u)
            scores.append(float(fb.score))
    if not scores:
        return False
    policy.update(np.array(us), np.array(scores))
    return True


def match_pending(pending: list[tuple[np.ndarray, Any]], theta: np.ndarray) -> Any | None:
    """The payload stored with the proposal equal to ``theta`` (popped), or None.

    Equality is up to float32 precision, so a θ that went through a float32 array or a
    rounded log line on its way back still finds its proposal.
    """
    for i, (t, payload) in enumerate(pending):
        if np.allclose(t, theta, rtol=1e-6, atol=1e-9):
            pending.pop(i)
            return payload
    return None


# --------------------------------------------------------------------------------------------
# Score-function gradient of E_{x ~ p_θ}[f(x)]
# --------------------------------------------------------------------------------------------

def score_function_grad(space: ParameterSpace, theta: np.ndarray, draws: Mapping[str, np.ndarray],
                        rewards: np.ndarray, *, baseline: float | None = None) -> np.ndarray:
    """Estimate ∇θ E_{x∼p_θ}[f(x)] from draws x_i ∼ p_θ and their rewards f_i = f(x_i).

    The score-function (REINFORCE) term is mean_i (f_i − b) ∇θ log p(x_i | θ), with b the batch
    mean unless given. For uniform and log-uniform ranges that term alone is biased: their
    support moves with θ, and by the Leibniz rule

        ∂/∂a E[f] = E[(f − b) ∂_a log p] − (f(a) − b)·p(a),   ∂/∂b E[f] = E[(f − b) ∂_b log p] + (f(b) − b)·p(b)

    where p(a), p(b) are the densities at the range's ends (in θ's own units) and f(a), f(b) the
    expected reward of a draw pinned there. We read f(a), f(b) off a quadratic least-squares fit
    of the rewards against each draw's position in the range (linear below 8 draws). With b the
    batch mean the uniform's own score term is zero, and the update simply moves each end
    towards where the rewards are above average: widen where the edge scores well, shrink
    where it scores badly. A range at its minimum width (θ's two ends closer than the floor)
    gets no boundary term: its effective interval does not follow θ's ends.
    """
    f = np.asarray(rewards, dtype=np.float64)
    b = float(f.mean()) if baseline is None else float(baseline)
    t = torch.tensor(np.asarray(theta, dtype=np.float64), requires_grad=True)
    lp = space.log_prob(t, draws)
    if lp.shape != f.shape:
        raise ValueError(f"rewards: expected one reward per draw ({tuple(lp.shape)}), got {f.shape}")
    if not bool(torch.isfinite(lp).all()):
        raise ValueError("draws: expected draws from θ's own distribution, got draws outside its support")
    (torch.as_tensor(f - b) * lp).mean().backward()
    return t.grad.numpy().copy() + _boundary_terms(space, np.asarray(theta, dtype=np.float64), draws, f, b)


def _boundary_terms(space, theta, draws, f, b) -> np.ndarray:
    g = np.zeros(space.dim)
    start = 0
    for p in space.learned:
        fam, sl = p.family, slice(start, start + p.family.dim)
        start += fam.dim
        if not isinstance(fam, Uniform) or len(f) < 3:  # LogUniform is a Uniform
            continue
        th = theta[sl]
        a, c = (float(v) for v in fam._interval(torch.as_tensor(th)))   # ends in sample space
        s_lo, s_hi = fam._space_bounds()
        raw = [float(fam._to_space(torch.tensor(v, dtype=torch.float64))) for v in sorted(th)]
        if raw[1] - raw[0] < fam.MIN_WIDTH * (s_hi - s_lo):
            continue
        y = np.asarray(draws[p.name], dtype=np.float64).reshape(len(f), -1)
        if fam.kind == "loguniform":
            y = np.log(y)
        v = (y - a) / (c - a)
        # density at each end in θ's units (x-units: 1/x Jacobian for the log-uniform)
        p_a, p_c = 1.0 / (c - a), 1.0 / (c - a)
        if fam.kind == "loguniform":
            p_a, p_c = p_a / math.exp(a), p_c / math.exp(c)
        i_low = sl.start + (0 if th[0] <= th[1] else 1)
        i_high = sl.start + (1 if th[0] <= th[1] else 0)
        deg = 2 if len(f) >= 8 else 1
        for j in range(v.shape[1]):       # per-object knobs: one boundary term per copy
            coef = np.polynomial.polynomial.polyfit(v[:, j], f, deg)
            f_a, f_c = coef[0], float(np.sum(coef))
            g[i_low] += -(f_a - b) * p_a
            g[i_high] += (f_c - b) * p_c
    return g


def entropy_grad(space: ParameterSpace, theta: np.ndarray) -> np.ndarray:
    """∇θ of the space's total entropy."""
    t = torch.tensor(np.asarray(theta, dtype=np.float64), requires_grad=True)
    space.entropy(t).backward()
    return t.grad.numpy().copy()


def per_image_direction(space: ParameterSpace, box: "Box", theta: np.ndarray, draws: Mapping[str, np.ndarray],
                        values: np.ndarray) -> np.ndarray:
    """The direction in unit-box coordinates in which θ's draws gain per-image ``values`` (credit,
    metagradients): the score-function gradient of the values, standardised within the
    candidate (their scale differs between training runs), times the box's widths."""
    c = np.asarray(values, dtype=np.float64)
    c = (c - c.mean()) / c.std() if c.std() > 0 else np.zeros_like(c)
    return score_function_grad(space, theta, draws, c) * box.width
