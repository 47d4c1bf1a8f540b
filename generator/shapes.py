"""The shapes generator: primitives on a ground plane, rendered with pyrender, exact annotations."""

from __future__ import annotations

from typing import Any

import numpy as np

from .annotate import annotate
from .base import Generator, Sample
from .gl_backend import GLBackend
from .pyrender_backend import PyrenderBackend
from .sensor import apply_sensor
from .shapes_scene import CLASSES, default_space, describe


#: "gl": one pass, two targets (fast, the default); "pyrender": pyrender's renderer on a reused
#: scene; "pyrender-naive": a fresh pyrender scene per image (the benchmark's baseline)
BACKENDS = {
    "gl": GLBackend,
    "pyrender": PyrenderBackend,
    "pyrender-naive": lambda size, k, d: PyrenderBackend(size, k, d, reuse=False),
}


def _int_option(name: str, value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"generator.{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


class ShapesGenerator(Generator):
    """Cubes, spheres, cylinders, cones and tori (annotated) plus capsule and slab distractors
    (not annotated) on a ground plane; one directional light, ambient light, a look-at camera
    and sensor effects. Every knob is a parameter of ``space``."""

    categories = CLASSES

    def __init__(self, *, image_size: int = 64, max_objects: int = 4, max_distractors: int = 2,
                 min_visible_pixels: int = 10, depth: bool = True, backend: str = "gl"):
        self.image_size = _int_option("image_size", image_size, 16, 1024)
        self.max_objects = _int_option("max_objects", max_objects, 1, 16)
        self.max_distractors = _int_option("max_distractors", max_distractors, 0, 16)
        self.min_visible_pixels = _int_option("min_visible_pixels", min_visible_pixels, 1, image_size * image_size)
        if not isinstance(depth, bool):
            raise ValueError(f"generator.depth: expected true or false, got {depth!r}")
        if backend not in BACKENDS:
            raise ValueError(f"generator.backend: expected one of {sorted(BACKENDS)}, got {backend!r}")
        self.depth = depth
        self.backend_name = backend
        self.space = default_space(self.max_objects, self.max_distractors)
        self.backend = BACKENDS[backend](self.image_size, self.max_objects, self.max_distractors)

    def config(self) -> dict[str, Any]:
        return {"generator": "shapes", "image_size": self.image_size, "max_objects": self.max_objects,
                "max_distractors": self.max_distractors, "min_visible_pixels": self.min_visible_pixels, "backend": self.backend_name}

    def render(self, params: dict[str, np.ndarray], seed: int) -> Sample:
        desc = describe(params, *self._choices())
        rgb, depth, ids, amodal = self.backend.draw(desc, depth=self.depth)
        image = apply_sensor(rgb, np.random.default_rng(seed), **desc.sensor)
        return Sample(image, annotate(ids, desc, self.min_visible_pixels, amodal), depth if self.depth else None)

    def _choices(self) -> tuple[tuple, tuple]:
        """What a draw of ``object.class`` and ``distractor.shape`` indexes (the config's choices)."""
        distractors = self.space["distractor.shape"].family.choices if "distractor.shape" in self.space.names else ()
        return self.space["object.class"].family.choices, distractors

    def close(self) -> None:
        self.backend.close()
