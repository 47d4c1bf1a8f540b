"""Conformance suites for evaluators and signals, in the manner of ``loop.controllers.testing``.

Subclass one in a test file (the name must start with ``Test``) and say which plug-in and which
config makes data it accepts; the suite renders a few images with that config's generator and
scores them against its real set (made from its hidden target in a temporary folder when the
config names one)::

    class TestMyEvaluator(EvaluatorConformance):
        evaluator_name = "my-evaluator"
        config = "experiments/shapes/smoke.toml"

    class TestMySignal(SignalConformance):
        signal_name = "my-signal"
        config = "experiments/shapes/smoke.toml"

Everything runs for real, at tiny size (a few images, a few training steps).
"""

from __future__ import annotations

import math
import pickle
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from evaluator.base import Evaluator, EvaluatorError
from generator.dataset import Dataset

from ..config import ExperimentConfig, load_config
from ..registry import lookup, names
from .core import Engine
from .evaluators import build_evaluator, fidelity
from .real import load_real
from .render_pool import RenderPool

TINY = ["evaluator.images=8", "evaluator.steps=3", "evaluator.batch_size=4", "evaluator.gap_images=6",
        "render.workers=0"]
_CACHE: dict[tuple, tuple] = {}


class _Conformance:
    config: ClassVar[str] = ""
    """A config whose generator makes data the plug-in accepts (its real set is made if missing)."""
    overrides: ClassVar[tuple[str, ...]] = ()
    images: ClassVar[int] = 8

    @classmethod
    def setup(cls) -> tuple[ExperimentConfig, Any, Dataset]:
        """(config, real set, a rendered dataset of ``images`` images), made once per config."""
        key = (cls.config, tuple(cls.overrides), cls.images)
        if key not in _CACHE:
            sets = [*TINY, f"evaluator.images={cls.images}", *cls.overrides]
            cfg = load_config(cls.config, sets)
            if cfg.evaluator.target_config and not Path(cfg.evaluator.real).exists():
                real_dir = Path(tempfile.mkdtemp(prefix="dropt-conformance-")) / "real"
                cfg = load_config(cls.config, [*sets, f'evaluator.real="{real_dir}"'])
            with RenderPool(cfg, workers=0) as pool:
                real = load_real(cfg, categories=pool.generator.categories, log=lambda m: None)
                ds = pool.render(pool.generator.space.to_vector(), cls.images, 1)
            _CACHE[key] = (cfg, real, ds)
        return _CACHE[key]


class EvaluatorConformance(_Conformance):
    """What every evaluator owes the engine: val (and TEST) figures named by its score, one
    score per seed, weights a warm start accepts, the per-image outputs it lists."""

    evaluator_name: ClassVar[str] = ""

    def _evaluator(self) -> tuple[Evaluator, Any, Dataset]:
        cfg, real, ds = self.setup()
        settings = cfg.evaluator.model_copy(update={"task": self.evaluator_name})
        return build_evaluator(settings, real), settings, ds

    def test_class_attributes(self):
        cls = lookup("evaluator", self.evaluator_name)
        assert issubclass(cls, Evaluator)
        assert isinstance(cls.score_name, str) and cls.score_name and isinstance(cls.higher_is_better, bool)
        assert set(cls.per_image_outputs) <= set(names("signal")), cls.per_image_outputs

    def test_scores_val_and_test_with_the_named_figures(self):
        ev, settings, ds = self._evaluator()
        m = ev.evaluate(ds, fidelity(settings), 0, splits=("val", "test"))
        val, test = m.extras[f"val_{ev.score_name}"], m.extras[f"test_{ev.score_name}"]
        assert math.isfinite(m.score) and m.score == val and math.isfinite(test)
        assert all(isinstance(v, float) for v in m.extras.values()), m.extras

    def test_same_seed_same_score(self):
        ev, settings, ds = self._evaluator()
        a = ev.evaluate(ds, fidelity(settings), 3)
        b = ev.evaluate(ds, fidelity(settings), 3)
        assert a.score == b.score and a.extras == b.extras

    def test_its_weights_are_a_warm_start(self):
        ev, settings, ds = self._evaluator()
        m = ev.evaluate(ds, fidelity(settings), 0)
        if m.weights is not None:
            again = ev.evaluate(ds, fidelity(settings), 1, warm_start=m.weights)
            assert math.isfinite(again.score)

    def test_per_image_outputs_have_one_value_per_image(self):
        ev, settings, ds = self._evaluator()
        for output in sorted(ev.per_image_outputs):
            m = ev.evaluate(ds, fidelity(settings), 0, per_image=(output,))
            values = np.asarray(m.per_image[output])
            assert values.shape == (len(ds),) and np.all(np.isfinite(values)), output

    def test_an_output_it_does_not_list_is_refused(self):
        ev, settings, ds = self._evaluator()
        try:
            ev.evaluate(ds, fidelity(settings), 0, per_image=("no-such-output",))
        except EvaluatorError as e:
            assert "no-such-output" in str(e), str(e)
        else:
            raise AssertionError(f"{self.evaluator_name} accepted an unknown per-image output")


class SignalConformance(_Conformance):
    """What every signal owes the engine: valid class attributes, a task input that travels to a
    Ray task (pickles), deterministic values of the right shape, and a checkpointed state that
    restores the same input."""

    signal_name: ClassVar[str] = ""

    def _signal(self):
        cfg, real, ds = self.setup()
        cls = lookup("signal", self.signal_name)
        return cls, cls(real=real, settings=cfg.evaluator, seed=cfg.seed), cfg, real, ds

    def test_class_attributes(self):
        cls = lookup("signal", self.signal_name)
        assert cls.name == self.signal_name
        assert all(isinstance(v, bool) for v in (cls.per_image, cls.in_training, cls.real_val_score))
        assert isinstance(cls.doc, str) and cls.doc

    def test_its_task_input_pickles(self):
        _, signal, *_ = self._signal()
        pickle.loads(pickle.dumps(signal.task_input()))

    def test_values_have_the_right_shape_and_repeat(self):
        cls, signal, cfg, real, ds = self._signal()
        evaluator = build_evaluator(cfg.evaluator, real)
        if cls.in_training:
            assert not cls.per_image or cls.name in evaluator.per_image_outputs, \
                f"{cls.name} is measured in training: the config's evaluator must list it in per_image_outputs"
            return
        runs = [cls.compute(evaluator, ds, signal.task_input()) for _ in range(2)]
        (extras, values), (extras2, values2) = runs
        assert extras == extras2 and all(isinstance(v, float) and math.isfinite(v) for v in extras.values())
        if cls.per_image:
            assert np.asarray(values).shape == (len(ds),) and np.array_equal(values, values2)
        else:
            assert values is None

    def test_engine_round_and_checkpoint_round_trip(self):
        """One round through the engine (its ``after_round`` included), then save / load."""
        cls, _, cfg, real, ds = self._signal()
        with RenderPool(cfg, workers=0) as pool:
            engine = Engine(cfg, pool, real, {self.signal_name}, use_ray=False)
            theta = pool.generator.space.clip(pool.generator.space.to_vector())
            res = engine.evaluate([theta], [0], {self.signal_name})[0]
        assert res.failed is None, res.failed
        if cls.per_image:
            assert np.asarray(res.per_image[self.signal_name]).shape == (cfg.evaluator.images,)
        signal = engine.signals[self.signal_name]
        with tempfile.TemporaryDirectory() as d:
            name = signal.save(Path(d), 0)
            restored = cls(real=real, settings=cfg.evaluator, seed=cfg.seed)
            restored.load(Path(d), name)
        assert _same(restored.task_input(), signal.task_input()), "the restored state gives another task input"


def _same(a: Any, b: Any) -> bool:
    """Equal values, looking inside dicts, lists and arrays (numpy or torch)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if hasattr(a, "detach") and hasattr(b, "detach"):            # torch tensors
        return _same(a.detach().cpu().numpy(), b.detach().cpu().numpy())
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


__all__ = ["EvaluatorConformance", "SignalConformance"]
