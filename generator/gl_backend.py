"""The fast backend: one GL pass with two colour targets (shaded RGB and instance id) plus depth.

pyrender opens the headless GL context (EGL by default; ``PYOPENGL_PLATFORM`` and
``EGL_DEVICE_ID`` pick the platform and GPU as they do for pyrender) and the meshes come from
trimesh, but the drawing is a few PyOpenGL calls per object with one small shader: every shape
kind is uploaded once, and an image costs one clear, one draw per visible shape and three
``glReadPixels``. A second, depth-test-free pass ORs bit j into a 32-bit target wherever
object j would be seen if nothing occluded it, which gives exact visible fractions from the
same rasterisation at the cost of one more draw per object. pyrender's own renderer needs a second pass for segmentation and walks every
node of the scene twice per image in Python; this path is what lets one process render
several hundred 64² images per second on llvmpipe. No MSAA: instance ids must stay exact, and
RGB and ids then come from the very same rasterisation.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .pyrender_backend import shared_offscreen
from .shapes_geometry import canonical_mesh
from .shapes_scene import CLASSES, DISTRACTORS, ZFAR, ZNEAR, SceneDescription, perspective

_SMOOTH = {"sphere", "torus", "capsule"}

_VERTEX = """
#version 330 core
layout(location = 0) in vec3 position;
layout(location = 1) in vec3 normal;
uniform mat4 M;
uniform mat4 VP;
out vec3 v_pos;
out vec3 v_nrm;
void main() {
    vec4 w = M * vec4(position, 1.0);
    v_pos = w.xyz;
    v_nrm = mat3(M) * normal;   // uniform scale and rotation only: no inverse-transpose needed
    gl_Position = VP * w;
}
"""

_FRAGMENT = """
#version 330 core
in vec3 v_pos;
in vec3 v_nrm;
uniform vec3 base_color;        // sRGB
uniform vec2 metal_rough;
uniform float instance_id;      // 0..255, written to the second target
uniform vec3 light_dir;         // unit vector towards the light
uniform float light_intensity;
uniform float ambient;
uniform vec3 cam_pos;
uniform uint amodal_bit;         // 1 << j for object j, 0 otherwise (second pass)
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_id;
layout(location = 2) out uint out_bits;
void main() {
    vec3 n = normalize(v_nrm);
    vec3 v = normalize(cam_pos - v_pos);
    if (dot(n, v) < 0.0) n = -n;                      // two-sided
    vec3 base = pow(base_color, vec3(2.2));
    float metallic = metal_rough.x;
    float rough = max(metal_rough.y, 0.05);
    vec3 h = normalize(light_dir + v);
    float ndl = max(dot(n, light_dir), 0.0);
    float shininess = 2.0 / (rough * rough * rough * rough) - 2.0;
    float spec = pow(max(dot(n, h), 0.0), max(shininess, 1.0)) * (shininess + 8.0) / 25.1327;
    vec3 f0 = mix(vec3(0.04), base, metallic);
    vec3 lit = ambient * base + 0.25 * light_intensity * ndl * (base * (1.0 - metallic) + f0 * spec);
    out_color = vec4(pow(clamp(lit, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
    out_id = vec4(instance_id / 255.0, 0.0, 0.0, 1.0);
    out_bits = amodal_bit;
}
"""


def _triangle_soup(kind: str) -> np.ndarray:
    """(n·3, 6) float32 positions+normals; flat normals for faceted shapes, smooth for round ones."""
    mesh = canonical_mesh(kind)
    faces = np.asarray(mesh.faces)
    pos = np.asarray(mesh.vertices)[faces].reshape(-1, 3)
    if kind in _SMOOTH:
        nrm = np.asarray(mesh.vertex_normals)[faces].reshape(-1, 3)
    else:
        nrm = np.repeat(np.asarray(mesh.face_normals), 3, axis=0)
    return np.hstack([pos, nrm]).astype(np.float32)


def _ground_soup() -> np.ndarray:
    p = np.array([[-60, 0, -60], [60, 0, 60], [60, 0, -60], [-60, 0, -60], [-60, 0, 60], [60, 0, 60]], np.float32)
    return np.hstack([p, np.tile([0, 1, 0], (6, 1))]).astype(np.float32)


class GLBackend:
    """Same interface as :class:`PyrenderBackend`: ``draw(desc) → (rgb, depth, ids)``."""

    def __init__(self, image_size: int, max_objects: int, max_distractors: int):
        self.image_size = image_size
        self.max_objects = max_objects
        self.max_distractors = max_distractors
        self._offscreen = None

    # --- set-up, once per process ----------------------------------------------------------
    def _ensure_context(self):
        if self._offscreen is not None:
            return
        self._offscreen = shared_offscreen(self.image_size, self.image_size)  # the process's GL context
        from OpenGL import GL

        self._gl = GL
        self._program = self._compile()
        self._loc = {name: GL.glGetUniformLocation(self._program, name) for name in
                     ("M", "VP", "base_color", "metal_rough", "instance_id", "light_dir", "light_intensity",
                      "ambient", "cam_pos", "amodal_bit")}
        self._vaos, self._buffers, self._renderbuffers = {}, [], []
        for kind in (*CLASSES, *DISTRACTORS, "ground"):
            self._vaos[kind] = self._upload(_ground_soup() if kind == "ground" else _triangle_soup(kind))
        self._fbo = self._framebuffer()

    def _compile(self) -> int:
        GL = self._gl
        program = GL.glCreateProgram()
        for src, kind in ((_VERTEX, GL.GL_VERTEX_SHADER), (_FRAGMENT, GL.GL_FRAGMENT_SHADER)):
            sh = GL.glCreateShader(kind)
            GL.glShaderSource(sh, src)
            GL.glCompileShader(sh)
            if not GL.glGetShaderiv(sh, GL.GL_COMPILE_STATUS):
                raise RuntimeError(f"shader compile failed: {GL.glGetShaderInfoLog(sh)!r}")
            GL.glAttachShader(program, sh)
        GL.glLinkProgram(program)
        if not GL.glGetProgramiv(program, GL.GL_LINK_STATUS):
            raise RuntimeError(f"shader link failed: {GL.glGetProgramInfoLog(program)!r}")
        return program

    def _upload(self, soup: np.ndarray) -> tuple[int, int]:
        GL = self._gl
        vao = GL.glGenVertexArrays(1)
        GL.glBindVertexArray(vao)
        vbo = GL.glGenBuffers(1)
        self._buffers.append(vbo)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, soup.nbytes, soup, GL.GL_STATIC_DRAW)
        for loc, off in ((0, 0), (1, 12)):
            GL.glEnableVertexAttribArray(loc)
            GL.glVertexAttribPointer(loc, 3, GL.GL_FLOAT, False, 24, ctypes.c_void_p(off))
        GL.glBindVertexArray(0)
        return vao, len(soup)

    def _framebuffer(self) -> int:
        GL, s = self._gl, self.image_size
        fbo = GL.glGenFramebuffers(1)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, fbo)
        for attachment, fmt in ((GL.GL_COLOR_ATTACHMENT0, GL.GL_RGBA8), (GL.GL_COLOR_ATTACHMENT1, GL.GL_R8),
                                (GL.GL_COLOR_ATTACHMENT2, GL.GL_R32UI),
                                (GL.GL_DEPTH_ATTACHMENT, GL.GL_DEPTH_COMPONENT24)):
            rb = GL.glGenRenderbuffers(1)
            self._renderbuffers.append(rb)
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, rb)
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, fmt, s, s)
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, attachment, GL.GL_RENDERBUFFER, rb)
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        if status != GL.GL_FRAMEBUFFER_COMPLETE:
            raise RuntimeError(f"framebuffer incomplete: status {status}")
        return fbo

    def _set_state(self):
        """Everything this pass relies on, every draw: pyrender shares the context and changes it."""
        GL, s = self._gl, self.image_size
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo)
        GL.glViewport(0, 0, s, s)
        GL.glLogicOp(GL.GL_OR)
        GL.glDisable(GL.GL_BLEND)
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glDisable(GL.GL_MULTISAMPLE)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glDepthFunc(GL.GL_LESS)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)

    # --- drawing -----------------------------------------------------------------------------
    def _draw_shape(self, kind: str, pose: np.ndarray, color, metallic: float, roughness: float, ident: int):
        GL, loc = self._gl, self._loc
        vao, count = self._vaos[kind]
        GL.glUniformMatrix4fv(loc["M"], 1, GL.GL_TRUE, pose.astype(np.float32))
        GL.glUniform3f(loc["base_color"], *color)
        GL.glUniform2f(loc["metal_rough"], metallic, roughness)
        GL.glUniform1f(loc["instance_id"], float(ident))
        GL.glBindVertexArray(vao)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, count)

    def draw(self, desc: SceneDescription, depth: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """(rgb, depth, ids) as :meth:`PyrenderBackend.draw`, plus each object's unoccluded
        pixel count in frame. ``depth=False`` skips reading the depth buffer back (depth is None)."""
        if len(desc.objects) > min(self.max_objects, 32) or len(desc.distractors) > self.max_distractors:
            raise ValueError(f"expected at most {self.max_objects} objects and {self.max_distractors} "
                             f"distractors, got {len(desc.objects)} and {len(desc.distractors)}")
        self._ensure_context()
        GL, loc, s = self._gl, self._loc, self.image_size
        self._offscreen._platform.make_current()
        self._set_state()
        # glClearBuffer's index is a draw-buffer slot, so map all three before clearing
        GL.glDrawBuffers(3, [GL.GL_COLOR_ATTACHMENT0, GL.GL_COLOR_ATTACHMENT1, GL.GL_COLOR_ATTACHMENT2])
        GL.glClearBufferfv(GL.GL_COLOR, 0, np.array([*desc.background_color, 1.0], np.float32))
        GL.glClearBufferfv(GL.GL_COLOR, 1, np.zeros(4, np.float32))
        GL.glClearBufferuiv(GL.GL_COLOR, 2, np.zeros(4, np.uint32))
        GL.glClear(GL.GL_DEPTH_BUFFER_BIT)
        GL.glDrawBuffers(3, [GL.GL_COLOR_ATTACHMENT0, GL.GL_COLOR_ATTACHMENT1, GL.GL_NONE])
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glUseProgram(self._program)
        view = np.linalg.inv(desc.camera_pose)
        GL.glUniformMatrix4fv(loc["VP"], 1, GL.GL_TRUE, (perspective(desc.yfov) @ view).astype(np.float32))
        GL.glUniform3f(loc["cam_pos"], *desc.camera_pose[:3, 3])
        GL.glUniform3f(loc["light_dir"], *desc.light_pose[:3, 2])  # the light shines along its −z
        GL.glUniform1f(loc["light_intensity"], desc.light_intensity)
        GL.glUniform1f(loc["ambient"], desc.ambient)
        GL.glUniform1ui(loc["amodal_bit"], 0)
        self._draw_shape("ground", np.eye(4), desc.ground_color, 0.0, 1.0, 0)
        for j, shape in enumerate(desc.objects):
            self._draw_shape(shape.kind, shape.pose, shape.color, shape.metallic, shape.roughness, j + 1)
        for shape in desc.distractors:
            self._draw_shape(shape.kind, shape.pose, shape.color, shape.metallic, shape.roughness, 0)
        # amodal pass: every object alone, OR-ed bit masks, no depth test
        GL.glDrawBuffers(3, [GL.GL_NONE, GL.GL_NONE, GL.GL_COLOR_ATTACHMENT2])
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glEnable(GL.GL_COLOR_LOGIC_OP)
        for j, shape in enumerate(desc.objects):
            GL.glUniform1ui(loc["amodal_bit"], 1 << j)
            self._draw_shape(shape.kind, shape.pose, shape.color, shape.metallic, shape.roughness, j + 1)
        GL.glDisable(GL.GL_COLOR_LOGIC_OP)
        GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT0)
        rgb = np.frombuffer(GL.glReadPixels(0, 0, s, s, GL.GL_RGB, GL.GL_UNSIGNED_BYTE), np.uint8).reshape(s, s, 3)
        GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT1)
        ids = np.frombuffer(GL.glReadPixels(0, 0, s, s, GL.GL_RED, GL.GL_UNSIGNED_BYTE), np.uint8).reshape(s, s)
        zbuf = (np.frombuffer(GL.glReadPixels(0, 0, s, s, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT), np.float32).reshape(s, s)
                if depth else None)
        GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT2)
        bits = np.frombuffer(GL.glReadPixels(0, 0, s, s, GL.GL_RED_INTEGER, GL.GL_UNSIGNED_INT), np.uint32)
        amodal = np.array([int(np.count_nonzero(bits & np.uint32(1 << j))) for j in range(len(desc.objects))])
        return rgb[::-1].copy(), None if zbuf is None else _linear_depth(zbuf[::-1]), ids[::-1].copy(), amodal

    def close(self):
        """Free this backend's GL objects; the process's shared context stays open."""
        if self._offscreen is None:
            return
        GL = self._gl
        self._offscreen._platform.make_current()
        GL.glDeleteFramebuffers(1, [self._fbo])
        GL.glDeleteRenderbuffers(len(self._renderbuffers), self._renderbuffers)
        GL.glDeleteVertexArrays(len(self._vaos), [v for v, _ in self._vaos.values()])
        GL.glDeleteBuffers(len(self._buffers), self._buffers)
        GL.glDeleteProgram(self._program)
        self._offscreen = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _linear_depth(zbuf: np.ndarray) -> np.ndarray:
    """Window-space depth → distance along the view axis (0 where nothing was drawn)."""
    z_ndc = 2.0 * zbuf.astype(np.float64) - 1.0
    depth = 2.0 * ZNEAR * ZFAR / (ZFAR + ZNEAR - z_ndc * (ZFAR - ZNEAR))
    depth[zbuf >= 1.0] = 0.0
    return depth.astype(np.float32)

