"""The Blender scene: built once per process in ``bpy``, changed per image, rendered with Cycles.

One process hosts one Blender (``bpy`` is a module-wide singleton), so :func:`shared_scene`
keeps one :class:`BlenderScene` and rebuilds it only when the settings change. Each object slot
holds one mesh per class; an image shows at most one of them per slot (the others are hidden from
the render), so nothing is created or deleted between images. A render writes one uncompressed
multilayer EXR (colour, depth and the object-index pass, whose values are exact integers: the
pass is not anti-aliased) and :func:`generator.blender.exr.read_exr` reads it back.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base import RenderError
from .exr import linear_to_srgb, read_exr

CLASSES = ("cube", "sphere", "cylinder", "cone", "torus")
#: the procedural textures a surface can carry (Blender's texture nodes), and the output each gives
TEXTURES = {"noise": "Fac", "checker": "Fac", "voronoi": "Distance", "wave": "Fac"}
#: half the height of each class's mesh at scale 1 (it rests on the ground at z = 0)
HALF_HEIGHT = {"cube": 0.5, "sphere": 0.5, "cylinder": 0.5, "cone": 0.5, "torus": 0.15}
#: where the camera looks (just above the ground's centre)
LOOK_AT = (0.0, 0.0, 0.3)
#: depth written where no surface was hit
NO_HIT = 1e9


@dataclass(frozen=True)
class Settings:
    """What building the scene depends on (a change rebuilds it)."""

    image_size: int
    slots: int
    samples: int
    denoise: bool
    lights: int = 2
    """Suns in the scene (an image shows 1 … ``lights`` of them)."""
    meshes: tuple[tuple[str, str], ...] = ()
    """A user's meshes as (class name, file): each is one more class."""


@dataclass
class Surface:
    """A material: a colour a procedural texture darkens by up to ``contrast``."""

    color: tuple[float, float, float]
    roughness: float
    metallic: float
    texture: str = "noise"
    texture_scale: float = 5.0
    contrast: float = 0.0


@dataclass
class Thing:
    kind: str
    x: float
    y: float
    yaw_deg: float
    scale: float
    surface: Surface


@dataclass
class Sun:
    energy: float
    elevation: float
    azimuth: float
    temperature: float


@dataclass
class Shot:
    """One image: what the scene shows and from where."""

    objects: list[Thing]
    ground: Surface
    background: tuple[float, float, float]
    suns: list[Sun]
    camera_distance: float
    camera_elevation: float
    camera_azimuth: float
    focal_length: float
    seed: int = 0
    only: int | None = field(default=None)
    """Show object ``only`` alone (its unoccluded footprint)."""


def _bpy():
    try:
        import bpy
    except ImportError:
        raise RenderError("generator blender: expected Blender as a Python module (bpy 4.2), not installed: "
                          "pip install -e '.[blender]' (or make blender)") from None
    return bpy


class BlenderScene:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.bpy = bpy = _bpy()
        bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = bpy.context.scene
        self._render_settings()
        self._world_camera_light()
        self.half_height = dict(HALF_HEIGHT)
        self.templates = {name: self._load_mesh(name, path) for name, path in settings.meshes}
        self.slots = [self._slot(j) for j in range(settings.slots)]
        self.folder = Path(tempfile.mkdtemp(prefix="dropt-blender-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))

    # --- built once ----------------------------------------------------------------------------
    def _render_settings(self) -> None:
        s, r = self.settings, self.scene.render
        r.engine = "CYCLES"
        r.resolution_x = r.resolution_y = s.image_size
        r.resolution_percentage = 100
        r.threads_mode, r.threads = "FIXED", 1          # one core per process: the same bytes every time
        r.dither_intensity = 0.0
        r.image_settings.file_format = "OPEN_EXR_MULTILAYER"
        r.image_settings.color_depth, r.image_settings.exr_codec = "32", "NONE"
        self.scene.use_nodes = False
        self.scene.view_settings.view_transform, self.scene.view_settings.look = "Standard", "None"
        layer = self.scene.view_layers[0]
        layer.use_pass_z = layer.use_pass_object_index = True
        c = self.scene.cycles
        c.device, c.samples, c.use_adaptive_sampling, c.use_animated_seed = "CPU", s.samples, False, False
        c.use_denoising = s.denoise
        c.max_bounces, c.diffuse_bounces, c.glossy_bounces = 4, 2, 2
        c.transmission_bounces = c.volume_bounces = c.transparent_max_bounces = 0
        c.caustics_reflective = c.caustics_refractive = False

    def _world_camera_light(self) -> None:
        bpy, scene = self.bpy, self.scene
        world = bpy.data.worlds.new("world")
        world.use_nodes, scene.world = True, world
        self.background = world.node_tree.nodes["Background"]
        self.camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
        scene.collection.objects.link(self.camera)
        scene.camera, self.camera.data.sensor_width = self.camera, 36.0
        self.suns = [self._sun(i) for i in range(self.settings.lights)]
        bpy.ops.mesh.primitive_plane_add(size=40.0)
        self.ground = bpy.context.object                 # pass_index 0: the ground is background
        self.ground_paint = self._material(self.ground, "ground")

    def _sun(self, i: int) -> tuple:
        """Sun ``i`` and its blackbody node (the colour temperature), hidden until an image shows it."""
        light = self.bpy.data.lights.new(f"sun{i}", "SUN")
        light.use_nodes = True
        nodes = light.node_tree.nodes
        blackbody = nodes.new("ShaderNodeBlackbody")
        light.node_tree.links.new(blackbody.outputs["Color"], nodes["Emission"].inputs["Color"])
        obj = self.bpy.data.objects.new(f"sun{i}", light)
        self.scene.collection.objects.link(obj)
        obj.hide_render = True
        return obj, blackbody

    def _slot(self, j: int) -> dict:
        """Slot ``j``: one mesh per class sharing one material, instance id j + 1, all hidden."""
        ops = self.bpy.ops.mesh
        makers = {"cube": lambda: ops.primitive_cube_add(size=1.0),
                  "sphere": lambda: ops.primitive_uv_sphere_add(radius=0.5, segments=32, ring_count=16),
                  "cylinder": lambda: ops.primitive_cylinder_add(radius=0.5, depth=1.0, vertices=32),
                  "cone": lambda: ops.primitive_cone_add(radius1=0.5, depth=1.0, vertices=32),
                  "torus": lambda: ops.primitive_torus_add(major_radius=0.35, minor_radius=0.15)}
        material = self.bpy.data.materials.new(f"slot{j}")
        paint = Paint(material)
        meshes = {}
        for kind in CLASSES:
            makers[kind]()
            obj = self.bpy.context.object
            if kind != "cube":
                self.bpy.ops.object.shade_smooth()
            obj.data.materials.append(material)
            meshes[kind] = obj
        for name, template in self.templates.items():      # a user's mesh: its data shared, its material the slot's
            obj = self.bpy.data.objects.new(f"{name}{j}", template)
            self.scene.collection.objects.link(obj)
            for material_slot in obj.material_slots:
                material_slot.link, material_slot.material = "OBJECT", material
            meshes[name] = obj
        for obj in meshes.values():
            obj.pass_index, obj.hide_render = j + 1, True
        return {"meshes": meshes, "paint": paint}

    def _load_mesh(self, name: str, path: str):
        """A user's mesh file as mesh data centred on the origin, its largest side 1 (like the
        primitives); its half height noted so that it rests on the ground."""
        importers = {".obj": self.bpy.ops.wm.obj_import, ".ply": self.bpy.ops.wm.ply_import,
                     ".stl": self.bpy.ops.wm.stl_import}
        before = set(self.bpy.data.objects)
        importers[Path(path).suffix.lower()](filepath=str(path))
        parts = [o for o in self.bpy.data.objects if o not in before and o.type == "MESH"]
        if not parts:
            raise RenderError(f"generator.meshes.{name}: expected a mesh in {path}, got none")
        mesh = parts[0].data
        for o in [o for o in self.bpy.data.objects if o not in before]:
            self.bpy.data.objects.remove(o)
        co = np.empty(len(mesh.vertices) * 3)
        mesh.vertices.foreach_get("co", co)
        co = co.reshape(-1, 3)
        lo, hi = co.min(axis=0), co.max(axis=0)
        co = (co - (lo + hi) / 2) / max(float((hi - lo).max()), 1e-9)
        mesh.vertices.foreach_set("co", co.ravel())
        mesh.update()
        if not mesh.materials:
            mesh.materials.append(None)       # one slot, linked per object to the slot's material
        self.half_height[name] = float(co[:, 2].max())
        return mesh

    def _material(self, obj, name: str) -> Paint:
        material = self.bpy.data.materials.new(name)
        obj.data.materials.append(material)
        return Paint(material)

    # --- per image -----------------------------------------------------------------------------
    def render(self, shot: Shot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(uint8 H×W×3 sRGB, int32 H×W instance ids (0 background), float32 H×W depth, 0 where
        nothing was hit)."""
        self._show(shot)
        path = self.folder / "image.exr"
        self.scene.render.filepath = str(path)
        with _quiet_stdout():
            self.bpy.ops.render.render(write_still=True)
        ch = read_exr(path)
        rgb = linear_to_srgb(np.stack([ch[f"ViewLayer.Combined.{c}"] for c in "RGB"], axis=-1))
        depth = ch["ViewLayer.Depth.Z"].astype(np.float32)
        depth[depth >= NO_HIT] = 0.0
        return rgb, ch["ViewLayer.IndexOB.X"].astype(np.int32), depth

    def footprint(self, shot: Shot, j: int) -> int:
        """Pixels object ``j`` covers alone (in frame): one sample is enough, the index pass
        takes one sample per pixel whatever the count."""
        c = self.scene.cycles
        samples, denoise = c.samples, c.use_denoising
        c.samples, c.use_denoising = 1, False
        try:
            _, ids, _ = self.render(Shot(**{**shot.__dict__, "only": j}))
        finally:
            c.samples, c.use_denoising = samples, denoise
        return int((ids == j + 1).sum())

    def _show(self, shot: Shot) -> None:
        for j, slot in enumerate(self.slots):
            thing = shot.objects[j] if j < len(shot.objects) and shot.only in (None, j) else None
            for kind, obj in slot["meshes"].items():
                obj.hide_render = thing is None or kind != thing.kind
            if thing is not None:
                obj = slot["meshes"][thing.kind]
                obj.location = (thing.x, thing.y, self.half_height[thing.kind] * thing.scale)
                obj.rotation_euler = (0.0, 0.0, math.radians(thing.yaw_deg))
                obj.scale = (thing.scale,) * 3
                slot["paint"].apply(thing.surface)
        self.ground_paint.apply(shot.ground)
        self.background.inputs["Color"].default_value = (*shot.background, 1.0)
        for i, (obj, blackbody) in enumerate(self.suns):
            obj.hide_render = i >= len(shot.suns)
            if i < len(shot.suns):
                sun = shot.suns[i]
                obj.data.energy = sun.energy
                obj.rotation_euler = (math.radians(90.0 - sun.elevation), 0.0, math.radians(sun.azimuth))
                blackbody.inputs["Temperature"].default_value = sun.temperature
        self._aim(shot)
        self.scene.cycles.seed = shot.seed % 2 ** 31
        self.bpy.context.view_layer.update()

    def _aim(self, shot: Shot) -> None:
        from mathutils import Vector

        el, az, d = math.radians(shot.camera_elevation), math.radians(shot.camera_azimuth), shot.camera_distance
        self.camera.location = (LOOK_AT[0] + d * math.cos(el) * math.cos(az),
                                LOOK_AT[1] + d * math.cos(el) * math.sin(az), LOOK_AT[2] + d * math.sin(el))
        self.camera.rotation_euler = (Vector(LOOK_AT) - self.camera.location).to_track_quat("-Z", "Y").to_euler()
        self.camera.data.lens = shot.focal_length

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


class Paint:
    """A material's nodes: the Principled BSDF's base colour is its colour mixed toward a darker
    copy by one of the procedural textures (in the object's own coordinates, so the pattern moves
    with it); an image picks the texture by linking its output to the mix."""

    def __init__(self, material):
        material.use_nodes = True
        self.tree = tree = material.node_tree
        self.bsdf = tree.nodes["Principled BSDF"]
        coords = tree.nodes.new("ShaderNodeTexCoord").outputs["Object"]
        self.textures = {}
        for name in TEXTURES:
            node = tree.nodes.new(f"ShaderNodeTex{name.capitalize()}")
            tree.links.new(coords, node.inputs["Vector"])
            self.textures[name] = node
        self.mix = tree.nodes.new("ShaderNodeMix")
        self.mix.data_type = "RGBA"
        self.factor, self.light, self.dark = (self.mix.inputs[i] for i in (0, 6, 7))   # the RGBA variant's sockets
        tree.links.new(self.mix.outputs[2], self.bsdf.inputs["Base Color"])
        self.linked = None

    def apply(self, surface: Surface) -> None:
        if surface.texture != self.linked:
            node = self.textures[surface.texture]
            self.tree.links.new(node.outputs[TEXTURES[surface.texture]], self.factor)
            self.linked = surface.texture
        self.textures[surface.texture].inputs["Scale"].default_value = float(surface.texture_scale)
        self.light.default_value = (*surface.color, 1.0)
        self.dark.default_value = (*(c * (1.0 - surface.contrast) for c in surface.color), 1.0)
        self.bsdf.inputs["Roughness"].default_value = float(surface.roughness)
        self.bsdf.inputs["Metallic"].default_value = float(surface.metallic)


@contextmanager
def _quiet_stdout():
    """Cycles prints a progress line per sample to file descriptor 1: keep it off dropt's output."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


_shared: BlenderScene | None = None


def shared_scene(settings: Settings) -> BlenderScene:
    """The process's one Blender scene for ``settings`` (rebuilt when they change)."""
    global _shared
    if _shared is None or _shared.settings != settings:
        if _shared is not None:
            _shared.close()
        _shared = BlenderScene(settings)
    return _shared


__all__ = ["CLASSES", "TEXTURES", "BlenderScene", "Settings", "Shot", "Sun", "Surface", "Thing", "shared_scene"]
