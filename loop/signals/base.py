"""The Signal ABC: what a controller needs computed for each candidate, one class per signal.

A signal names what the evaluation task computes from a candidate's rendered images and what
comes back: one number per candidate (``score``) or an array with one value per image
(``credit``, ``witness``, ``sample_loss``), which the controller pairs with the images' drawn
parameters (``Feedback.draws``). A controller lists the signals it needs by name
(``Controller.signals``; ``round_signals()`` per round when its stages differ); the engine
(:mod:`loop.engine`) builds one instance of each per run and computes them for every front door.

The life of a signal in a run:

- ``__init__(real=, settings=, seed=)`` runs once in the driver: run-level inputs (the real val
  features of the MMD witness) are computed here;
- :meth:`task_input` is what evaluation tasks need this round; the engine ships all signals'
  inputs as one object per round (on Ray, one object-store entry passed as a top-level argument);
- :meth:`compute` runs inside the evaluation task, for signals outside the training run;
  signals measured during the training run (``in_training``) share that one run;
- :meth:`after_round` lets a stateful signal act on the whole round (the adversarial task model
  trains on the round's images and scores it); :meth:`save` / :meth:`load` checkpoint its state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from evaluator.base import Evaluator
    from evaluator.real import RealSplits
    from generator.dataset import Dataset

    from ..config import EvaluatorSettings


class Signal:
    """One quantity computed per candidate; subclass it and register it (``dropt.signals``)."""

    name: ClassVar[str]
    per_image: ClassVar[bool]
    """True: an array with one value per image; False: one number per candidate."""
    in_training: ClassVar[bool] = False
    """Measured inside the candidate's training run (an evaluator ``per_image`` output, or the score)."""
    real_val_score: ClassVar[bool] = False
    """True: a round computing this signal gives each candidate a real-val score, so the runner
    keeps the best θ by it."""
    doc: ClassVar[str] = ""

    def __init__(self, *, real: "RealSplits", settings: "EvaluatorSettings", seed: int):
        self.settings, self.seed = settings, int(seed)

    def task_input(self) -> Any:
        """What the evaluation task needs from the driver this round (None: nothing)."""
        return None

    @classmethod
    def compute(cls, evaluator: "Evaluator", dataset: "Dataset",
                task_input: Any) -> tuple[dict[str, float], np.ndarray | None]:
        """For signals outside the training run: (named figures, the per-image array or None)."""
        raise NotImplementedError(f"signal {cls.name!r} is measured during training")

    @classmethod
    def fallback_score(cls, extras: dict[str, float]) -> float | None:
        """The candidate's score when no ``score`` signal was asked for (None: no score)."""
        return None

    def after_round(self, engine: Any, round_index: int, datasets: list["Dataset"], results: list) -> None:
        """Act on the whole round once its candidates are evaluated (stateful signals)."""

    def save(self, directory: Path, round_index: int) -> str | None:
        """Write this signal's state for the checkpoint of ``round_index``; the file's name (or None)."""
        return None

    def load(self, directory: Path, name: str | None) -> None:
        """Restore the state :meth:`save` wrote as ``name``; raise on a missing or damaged file."""


def signal_classes(names) -> list[type[Signal]]:
    """The registered signal classes of ``names``, sorted by name (the order results are built in)."""
    from ..registry import lookup

    return [lookup("signal", n, key=f"signals ({n!r})") for n in sorted(names)]


__all__ = ["Signal", "signal_classes"]
