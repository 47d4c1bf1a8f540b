"""Exact annotations from the instance-id pass: masks, occlusion-aware boxes, visible fractions.

The visible fraction is visible pixels over the pixels the object would cover alone (in frame).
The GL backend counts the latter exactly in a second pass. Backends that cannot (pyrender) leave
it to this module, which fills the projected convex parts of the shape (see
``shapes_geometry``) as polygons, only when another shape's projected box overlaps this one:
otherwise nothing can occlude it and the fraction is 1.
"""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path
from scipy.spatial import ConvexHull, QhullError

from .dataset import ObjectAnnotation
from .shapes_geometry import convex_parts
from .shapes_scene import ZNEAR, SceneDescription, perspective

class _Projector:
    def __init__(self, desc: SceneDescription, size: int):
        self.pv = perspective(desc.yfov) @ np.linalg.inv(desc.camera_pose)
        self.size = size

    def parts(self, kind: str, pose: np.ndarray) -> list[np.ndarray] | None:
        """Pixel coordinates of each convex part, or None if the shape reaches behind the camera."""
        out = []
        m = self.pv @ pose
        for part in convex_parts(kind):
            clip = part @ m.T
            if (clip[:, 3] <= ZNEAR).any():
                return None
            ndc = clip[:, :2] / clip[:, 3:4]
            out.append(np.column_stack([(ndc[:, 0] + 1) * 0.5 * self.size, (1 - ndc[:, 1]) * 0.5 * self.size]))
        return out


def _box(parts: list[np.ndarray] | None) -> tuple[float, float, float, float] | None:
    if parts is None:
        return None
    pts = np.concatenate(parts)
    return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


def _overlap(a, b) -> bool:
    return a is None or b is None or not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def _silhouette_area(parts: list[np.ndarray], size: int) -> int:
    """Pixels whose centre lies in the union of the parts' hulls (GL's coverage rule)."""
    covered = np.zeros((size, size), bool)
    for pts in parts:
        try:
            hull = pts[ConvexHull(pts).vertices]
        except (QhullError, ValueError):
            continue
        x0, y0 = np.clip(np.floor(hull.min(axis=0)).astype(int), 0, size)
        x1, y1 = np.clip(np.ceil(hull.max(axis=0)).astype(int), 0, size)
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1]
        centres = np.column_stack([xs.ravel() + 0.5, ys.ravel() + 0.5])
        covered[y0:y1, x0:x1] |= Path(hull).contains_points(centres).reshape(ys.shape)
    return int(covered.sum())


def annotate(ids: np.ndarray, desc: SceneDescription, min_visible_pixels: int,
             unoccluded: np.ndarray | None = None) -> list[ObjectAnnotation]:
    """One annotation per object with at least ``min_visible_pixels`` visible pixels.

    ``unoccluded[j]``: pixels object j covers when drawn alone, if the backend measured it."""
    size = ids.shape[0]
    counts = np.bincount(ids.ravel(), minlength=len(desc.objects) + 1)
    kept = [j for j, _ in enumerate(desc.objects) if counts[j + 1] >= max(1, min_visible_pixels)]
    if not kept:
        return []
    if unoccluded is not None:
        return [ObjectAnnotation.from_mask(desc.objects[j].category + 1, ids == j + 1,
                                           min(1.0, counts[j + 1] / max(int(unoccluded[j]), 1)))
                for j in kept]
    proj = _Projector(desc, size)
    shapes = desc.objects + desc.distractors
    parts = [proj.parts(s.kind, s.pose) for s in shapes]
    boxes = [_box(p) for p in parts]
    out = []
    for j in kept:
        visible = int(counts[j + 1])
        occludable = any(_overlap(boxes[j], boxes[k]) for k in range(len(shapes)) if k != j)
        if parts[j] is None or not occludable:
            fraction = 1.0
        else:
            fraction = min(1.0, visible / max(visible, _silhouette_area(parts[j], size)))
        out.append(ObjectAnnotation.from_mask(desc.objects[j].category + 1, ids == j + 1, fraction))
    return out
