"""Reading the one file a Blender render writes: an uncompressed multilayer OpenEXR.

A render writes its colour, depth and object-index passes into one 32-bit float EXR
(``exr_codec = "NONE"``); this reads it into numpy in well under a millisecond at 64², with no
image library (Blender's compositor viewer does not run in background mode, and its
``Render Result`` image has no pixels there).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

#: EXR pixel types: 0 uint, 1 half, 2 float
PIXEL_TYPES = {0: "<u4", 1: "<f2", 2: "<f4"}
MAGIC = b"\x76\x2f\x31\x01"


def read_exr(path: str | Path) -> dict[str, np.ndarray]:
    """Channel name → H×W array (row 0 the top of the image) of an uncompressed scanline EXR."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC or struct.unpack_from("<I", data, 4)[0] & 0x1200:
        raise ValueError(f"{path}: expected a single-part scanline OpenEXR file")
    attrs, at = _header(data)
    if attrs["compression"][0] != 0:
        raise ValueError(f"{path}: expected an uncompressed EXR (exr_codec = 'NONE')")
    channels = _channels(attrs["channels"])
    x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"])
    width, height = x1 - x0 + 1, y1 - y0 + 1
    offsets = np.frombuffer(data, "<u8", height, at)
    row = np.dtype([("y", "<i4"), ("n", "<i4")] + [(n, PIXEL_TYPES[t], (width,)) for n, t in channels])
    if np.any(np.diff(offsets.astype(np.int64)) != row.itemsize):
        raise ValueError(f"{path}: expected contiguous scanlines")
    rows = np.frombuffer(data, row, height, int(offsets[0]))
    order = np.argsort(rows["y"])
    return {n: rows[n][order] for n, _ in channels}


def _header(data: bytes) -> tuple[dict[str, bytes], int]:
    """The header's attributes by name, and where the scanline offsets start."""
    at, attrs = 8, {}
    while data[at] != 0:
        end = data.index(b"\0", at)
        name, at = data[at:end].decode(), end + 1
        at = data.index(b"\0", at) + 1                  # the attribute's type name
        (size,) = struct.unpack_from("<i", data, at)
        attrs[name], at = data[at + 4:at + 4 + size], at + 4 + size
    return attrs, at + 1


def _channels(raw: bytes) -> list[tuple[str, int]]:
    out, at = [], 0
    while raw[at] != 0:
        end = raw.index(b"\0", at)
        out.append((raw[at:end].decode(), struct.unpack_from("<i", raw, end + 1)[0]))
        at = end + 17                                    # name, pixel type, pLinear + reserved, x/y sampling
    return out


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Scene-linear colour → 8-bit sRGB (Blender's "Standard" view transform), rounded."""
    x = np.clip(x, 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (s * 255.0 + 0.5).astype(np.uint8)


__all__ = ["linear_to_srgb", "read_exr"]
