"""The shapes scene: its parameter space and the backend-free scene description.

One row of parameter samples (see :meth:`ParameterSpace.sample`) becomes a
:class:`SceneDescription`: plain numbers and 4×4 poses, no renderer objects. The pyrender
backend (``generator/pyrender_backend.py``) only draws what this module describes, so the scene
logic can be tested and reused without a GL context.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from .space import ParameterSpace, hsv_spec, loguniform_spec, uniform_spec

CLASSES = ("cube", "sphere", "cylinder", "cone", "torus")
DISTRACTORS = ("capsule", "slab")


def default_space(max_objects: int, max_distractors: int) -> ParameterSpace:
    """Every knob of the shapes scene, with hard bounds and a moderate default distribution."""
    K, D = max_objects, max_distractors
    u, lu, hsv = uniform_spec, loguniform_spec, hsv_spec

    spec = {
        "object_count": {"family": "int", "bounds": [0, K], "mean": (K + 1) / 2, "std": float(K)},
        "object.class": {"family": "categorical", "choices": list(CLASSES), "size": K}
        if K > 1 else {"family": "categorical", "choices": list(CLASSES)},
        "object.x": u((-2.5, 2.5), (-1.8, 1.8), K),
        "object.z": u((-2.5, 2.5), (-1.8, 1.8), K),
        "object.yaw": u((-180, 180), None, K),
        "object.scale": lu((0.3, 2.0), (0.6, 1.3), K),
        **hsv("object", K, s=(0.3, 1.0), v=(0.4, 1.0)),
        "object.metallic": u((0, 1), (0.0, 0.5), K),
        "object.roughness": u((0, 1), (0.3, 1.0), K),
        "distractor_count": {"family": "int", "bounds": [0, D], "mean": D / 2, "std": float(max(D, 1))},
        "distractor.shape": {"family": "categorical", "choices": list(DISTRACTORS)}
        | ({"size": D} if D > 1 else {}),
        "distractor.x": u((-3.5, 3.5), None, D),
        "distractor.z": u((-3.5, 3.5), None, D),
        "distractor.yaw": u((-180, 180), None, D),
        "distractor.scale": lu((0.3, 2.0), (0.5, 1.2), D),
        **hsv("distractor", D, v=(0.2, 1.0)),
        **hsv("ground", 1, s=(0.0, 0.5), v=(0.2, 0.8)),
        **hsv("background", 1, s=(0.0, 0.6), v=(0.2, 0.9)),
        "light.intensity": u((0, 12), (2, 6)),
        "light.elevation": u((0, 90), (30, 80)),
        "light.azimuth": u((-180, 180)),
        "ambient": u((0, 1), (0.1, 0.4)),
        "camera.distance": u((0.5, 15), (4.5, 7)),
        "camera.elevation": u((0, 89), (20, 60)),
        "camera.azimuth": u((-180, 180)),
        "camera.fov": u((15, 100), (35, 55)),
        "sensor.noise": u((0, 0.3), (0, 0.03)),
        "sensor.blur": u((0, 3), (0, 0.8)),
        "sensor.exposure": u((-3, 3), (-0.3, 0.3)),
        "sensor.gamma": u((0.4, 2.5), (0.9, 1.1)),
    }
    if D == 0:
        spec = {k: v for k, v in spec.items() if not k.startswith("distractor")}
    return ParameterSpace.from_dict(spec)


# --------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------

@dataclass
class Shape:
    kind: str                   # one of CLASSES or DISTRACTORS
    pose: np.ndarray            # 4×4 object-to-world
    color: tuple[float, float, float]
    metallic: float = 0.0
    roughness: float = 1.0
    category: int | None = None  # index into CLASSES for annotated objects; None for distractors


@dataclass
class SceneDescription:
    objects: list[Shape]
    distractors: list[Shape]
    ground_color: tuple[float, float, float]
    background_color: tuple[float, float, float]
    light_pose: np.ndarray
    light_intensity: float
    ambient: float
    camera_pose: np.ndarray
    yfov: float                 # radians
    sensor: dict[str, float] = field(default_factory=dict)


ZNEAR, ZFAR = 0.05, 200.0


def perspective(yfov: float, znear: float = ZNEAR, zfar: float = ZFAR) -> np.ndarray:
    """OpenGL projection matrix for a square image (the one pyrender's PerspectiveCamera uses)."""
    f = 1.0 / math.tan(yfov / 2.0)
    return np.array([[f, 0, 0, 0], [0, f, 0, 0],
                     [0, 0, (zfar + znear) / (znear - zfar), 2 * zfar * znear / (znear - zfar)],
                     [0, 0, -1, 0]])


def _hsv(h, s, v) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(float(h) % 1.0, float(s), float(v))


def _yaw_pose(x: float, z: float, yaw_deg: float, scale: float) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    pose = np.eye(4)
    pose[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) * scale
    pose[0, 3], pose[2, 3] = x, z
    return pose


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # np.cross costs ~30 µs on 3-vectors
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world pose (OpenGL convention: the camera looks down its −z axis)."""
    fwd = np.asarray(target, float) - np.asarray(eye, float)
    n = math.sqrt(float(fwd @ fwd))
    fwd = fwd / n if n > 1e-9 else np.array([0.0, 0.0, -1.0])
    up = np.asarray(up, float)
    if abs(float(fwd @ up)) > 0.999:
        up = np.array([0.0, 0.0, -1.0])
    right = _cross(fwd, up)
    right /= math.sqrt(float(right @ right))
    true_up = _cross(right, fwd)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, true_up, -fwd, eye
    return pose


def _spherical(distance: float, elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    return distance * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])


def describe(params: dict[str, np.ndarray], classes: tuple = CLASSES,
             distractor_shapes: tuple = DISTRACTORS) -> SceneDescription:
    """One image's parameter values (a row of :meth:`ParameterSpace.sample`) as a scene.

    ``classes`` and ``distractor_shapes`` are the choices of ``object.class`` and ``distractor.shape``
    in the space that drew ``params`` (a config may narrow them): a draw is an index into them,
    and an object's category its class's index in :data:`CLASSES`, whatever the choices."""
    r = {k: np.atleast_1d(v) for k, v in params.items()}
    n_obj = int(r["object_count"][0])
    kinds = [classes[int(r["object.class"][j])] for j in range(n_obj)]
    objects = [
        Shape(kind=kinds[j],
              pose=_yaw_pose(r["object.x"][j], r["object.z"][j], r["object.yaw"][j], r["object.scale"][j]),
              color=_hsv(r["object.hue"][j], r["object.saturation"][j], r["object.value"][j]),
              metallic=float(r["object.metallic"][j]), roughness=float(r["object.roughness"][j]),
              category=CLASSES.index(kinds[j]))
        for j in range(n_obj)
    ]
    n_dis = int(r["distractor_count"][0]) if "distractor_count" in r else 0
    distractors = [
        Shape(kind=distractor_shapes[int(r["distractor.shape"][j])],
              pose=_yaw_pose(r["distractor.x"][j], r["distractor.z"][j], r["distractor.yaw"][j],
                             r["distractor.scale"][j]),
              color=_hsv(r["distractor.hue"][j], r["distractor.saturation"][j], r["distractor.value"][j]),
              roughness=0.8)
        for j in range(n_dis)
    ]
    light_dir = _spherical(1.0, r["light.elevation"][0], r["light.azimuth"][0])
    return SceneDescription(
        objects=objects,
        distractors=distractors,
        ground_color=_hsv(r["ground.hue"][0], r["ground.saturation"][0], r["ground.value"][0]),
        background_color=_hsv(r["background.hue"][0], r["background.saturation"][0], r["background.value"][0]),
        light_pose=look_at(light_dir, np.zeros(3)),
        light_intensity=float(r["light.intensity"][0]),
        ambient=float(r["ambient"][0]),
        camera_pose=look_at(_spherical(r["camera.distance"][0], r["camera.elevation"][0],
                                       r["camera.azimuth"][0]), np.array([0.0, 0.4, 0.0])),
        yfov=math.radians(float(r["camera.fov"][0])),
        sensor={k.split(".", 1)[1]: float(r[k][0]) for k in r if k.startswith("sensor.")},
    )
