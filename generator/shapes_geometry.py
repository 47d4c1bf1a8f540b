"""Canonical meshes of the shapes scene (unit size, resting on y = 0, y up) and their convex parts.

The convex parts let annotations compute an object's unoccluded silhouette without a second
render: the perspective image of a convex body is the convex hull of its projected vertices, so
the silhouette of the object alone is the union of its parts' projected hulls.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import trimesh

_Y_UP = trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0])  # z axis → y axis


def _standing(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    mesh.apply_transform(_Y_UP)
    mesh.apply_translation([0.0, -mesh.bounds[0, 1], 0.0])
    return mesh


@functools.lru_cache(maxsize=None)
def canonical_mesh(kind: str) -> trimesh.Trimesh:
    builders = {
        "cube": lambda: trimesh.creation.box([0.9, 0.9, 0.9]),
        "sphere": lambda: trimesh.creation.icosphere(subdivisions=2, radius=0.5),
        "cylinder": lambda: trimesh.creation.cylinder(radius=0.4, height=1.0, sections=20),
        "cone": lambda: trimesh.creation.cone(radius=0.5, height=1.0, sections=20),
        "torus": lambda: trimesh.creation.torus(0.4, 0.15, major_sections=24, minor_sections=12),
        "capsule": lambda: trimesh.creation.capsule(height=0.7, radius=0.18, count=[12, 12]),
        "slab": lambda: trimesh.creation.box([1.1, 0.12, 0.5]),
    }
    if kind not in builders:
        raise KeyError(f"unknown shape {kind!r}; expected one of {sorted(builders)}")
    return _standing(builders[kind]())


@functools.lru_cache(maxsize=None)
def convex_parts(kind: str) -> tuple[np.ndarray, ...]:
    """Vertex sets whose convex hulls' union is the shape (homogeneous coordinates, (m, 4))."""
    v = np.asarray(canonical_mesh(kind).vertices)
    if kind == "torus":
        # consecutive tube rings around the major circle; each pair bounds a convex-ish segment
        ang = np.arctan2(v[:, 2], v[:, 0])
        n = 24
        ring = np.round(ang / (2 * math.pi / n)).astype(int) % n
        parts = [v[(ring == j) | (ring == (j + 1) % n)] for j in range(n)]
    else:
        parts = [v]
    return tuple(np.hstack([p, np.ones((len(p), 1))]) for p in parts)
