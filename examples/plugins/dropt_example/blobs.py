"""A generator drawn with numpy alone: one disc or square per image on a plain background."""

from __future__ import annotations

from typing import Any

import numpy as np

from generator.base import Generator, Sample
from generator.dataset import ObjectAnnotation
from generator.space import ParameterSpace

SPACE = {
    "shape": {"family": "categorical", "choices": ["disc", "square"]},
    "size": {"family": "uniform", "bounds": [2.0, 14.0], "range": [4.0, 10.0]},
    "brightness": {"family": "uniform", "bounds": [0.0, 1.0], "range": [0.3, 0.9]},
    "background": {"family": "uniform", "bounds": [0.0, 1.0], "range": [0.0, 0.5]},
}


class BlobsGenerator(Generator):
    """``image_size`` × ``image_size`` grey images; the object's position comes from the image seed."""

    categories = ("disc", "square")

    def __init__(self, *, image_size: int = 32):
        if not isinstance(image_size, int) or isinstance(image_size, bool) or not 16 <= image_size <= 256:
            raise ValueError(f"generator.image_size: expected an integer in [16, 256], got {image_size!r}")
        self.image_size = image_size
        self.space = ParameterSpace.from_dict(SPACE)

    def config(self) -> dict[str, Any]:
        return {"generator": "example-blobs", "image_size": self.image_size}

    def render(self, params: dict[str, np.ndarray], seed: int) -> Sample:
        rng, n = np.random.default_rng(seed), self.image_size
        # a draw indexes the config's choices (a config may narrow them), the category the class list
        shape = self.categories.index(self.space["shape"].family.choices[int(params["shape"])])
        half = float(params["size"]) / 2
        cy, cx = rng.uniform(half, n - half, size=2)
        yy, xx = np.mgrid[:n, :n] + 0.5
        if shape == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= half ** 2
        else:
            mask = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
        grey = np.where(mask, float(params["brightness"]), float(params["background"]))
        grey = np.clip(grey + rng.normal(0.0, 0.03, grey.shape), 0.0, 1.0)
        image = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
        return Sample(image, [ObjectAnnotation.from_mask(shape + 1, mask)] if mask.any() else [])
