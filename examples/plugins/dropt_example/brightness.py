"""A signal outside the training run: how far a candidate's mean brightness is from real val's."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from loop.signals.base import Signal


def mean_brightness(images) -> float:
    return float(np.mean([np.asarray(im, np.float64).mean() for im in images]) / 255.0)


class BrightnessGap(Signal):
    name: ClassVar[str] = "example-brightness-gap"
    per_image: ClassVar[bool] = False
    doc: ClassVar[str] = "|mean brightness of the candidate's images - that of the real val images|"

    def __init__(self, *, real, settings, seed):
        super().__init__(real=real, settings=settings, seed=seed)
        self.real_brightness = mean_brightness(real.val.images)     # once per run, in the driver

    def task_input(self):
        return self.real_brightness

    @classmethod
    def compute(cls, evaluator, dataset, task_input):
        return {"brightness_gap": abs(mean_brightness(dataset.images) - task_input)}, None
