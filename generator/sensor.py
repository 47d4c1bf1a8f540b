"""Sensor effects applied to a rendered image: exposure, gamma, blur, noise (in that order)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def apply_sensor(rgb: np.ndarray, rng: np.random.Generator, *, noise: float = 0.0, blur: float = 0.0,
                 exposure: float = 0.0, gamma: float = 1.0) -> np.ndarray:
    """uint8 image → uint8 image. ``exposure`` is in stops, ``blur`` a Gaussian σ in pixels,
    ``noise`` the σ of additive Gaussian noise on [0, 1] intensities; ``gamma`` > 1 darkens."""
    x = rgb.astype(np.float32) * np.float32(2.0 ** exposure / 255.0)
    np.clip(x, 0.0, 1.0, out=x)
    if gamma != 1.0:
        x **= np.float32(gamma)
    if blur > 0.05:
        sigma = (blur, blur, 0.0) if x.ndim == 3 else blur
        x = gaussian_filter(x, sigma=sigma, mode="nearest", truncate=3.0)
    if noise > 0.0:
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
