"""Every registered evaluator and signal (dropt's and the example package's) through its
conformance suite, at tiny size on real data."""

from __future__ import annotations

from loop.engine.testing import EvaluatorConformance, SignalConformance
from loop.registry import names
from smoke import DIGITS, ROOT, SMOKE

BLOBS = str(ROOT / "examples" / "plugins" / "blobs.toml")
DIGITS_TINY = ("evaluator.final_images=8",)


class TestDetection(EvaluatorConformance):
    evaluator_name, config = "detection", str(SMOKE)
    overrides = ("evaluator.width=8",)


class TestClassification(EvaluatorConformance):
    evaluator_name, config, overrides = "classification", str(DIGITS), DIGITS_TINY


class TestExampleCentroids(EvaluatorConformance):
    evaluator_name, config = "example-centroids", BLOBS


class TestScore(SignalConformance):
    signal_name, config, overrides = "score", str(SMOKE), ("evaluator.width=8",)


class TestCredit(SignalConformance):
    signal_name, config, overrides = "credit", str(SMOKE), ("evaluator.width=8",)


class TestMetagrad(SignalConformance):
    signal_name, config, overrides = "metagrad", str(SMOKE), ("evaluator.width=8",)


class TestWitness(SignalConformance):
    signal_name, config, overrides = "witness", str(SMOKE), ("evaluator.width=8",)


class TestSampleLoss(SignalConformance):
    signal_name, config, overrides = "sample_loss", str(SMOKE), ("evaluator.width=8",)


class TestExampleBrightnessGap(SignalConformance):
    signal_name, config, overrides = "example-brightness-gap", str(SMOKE), ("evaluator.width=8",)


def test_every_registered_evaluator_and_signal_has_a_conformance_class():
    classes = [c for c in globals().values() if isinstance(c, type) and c.__name__.startswith("Test")]
    assert {c.evaluator_name for c in classes if issubclass(c, EvaluatorConformance)} == set(names("evaluator"))
    assert {c.signal_name for c in classes if issubclass(c, SignalConformance)} == set(names("signal"))
