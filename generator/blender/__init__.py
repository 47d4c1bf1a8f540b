"""The Blender generator: primitives on a ground plane rendered by Cycles on the CPU, with exact
instance masks from Blender's object-index pass.

``[generator] name = "blender"``. Needs the optional extra (``pip install -e '.[blender]'``,
``make blender``: Blender 4.2 as a Python module). The space's knobs: object count; per object
class, position, yaw, scale, HSV colour, roughness, metallic and a procedural texture (noise,
checker, Voronoi or wave; its scale and contrast); the ground's colour and texture; the
background colour; 1 … ``max_lights`` suns, each with its strength, direction and colour
temperature (Blender's blackbody); camera distance, elevation, azimuth and focal length; the
sensor knobs of the shapes scene. Each image is
rendered from its own seed (Cycles' sampling seed, the sensor noise), one thread per process,
so the same seed gives the same bytes however images are split over render workers.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np

from ..base import Generator, Sample
from ..dataset import ObjectAnnotation
from ..sensor import apply_sensor
from ..space import ParameterSpace, hsv_spec, loguniform_spec, uniform_spec
from .scene import CLASSES, TEXTURES, Settings, Shot, Sun, Surface, Thing, shared_scene


def texture_spec(prefix: str, size: int) -> dict[str, dict[str, Any]]:
    """``prefix.texture`` (which pattern), ``.texture_scale`` and ``.texture_contrast`` (how much
    the pattern darkens the colour: 0 is a plain colour)."""
    kind = {"family": "categorical", "choices": list(TEXTURES)} | ({"size": size} if size > 1 else {})
    return {f"{prefix}.texture": kind,
            f"{prefix}.texture_scale": loguniform_spec((0.5, 50.0), (2.0, 10.0), size),
            f"{prefix}.texture_contrast": uniform_spec((0, 1), (0.0, 0.5), size)}


def default_space(max_objects: int, classes: tuple[str, ...] = CLASSES, max_lights: int = 2) -> ParameterSpace:
    """Every knob of the Blender scene, with hard bounds and a moderate default distribution."""
    K, L = max_objects, max_lights
    u, hsv = uniform_spec, hsv_spec

    return ParameterSpace.from_dict({
        "object_count": {"family": "int", "bounds": [0, K], "mean": (K + 1) / 2, "std": float(K)},
        "object.class": {"family": "categorical", "choices": list(classes)} | ({"size": K} if K > 1 else {}),
        "object.x": u((-2.5, 2.5), (-1.6, 1.6), K),
        "object.y": u((-2.5, 2.5), (-1.6, 1.6), K),
        "object.yaw": u((-180, 180), None, K),
        "object.scale": loguniform_spec((0.3, 2.0), (0.6, 1.3), K),
        **hsv("object", K, s=(0.3, 1.0), v=(0.3, 1.0)),
        "object.roughness": u((0, 1), (0.2, 0.9), K),
        "object.metallic": u((0, 1), (0.0, 0.4), K),
        **texture_spec("object", K),
        **hsv("ground", 1, s=(0.0, 0.4), v=(0.1, 0.6)),
        **texture_spec("ground", 1),
        **hsv("background", 1, s=(0.0, 0.5), v=(0.05, 0.5)),
        "light_count": {"family": "int", "bounds": [1, L], "mean": (L + 1) / 2, "std": float(L)},
        "light.energy": loguniform_spec((0.2, 20.0), (1.5, 5.0), L),
        "light.elevation": u((5, 90), (30, 75), L),
        "light.azimuth": u((-180, 180), None, L),
        "light.temperature": u((2000, 12000), (4500, 7500), L),
        "camera.distance": u((3.0, 15.0), (6.0, 8.0)),
        "camera.elevation": u((5, 89), (25, 60)),
        "camera.azimuth": u((-180, 180)),
        "camera.focal_length": u((15, 120), (30, 50)),
        "sensor.noise": u((0, 0.3), (0, 0.03)),
        "sensor.blur": u((0, 3), (0, 0.6)),
        "sensor.exposure": u((-3, 3), (-0.3, 0.3)),
        "sensor.gamma": u((0.4, 2.5), (0.9, 1.1)),
    })


def _int_option(name: str, value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"generator.{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


class BlenderGenerator(Generator):
    """Cubes, spheres, cylinders, cones and tori on a ground plane, lit by suns and the sky."""

    categories = CLASSES

    def __init__(self, *, image_size: int = 64, max_objects: int = 4, max_lights: int = 2, min_visible_pixels: int = 10,
                 samples: int = 8, denoise: bool = False, depth: bool = False, meshes: dict[str, str] | None = None):
        self.image_size = _int_option("image_size", image_size, 16, 1024)
        self.max_objects = _int_option("max_objects", max_objects, 1, 16)
        self.max_lights = _int_option("max_lights", max_lights, 1, 8)
        self.min_visible_pixels = _int_option("min_visible_pixels", min_visible_pixels, 1, image_size ** 2)
        self.samples = _int_option("samples", samples, 1, 4096)
        for name, value in (("denoise", denoise), ("depth", depth)):
            if not isinstance(value, bool):
                raise ValueError(f"generator.{name}: expected true or false, got {value!r}")
        self.denoise, self.depth = denoise, depth
        self.meshes = _check_meshes(meshes or {})
        self.categories = CLASSES + tuple(self.meshes)
        self.space = default_space(self.max_objects, self.categories, self.max_lights)

    def config(self) -> dict[str, Any]:
        return {"generator": "blender", "image_size": self.image_size, "max_objects": self.max_objects,
                "max_lights": self.max_lights, "min_visible_pixels": self.min_visible_pixels,
                "samples": self.samples, "denoise": self.denoise,
                **({"meshes": self.meshes} if self.meshes else {})}

    def render(self, params: dict[str, np.ndarray], seed: int) -> Sample:
        scene = shared_scene(self.settings())
        shot = self.shot(params, seed)
        rgb, ids, depth = scene.render(shot)
        sensor = {k.split(".", 1)[1]: float(np.atleast_1d(v)[0]) for k, v in params.items() if k.startswith("sensor.")}
        image = apply_sensor(rgb, np.random.default_rng(seed), **sensor)
        return Sample(image, self.annotate(scene, shot, ids), depth if self.depth else None)

    def settings(self) -> Settings:
        return Settings(self.image_size, self.max_objects, self.samples, self.denoise, self.max_lights,
                        tuple(self.meshes.items()))

    def shot(self, params: dict[str, np.ndarray], seed: int) -> Shot:
        """One image's values as a :class:`Shot` (a draw of ``object.class`` indexes the config's choices)."""
        r = {k: np.atleast_1d(v) for k, v in params.items()}

        def choice(name: str, j: int) -> str:
            return self.space[name].family.choices[int(r[name][j])]

        def color(prefix: str, j: int = 0) -> tuple[float, float, float]:
            return colorsys.hsv_to_rgb(*(float(r[f"{prefix}.{c}"][j]) for c in ("hue", "saturation", "value")))

        def surface(prefix: str, j: int, roughness: float, metallic: float) -> Surface:
            return Surface(color(prefix, j), roughness, metallic, choice(f"{prefix}.texture", j),
                           float(r[f"{prefix}.texture_scale"][j]), float(r[f"{prefix}.texture_contrast"][j]))

        things = [Thing(choice("object.class", j), float(r["object.x"][j]), float(r["object.y"][j]),
                        float(r["object.yaw"][j]), float(r["object.scale"][j]),
                        surface("object", j, float(r["object.roughness"][j]), float(r["object.metallic"][j])))
                  for j in range(int(r["object_count"][0]))]
        suns = [Sun(*(float(r[f"light.{k}"][i]) for k in ("energy", "elevation", "azimuth", "temperature")))
                for i in range(int(r["light_count"][0]))]
        one = {k: float(v[0]) for k, v in r.items() if k.startswith("camera.")}
        return Shot(things, surface("ground", 0, 0.9, 0.0), color("background"), suns, one["camera.distance"],
                    one["camera.elevation"], one["camera.azimuth"], one["camera.focal_length"], seed=int(seed))

    def annotate(self, scene, shot: Shot, ids: np.ndarray) -> list[ObjectAnnotation]:
        """A mask per object from the index pass (exact integers). The visible fraction is visible
        over unoccluded pixels in frame; the latter takes a render of the object alone, made only
        when another object's mask touches this one's (otherwise nothing occludes it)."""
        out = []
        for j, thing in enumerate(shot.objects):
            mask = ids == j + 1
            visible = int(mask.sum())
            if visible < self.min_visible_pixels:
                continue
            fraction = visible / max(scene.footprint(shot, j), visible) if _touches_another(ids, j + 1) else 1.0
            out.append(ObjectAnnotation.from_mask(self.categories.index(thing.kind) + 1, mask, fraction))
        return out

    def close(self) -> None:
        pass            # the process's one Blender scene stays for the next generator


#: the mesh files Blender imports here
MESH_FORMATS = (".obj", ".ply", ".stl")


def _check_meshes(meshes: Any) -> dict[str, str]:
    """``generator.meshes``: class name → a mesh file (one more class each)."""
    if not isinstance(meshes, dict):
        raise ValueError(f"generator.meshes: expected a table of class name = mesh file, got {meshes!r}")
    out = {}
    for name, path in meshes.items():
        if name in CLASSES:
            raise ValueError(f"generator.meshes.{name}: expected a class name other than the primitives "
                             f"{list(CLASSES)}, got {name!r}")
        if not isinstance(path, str) or Path(path).suffix.lower() not in MESH_FORMATS or not Path(path).is_file():
            raise ValueError(f"generator.meshes.{name}: expected an existing {'/'.join(MESH_FORMATS)} file, "
                             f"got {path!r}")
        out[name] = str(Path(path).resolve())
    return out


def _touches_another(ids: np.ndarray, k: int) -> bool:
    """Whether instance ``k``'s pixels are 4-adjacent to another instance's (an occluder's)."""
    mask = ids == k
    others = (ids > 0) & ~mask
    near = np.zeros_like(mask)
    near[1:] |= mask[:-1]
    near[:-1] |= mask[1:]
    near[:, 1:] |= mask[:, :-1]
    near[:, :-1] |= mask[:, 1:]
    return bool((near & others).any())


__all__ = ["BlenderGenerator", "default_space"]
