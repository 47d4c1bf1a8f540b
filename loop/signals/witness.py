"""Each image's MMD witness against the real val features (Meta-Sim's distribution gap)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Signal


def real_features(real, *, value_max: float = 255.0, gap_images: int = 200, seed: int = 0) -> np.ndarray:
    """Random-conv features of the first ``gap_images`` real val images (extracted once per run)."""
    from evaluator.features import RandomConvFeatures

    return RandomConvFeatures(seed)(np.stack(real.val.images[:min(gap_images, len(real.val))]), value_max=value_max)


class Witness(Signal):
    name: ClassVar[str] = "witness"
    per_image: ClassVar[bool] = True
    doc: ClassVar[str] = "each image's MMD witness against the real val features (higher = more like real)"

    def __init__(self, *, real, settings, seed):
        super().__init__(real=real, settings=settings, seed=seed)
        self.value_max = float(real.val.info.get("value_max", 255))
        self.features = real_features(real, value_max=self.value_max, gap_images=settings.gap_images, seed=seed)

    def task_input(self):
        return {"features": self.features, "value_max": self.value_max, "seed": self.seed}

    @classmethod
    def compute(cls, evaluator, dataset, task_input):
        from evaluator.features import RandomConvFeatures
        from evaluator.gap import gap_from_features

        fx = RandomConvFeatures(task_input["seed"])(np.stack(dataset.images), value_max=task_input["value_max"])
        gap, witness = gap_from_features(fx, task_input["features"])
        return {f"gap_{k}": float(v) for k, v in gap.items() if k in ("mmd2", "frechet")}, witness

    @classmethod
    def fallback_score(cls, extras):
        return -extras["gap_mmd2"]
