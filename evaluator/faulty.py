"""A detection evaluator that fails on purpose, for the fault-injection tests and for trying a
run's fault handling by hand (``[evaluator] task = "evaluator.faulty:FaultyEvaluator"``).

Options (``[evaluator.options]``): ``fail_share`` in [0, 1] fails about that share of the
evaluations, chosen by a hash of the training images (so the same candidates fail in every
run, whatever the worker) with ``fail_with`` ("nan": a diverged training's NaN score, "raise": a
``FloatingPointError``); ``kill_marker`` names a file: while it does not exist, the first
evaluation creates it and SIGKILLs its own process (a dying evaluation worker).
"""

from __future__ import annotations

import math
import os
import signal
import zlib
from pathlib import Path

from .base import EvaluatorError, Metrics
from .detection import DetectionEvaluator

FAILURES = ("nan", "raise")


class FaultyEvaluator(DetectionEvaluator):
    def __init__(self, real, *, fail_share: float = 0.0, fail_with: str = "raise", kill_marker: str | None = None,
                 **kwargs):
        if not isinstance(fail_share, (int, float)) or not 0.0 <= fail_share <= 1.0:
            raise EvaluatorError(f"evaluator.fail_share: expected a number in [0, 1], got {fail_share!r}")
        if fail_with not in FAILURES:
            raise EvaluatorError(f"evaluator.fail_with: expected one of {list(FAILURES)}, got {fail_with!r}")
        super().__init__(real, **kwargs)
        self.fail_share, self.fail_with, self.kill_marker = float(fail_share), fail_with, kill_marker

    def evaluate(self, dataset, fidelity, seed, warm_start=None, **kwargs) -> Metrics:
        if self.kill_marker and not Path(self.kill_marker).exists():
            Path(self.kill_marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        m = super().evaluate(dataset, fidelity, seed, warm_start, **kwargs)
        digest = 0
        for image in dataset.images:
            digest = zlib.crc32(image.tobytes(), digest)
        if digest / 2**32 < self.fail_share:
            if self.fail_with == "raise":
                raise FloatingPointError(f"injected failure (training seed {seed})")
            m.score = math.nan
        return m
