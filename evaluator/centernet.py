"""A small anchor-free detector in the style of CenterNet (Zhou et al., "Objects as Points").

Per class a heatmap of object centres at stride 4, plus a box-size head and a sub-pixel offset
head. Targets are encoded once per dataset as tensors (cheap at 64²), so a training step is one
forward/backward pass with no Python per object. Decoding: 3×3 max-pool peaks, top-k, boxes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generator.dataset import ObjectAnnotation

STRIDE = 4
MAX_OBJECTS = 32          # per image, for the size/offset targets
PRIOR = 0.05              # initial heatmap probability (focal-loss init)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CenterNet(nn.Module):
    """Backbone to stride 8, one upsampling step back to stride 4 with a skip, three heads.

    Most of the width sits at stride 8 and the stride-4 path stays narrow: at 64² a forward pass
    costs ~10 MFLOPs, which is what lets it train at hundreds of images/s on two CPU cores."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.stem = nn.Sequential(_conv(3, w // 2, 2), _conv(w // 2, 3 * w // 4, 2), _conv(3 * w // 4, w))  # /4
        self.down8 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))                                 # /8
        self.lateral = nn.Conv2d(2 * w, w, 1)
        self.head = _conv(w, w)
        self.heatmap = nn.Conv2d(w, num_classes, 1)
        self.size = nn.Conv2d(w, 2, 1)
        self.offset = nn.Conv2d(w, 2, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - PRIOR) / PRIOR))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f4 = self.stem(x)
        f8 = self.lateral(self.down8(f4))
        h = self.head(f4 + F.interpolate(f8, size=f4.shape[-2:], mode="nearest"))
        return self.heatmap(h), self.size(h), self.offset(h)


def images_to_tensor(images: np.ndarray | torch.Tensor, value_max: float = 255.0) -> torch.Tensor:
    """uint8 N×H×W(×C) → float N×3×H'×W' in [0, 1] (channels-last memory), grey replicated,
    padded to a multiple of 8."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2).float().div_(value_max)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 4:
        x = x[:, :3]
    h, w = x.shape[-2:]
    ph, pw = (-h) % (2 * STRIDE), (-w) % (2 * STRIDE)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x.contiguous(memory_format=torch.channels_last)   # NHWC: oneDNN's fast layout on CPU


def encode_targets(annotations: list[list[ObjectAnnotation]], num_classes: int, height: int, width: int
                   ) -> dict[str, torch.Tensor]:
    """Heatmaps (N, C, h, w) with a Gaussian per object centre; per-object flat indices, sizes,
    offsets and a validity mask (N, MAX_OBJECTS)."""
    h, w = math.ceil(height / (2 * STRIDE)) * 2, math.ceil(width / (2 * STRIDE)) * 2
    n = len(annotations)
    heat = np.zeros((n, num_classes, h, w), np.float32)
    index = np.zeros((n, MAX_OBJECTS), np.int64)
    size = np.zeros((n, MAX_OBJECTS, 2), np.float32)
    offset = np.zeros((n, MAX_OBJECTS, 2), np.float32)
    mask = np.zeros((n, MAX_OBJECTS), np.float32)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    for i, objs in enumerate(annotations):
        # larger objects first, so a small object's centre keeps its own slot when cells collide
        for k, o in enumerate(sorted(objs, key=lambda o: -o.bbox[2] * o.bbox[3])[:MAX_OBJECTS]):
            bx, by, bw, bh = o.bbox
            cx, cy = (bx + bw / 2) / STRIDE, (by + bh / 2) / STRIDE
            ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
            # an elliptical Gaussian sized to the box (TTFNet-style), at least half a cell wide
            sx, sy = max(0.54 * bw / STRIDE / 6, 0.5), max(0.54 * bh / STRIDE / 6, 0.5)
            g = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
            c = o.category_id - 1
            np.maximum(heat[i, c], g, out=heat[i, c])
            heat[i, c, iy, ix] = 1.0
            index[i, k] = iy * w + ix
            size[i, k] = (bw / STRIDE, bh / STRIDE)
            offset[i, k] = (cx - ix, cy - iy)
            mask[i, k] = 1.0
    return {"heatmap": torch.from_numpy(heat), "index": torch.from_numpy(index), "size": torch.from_numpy(size),
            "offset": torch.from_numpy(offset), "mask": torch.from_numpy(mask)}


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss (α = 2, β = 4), per object."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg_weight = (1 - target).pow(4)
    pos_loss = torch.log(p) * (1 - p).pow(2) * pos
    neg_loss = torch.log(1 - p) * p.pow(2) * neg_weight * (1 - pos)
    n_pos = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n_pos


def _gather(feature: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, 2, h, w) at flat indices (N, M) → (N, M, 2)."""
    n, c = feature.shape[:2]
    flat = feature.reshape(n, c, -1)
    return flat.gather(2, index.unsqueeze(1).expand(-1, c, -1)).permute(0, 2, 1)


def detection_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
                   ) -> torch.Tensor:
    heat, size, offset = outputs
    mask = targets["mask"].unsqueeze(-1)
    n_obj = mask.sum().clamp(min=1.0)
    size_loss = (F.l1_loss(_gather(size, targets["index"]), targets["size"], reduction="none") * mask).sum() / n_obj
    off_loss = (F.l1_loss(_gather(offset, targets["index"]), targets["offset"], reduction="none") * mask).sum() / n_obj
    return focal_loss(heat, targets["heatmap"]) + 0.1 * size_loss + off_loss


def _per_image_parts(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, ...]:
    """Per image (N,): the focal sum, the positive pixels, the weighted size + offset L1 sum, the objects."""
    heat, size, offset = outputs
    n = heat.shape[0]
    mask = targets["mask"].unsqueeze(-1)
    n_obj = mask.reshape(n, -1).sum(1)
    size_l = (F.l1_loss(_gather(size, targets["index"]), targets["size"], reduction="none") * mask).reshape(n, -1).sum(1)
    off_l = (F.l1_loss(_gather(offset, targets["index"]), targets["offset"], reduction="none") * mask).reshape(n, -1).sum(1)
    p = torch.sigmoid(heat).clamp(1e-4, 1 - 1e-4)
    target = targets["heatmap"]
    pos = target.eq(1).float()
    focal = -(torch.log(p) * (1 - p).pow(2) * pos + torch.log(1 - p) * p.pow(2) * (1 - target).pow(4) * (1 - pos))
    return focal.reshape(n, -1).sum(1), pos.reshape(n, -1).sum(1), 0.1 * size_l + off_l, n_obj


def detection_losses(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
                     ) -> torch.Tensor:
    """:func:`detection_loss` of each image on its own, shape (N,): image i's loss depends on
    image i's outputs only (per-image credit needs that)."""
    focal, n_pos, box, n_obj = _per_image_parts(outputs, targets)
    return focal / n_pos.clamp(min=1.0) + box / n_obj.clamp(min=1.0)


def detection_loss_terms(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
                         ) -> torch.Tensor:
    """Each image's share of :func:`detection_loss`, shape (N,): the shares sum to the batch's
    loss (its object counts, the normalisers, shared). Weighting them is weighting the images."""
    focal, n_pos, box, n_obj = _per_image_parts(outputs, targets)
    return focal / n_pos.sum().clamp(min=1.0) + box / n_obj.sum().clamp(min=1.0)


@torch.no_grad()
def decode(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], image_height: int, image_width: int,
           top_k: int = 50, min_score: float = 0.01) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: boxes (K, 4) as x, y, w, h in pixels clipped to the image, scores, 1-based labels."""
    heat, size, offset = outputs
    n, c, h, w = heat.shape
    p = torch.sigmoid(heat)
    peaks = p * (F.max_pool2d(p, 3, 1, 1) == p)
    scores, flat = peaks.reshape(n, -1).topk(min(top_k, c * h * w))
    cls = flat // (h * w)
    pix = flat % (h * w)
    sz = _gather(size, pix).clamp(min=0) * STRIDE
    off = _gather(offset, pix)
    cx = ((pix % w).float() + off[..., 0]) * STRIDE
    cy = ((pix // w).float() + off[..., 1]) * STRIDE
    x0 = (cx - sz[..., 0] / 2).clamp(0, image_width)
    y0 = (cy - sz[..., 1] / 2).clamp(0, image_height)
    x1 = (cx + sz[..., 0] / 2).clamp(0, image_width)
    y1 = (cy + sz[..., 1] / 2).clamp(0, image_height)
    boxes = torch.stack([x0, y0, x1 - x0, y1 - y0], -1)
    out = []
    for i in range(n):
        keep = (scores[i] >= min_score) & (boxes[i, :, 2] > 0) & (boxes[i, :, 3] > 0)
        out.append((boxes[i][keep].cpu().numpy(), scores[i][keep].cpu().numpy(), (cls[i][keep] + 1).cpu().numpy()))
    return out
