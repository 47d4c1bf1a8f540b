import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
