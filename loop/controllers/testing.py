"""Conformance suite for controllers, in the manner of ``optuna.testing``.

Subclass :class:`ControllerConformance` in a test file (the subclass's name must start with
``Test`` for pytest to collect it) and set ``controller_name`` (and ``options`` if needed)::

    class TestMyController(ControllerConformance):
        controller_name = "my-controller"

It checks the contract every controller owes the runner (bounds, counts, JSON state that
restores the exact trajectory, seed determinism, failed evaluations) and, for learning
controllers, that the controller learns: on a cheap synthetic objective it must find a better
score than fixed domain randomization within the same budget.

The objective (:class:`SyntheticObjective`) is a toy copy of the real loop's gap score, with no
rendering: a five-parameter space (uniform, log-uniform, truncated normal, count, categorical),
a hidden "real" distribution θ* of the same space, and per evaluation ``n`` draws from θ whose
score is −MMD²(draws, real set) under a multi-bandwidth RBF kernel on normalised features.
Its optimum is θ = θ* (score ≈ 0). The per-draw MMD witness (higher = more like the real set)
is the ``witness`` reward, and also the ``credit`` one: it is each draw's first-order
contribution to the score, which is what TracIn credit measures for a trained model; the
dissimilarity to the real set is the ``sample_loss`` proxy. The noise is the honest
kind: a finite batch of draws per evaluation.

Why the comparison is fair: the real set sits in a corner of the space, as a real domain is
one narrow setting of the knobs; the default θ (where learners start) is moderate and roughly
as far from it as the widened distribution; the baseline is the better of ``random`` with
``widen=True`` and ``widen=False`` (so starting at the default earns nothing by itself), with
the same budget, the same evaluation seeds and the same objective for everyone. A controller
passes only by moving its proposals towards θ* from feedback; one that ignores or inverts the
feedback fails.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, ClassVar

import numpy as np

from generator.space import ParameterSpace

from ..registry import names
from . import Controller, Feedback, controller_class, make_controller
from .base import FINAL_CHOICES

# --------------------------------------------------------------------------------------------
# The synthetic objective
# --------------------------------------------------------------------------------------------

TOY_SPACE = {
    "size": {"family": "uniform", "bounds": [0.0, 10.0], "range": [2.0, 8.0]},
    "light": {"family": "loguniform", "bounds": [0.1, 10.0], "range": [0.3, 3.0]},
    "angle": {"family": "truncnormal", "bounds": [-5.0, 5.0], "mean": 0.0, "std": 2.5},
    "count": {"family": "int", "bounds": [0, 6], "mean": 3, "std": 2.0},
    "material": {"family": "categorical", "choices": ["matte", "glossy", "metal"]},
}

TOY_TARGET = {   # the hidden real distribution θ*
    "size": {"range": [6.5, 9.0]},
    "light": {"range": [2.0, 6.0]},
    "angle": {"mean": 2.5, "std": 0.6},
    "count": {"mean": 5, "std": 0.7},
    "material": {"probs": [0.1, 0.2, 0.7]},
}

BANDWIDTHS = (0.1, 0.3, 1.0)


def toy_space() -> ParameterSpace:
    return ParameterSpace.from_dict(TOY_SPACE)


class SyntheticObjective:
    """score(θ) = −MMD²(n draws from θ, a fixed real set drawn from θ*); see the module doc."""

    def __init__(self, *, n: int = 32, n_real: int = 256, seed: int = 2024):
        self.space = toy_space()
        self.target = self.space.override(TOY_TARGET).to_vector()
        self.n = n
        self.real = self._features(self.space.sample(self.target, n_real, np.random.default_rng(seed)))
        k_rr = self._kernel(self.real, self.real)
        self._k_rr = (k_rr.sum() - np.trace(k_rr)) / (n_real * (n_real - 1))

    def _features(self, draws: dict[str, np.ndarray]) -> np.ndarray:
        """Each parameter scaled to [0, 1]; the categorical one-hot, scaled to unit distance."""
        one_hot = np.eye(3)[draws["material"]] / math.sqrt(2)
        return np.column_stack([
            draws["size"] / 10.0,
            (np.log(draws["light"]) - math.log(0.1)) / math.log(100.0),
            (draws["angle"] + 5.0) / 10.0,
            draws["count"] / 6.0,
            one_hot,
        ])

    @staticmethod
    def _kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * h * h)) for h in BANDWIDTHS) / len(BANDWIDTHS)

    def evaluate(self, theta: np.ndarray, rng: np.random.Generator,
                 signals: frozenset[str] = frozenset({"score"}), n: int | None = None) -> Feedback:
        n = self.n if n is None else n
        draws = self.space.sample(theta, n, rng)
        x = self._features(draws)
        k_xx, k_xr = self._kernel(x, x), self._kernel(x, self.real)
        witness = k_xr.mean(1) - (k_xx.sum(1) - np.diag(k_xx)) / (n - 1)
        mmd2 = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1)) + self._k_rr - 2 * k_xr.mean()
        # the loss proxy: dissimilarity to the real set alone (no synthetic self-term, which
        # would reward a batch for clustering on itself)
        per_image = {"witness": witness, "credit": witness, "metagrad": witness, "sample_loss": 1.0 - k_xr.mean(1)}
        return Feedback(score=float(-mmd2), extras={"gap_mmd2": float(mmd2)}, draws=draws,
                        per_image={k: v for k, v in per_image.items() if k in signals})


_OBJECTIVE: SyntheticObjective | None = None


def objective() -> SyntheticObjective:
    global _OBJECTIVE
    if _OBJECTIVE is None:
        _OBJECTIVE = SyntheticObjective()
    return _OBJECTIVE


def eval_rng(seed: int, round_: int, i: int) -> np.random.Generator:
    """Per-candidate evaluation seed from (run seed, round, candidate), as the runner derives it."""
    return np.random.default_rng([seed, round_, i])


def run_loop(controller: Controller, obj: SyntheticObjective, *, rounds: int, k: int, seed: int,
             start_round: int = 0) -> list[list[np.ndarray]]:
    """Drive ``controller`` for ``rounds`` rounds of ``k`` candidates; returns the proposals."""
    history = []
    for r in range(start_round, start_round + rounds):
        thetas = controller.propose(k)
        feedback = [obj.evaluate(t, eval_rng(seed, r, i), controller.round_signals()) for i, t in enumerate(thetas)]
        controller.update(thetas, feedback)
        history.append(thetas)
    return history


def best_score(make: Callable[[ParameterSpace, int], Controller], seed: int, *, rounds: int, k: int) -> float:
    """The best score a controller finds within ``rounds`` × ``k`` evaluations."""
    obj = objective()
    c = make(obj.space, seed)
    run_loop(c, obj, rounds=rounds, k=k, seed=seed)
    return float(c.best_score)


_BASELINES: dict[tuple, list[float]] = {}


def baseline_scores(seeds: tuple[int, ...], *, rounds: int, k: int) -> list[float]:
    """Per seed, the better of ``random`` widened and ``random`` at the default θ."""
    key = (seeds, rounds, k)
    if key not in _BASELINES:
        _BASELINES[key] = [max(best_score(lambda s, sd, w=w: make_controller("random", s, seed=sd, widen=w),
                                          seed, rounds=rounds, k=k) for w in (True, False))
                           for seed in seeds]
    return _BASELINES[key]


# --------------------------------------------------------------------------------------------
# The conformance base class
# --------------------------------------------------------------------------------------------

class ControllerConformance:
    """Subclass with ``controller_name`` set; override ``make`` for special construction."""

    controller_name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    k: ClassVar[int] = 4
    rounds: ClassVar[int] = 15
    seeds: ClassVar[tuple[int, ...]] = (0, 1, 2)
    not_expected_to_beat_random: ClassVar[str | None] = None
    """Set to the reason when the controller's goal is not the objective's score."""

    def make(self, space: ParameterSpace, seed: int) -> Controller:
        return make_controller(self.controller_name, space, seed=seed, **self.options)

    # ---- the interface ----------------------------------------------------------------------
    def test_class_attributes(self):
        c = self.make(toy_space(), 0)
        assert c.name == self.controller_name and controller_class(c.name) is type(c)
        assert isinstance(c.signals, frozenset) and c.signals and c.signals <= set(names("signal"))
        assert c.round_signals() <= c.signals
        assert isinstance(c.learning, bool) and c.final in FINAL_CHOICES

    def test_proposals_inside_bounds(self):
        for k in (1, 4):
            self._check_proposals_inside_bounds(k)

    def _check_proposals_inside_bounds(self, k: int) -> None:
        obj = objective()
        c = self.make(obj.space, 0)
        lo, hi = obj.space.bounds()
        for r in range(3):
            thetas = c.propose(k)
            assert isinstance(thetas, list) and len(thetas) == k
            for t in thetas:
                assert isinstance(t, np.ndarray) and t.shape == (obj.space.dim,)
                assert np.all(np.isfinite(t)) and np.all(t >= lo) and np.all(t <= hi)
                obj.space.check_theta(t)
            c.update(thetas, [obj.evaluate(t, eval_rng(0, r, i), c.round_signals()) for i, t in enumerate(thetas)])
            cur = c.current()
            assert cur.shape == (obj.space.dim,) and np.all(cur >= lo) and np.all(cur <= hi)

    def test_state_dict_round_trip(self):
        obj = objective()
        c = self.make(obj.space, 3)
        run_loop(c, obj, rounds=3, k=self.k, seed=3)
        state = json.loads(json.dumps(c.state_dict(), allow_nan=False))
        restored = self.make(obj.space, 99)                # a different seed: the RNG must come from the state
        restored.load_state_dict(state)
        np.testing.assert_array_equal(restored.current(), c.current())
        a = run_loop(c, obj, rounds=3, k=self.k, seed=3, start_round=3)
        b = run_loop(restored, obj, rounds=3, k=self.k, seed=3, start_round=3)
        for ta, tb in zip(a, b):
            np.testing.assert_array_equal(np.array(ta), np.array(tb))
        assert json.dumps(c.state_dict()) == json.dumps(restored.state_dict())

    def test_same_seed_same_trajectory(self):
        obj = objective()
        a = run_loop(self.make(obj.space, 7), obj, rounds=4, k=self.k, seed=7)
        b = run_loop(self.make(obj.space, 7), obj, rounds=4, k=self.k, seed=7)
        for ta, tb in zip(a, b):
            np.testing.assert_array_equal(np.array(ta), np.array(tb))

    def test_failed_evaluations_are_skipped(self):
        obj = objective()
        c = self.make(obj.space, 0)
        thetas = c.propose(self.k)
        c.update(thetas, [Feedback(score=math.nan) for _ in thetas])
        assert c.best_score is None
        thetas = c.propose(self.k)
        assert all(np.all(np.isfinite(t)) for t in thetas)
        fb = [obj.evaluate(t, eval_rng(0, 1, i), c.round_signals()) for i, t in enumerate(thetas)]
        fb[0] = Feedback(score=math.nan)
        c.update(thetas, fb)
        assert c.best_score is not None and math.isfinite(c.best_score)

    def test_update_checks_lengths(self):
        c = self.make(toy_space(), 0)
        thetas = c.propose(2)
        try:
            c.update(thetas, [Feedback(score=0.0)])
        except ValueError as e:
            assert str(e) == "feedback: expected one Feedback per theta (2), got 1", str(e)
        else:
            raise AssertionError("update accepted one Feedback for two thetas")

    # ---- learning ---------------------------------------------------------------------------
    def test_beats_random(self):
        """Best score within rounds × k evaluations, mean over seeds, beats fixed DR's."""
        import pytest     # the suite runs under pytest; dropt itself does not need it

        if not controller_class(self.controller_name).learning:
            pytest.skip(f"{self.controller_name} is the non-learning baseline itself")
        if self.not_expected_to_beat_random:
            pytest.skip(f"{self.controller_name}: not expected to beat random here: {self.not_expected_to_beat_random}")
        mine = [best_score(self.make, s, rounds=self.rounds, k=self.k) for s in self.seeds]
        base = baseline_scores(self.seeds, rounds=self.rounds, k=self.k)
        assert np.mean(mine) > np.mean(base), f"{self.controller_name}: best {mine} vs random {base}"
