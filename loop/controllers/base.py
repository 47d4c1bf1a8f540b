"""The controller ABC: a policy over θ that proposes candidates and learns from their feedback.

A controller sees only θ vectors (inside ``space.bounds()``) and :class:`Feedback` records; the
runner renders, trains and scores. ``signals`` (see :mod:`loop.signals`) tells the runner what to
compute per candidate — the real-val ``score``, each image's TracIn ``credit``, its MMD
``witness`` (Meta-Sim) or its loss under the task model (``sample_loss``, VADRA) —
``round_signals()`` the subset for the coming round when a controller's stages differ. Per-image
signals arrive in ``Feedback.per_image`` with the images' drawn parameters in ``Feedback.draws``.

Subclasses implement ``_propose``, ``_update``, ``_state`` and ``_load_state``; the public
methods here validate at the edge, keep the incumbent (best score seen) and serialise the RNG,
so every algorithm module only holds its own update rule. All randomness comes from
``self.rng`` (``np.random.default_rng(seed)``): same seed and same feedback ⇒ same proposals,
and a controller restored from ``state_dict()`` proposes exactly what the original would.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.space import ParameterSpace

from ..schema import expected

from ..signals.base import signal_classes

FINAL_CHOICES = ("best", "current", "better")


@dataclass
class Feedback:
    """What the runner reports back for one proposed θ."""

    score: float
    """Real-val score, higher is better; NaN marks a failed evaluation (controllers skip it)."""
    extras: dict[str, float] = field(default_factory=dict)
    """Named side figures (val_map, gap_mmd2, fidelity steps, ...); controllers may ignore them."""
    draws: dict[str, np.ndarray] | None = None
    """Per-image parameter values the images were rendered from (``space.sample`` output)."""
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-image signals by name (``credit``, ``witness``, ``sample_loss``): one number per image."""


# --------------------------------------------------------------------------------------------
# Option validation ("expected X, got Y", naming the key)
# --------------------------------------------------------------------------------------------

def check_number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, integer: bool = False) -> float | int:
    """``value`` as a finite number within [low, high] (``low_open``: strictly above ``low``)."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or not math.isfinite(float(value)):
        raise ValueError(f"{key}: expected {kind}, got {value!r}")
    v = int(value) if integer else float(value)
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{key}: expected {kind} {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"{key}: expected {kind} <= {high:g}, got {value!r}")
    return v


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{key}: expected one of {list(choices)}, got {value!r}")
    return value


class Options(BaseModel):
    """A controller's keyword options: a frozen pydantic model, one field per option (the
    field's docstring is its description), types and bounds checked by the model; rules that
    join several fields go in :meth:`check`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, use_attribute_docstrings=True)

    def check(self, name: str) -> None:
        """Rules across fields (raise ``ValueError("<name>.<key>: expected X, got Y")``)."""


NoOptions = Options
"""A controller without options."""


def number(default: float | None, *, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    """A finite-number option field with its bounds."""
    return Field(default, gt=gt, ge=ge, le=le, allow_inf_nan=False)


def parse_options(name: str, options_cls: type[Options], given: dict[str, Any]) -> Options:
    """The controller's options model from ``given``; one line naming ``<name>.<key>`` if not."""
    try:
        return options_cls.model_validate(given)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "options"
        if err["type"] == "extra_forbidden":
            raise ValueError(f"{name}.{key}: expected one of the options {list(options_cls.model_fields)}, "
                             "got an unknown option") from None
        field = err["loc"][0] if err["loc"] else None
        want = expected(options_cls, field) if field in options_cls.model_fields else err["msg"]
        raise ValueError(f"{name}.{key}: expected {want}, got {err.get('input')!r}") from None


# --------------------------------------------------------------------------------------------
# The ABC
# --------------------------------------------------------------------------------------------

class Controller(abc.ABC):
    """Proposes θ candidates and updates its distribution over them from :class:`Feedback`."""

    name: ClassVar[str]
    signals: ClassVar[frozenset[str]]
    """Every signal the controller may ask for (registered signal names, see :mod:`loop.signals`)."""
    learning: ClassVar[bool] = True
    """False for the fixed random-DR baseline."""
    final: ClassVar[str] = "best"
    """Which θ the run retrains and reports at the end: "best" (the best real-val score seen),
    "current" (the controller's learned θ, for controllers whose reward is not the score) or
    "better" (both retrained on the final seeds; the higher real val is kept). A best-scored
    candidate carries the luck of its round's seed (the winner's curse of picking the maximum of
    many noisy scores); a policy's mean averages over every round's evidence."""
    Options: ClassVar[type[Options]] = NoOptions
    """The pydantic model of the controller's keyword options (see :class:`Options`)."""

    def __init__(self, space: ParameterSpace, *, seed: int, **options: Any):
        if not isinstance(space, ParameterSpace):
            raise ValueError(f"space: expected a ParameterSpace, got {type(space).__name__}")
        if space.dim == 0:
            raise ValueError("space: expected at least one parameter, got an empty space")
        self.space = space
        self.seed = int(check_number("seed", seed, low=0, integer=True))
        self.options = parse_options(self.name, self.Options, options)
        self.options.check(self.name)
        self.rng = np.random.default_rng(self.seed)
        self.lo, self.hi = space.bounds()
        self.rounds = 0                      # update() calls so far
        self.best_score: float | None = None
        self.best_theta: np.ndarray | None = None

    # --- the interface -----------------------------------------------------------------------
    def round_signals(self) -> frozenset[str]:
        """The signals the coming round's feedback must carry (a subset of ``signals``)."""
        return self.signals

    def propose(self, k: int) -> list[np.ndarray]:
        """``k`` θ vectors inside ``space.bounds()``."""
        k = int(check_number("k", k, low=1, integer=True))
        thetas = [self.space.clip(t) for t in self._propose(k)]
        assert len(thetas) == k, f"{self.name} proposed {len(thetas)} candidates for k={k}"
        return thetas

    def update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        """Learn from the feedback for ``thetas`` (usually the last ``propose`` output)."""
        if len(thetas) != len(feedback):
            raise ValueError(f"feedback: expected one Feedback per theta ({len(thetas)}), got {len(feedback)}")
        thetas = [self.space.check_theta(t) for t in thetas]
        for i, fb in enumerate(feedback):
            if not isinstance(fb, Feedback):
                raise ValueError(f"feedback[{i}]: expected a Feedback, got {type(fb).__name__}")
            self._check_feedback(i, fb)
        for t, fb in zip(thetas, feedback):
            s = float(fb.score)
            if math.isfinite(s) and (self.best_score is None or s > self.best_score):
                self.best_score, self.best_theta = s, t.copy()
        self._update(thetas, feedback)
        self.rounds += 1

    def current(self) -> np.ndarray:
        """The controller's current best guess of θ (its mean / incumbent)."""
        return self.space.clip(self._current())

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state, RNG included."""
        return {
            "name": self.name,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "rounds": self.rounds,
            "best_score": self.best_score,
            "best_theta": None if self.best_theta is None else self.best_theta.tolist(),
            "algorithm": self._state(),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("name") != self.name:
            raise ValueError(f"state.name: expected {self.name!r}, got {d.get('name')!r}")
        self.seed = int(d["seed"])
        self.rng.bit_generator.state = d["rng"]
        self.rounds = int(d["rounds"])
        self.best_score = d["best_score"]
        self.best_theta = None if d["best_theta"] is None else np.asarray(d["best_theta"], dtype=np.float64)
        self._load_state(d["algorithm"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, {self.options})"

    # --- for subclasses ----------------------------------------------------------------------
    @abc.abstractmethod
    def _propose(self, k: int) -> list[np.ndarray]: ...

    @abc.abstractmethod
    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None: ...

    @abc.abstractmethod
    def _current(self) -> np.ndarray: ...

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, d: dict[str, Any]) -> None:
        pass

    def _check_feedback(self, i: int, fb: Feedback) -> None:
        """Controllers that learn from per-image signals need the draws and each signal's values,
        one per image."""
        per_image = sorted(s.name for s in signal_classes(self.round_signals()) if s.per_image)
        if not per_image:
            return
        if fb.draws is None and not fb.per_image and not math.isfinite(float(fb.score)):
            return  # a failed evaluation: nothing was rendered, the controller skips it
        missing = [n for n in per_image if n not in fb.per_image]
        if fb.draws is None or missing:
            what = "draws" if fb.draws is None else f"per_image[{missing[0]!r}]"
            raise ValueError(f"feedback[{i}]: expected draws and per-image {per_image} for {self.name}, "
                             f"got no {what}")
        n = len(np.asarray(fb.per_image[per_image[0]]))
        columns = {f"draws[{k!r}]": v for k, v in fb.draws.items()} | {f"per_image[{k!r}]": fb.per_image[k]
                                                                        for k in per_image}
        for key, v in columns.items():
            if len(np.asarray(v)) != n:
                raise ValueError(f"feedback[{i}].{key}: expected {n} values (one per image), got {len(np.asarray(v))}")


__all__ = ["FINAL_CHOICES", "Controller", "Feedback", "NoOptions", "Options", "check_choice", "check_number",
           "number", "parse_options"]
