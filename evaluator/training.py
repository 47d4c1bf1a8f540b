"""The training loop both downstream models share: seeded init and batch order, AdamW with a
warm-up and cosine decay, a thinned loss curve, optional warm start, CPU threads or CUDA."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .base import EvaluatorError, ProgressFn

LOSS_CURVE_POINTS = 20


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" → CUDA when available, else CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise EvaluatorError(f"device: expected 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EvaluatorError(f"device: expected an available device, got {device!r} but CUDA is not available")
    return dev


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (Ray sets OMP_NUM_THREADS to 1 in tasks), then restore."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A model initialised from ``seed`` without touching torch's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def batch_indices(n: int, batch_size: int, steps: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """``steps`` batches drawn epoch by epoch from seeded permutations of range(n); the whole
    set every step when it is smaller than a batch."""
    if batch_size >= n:
        for _ in range(steps):
            yield np.arange(n)
        return
    order, pos = rng.permutation(n), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        yield order[pos:pos + batch_size]
        pos += batch_size


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


#: called after the listed training steps with (step, learning rate of that step)
CheckpointFn = Callable[[int, float], None]


def fit(model: nn.Module, step_loss: Callable[[np.ndarray], torch.Tensor], *, n_items: int, steps: int,
        batch_size: int, seed: int, lr: float, weight_decay: float = 1e-4,
        progress: ProgressFn | None = None,
        checkpoints: tuple[list[int], CheckpointFn] | None = None) -> tuple[list[float], float]:
    """Train ``model`` for ``steps`` steps; ``step_loss(indices)`` returns a batch's loss.

    ``checkpoints = (steps, fn)`` calls ``fn(step, lr)`` after each listed step (per-image
    credit is measured there). Returns the loss curve (≈20 means over equal slices of
    training) and the seconds spent."""
    if n_items < 1:
        raise EvaluatorError("expected a non-empty training set, got 0 images")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    every = max(steps // LOSS_CURVE_POINTS, 1)
    curve: list[float] = []
    model.train()
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)   # dropout and any other in-model randomness, without touching the caller's RNG
        _train_steps(model, step_loss, opt, batch_indices(n_items, batch_size, steps, rng), steps, lr, every,
                     curve, progress, checkpoints)
    model.eval()
    return curve, time.perf_counter() - t0


def _train_steps(model, step_loss, opt, batches, steps, lr, every, curve, progress, checkpoints) -> None:
    warmup = min(50, max(steps // 10, 1))
    acc, count = 0.0, 0
    at, on_checkpoint = (set(checkpoints[0]), checkpoints[1]) if checkpoints else (set(), None)
    for step, idx in enumerate(batches):
        step_lr = lr_at(step, steps, lr, warmup)
        for g in opt.param_groups:
            g["lr"] = step_lr
        loss = step_loss(idx)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {step}: loss {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in at:
            on_checkpoint(step, step_lr)
        acc, count = acc + float(loss.detach()), count + 1
        if count == every or step == steps - 1:
            curve.append(acc / count)
            if progress is not None:
                progress(step + 1, steps, acc / count)
            acc, count = 0.0, 0


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_warm_start(model: nn.Module, warm_start: dict | None) -> None:
    if warm_start is None:
        return
    try:
        model.load_state_dict(warm_start)
    except (RuntimeError, KeyError, TypeError) as e:
        raise EvaluatorError(f"warm_start: expected weights of this evaluator's model, got {str(e)[:200]}") from None
