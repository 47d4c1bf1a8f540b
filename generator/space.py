"""Typed parameter distributions and the flat vector θ that controllers learn.

A :class:`ParameterSpace` is an ordered list of named :class:`Parameter` s. Each parameter has a
distribution *family* with hard bounds and a few learnable numbers (a range, a mean and log-std,
logits). Concatenated, those learnable numbers form θ: one flat float vector with box bounds, so
any black-box optimizer can drive it, and every θ inside the box is a valid distribution.

A parameter is either *learned* (its numbers are part of θ) or *fixed* (``learn = false``: it is
drawn from its configured distribution and left out of θ), so every controller, the gymnasium
action space and the Tune search space see only what the user wants searched.

``sample(θ, n, rng)`` is vectorised numpy; ``log_prob(θ, samples)`` and ``entropy(θ)`` are torch
and differentiable in θ (REINFORCE and the Meta-Sim score-function estimator need that).
Both paths compute the distribution's effective parameters with the same torch code, so the
density that is differentiated is exactly the one that was sampled.
"""

from __future__ import annotations

import fnmatch
import math
import reprlib
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from scipy import special as sps


class _LazyTorch:
    """``torch``, imported on first use. Render actors build spaces but never sample or score
    them, and importing torch would add about a second to each actor's start."""

    def __getattr__(self, name: str) -> Any:
        import torch as module

        globals()["torch"] = module
        return getattr(module, name)


torch: Any = _LazyTorch()


class SpaceError(ValueError):
    """An invalid parameter space, θ, or sample. The message names the parameter."""


def _short_repr_of() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, 60, 60, 40
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 10
    return r


_SHORT_REPR = _short_repr_of()


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut for the "got Y" of a one-line message: a 200,000-entry list, a long
    string or a 5,000-deep nested list shows its first items, at most ``limit`` characters."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


#: the largest magnitude of a bound: far beyond any scene knob, and it keeps every width, log-std
#: bound and draw finite and well resolved (float32 too, which gymnasium's action space uses)
BOUND_LIMIT = 1e6


def _finite(name: str, key: str, value: Any) -> float:
    try:
        if isinstance(value, bool):      # TOML's true is not a number
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise SpaceError(f"{name}.{key}: expected a number, got {short_repr(value)}") from None
    except OverflowError:       # an integer beyond any float
        v = math.inf
    if not math.isfinite(v):
        raise SpaceError(f"{name}.{key}: expected a finite number, got {short_repr(value)}")
    return v


def _pair(name: str, key: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SpaceError(f"{name}.{key}: expected [low, high], got {short_repr(value)}")
    return _finite(name, key, value[0]), _finite(name, key, value[1])


def _bounds(name: str, value: Any, *, positive: bool = False) -> tuple[float, float]:
    lo, hi = _pair(name, "bounds", value)
    if max(abs(lo), abs(hi)) > BOUND_LIMIT:
        raise SpaceError(f"{name}.bounds: expected numbers within [-{BOUND_LIMIT:g}, {BOUND_LIMIT:g}], "
                         f"got [{lo:g}, {hi:g}]")
    if not lo < hi:
        raise SpaceError(f"{name}.bounds: expected low < high, got [{lo}, {hi}]")
    if positive and lo <= 0:
        raise SpaceError(f"{name}.bounds: expected low > 0 for a log-uniform, got {lo}")
    return lo, hi


def _within(name: str, key: str, v: float, lo: float, hi: float) -> float:
    if not lo <= v <= hi:
        raise SpaceError(f"{name}.{key}: expected a value within [{lo}, {hi}], got {v}")
    return v


# --------------------------------------------------------------------------------------------
# Normal-mass helpers (torch, differentiable, stable in both tails)
# --------------------------------------------------------------------------------------------

def _log_normal_mass(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Φ(b) − Φ(a)) for a < b, computed on the side of 0 where it is precise."""
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    diff = torch.clamp(log_lo - log_hi, max=-1e-12)
    return log_hi + torch.log(-torch.expm1(diff))


def _truncnorm_sample(mu: float, sigma: float, lo: float, hi: float, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sample of N(mu, sigma) truncated to [lo, hi] from uniforms u."""
    alpha, beta = (lo - mu) / sigma, (hi - mu) / sigma
    if alpha > 0:  # upper tail: mirror so the CDF differences stay precise
        x = -_truncnorm_sample(-mu, sigma, -hi, -lo, 1.0 - u)
        return x
    ca, cb = sps.ndtr(alpha), sps.ndtr(beta)
    x = mu + sigma * sps.ndtri(ca + u * (cb - ca))
    return np.clip(np.nan_to_num(x, nan=mu), lo, hi)


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------

@dataclass
class Family:
    """One distribution family. ``values`` are its learnable numbers (a slice of θ)."""

    kind: ClassVar[str]
    value_names: ClassVar[tuple[str, ...]]
    keys: ClassVar[tuple[str, ...]]       # the settings ``from_dict`` reads
    is_discrete: ClassVar[bool] = False

    name: str

    # --- to be provided by each family ---
    def values(self) -> np.ndarray: ...
    def value_bounds(self) -> tuple[np.ndarray, np.ndarray]: ...
    def with_values(self, v: np.ndarray) -> "Family": ...
    def to_dict(self) -> dict[str, Any]: ...
    def _sample(self, t: torch.Tensor, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray: ...
    def _log_prob(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...
    def _entropy(self, t: torch.Tensor) -> torch.Tensor: ...
    def support(self) -> tuple[float, float]: ...

    @property
    def dim(self) -> int:
        return len(self.values())

    def theta_names(self) -> list[str]:
        return [f"{self.name}.{v}" for v in self.value_names]


@dataclass
class Uniform(Family):
    """U(a, b) with a learnable range [a, b] inside hard bounds [lo, hi].

    θ holds (low, high) as given; the effective range is their sorted pair, widened to at
    least ``min_width`` of the bounds, so every θ in the box is a valid distribution.
    """

    kind: ClassVar[str] = "uniform"
    value_names: ClassVar[tuple[str, ...]] = ("low", "high")
    keys: ClassVar[tuple[str, ...]] = ("bounds", "range")
    MIN_WIDTH: ClassVar[float] = 1e-3

    lo: float = 0.0
    hi: float = 1.0
    low: float = 0.0
    high: float = 1.0

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> "Uniform":
        lo, hi = _bounds(name, d.get("bounds"), positive=cls.kind == "loguniform")
        a, b = _pair(name, "range", d.get("range", [lo, hi]))  # unsorted is the same range
        _within(name, "range", a, lo, hi), _within(name, "range", b, lo, hi)
        return cls(name, lo, hi, a, b)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.kind, "bounds": [self.lo, self.hi], "range": [self.low, self.high]}

    def values(self) -> np.ndarray:
        return np.array([self.low, self.high], dtype=np.float64)

    def value_bounds(self):
        return np.array([self.lo, self.lo]), np.array([self.hi, self.hi])

    def with_values(self, v):
        return type(self)(self.name, self.lo, self.hi, float(v[0]), float(v[1]))

    def support(self):
        return self.lo, self.hi

    # the interval in the space where samples are uniform (log space for LogUniform)
    def _space_bounds(self) -> tuple[float, float]:
        return self.lo, self.hi

    def _interval(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self._space_bounds()
        a, b = self._to_space(torch.minimum(t[0], t[1])), self._to_space(torch.maximum(t[0], t[1]))
        min_w = self.MIN_WIDTH * (hi - lo)
        if float((b - a).detach()) >= min_w:
            return a, b
        a = torch.clamp((a + b) / 2 - min_w / 2, lo, hi - min_w)
        return a, a + min_w

    def _to_space(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def _sample(self, t, shape, rng):
        a, b = (float(v) for v in self._interval(t))
        return a + (b - a) * rng.random(shape)

    def _log_prob(self, t, x):
        a, b = self._interval(t)
        inside = (x >= a) & (x <= b)
        lp = -torch.log(b - a) * torch.ones_like(x)
        return torch.where(inside, lp, torch.full_like(x, -math.inf))

    def _entropy(self, t):
        a, b = self._interval(t)
        return torch.log(b - a)


@dataclass
class LogUniform(Uniform):
    """exp(U(log a, log b)): the range [a, b] is learnable, in the parameter's own units."""

    kind: ClassVar[str] = "loguniform"

    def _space_bounds(self):
        return math.log(self.lo), math.log(self.hi)

    def _to_space(self, v):
        return torch.log(torch.clamp(v, min=self.lo))

    def _sample(self, t, shape, rng):
        return np.clip(np.exp(super()._sample(t, shape, rng)), self.lo, self.hi)

    def _log_prob(self, t, x):
        return super()._log_prob(t, torch.log(torch.clamp(x, min=1e-300))) - torch.log(x)

    def _entropy(self, t):
        a, b = self._interval(t)  # H[x] = H[log x] + E[log x]
        return torch.log(b - a) + (a + b) / 2


@dataclass
class TruncatedNormal(Family):
    """N(mean, std) truncated to hard bounds [lo, hi]; θ holds (mean, log_std)."""

    kind: ClassVar[str] = "truncnormal"
    value_names: ClassVar[tuple[str, ...]] = ("mean", "log_std")
    keys: ClassVar[tuple[str, ...]] = ("bounds", "mean", "std", "log_std")

    lo: float = 0.0
    hi: float = 1.0
    mean: float = 0.5
    log_std: float = 0.0

    def _std_bounds(self) -> tuple[float, float]:
        w = self.hi - self.lo
        return math.log(1e-3 * w), math.log(10.0 * w)

    @classmethod
    def from_dict(cls, name, d):
        lo, hi = _bounds(name, d.get("bounds"))
        mean = _within(name, "mean", _finite(name, "mean", d.get("mean", (lo + hi) / 2)), lo, hi)
        if "log_std" in d and "std" in d:
            raise SpaceError(f"{name}: expected one of std or log_std, got both")
        if "log_std" in d:  # what to_dict writes: exact round trips
            key, log_std = "log_std", _finite(name, "log_std", d["log_std"])
        else:
            std = _finite(name, "std", d.get("std", (hi - lo) / 4))
            if std <= 0:
                raise SpaceError(f"{name}.std: expected a positive standard deviation, got {std}")
            key, log_std = "std", math.log(std)
        fam = cls(name, lo, hi, mean, log_std)
        slo, shi = fam._std_bounds()
        if not slo - 1e-9 <= log_std <= shi + 1e-9:
            shown = log_std if key == "log_std" else math.exp(log_std)
            lim = (slo, shi) if key == "log_std" else (math.exp(slo), math.exp(shi))
            raise SpaceError(f"{name}.{key}: expected a value within [{lim[0]:.6g}, {lim[1]:.6g}], got {shown}")
        fam.log_std = min(max(log_std, slo), shi)
        return fam

    def to_dict(self):
        return {"family": self.kind, "bounds": [self.lo, self.hi], "mean": self.mean, "log_std": self.log_std}

    def values(self):
        return np.array([self.mean, self.log_std], dtype=np.float64)

    def value_bounds(self):
        slo, shi = self._std_bounds()
        return np.array([self.lo, slo]), np.array([self.hi, shi])

    def with_values(self, v):
        return type(self)(self.name, self.lo, self.hi, float(v[0]), float(v[1]))

    def support(self):
        return self.lo, self.hi

    def _limits(self) -> tuple[float, float]:
        return self.lo, self.hi

    def _sample(self, t, shape, rng):
        lo, hi = self._limits()
        return _truncnorm_sample(float(t[0]), math.exp(float(t[1])), lo, hi, rng.random(shape))

    def _log_prob(self, t, x):
        lo, hi = self._limits()
        mu, sigma = t[0], torch.exp(t[1])
        z = (x - mu) / sigma
        log_z = _log_normal_mass((lo - mu) / sigma, (hi - mu) / sigma)
        lp = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - t[1] - log_z
        inside = (x >= lo) & (x <= hi)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def _entropy(self, t):
        lo, hi = self._limits()
        mu, sigma = t[0], torch.exp(t[1])
        a, b = (lo - mu) / sigma, (hi - mu) / sigma
        log_z = _log_normal_mass(a, b)
        pdf = lambda v: torch.exp(-0.5 * v**2) / math.sqrt(2 * math.pi)  # noqa: E731
        return (0.5 * math.log(2 * math.pi * math.e) + t[1] + log_z
                + (a * pdf(a) - b * pdf(b)) / (2 * torch.exp(log_z)))


@dataclass
class IntCount(TruncatedNormal):
    """Integer counts in [lo, hi]: a truncated normal on [lo−½, hi+½], rounded.

    P(k) = (Φ((k+½−μ)/σ) − Φ((k−½−μ)/σ)) / Z; narrow σ concentrates on one count, wide σ is
    nearly uniform, and the mass is differentiable in (mean, log_std).
    """

    kind: ClassVar[str] = "int"
    is_discrete: ClassVar[bool] = True

    @classmethod
    def from_dict(cls, name, d):
        lo, hi = _bounds(name, d.get("bounds"))
        if lo != int(lo) or hi != int(hi):
            raise SpaceError(f"{name}.bounds: expected integers, got [{lo}, {hi}]")
        return super().from_dict(name, d)

    def _limits(self):
        return self.lo - 0.5, self.hi + 0.5

    def _std_bounds(self):
        w = self.hi - self.lo + 1
        return math.log(0.05), math.log(10.0 * w)

    def _sample(self, t, shape, rng):
        x = np.rint(super()._sample(t, shape, rng))
        return np.clip(x, self.lo, self.hi).astype(np.int64)

    def _log_prob(self, t, x):
        mu, sigma = t[0], torch.exp(t[1])
        lo, hi = self._limits()
        k = x.to(t.dtype)
        mass = _log_normal_mass((k - 0.5 - mu) / sigma, (k + 0.5 - mu) / sigma)
        lp = mass - _log_normal_mass((lo - mu) / sigma, (hi - mu) / sigma)
        inside = (k >= self.lo) & (k <= self.hi) & (k == torch.round(k))
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def _entropy(self, t):
        ks = torch.arange(int(self.lo), int(self.hi) + 1, dtype=t.dtype)
        lp = self._log_prob(t, ks)
        return -(torch.exp(lp) * lp).sum()


@dataclass
class Categorical(Family):
    """A choice among named options; θ holds the logits, each within [-LOGIT, LOGIT].

    The box is narrow on purpose: any point in it is a sensible distribution (with the default
    bound of 2, no option is more than e⁴ ≈ 55 times as likely as another), so a black-box
    sampler's uniform draw is never a near one-hot choice, and a step of a few per cent of the
    box moves a probability by a few per cent. ``logit_bound`` widens it per parameter."""

    kind: ClassVar[str] = "categorical"
    value_names: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[tuple[str, ...]] = ("choices", "probs", "logits", "logit_bound")
    is_discrete: ClassVar[bool] = True
    LOGIT: ClassVar[float] = 2.0

    choices: tuple = ()
    logits: tuple = ()
    bound: float = LOGIT

    @classmethod
    def from_dict(cls, name, d):
        bound = _finite(name, "logit_bound", d.get("logit_bound", cls.LOGIT))
        if not 0 < bound <= 20:
            raise SpaceError(f"{name}.logit_bound: expected a number in (0, 20], got {bound}")
        choices = d.get("choices")
        if not isinstance(choices, (list, tuple)) or len(choices) < 1:
            raise SpaceError(f"{name}.choices: expected a non-empty list, got {short_repr(choices)}")
        if len(set(map(str, choices))) != len(choices):
            raise SpaceError(f"{name}.choices: expected distinct choices, got {short_repr(list(choices))}")
        k = len(choices)
        if "probs" in d and "logits" in d:
            raise SpaceError(f"{name}: expected one of probs or logits, got both")
        if "logits" in d:
            raw = d["logits"]
            if not isinstance(raw, (list, tuple)) or len(raw) != k:
                raise SpaceError(f"{name}.logits: expected {k} numbers, got {short_repr(raw)}")
            logits = [_within(name, "logits", _finite(name, "logits", v), -bound, bound) for v in raw]
        else:
            raw = d.get("probs", [1.0 / k] * k)
            if not isinstance(raw, (list, tuple)) or len(raw) != k:
                raise SpaceError(f"{name}.probs: expected {k} numbers, got {short_repr(raw)}")
            p = np.array([_finite(name, "probs", v) for v in raw])
            if (p < 0).any():
                raise SpaceError(f"{name}.probs: expected non-negative probabilities, got {short_repr(list(raw))}")
            if abs(p.sum() - 1.0) > 1e-6:
                raise SpaceError(f"{name}.probs: expected probabilities summing to 1, got sum {p.sum():.6g}")
            # centred in the box, so the ratios it can express are as wide as the bound allows
            logits = np.log(np.maximum(p, 1e-300))
            logits = np.clip(logits - (logits.max() + max(logits.min(), logits.max() - 2 * bound)) / 2,
                             -bound, bound).tolist()
        return cls(name, tuple(choices), tuple(float(v) for v in logits), bound)

    def to_dict(self):
        d = {"family": self.kind, "choices": list(self.choices), "logits": list(self.logits)}
        if self.bound != self.LOGIT:
            d["logit_bound"] = self.bound
        return d

    def theta_names(self):
        return [f"{self.name}.logit[{c}]" for c in self.choices]

    def values(self):
        return np.array(self.logits, dtype=np.float64)

    def value_bounds(self):
        k = len(self.choices)
        return np.full(k, -self.bound), np.full(k, self.bound)

    def with_values(self, v):
        return type(self)(self.name, self.choices, tuple(float(x) for x in v), self.bound)

    def support(self):
        return 0, len(self.choices) - 1

    def probs(self, t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(t, dim=0)

    def _sample(self, t, shape, rng):
        cdf = np.cumsum(self.probs(t).numpy())
        idx = np.searchsorted(cdf, rng.random(shape) * cdf[-1], side="right")
        return np.minimum(idx, len(self.choices) - 1).astype(np.int64)

    def _log_prob(self, t, x):
        logp = torch.log_softmax(t, dim=0)
        idx = x.long()
        valid = (idx >= 0) & (idx < len(self.choices))
        lp = logp[idx.clamp(0, len(self.choices) - 1)]
        return torch.where(valid, lp, torch.full_like(lp, -math.inf))

    def _entropy(self, t):
        logp = torch.log_softmax(t, dim=0)
        return -(torch.exp(logp) * logp).sum()


FAMILIES: dict[str, type[Family]] = {
    f.kind: f for f in (Uniform, LogUniform, TruncatedNormal, IntCount, Categorical)
}


# --------------------------------------------------------------------------------------------
# Parameter and space
# --------------------------------------------------------------------------------------------

@dataclass
class Parameter:
    """A named family drawn ``size`` times i.i.d. per sample (size > 1 for per-object knobs).

    ``learn = False`` fixes it at its configured distribution: it is still sampled, but its
    numbers are not part of θ."""

    family: Family
    size: int = 1
    learn: bool = True

    @property
    def name(self) -> str:
        return self.family.name

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> "Parameter":
        if not isinstance(d, Mapping):
            raise SpaceError(f"{name}: expected a table with a 'family' key, got {short_repr(d)}")
        kind = d.get("family")
        if not isinstance(kind, str) or kind not in FAMILIES:
            raise SpaceError(f"{name}.family: expected one of {sorted(FAMILIES)}, got {short_repr(kind)}")
        size = d.get("size", 1)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise SpaceError(f"{name}.size: expected a positive integer, got {short_repr(size)}")
        learn = d.get("learn", True)
        if not isinstance(learn, bool):
            raise SpaceError(f"{name}.learn: expected true or false, got {short_repr(learn)}")
        extra = set(d) - {"family", "size", "learn", "bounds", "range", "mean", "std", "log_std", "choices",
                          "probs", "logits", "logit_bound"}
        if extra:
            raise SpaceError(f"{name}: unknown key(s) {sorted(extra)}")
        keys = ("family", "size", "learn", *FAMILIES[kind].keys)
        for key in d:       # a key another family reads would be silently ignored by this one
            if key not in keys:
                raise SpaceError(f"{name}.{key}: expected a key of a {kind} {sorted(keys)}, got {key!r}")
        return cls(FAMILIES[kind].from_dict(name, d), size, learn)

    def to_dict(self) -> dict[str, Any]:
        d = self.family.to_dict()
        if self.size != 1:
            d["size"] = self.size
        if not self.learn:
            d["learn"] = False
        return d


class ParameterSpace:
    """Ordered named parameters ⇄ one flat vector θ with box bounds (learned parameters only)."""

    def __init__(self, parameters: Sequence[Parameter]):
        names = [p.name for p in parameters]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpaceError(f"{sorted(dup)[0]}: expected unique parameter names, got a duplicate")
        self.parameters: tuple[Parameter, ...] = tuple(parameters)
        self.learned: tuple[Parameter, ...] = tuple(p for p in self.parameters if p.learn)
        """The parameters whose numbers make up θ, in θ's order."""
        self._slices: dict[str, slice] = {}
        i = 0
        for p in self.learned:
            self._slices[p.name] = slice(i, i + p.family.dim)
            i += p.family.dim
        self.dim = i

    # --- construction and serialisation -----------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> "ParameterSpace":
        if not isinstance(d, Mapping):
            raise SpaceError(f"space: expected a table of parameters, got {type(d).__name__}")
        return cls([Parameter.from_dict(str(k), v) for k, v in d.items()])

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {p.name: p.to_dict() for p in self.parameters}

    def override(self, d: Mapping[str, Mapping[str, Any]], *, same_kinds: bool = False) -> "ParameterSpace":
        """A copy with some parameters' settings replaced (keys merged per parameter). A key with
        ``*`` (``"font.*"``) applies its settings to every parameter whose name it matches.

        ``same_kinds``: each parameter still draws what its generator reads (a config's overrides
        of a generator's space): see :func:`check_same_kind`."""
        base = self.to_dict()
        for key, sub in d.items():
            if not isinstance(sub, Mapping):
                raise SpaceError(f"{key}: expected a table, got {short_repr(sub)}")
            names = fnmatch.filter(base, key) if "*" in key else [key] if key in base else []
            if not names:
                raise SpaceError(f"{key}: unknown parameter; expected one of {list(base)}")
            for name in names:
                _check_range_order(name, sub)
                merged = _merged(base[name], sub)
                if same_kinds:
                    check_same_kind(name, base[name], merged)
                base[name] = merged
        return ParameterSpace.from_dict(base)

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return name in self._slices

    def __repr__(self) -> str:
        return f"ParameterSpace({len(self.parameters)} parameters, dim={self.dim})"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def fixed_names(self) -> list[str]:
        """Parameters kept at their configured distribution (``learn = false``)."""
        return [p.name for p in self.parameters if not p.learn]

    def slice_of(self, name: str) -> slice:
        """Where a learned parameter's numbers sit in θ."""
        return self._slices[name]

    # --- θ ----------------------------------------------------------------------------------
    def theta_names(self) -> list[str]:
        return [n for p in self.learned for n in p.family.theta_names()]

    def to_vector(self) -> np.ndarray:
        if not self.learned:
            return np.zeros(0)
        return np.concatenate([p.family.values() for p in self.learned])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = zip(*(p.family.value_bounds() for p in self.learned)) if self.learned else ((), ())
        return (np.concatenate(lows).astype(np.float64) if lows else np.zeros(0),
                np.concatenate(highs).astype(np.float64) if highs else np.zeros(0))

    def check_theta(self, theta: Any) -> np.ndarray:
        """θ as a float64 vector, or a SpaceError naming the first bad entry."""
        t = np.asarray(theta, dtype=np.float64)
        if t.shape != (self.dim,):
            raise SpaceError(f"theta: expected shape ({self.dim},), got {t.shape}")
        lo, hi = self.bounds()
        names = self.theta_names()
        for i in np.flatnonzero(~np.isfinite(t) | (t < lo - 1e-9) | (t > hi + 1e-9))[:1]:
            raise SpaceError(f"{names[i]}: expected a finite value within [{lo[i]:.6g}, {hi[i]:.6g}], got {t[i]}")
        return t

    def clip(self, theta: Any) -> np.ndarray:
        lo, hi = self.bounds()
        return np.clip(np.asarray(theta, dtype=np.float64), lo, hi)

    def from_vector(self, theta: Any) -> "ParameterSpace":
        t = self.check_theta(theta)
        return ParameterSpace([Parameter(p.family.with_values(t[self._slices[p.name]]), p.size, True) if p.learn
                               else p for p in self.parameters])

    def named(self, theta: Any) -> dict[str, float]:
        t = self.check_theta(theta)
        return dict(zip(self.theta_names(), map(float, t)))

    def from_named(self, values: Mapping[str, float]) -> np.ndarray:
        names = self.theta_names()
        missing = [n for n in names if n not in values]
        if missing:
            raise SpaceError(f"{missing[0]}: expected a value for every θ entry, missing")
        return self.check_theta([values[n] for n in names])

    # --- distributions ----------------------------------------------------------------------
    def _values(self, p: Parameter, t: torch.Tensor) -> torch.Tensor:
        """A parameter's numbers: its slice of θ when learned, its configured values when fixed."""
        if p.learn:
            return t[self._slices[p.name]]
        return torch.as_tensor(p.family.values(), dtype=t.dtype)

    def _theta_tensor(self, theta: Any) -> torch.Tensor:
        if isinstance(theta, torch.Tensor):
            if theta.shape != (self.dim,):
                raise SpaceError(f"theta: expected shape ({self.dim},), got {tuple(theta.shape)}")
            return theta
        return torch.as_tensor(self.check_theta(theta), dtype=torch.float64)

    def sample(self, theta: Any, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """n i.i.d. draws: {name: array of shape (n,) or (n, size)}; ints for discrete families."""
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise SpaceError(f"n: expected a non-negative integer, got {n!r}")
        t = self._theta_tensor(theta).detach()
        out = {}
        for p in self.parameters:
            shape = (int(n),) if p.size == 1 else (int(n), p.size)
            out[p.name] = p.family._sample(self._values(p, t), shape, rng)
        return out

    def log_prob(self, theta: Any, samples: Mapping[str, Any]) -> torch.Tensor:
        """Joint log-density of each draw, shape (n,); differentiable in θ if θ is a tensor."""
        t = self._theta_tensor(theta)
        total = None
        for p in self.parameters:
            if p.name not in samples:
                raise SpaceError(f"{p.name}: expected in samples, missing")
            x = torch.as_tensor(np.asarray(samples[p.name]), dtype=torch.float64)
            lp = p.family._log_prob(self._values(p, t), x)
            if lp.dim() == 2:
                lp = lp.sum(dim=1)
            total = lp if total is None else total + lp
        if total is None:
            return torch.zeros(0, dtype=torch.float64)
        return total

    def entropy(self, theta: Any) -> torch.Tensor:
        """Sum of the parameters' entropies (differential for continuous families)."""
        t = self._theta_tensor(theta)
        h = torch.zeros((), dtype=torch.float64)
        for p in self.parameters:
            h = h + p.size * p.family._entropy(self._values(p, t))
        return h


#: the families a parameter may take, by the family its generator gave it: a number stays a number
#: (an integer count is one), a count stays whole, a choice stays an index into named choices
_NUMBER = ("int", "loguniform", "truncnormal", "uniform")
SAME_KIND = {"uniform": _NUMBER, "loguniform": _NUMBER, "truncnormal": _NUMBER, "int": ("int",),
             "categorical": ("categorical",)}
_READS = {"int": "a whole count", "categorical": "an index into its choices"}


def check_same_kind(name: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Refuse an override its generator would misread: another kind of family (a categorical's
    draws are indices, which a generator reading a scale would take for the scale), another
    ``size`` (the generator decides how many draws it reads) or a choice the generator does not
    know (its draws are indices into the choices, which the generator maps back to its names)."""
    allowed = SAME_KIND.get(before["family"], (before["family"],))
    if after.get("family") not in allowed:
        raise SpaceError(f"{name}.family: expected one of {list(allowed)} (the generator reads "
                         f"{_READS.get(before['family'], 'a number')} here), got {short_repr(after.get('family'))}")
    if after.get("size", 1) != before.get("size", 1):
        raise SpaceError(f"{name}.size: expected {before.get('size', 1)} (set by the generator), "
                         f"got {short_repr(after.get('size'))}")
    known = before.get("choices")
    if known is not None and isinstance(after.get("choices"), (list, tuple)):
        for c in after["choices"]:
            if not any(type(c) is type(k) and c == k for k in known):
                raise SpaceError(f"{name}.choices: expected choices among {list(known)}, got {short_repr(c)}")


def _check_range_order(name: str, sub: Mapping[str, Any]) -> None:
    """A range written high first is a slip, not a wish (θ may hold one unsorted, a config not)."""
    rng = sub.get("range")
    if isinstance(rng, (list, tuple)) and len(rng) == 2:
        lo, hi = _finite(name, "range", rng[0]), _finite(name, "range", rng[1])
        if lo > hi:
            raise SpaceError(f"{name}.range: expected low <= high, got [{lo:g}, {hi:g}]")


def _merged(current: dict[str, Any], sub: Mapping[str, Any]) -> dict[str, Any]:
    """One parameter's settings with ``sub``'s merged over them (a new family starts afresh from
    the same size and bounds, new choices start with even odds unless ``sub`` gives theirs)."""
    merged = dict(current)
    if "family" in sub and sub["family"] != merged["family"]:
        new = FAMILIES.get(sub["family"]) if isinstance(sub["family"], str) else None
        kept = ("size", "bounds") if new is not None and "bounds" in new.keys else ("size",)
        merged = {k: merged[k] for k in kept if k in merged}
    if "choices" in sub and sub["choices"] != merged.get("choices"):
        merged.pop("logits", None)
    if "probs" in sub:
        merged.pop("logits", None)
    if "std" in sub:
        merged.pop("log_std", None)
    merged.update(sub)
    return merged

# --- spec helpers for a generator's default space --------------------------------------------

def uniform_spec(bounds, range=None, size: int = 1) -> dict[str, Any]:
    """A uniform parameter's table: hard ``bounds``, a learnable ``range`` (the bounds if unset),
    ``size`` draws per image."""
    return {"family": "uniform", "bounds": list(bounds), "range": list(range or bounds)} | (
        {"size": size} if size > 1 else {})


def loguniform_spec(bounds, range=None, size: int = 1) -> dict[str, Any]:
    return uniform_spec(bounds, range, size) | {"family": "loguniform"}


def hsv_spec(prefix: str, size: int, s=(0.0, 1.0), v=(0.0, 1.0)) -> dict[str, dict[str, Any]]:
    """``prefix.hue``, ``.saturation`` and ``.value``, each uniform in [0, 1] with the given ranges."""
    return {f"{prefix}.hue": uniform_spec((0, 1), None, size), f"{prefix}.saturation": uniform_spec((0, 1), s, size),
            f"{prefix}.value": uniform_spec((0, 1), v, size)}
