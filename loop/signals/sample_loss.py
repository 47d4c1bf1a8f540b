"""Each image's loss under the run's task model (VADRA): hard examples score high.

This signal carries state across rounds: a task model that keeps training, warm-started, on
each whole round's images; its real-val score becomes every candidate's score of that round.
The weights are checkpointed with the run, one file per round named by the checkpoint.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from generator.base import derive_seed

from ..errors import RunFailure
from .base import Signal

TASK_MODEL_KEY = 0xADD


class SampleLoss(Signal):
    name: ClassVar[str] = "sample_loss"
    per_image: ClassVar[bool] = True
    real_val_score: ClassVar[bool] = True
    doc: ClassVar[str] = "each image's loss under the run's current task model (hard examples score high)"

    def __init__(self, *, real, settings, seed):
        super().__init__(real=real, settings=settings, seed=seed)
        self.weights: dict | None = None     # None before the first round: a fresh seeded model

    def task_input(self):
        return {"weights": self.weights, "seed": self.seed}

    @classmethod
    def compute(cls, evaluator, dataset, task_input):
        losses = evaluator.sample_losses(dataset, task_input["weights"], task_input["seed"])
        return {}, np.asarray(losses)

    def after_round(self, engine, round_index, datasets, results):
        """The task model trains on the whole round (warm start); real val scores it."""
        from ..engine.remote_dataset import concat

        m = engine.train([concat(datasets)], [derive_seed(self.seed, round_index, TASK_MODEL_KEY)],
                         warm_start=self.weights, keep_weights=True)[0]
        if m.failed:
            raise RunFailure(f"round {round_index + 1}: expected the task model to train, it failed ({m.failed})")
        self.weights = m.weights
        for res in results:
            res.score = m.score
            res.extras.update(m.extras)

    def save(self, directory, round_index):
        if self.weights is None:
            return None
        import torch

        name = f"task_model-{round_index}.pt"
        path, tmp = directory / name, directory / f"{name}.tmp"
        try:
            torch.save(self.weights, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:       # torch reports a full disk as a RuntimeError
            tmp.unlink(missing_ok=True)
            raise RunFailure(f"{path}: could not write the task model ({e}); the previous checkpoint is kept") from None
        return name

    def load(self, directory, name):
        import torch

        path = directory / (name or "task_model.pt")
        if name is None and not path.is_file():
            self.weights = None
            return
        self.weights = torch.load(path, weights_only=True)
