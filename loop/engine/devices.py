"""Devices follow Ray: work Ray placed uses a GPU only when Ray assigned it one.

Ray no longer hides the GPUs of a task that asked for none, so "torch sees CUDA" is not the
test; :func:`ray_assignment` reads what Ray assigned this task or actor, and :func:`task_device`
turns the config's ``device`` into the torch device for it. Outside Ray the config's device is
used as given (the evaluator checks it where it runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from evaluator.base import EvaluatorError


@dataclass(frozen=True)
class Assignment:
    """What Ray told this worker: the GPU ids it assigned and whether it set CUDA_VISIBLE_DEVICES
    to them (then torch numbers them 0, 1, …; else by their physical ids)."""

    gpu_ids: tuple[int, ...]
    visible_set: bool

    def local_indices(self) -> list[int]:
        return list(range(len(self.gpu_ids))) if self.visible_set else list(self.gpu_ids)


def ray_assignment() -> Assignment | None:
    """This Ray task's or actor's GPUs, or None when not running in a Ray worker."""
    try:
        import ray
    except ImportError:
        return None
    if not ray.is_initialized() or ray.get_runtime_context().get_task_id() is None:
        return None            # the driver, or no Ray at all
    ids = tuple(int(g) for g in ray.get_gpu_ids())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return Assignment(ids, visible_set=bool(ids) and visible is not None
                      and [v.strip() for v in visible.split(",")] == [str(i) for i in ids])


def task_device(requested: str, assignment: Assignment | None, *, cuda_count: int) -> str:
    """The torch device for ``evaluator.device = requested`` in a worker Ray assigned
    ``assignment`` (None: not on Ray, ``requested`` as given). ``cuda_count``: the GPUs torch sees.

    'auto' is the first assigned GPU when torch can use it, else the CPU; 'cuda' / 'cuda:i' are
    the first / i-th assigned GPU and an error without one; 'cpu' is the CPU."""
    if assignment is None or requested == "cpu":
        return requested
    if requested != "auto" and requested != "cuda" and not requested.startswith("cuda:"):
        raise EvaluatorError(f"evaluator.device: expected 'auto', 'cpu' or 'cuda[:i]', got {requested!r}")
    local = assignment.local_indices()
    if requested == "auto":
        return f"cuda:{local[0]}" if local and cuda_count > 0 else "cpu"
    i = 0 if requested == "cuda" else _index(requested)
    if i >= len(local):
        raise EvaluatorError(f"evaluator.device = {requested!r}: expected a GPU Ray assigned to this task "
                             f"(evaluator.num_gpus > 0), got {len(local)} assigned (ids {list(assignment.gpu_ids)})")
    if local[i] >= cuda_count:
        raise EvaluatorError(f"evaluator.device = {requested!r}: Ray assigned GPU {assignment.gpu_ids[i]}, "
                             f"but torch here sees {cuda_count} CUDA devices")
    return f"cuda:{local[i]}"


def _index(device: str) -> int:
    try:
        i = int(device.split(":", 1)[1])
    except ValueError:
        raise EvaluatorError(f"evaluator.device: expected 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from None
    if i < 0:
        raise EvaluatorError(f"evaluator.device: expected 'cuda:i' with i >= 0, got {device!r}")
    return i


def placed_device(requested: str, assignment: Assignment | None) -> str:
    """:func:`task_device` for this process, given :func:`ray_assignment`."""
    if assignment is None:
        return requested
    import torch

    return task_device(requested, assignment, cuda_count=torch.cuda.device_count())


def egl_device_for_render() -> None:
    """Point a render actor's EGL at the GPU Ray assigned it (pyrender reads ``EGL_DEVICE_ID``);
    with none assigned, leave EGL's choice (software rendering on a CPU node). Call before the
    generator opens its GL context."""
    assignment = ray_assignment()
    if assignment is not None and assignment.gpu_ids:
        # EGL enumerates the physical devices, whatever CUDA_VISIBLE_DEVICES says
        os.environ["EGL_DEVICE_ID"] = str(assignment.gpu_ids[0])


__all__ = ["Assignment", "egl_device_for_render", "placed_device", "ray_assignment", "task_device"]
