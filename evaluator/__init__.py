"""Downstream models trained on synthetic data and scored on real data, plus gap metrics.

Imports nothing from ``loop``; from ``generator`` only the dataset type."""

from .base import Evaluator, EvaluatorError, Fidelity, Metrics
from .real import RealSplits, load_coco_real, load_digits_real

__all__ = ["Evaluator", "EvaluatorError", "Fidelity", "Metrics", "RealSplits", "load_coco_real", "load_digits_real"]
