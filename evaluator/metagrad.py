"""Exact per-image metagradients: d(real-val loss)/d(each training image's loss weight), through
the whole training run (Metagradient Descent, arXiv 2503.13751; MAGIC, arXiv 2504.16430).

The run is the one :func:`evaluator.training.fit` trains — same initial weights, batch order,
dropout masks, AdamW update and learning-rate schedule — written functionally, with each image's
term of the batch loss scaled by a weight w_i (1 for every image: the same training). A forward
pass trains and keeps every step's state (the weights and Adam's two moments: steps × 3 × the
parameters, small for these models). The backward pass walks the steps in reverse: it recomputes
one step's update with autograd (the torch RNG state of that step restored, so dropout draws the
same masks) and pulls the adjoint of the state back through it with one vector-Jacobian product,
collecting the weight derivatives of that step's batch. The seed and the data order are fixed,
common random numbers, which is what makes the derivative predictive (MAGIC). Cost: about four
training runs.

BatchNorm's running statistics are treated as constants: a training step uses batch statistics,
so only the final eval-mode forward reads them, and their (no-grad) dependence on w is not
followed. The replay updates copies of them, so the trained model's statistics are those of the
forward pass.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .base import EvaluatorError
from .training import LOSS_CURVE_POINTS, batch_indices, lr_at

Forward = Callable[[torch.Tensor], object]
#: (forward, batch indices, step) -> the batch images' loss terms (B,), summing to the batch loss;
#: a function of its arguments only (the replay calls it again for the same step)
ItemTerms = Callable[[Forward, np.ndarray, int], torch.Tensor]
#: forward -> a differentiable real-val loss (the model in eval mode)
ValLoss = Callable[[Forward], torch.Tensor]

BETAS, EPS = (0.9, 0.999), 1e-8


def _adamw(p, m, v, g, step: int, lr: float, wd: float):
    """torch.optim.AdamW's update of one tensor (decoupled decay, bias corrections), out of place.
    ``clamp_min`` keeps sqrt differentiable where a gradient is exactly zero (v = 0)."""
    b1, b2 = BETAS
    p = p * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = v.clamp_min(1e-30).sqrt() / (1 - b2 ** step) ** 0.5 + EPS
    return p - (lr / (1 - b1 ** step)) * m / denom, m, v


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


def _rng_state(device: torch.device) -> tuple:
    """The RNG states a training step's dropout draws from (the CPU's, and the GPU's on CUDA)."""
    return (torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _forward(model: nn.Module, params: dict, buffers: dict) -> Forward:
    return lambda x: functional_call(model, (params, buffers), (x,))


class Unrolled:
    """One training run with per-image loss weights, its states kept for the backward pass."""

    def __init__(self, model: nn.Module, item_terms: ItemTerms, *, n_items: int, steps: int, batch_size: int,
                 seed: int, lr: float, weight_decay: float):
        if n_items < 1:
            raise EvaluatorError("expected a non-empty training set, got 0 images")
        self.model, self.item_terms, self.n_items, self.steps = model, item_terms, n_items, steps
        self.lr, self.wd, self.seed = lr, weight_decay, seed
        self.batches = list(batch_indices(n_items, batch_size, steps, np.random.default_rng(seed)))
        self.warmup = min(50, max(steps // 10, 1))
        self.names = [n for n, _ in model.named_parameters()]
        self.buffers = dict(model.named_buffers())
        self.states: list[tuple[list, list, list]] = []
        self.rng_states: list[tuple] = []
        self.device = next(model.parameters()).device

    def _update(self, step: int, p: list, m: list, v: list, weights: torch.Tensor, buffers: dict, *,
                create_graph: bool):
        params = dict(zip(self.names, p))
        terms = self.item_terms(_forward(self.model, params, buffers), self.batches[step], step)
        loss = (weights * terms).sum()
        grads = torch.autograd.grad(loss, p, create_graph=create_graph, allow_unused=True)
        lr = lr_at(step, self.steps, self.lr, self.warmup)
        new = [_adamw(pi, mi, vi, torch.zeros_like(pi) if gi is None else gi, step + 1, lr, self.wd)
               for pi, mi, vi, gi in zip(p, m, v, grads)]
        return [n[0] for n in new], [n[1] for n in new], [n[2] for n in new], float(loss.detach())

    def train(self, weights: np.ndarray | None = None, *, keep: bool = True) -> list[float]:
        """Train with per-image ``weights`` (ones: :func:`fit`'s run); load the result into the
        model. Returns each step's batch loss."""
        p = [q.detach().clone() for q in self.model.parameters()]
        w_all = torch.ones(self.n_items, dtype=p[0].dtype) if weights is None else \
            torch.as_tensor(np.asarray(weights), dtype=p[0].dtype)
        m, v = [torch.zeros_like(q) for q in p], [torch.zeros_like(q) for q in p]
        losses = []
        self.model.train()
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(self.seed)      # as fit() seeds dropout
            for step, idx in enumerate(self.batches):
                if keep:
                    self.states.append((p, m, v))
                    self.rng_states.append(_rng_state(self.device))
                p = [q.requires_grad_() for q in p]
                w = w_all[torch.from_numpy(idx)].to(p[0].device)
                p, m, v, loss = self._update(step, p, m, v, w, self.buffers, create_graph=False)
                if not np.isfinite(loss):
                    raise FloatingPointError(f"training diverged at step {step}: loss {loss}")
                p, m, v = [q.detach() for q in p], [q.detach() for q in m], [q.detach() for q in v]
                losses.append(loss)
        with torch.no_grad():
            for q, new in zip(self.model.parameters(), p):
                q.copy_(new)
        self.model.eval()
        return losses

    def metagradient(self, val_loss: ValLoss) -> np.ndarray:
        """d val_loss / d w_i for every training image, at w = 1 (after :meth:`train`)."""
        if len(self.states) != self.steps:
            raise RuntimeError("metagradient: expected train(keep=True) first")
        p = [q.detach().clone().requires_grad_() for q in self.model.parameters()]
        self.model.eval()
        adj_p = list(torch.autograd.grad(val_loss(_forward(self.model, dict(zip(self.names, p)), self.buffers)), p,
                                         allow_unused=True))
        adj_p = [torch.zeros_like(q) if a is None else a for q, a in zip(p, adj_p)]
        adj_m, adj_v = [torch.zeros_like(q) for q in p], [torch.zeros_like(q) for q in p]
        out = np.zeros(self.n_items)
        self.model.train()
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            for step in reversed(range(self.steps)):
                _set_rng_state(self.rng_states[step], self.device)
                p0, m0, v0 = ([q.detach().requires_grad_() for q in t] for t in self.states[step])
                idx = self.batches[step]
                w = torch.ones(len(idx), device=p0[0].device, dtype=p0[0].dtype, requires_grad=True)
                copies = {k: b.clone() for k, b in self.buffers.items()}
                p1, m1, v1, _ = self._update(step, p0, m0, v0, w, copies, create_graph=True)
                inputs = [*p0, *m0, *v0, w]
                g = torch.autograd.grad([*p1, *m1, *v1], inputs, grad_outputs=[*adj_p, *adj_m, *adj_v],
                                        allow_unused=True)
                g = [torch.zeros_like(x) if gi is None else gi.detach() for x, gi in zip(inputs, g)]
                k = len(p0)
                adj_p, adj_m, adj_v = g[:k], g[k:2 * k], g[2 * k:3 * k]
                np.add.at(out, idx, g[-1].cpu().double().numpy())
        self.model.eval()
        self.states, self.rng_states = [], []
        return out


def wants_unrolled(per_image, image_weights) -> bool:
    """Whether an evaluation trains the unrolled run (metagradients or image weights asked for);
    TracIn credit is measured in :func:`fit`'s run, so it cannot be asked for with them."""
    unrolled = "metagrad" in per_image or image_weights is not None
    if unrolled and "credit" in per_image:
        raise EvaluatorError("per_image: expected 'credit' or 'metagrad' (or image_weights), got both "
                             "(each is its own training run)")
    return unrolled


def check_weights(weights, n: int) -> np.ndarray | None:
    """``image_weights``: None, or one finite weight >= 0 per training image."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise EvaluatorError(f"image_weights: expected {n} finite weights >= 0 (one per training image), "
                             f"got shape {w.shape}")
    return w


def thin_curve(losses: list[float]) -> list[float]:
    """:func:`fit`'s loss curve from every step's loss: means over equal slices of training."""
    every = max(len(losses) // LOSS_CURVE_POINTS, 1)
    return [float(np.mean(losses[i:i + every])) for i in range(0, len(losses), every)]


def train_unrolled(model: nn.Module, item_terms: ItemTerms, val_loss: ValLoss, *, weights: np.ndarray | None = None,
                   metagradient: bool = True, **kw) -> tuple[np.ndarray | None, float, list[float], float]:
    """Train ``model`` as :func:`fit` does, each image's loss term scaled by ``weights`` (None:
    ones), and return (−d val_loss/d w_i for every image when ``metagradient``: positive where
    up-weighting the image lowers the real-val loss; the real-val loss; the thinned loss curve;
    seconds)."""
    t0 = time.perf_counter()
    run = Unrolled(model, item_terms, **kw)
    losses = run.train(weights, keep=metagradient)
    with torch.no_grad():
        loss = float(val_loss(model))
    signal = -run.metagradient(val_loss) if metagradient else None
    return signal, loss, thin_curve(losses), time.perf_counter() - t0
