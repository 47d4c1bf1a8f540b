"""Sensor effects applied to a rendered image: exposure, gamma, blur, noise (in that order)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def apply_sensor(rgb: np.ndarray, rng: np.random.Generator, *, noise: float = 0.0, blur: float = 0.0,
                 exposure: float = 0.0, gamma: float = 1.0) -> np.ndarray:
    """uint8 image → uint8 image. ``exposure`` is in stops, ``blur`` a Gaussian σ in pixels,
    ``noise`` the σ of additive Gaussian noise on [0, 1] intensities; ``gamma`` > 1 darkens."""
    x = _tone_curve(exposure, gamma)[rgb]  # exposure and gamma act per value: a 256-entry table
    if blur > 0.05:
        sigma = (blur, blur, 0.0) if x.ndim == 3 else blur
        x = gaussian_filter(x, sigma=sigma, mode="nearest", truncate=3.0)
    if noise > 0.0:
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise)
    x *= np.float32(255.0)
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def _tone_curve(exposure: float, gamma: float) -> np.ndarray:
    """float32 [0, 1] intensity of each uint8 value after exposure (stops) and gamma."""
    x = np.arange(256, dtype=np.float32) * np.float32(2.0 ** exposure / 255.0)
    np.clip(x, 0.0, 1.0, out=x)
    if gamma != 1.0:
        x **= np.float32(gamma)
    return x


def apply_camera_model(image: np.ndarray, rng: np.random.Generator, *, noise: float = 0.0, blur: float = 0.0,
                       gamma: float = 1.0, color_gain: tuple[float, float, float] = (1.0, 1.0, 1.0),
                       jpeg_quality: int | None = None) -> np.ndarray:
    """A fixed "real camera" applied after rendering, for hidden target domains: a white-balance
    cast (per-channel gain), gamma, blur, noise, then a JPEG round trip. The cast and the JPEG
    artefacts are outside any search space, so a reality gap remains however well θ is learned."""
    x = image
    if x.ndim == 3 and tuple(color_gain) != (1.0, 1.0, 1.0):
        x = np.clip(np.rint(x.astype(np.float32) * np.asarray(color_gain, np.float32)), 0, 255).astype(np.uint8)
    x = apply_sensor(x, rng, noise=noise, blur=blur, gamma=gamma)
    if jpeg_quality is not None:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=int(jpeg_quality))
        buf.seek(0)
        with Image.open(buf) as im:
            x = np.asarray(im.convert("RGB" if x.ndim == 3 else "L"), dtype=np.uint8).copy()
    return x
