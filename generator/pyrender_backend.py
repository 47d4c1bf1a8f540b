"""Draws a :class:`SceneDescription` with pyrender: RGB, depth and an instance-id image.

One backend owns one GL context (EGL, headless) and one pyrender scene that is built once:
every object slot holds one node per shape class, and drawing an image only toggles which node
is visible and changes poses, materials, lights and the camera in place. Nothing is uploaded to
the GPU after the first image. ``reuse=False`` is the naive loop (a fresh pyrender scene and
fresh meshes for every image) that ``dropt bench render`` compares against.

Mesa's llvmpipe rasterizer threads cost more than they give at 64–128 px, and dropt gets its
parallelism from processes, so ``LP_NUM_THREADS`` defaults to 0 (rasterize in the calling
thread) unless the user set it.
"""

from __future__ import annotations

import os

import numpy as np

from .shapes_geometry import canonical_mesh
from .shapes_scene import CLASSES, DISTRACTORS, ZFAR, ZNEAR, SceneDescription

_SMOOTH = {"sphere", "torus", "capsule"}


_shared = None  # the process's one OffscreenRenderer


def shared_offscreen(width: int, height: int):
    """The process's one GL context, as a pyrender OffscreenRenderer sized width × height.

    One context per process: EGL contexts of a process share a display that pyrender's
    ``delete`` (also run on garbage collection) terminates, and switching contexts costs time.
    Backends of different sizes share it; pyrender resizes its framebuffer when asked."""
    global _shared
    if _shared is None:
        pyrender = _import_pyrender()
        try:
            _shared = pyrender.OffscreenRenderer(width, height)
        except Exception as e:      # EGL without Mesa's drivers, or no memory left to map them
            from .base import RenderError

            raise RenderError(f"could not open a headless GL context (EGL: {type(e).__name__}); it needs "
                              f"libEGL with Mesa's llvmpipe (`make install` installs them) and memory to map "
                              f"its driver") from None
    elif (_shared.viewport_width, _shared.viewport_height) != (width, height):
        _shared.viewport_width, _shared.viewport_height = width, height
    return _shared


def _import_pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("LP_NUM_THREADS", "0")
    if not hasattr(np, "infty"):  # pyrender 0.1.45 still spells np.inf this way
        np.infty = np.inf
    import pyrender

    return pyrender


class PyrenderBackend:
    def __init__(self, image_size: int, max_objects: int, max_distractors: int, *, reuse: bool = True):
        self.image_size = image_size
        self.max_objects = max_objects
        self.max_distractors = max_distractors
        self.reuse = reuse
        self._renderer = None
        self._scene = None

    # --- GL context and the reusable scene -------------------------------------------------
    def _ensure_context(self):
        if self._renderer is None:
            self._pr = _import_pyrender()
            self._renderer = shared_offscreen(self.image_size, self.image_size)
            if self.reuse:
                self._build_pool()

    def _mesh(self, kind: str, color=(1.0, 1.0, 1.0), metallic=0.0, roughness=1.0):
        pr = self._pr
        material = pr.MetallicRoughnessMaterial(
            baseColorFactor=[*color, 1.0], metallicFactor=metallic, roughnessFactor=roughness)
        return pr.Mesh.from_trimesh(canonical_mesh(kind), material=material, smooth=kind in _SMOOTH)

    def _ground_mesh(self, color):
        import trimesh

        plane = trimesh.Trimesh(vertices=[[-60, 0, -60], [60, 0, -60], [60, 0, 60], [-60, 0, 60]],
                                faces=[[0, 2, 1], [0, 3, 2]], process=False)
        mat = self._pr.MetallicRoughnessMaterial(baseColorFactor=[*color, 1.0], metallicFactor=0.0,
                                                 roughnessFactor=1.0)
        return self._pr.Mesh.from_trimesh(plane, material=mat, smooth=False)

    def _build_pool(self):
        pr = self._pr
        scene = pr.Scene(bg_color=[0, 0, 0, 1], ambient_light=[0.2, 0.2, 0.2])
        self._ground = scene.add(self._ground_mesh((0.5, 0.5, 0.5)))
        self._seg_map = {self._ground: 0}
        self._object_slots = []
        for j in range(self.max_objects):
            slot = {k: scene.add(self._mesh(k)) for k in CLASSES}
            for node in slot.values():
                node.mesh.is_visible = False
                self._seg_map[node] = np.array([j + 1, 0, 0])
            self._object_slots.append(slot)
        self._distractor_slots = []
        for _ in range(self.max_distractors):
            slot = {k: scene.add(self._mesh(k)) for k in DISTRACTORS}
            for node in slot.values():
                node.mesh.is_visible = False
                self._seg_map[node] = 0
            self._distractor_slots.append(slot)
        self._camera = scene.add(pr.PerspectiveCamera(yfov=0.8, znear=ZNEAR, zfar=ZFAR, aspectRatio=1.0))
        self._light = scene.add(pr.DirectionalLight(color=np.ones(3), intensity=3.0))
        self._scene = scene

    # --- drawing -----------------------------------------------------------------------------
    def _pose_slots(self, slots, shapes):
        for j, slot in enumerate(slots):
            shape = shapes[j] if j < len(shapes) else None
            for kind, node in slot.items():
                on = shape is not None and shape.kind == kind
                node.mesh.is_visible = on
                if on:
                    mat = node.mesh.primitives[0].material
                    mat.baseColorFactor = np.array([*shape.color, 1.0], dtype=np.float32)
                    mat.metallicFactor = shape.metallic
                    mat.roughnessFactor = shape.roughness
                    self._scene.set_pose(node, shape.pose)

    def _apply(self, desc: SceneDescription):
        if len(desc.objects) > self.max_objects or len(desc.distractors) > self.max_distractors:
            raise ValueError(f"expected at most {self.max_objects} objects and {self.max_distractors} "
                             f"distractors, got {len(desc.objects)} and {len(desc.distractors)}")
        scene = self._scene
        scene.bg_color = np.array([*desc.background_color, 1.0])
        scene.ambient_light = np.full(3, desc.ambient)
        self._ground.mesh.primitives[0].material.baseColorFactor = np.array([*desc.ground_color, 1.0])
        self._pose_slots(self._object_slots, desc.objects)
        self._pose_slots(self._distractor_slots, desc.distractors)
        self._camera.camera.yfov = desc.yfov
        scene.set_pose(self._camera, desc.camera_pose)
        self._light.light.intensity = desc.light_intensity
        scene.set_pose(self._light, desc.light_pose)

    def _build_fresh(self, desc: SceneDescription):
        """The naive path: a new scene with new meshes for this one image."""
        pr = self._pr
        scene = pr.Scene(bg_color=[*desc.background_color, 1.0], ambient_light=np.full(3, desc.ambient))
        seg = {scene.add(self._ground_mesh(desc.ground_color)): 0}
        for j, s in enumerate(desc.objects):
            seg[scene.add(self._mesh(s.kind, s.color, s.metallic, s.roughness), pose=s.pose)] = np.array([j + 1, 0, 0])
        for s in desc.distractors:
            seg[scene.add(self._mesh(s.kind, s.color, s.metallic, s.roughness), pose=s.pose)] = 0
        scene.add(pr.PerspectiveCamera(yfov=desc.yfov, znear=ZNEAR, zfar=ZFAR, aspectRatio=1.0),
                  pose=desc.camera_pose)
        scene.add(pr.DirectionalLight(color=np.ones(3), intensity=desc.light_intensity), pose=desc.light_pose)
        return scene, seg

    def draw(self, desc: SceneDescription, depth: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, None]:
        """(rgb uint8 H×W×3, depth float32 H×W with 0 for background, instance ids uint8 H×W,
        None). Instance id j+1 marks pixels where ``desc.objects[j]`` is the visible surface;
        0 is background, ground or a distractor. The fourth item (unoccluded pixel counts) is
        None: annotations then estimate it from projected geometry. pyrender reads depth back with
        every colour render, so ``depth=False`` only drops it from the result."""
        self._ensure_context()
        shared_offscreen(self.image_size, self.image_size)  # another backend may have resized it
        if self.reuse:
            self._apply(desc)
            scene, seg_map = self._scene, self._seg_map
        else:
            scene, seg_map = self._build_fresh(desc)
        rgb, z = self._renderer.render(scene)
        seg, _ = self._renderer.render(scene, flags=self._pr.RenderFlags.SEG, seg_node_map=seg_map)
        return (np.ascontiguousarray(rgb), z.astype(np.float32, copy=False) if depth else None,
                np.ascontiguousarray(seg[..., 0]), None)

    def close(self):
        self._renderer = None  # the shared context stays; pyrender frees meshes of dropped scenes
        self._scene = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
