"""Per-image credit: how much training on each synthetic image lowered the loss on real val.

TracIn (Pruthi et al., NeurIPS 2020): a gradient step of size η on training image i changes the
real-val loss by about −η ⟨∇L_i, ∇L_val⟩. Summed over a few checkpoints of the training run, that
inner product is image i's credit: positive when learning from it helped on real data, negative
when it pulled the model away. Restricted to the model's output heads (as TracIn's practical
variant does), it costs one forward and one backward pass per image and checkpoint.

For a head that is linear in its parameters (``nn.Linear``, ``nn.Conv2d``) the inner product
needs no per-image gradient: with out = head(h; W, b),

    ⟨∂L_i/∂W, G_W⟩ + ⟨∂L_i/∂b, G_b⟩ = Σ (∂L_i/∂out_i) ⊙ head(h_i; G_W, G_b)

where G is the val loss's gradient w.r.t. (W, b). So one backward pass of Σ_i L_i (each image's
loss depends on its own outputs only, the model is in eval mode) gives every image's credit.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

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


def tracin_credit(model: nn.Module, heads: Sequence[nn.Module], image_losses: ImageLosses, val_loss: Callable[[], torch.Tensor],
                  n_items: int, *, lr: float, chunk: int = 256) -> np.ndarray:
    """lr · ⟨∇_heads L_i, ∇_heads L_val⟩ for every training image i, at the model's current weights."""
    was_training = model.training
    model.eval()
    params = [dict(h.named_parameters()) for h in heads]
    flat = [p for d in params for p in d.values()]
    grads = torch.autograd.grad(val_loss(), flat, allow_unused=True)
    it = iter(grads)
    val_grad = [{k: (g if (g := next(it)) is not None else torch.zeros_like(p)) for k, p in d.items()}
                for d in params]
    store, handles = _capture(heads)
    out = np.empty(n_items, dtype=np.float64)
    try:
        for start in range(0, n_items, chunk):
            idx = np.arange(start, min(start + chunk, n_items))
            losses = image_losses(idx)
            outputs = [s[1] for s in store]
            d_out = torch.autograd.grad(losses.sum(), outputs)
            credit = torch.zeros(len(idx), dtype=torch.float64)
            with torch.no_grad():
                for head, g, (h_in, _), d in zip(heads, val_grad, store, d_out):
                    probe = functional_call(head, g, (h_in.detach(),))
                    credit += (d * probe).reshape(len(idx), -1).sum(1).double().cpu()
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
