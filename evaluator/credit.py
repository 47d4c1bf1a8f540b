"""Per-image credit: how much training on each synthetic image lowered the loss on real val.

TracIn (Pruthi et al., NeurIPS 2020): a gradient step of size η on training image i changes the
real-val loss by about −η ⟨∇L_i, ∇L_val⟩. Summed over a few checkpoints of the training run, that
inner product is image i's credit: positive when learning from it helped on real data, negative
when it pulled the model away. Restricted to the model's output heads (as TracIn's practical
variant does), it costs one forward and one backward pass per image and checkpoint.

The heads are pointwise linear (``nn.Linear``, or a 1×1 ``nn.Conv2d``: out[k, p] = Σ_c W[k, c]
h[c, p] + b[k] at every position p), so each image's head gradient is a small matrix computed
from its head input h_i and the gradient of its own loss w.r.t. the head output:
∂L_i/∂W = Σ_p ∂L_i/∂out[:, p] h_i[:, p]ᵀ. One backward pass of Σ_i L_i gives all of them (each
image's loss depends on its own outputs only; the model is in eval mode).

``normalize=True`` (the default) divides each image's inner product by the norm of its own
gradient: the credit is then how well the image's gradient *points* the way real val needs,
times the step, and not how large it is. Raw TracIn favours high-loss images (a badly
rotated digit has a large gradient that is partly aligned with anything), and a distribution
that ascends raw credit drifts towards hard, off-domain images.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

#: per-image losses (N,) of the training images at these indices
ImageLosses = Callable[[np.ndarray], torch.Tensor]


def _capture(heads: Sequence[nn.Module]):
    """Forward hooks that keep each head's input and output of the last forward pass."""
    store: list[list[torch.Tensor]] = [[] for _ in heads]

    def hook(i):
        def fn(module, inputs, output):
            store[i][:] = [inputs[0], output]
        return fn

    handles = [h.register_forward_hook(hook(i)) for i, h in enumerate(heads)]
    return store, handles


def _check_head(head: nn.Module) -> None:
    pointwise = isinstance(head, nn.Linear) or (isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1)
                                                 and head.groups == 1)
    if not pointwise:
        raise ValueError(f"credit heads: expected nn.Linear or 1×1 nn.Conv2d modules, got {head}")


def _image_grads(head: nn.Module, h_in: torch.Tensor, d_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-image (∂L_i/∂W, ∂L_i/∂b) of a pointwise-linear head: (N, K, C) and (N, K)."""
    n = h_in.shape[0]
    h = h_in.reshape(n, h_in.shape[1], -1).double()
    d = d_out.reshape(n, d_out.shape[1], -1).double()
    g_w = torch.einsum("nkp,ncp->nkc", d, h)
    return g_w, (d.sum(2) if head.bias is not None else None)


def tracin_credit(model: nn.Module, heads: Sequence[nn.Module], image_losses: ImageLosses, val_loss: Callable[[], torch.Tensor],
                  n_items: int, *, lr: float, chunk: int = 256, normalize: bool = True) -> np.ndarray:
    """lr · ⟨∇_heads L_i, ∇_heads L_val⟩ (over ‖∇_heads L_i‖ with ``normalize``) for every
    training image i, at the model's current weights."""
    for head in heads:
        _check_head(head)
    was_training = model.training
    model.eval()
    flat = [p for h in heads for p in ([h.weight] + ([h.bias] if h.bias is not None else []))]
    it = iter(torch.autograd.grad(val_loss(), flat, allow_unused=True))
    val_grad = []
    for h in heads:
        gw = next(it)
        gb = next(it) if h.bias is not None else None
        gw = torch.zeros_like(h.weight) if gw is None else gw
        val_grad.append((gw.reshape(gw.shape[0], -1).double(), None if h.bias is None else
                         (torch.zeros_like(h.bias) if gb is None else gb).double()))
    store, handles = _capture(heads)
    out = np.empty(n_items, dtype=np.float64)
    try:
        for start in range(0, n_items, chunk):
            idx = np.arange(start, min(start + chunk, n_items))
            losses = image_losses(idx)
            outputs = [s[1] for s in store]
            d_out = torch.autograd.grad(losses.sum(), outputs)
            dot = torch.zeros(len(idx), dtype=torch.float64)
            sq = torch.zeros(len(idx), dtype=torch.float64)
            with torch.no_grad():
                for head, (gv_w, gv_b), (h_in, _), d in zip(heads, val_grad, store, d_out):
                    g_w, g_b = _image_grads(head, h_in.detach(), d)
                    dot += (g_w * gv_w).sum((1, 2)).cpu()
                    sq += (g_w * g_w).sum((1, 2)).cpu()
                    if g_b is not None:
                        dot += (g_b * gv_b).sum(1).cpu()
                        sq += (g_b * g_b).sum(1).cpu()
            credit = dot / torch.sqrt(sq).clamp(min=1e-12) if normalize else dot
            out[idx] = lr * credit.numpy()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return out


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """``count`` steps spread evenly over a training run, the last one included (0-based)."""
    count = max(1, min(count, steps))
    return sorted({int(round(steps * (j + 1) / count)) - 1 for j in range(count)})
