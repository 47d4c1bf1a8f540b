"""A fixed, seeded random convolutional feature extractor for distribution-gap metrics.

Why random weights: the gap metrics (MMD, Fréchet) only need an embedding in which images that
look alike land close together. A randomly initialised conv net already responds to edges,
textures, noise and colour, needs no download, and is reproducible from one integer seed, so
the same gap can be computed offline on any machine. It is not an Inception/FID substitute for
comparing numbers across papers.

Network: four blocks of 3×3 conv (Kaiming-normal weights, zero bias) + ReLU, with 2×2 average
pooling between blocks while the feature map is at least 2 pixels on a side. The output of each
block is averaged over space and the four averages are concatenated, so the vector mixes
receptive fields of several sizes ("multi-scale") and its length, ``8 * width``, does not depend
on the image size: 8×8 digits and 128×128 renders both work.

Grey and colour: by default the network takes 3 channels and a grey image is replicated to
R = G = B, so a grey image and the RGB image with three equal channels give the same features
and grey and colour sets live in one feature space. With ``in_channels=1`` the network takes one
channel and RGB images are converted to luminance (ITU-R 601 weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)


class RandomConvFeatures:
    """Map uint8 images to ``(N, feature_dim)`` float64 features with a seeded random conv net.

    Args:
        seed: seeds the ``torch.Generator`` that draws every weight; same seed, same features.
        in_channels: 3 (the default, when None; grey is replicated) or 1 (RGB → luminance).
        width: channels of the first block; blocks have ``width, width, 2·width, 4·width``.
        device: torch device the convolutions run on.
        batch_size: images per forward pass (bounds memory, not the result).
    """

    def __init__(self, seed: int = 0, *, in_channels: int | None = None, width: int = 32,
                 device: str | torch.device = "cpu", batch_size: int = 256) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        in_channels = 3 if in_channels is None else in_channels
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels: expected 1, 3 or None, got {in_channels!r}")
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"width: expected a positive int, got {width!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.seed, self.in_channels, self.width = int(seed), in_channels, int(width)
        self.batch_size, self.device = int(batch_size), torch.device(device)

        gen = torch.Generator().manual_seed(self.seed)      # CPU draw: same weights on any device
        widths = [self.width, self.width, 2 * self.width, 4 * self.width]
        self._weights: list[torch.Tensor] = []
        c_in = in_channels
        for c_out in widths:
            std = (2.0 / (c_in * 9)) ** 0.5                   # Kaiming normal, fan-in, ReLU gain
            w = torch.randn(c_out, c_in, 3, 3, generator=gen) * std
            self._weights.append(w.to(self.device))
            c_in = c_out
        self.feature_dim = sum(widths)

    # ---------------------------------------------------------------- input checks
    def _as_array(self, images, value_max: float) -> np.ndarray:
        """Validate and return an ``N×H×W×C`` uint8 array with C == 1 or 3."""
        if isinstance(value_max, bool) or not isinstance(value_max, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value_max) or value_max <= 0:
            raise ValueError(f"value_max: expected a positive number, got {value_max!r}")
        if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
            arrays = [np.asarray(im) for im in images]
            shapes = sorted({a.shape for a in arrays})
            if len(shapes) > 1:
                raise ValueError(f"images: expected images of one size, got shapes {shapes[:3]}")
            for a in arrays:
                if a.ndim not in (2, 3):
                    raise ValueError(f"images: expected each image H×W or H×W×C, got shape {a.shape}")
                if a.dtype != np.uint8:
                    raise ValueError(f"images: expected uint8 images, got {a.dtype}")
            if not arrays:
                return np.zeros((0, 1, 1, self.in_channels), np.uint8)
            x = np.stack(arrays)
        elif isinstance(images, np.ndarray):
            x = images
        else:
            raise ValueError(f"images: expected a uint8 array or a list of them, got {type(images).__name__}")
        if x.dtype != np.uint8:
            raise ValueError(f"images: expected uint8 images, got {x.dtype}")
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(f"images: expected an N×H×W or N×H×W×C array, got shape {x.shape}")
        if x.shape[-1] not in (1, 3):
            raise ValueError(f"images: expected 1 (grey) or 3 (RGB) channels, got {x.shape[-1]}")
        if x.shape[1] < 1 or x.shape[2] < 1:
            raise ValueError(f"images: expected images at least 1×1, got {x.shape[1]}×{x.shape[2]}")
        if x.size and x.max() > value_max:
            raise ValueError(f"images: expected pixel values ≤ value_max={value_max}, got max {int(x.max())}")
        return x

    # ---------------------------------------------------------------- forward
    def _to_input(self, batch: np.ndarray, value_max: float) -> torch.Tensor:
        """uint8 N×H×W×C → float32 N×in_channels×H×W in [-1, 1]."""
        # astype copies, so read-only inputs (e.g. from PIL) are fine for torch.from_numpy
        t = torch.from_numpy(batch.astype(np.float32)).to(self.device).permute(0, 3, 1, 2)
        t = t * (2.0 / value_max) - 1.0
        c = t.shape[1]
        if c == 1 and self.in_channels == 3:
            t = t.expand(-1, 3, -1, -1)
        elif c == 3 and self.in_channels == 1:
            luma = torch.tensor(_LUMA, device=self.device).view(1, 3, 1, 1)
            t = (t * luma).sum(dim=1, keepdim=True)
        return t

    def _forward(self, t: torch.Tensor) -> torch.Tensor:
        pooled = []
        for k, w in enumerate(self._weights):
            if k > 0 and min(t.shape[-2:]) >= 2:
                t = F.avg_pool2d(t, 2)
            t = F.relu(F.conv2d(t, w, padding=1))
            pooled.append(t.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    def __call__(self, images, value_max: float = 255) -> np.ndarray:
        """Features of ``images`` (uint8 N×H×W, N×H×W×C, or a list of same-size H×W[×C] arrays).

        A 3-D array is read as N grey images; pass a single RGB image as ``[image]``.
        ``value_max`` is the value that maps to white (255 for 8-bit, 16 for the sklearn digits).
        Returns float64 ``(N, feature_dim)``.
        """
        x = self._as_array(images, value_max)
        out = np.empty((len(x), self.feature_dim), np.float64)
        with torch.no_grad():
            for start in range(0, len(x), self.batch_size):
                batch = x[start:start + self.batch_size]
                out[start:start + len(batch)] = self._forward(self._to_input(batch, float(value_max))).cpu().numpy()
        return out

    def __repr__(self) -> str:
        return (f"RandomConvFeatures(seed={self.seed}, in_channels={self.in_channels}, width={self.width}, "
                f"device={str(self.device)!r})")
