"""What a GPU machine's Ray tasks are told and which device each picks: `python experiments/gpu_check.py`.

For a machine with NVIDIA GPUs (the suite fakes GPUs; this checks real ones). It starts a
local Ray with the machine's GPUs and asks, from tasks with ``num_gpus`` 0, 0.5 and 1: the GPU
ids Ray assigned, ``CUDA_VISIBLE_DEVICES``, the device dropt picks for ``device = "auto"`` and
whether torch can allocate on it; from a render actor with ``num_gpus = 0.5``: the
``EGL_DEVICE_ID`` it renders with and one rendered image. Then a tiny ``dropt run`` with
``evaluator.num_gpus = 0.5`` records each candidate's device. Prints one JSON object; exits 1
when a task without a GPU picked one, or one with a GPU did not use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def probe() -> dict:
    import torch

    from loop.engine.devices import placed_device, ray_assignment

    a = ray_assignment()
    device = placed_device("auto", a)
    ok = None
    if device.startswith("cuda"):
        ok = float(torch.ones(4, device=device).sum().item()) == 4.0
    return {"gpu_ids": list(a.gpu_ids) if a else None, "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "torch_sees": torch.cuda.device_count(), "auto": device, "allocates": ok}


def render_probe() -> dict:
    from generator.base import render_dataset
    from loop.config import load_config
    from loop.engine.devices import egl_device_for_render

    egl_device_for_render()            # before the GL context opens
    gen = load_config(Path(__file__).parent / "shapes" / "smoke.toml").build_generator()
    ds = render_dataset(gen, gen.space.to_vector(), 1, 0)
    return {"egl_device_id": os.environ.get("EGL_DEVICE_ID"), "image_mean": float(ds.images[0].mean())}


def main() -> int:
    import ray
    import torch

    ray.init(num_gpus=torch.cuda.device_count(), include_dashboard=False, logging_level="ERROR")
    out = {"gpus": torch.cuda.device_count()}
    for g in (0, 0.5, 1):
        if g <= out["gpus"]:
            out[f"task num_gpus={g}"] = ray.get(ray.remote(num_gpus=g)(probe).remote())
    if out["gpus"]:
        out["render actor num_gpus=0.5"] = ray.get(ray.remote(num_gpus=0.5)(render_probe).remote())
    ray.shutdown()
    with tempfile.TemporaryDirectory() as d:
        sets = ["evaluator.num_gpus=0.5", "evaluator.ray=true", "loop.budget=1", "loop.candidates=2",
                "evaluator.images=16", "evaluator.steps=5", "evaluator.final_seeds=1", f'evaluator.real="{d}/real"',
                'evaluator.target_config="experiments/shapes/smoke.toml"']
        cmd = [sys.executable, "-m", "loop.front.cli", "run", "experiments/shapes/smoke.toml", "--out", f"{d}/run",
               *[a for s in sets for a in ("--set", s)]]
        run = subprocess.run(cmd, capture_output=True, text=True)
        rounds = Path(d, "run", "rounds.jsonl")
        out["dropt run"] = {"exit": run.returncode, "tail": run.stderr.strip().splitlines()[-1:],
                            "devices": [(r.get("device"), r.get("ray_gpus")) for r in
                                        map(json.loads, rounds.read_text().splitlines())] if rounds.is_file() else None}
    print(json.dumps(out, indent=1))
    none = out.get("task num_gpus=0", {})
    bad = none.get("auto") != "cpu" or any(
        v.get("gpu_ids") and not (v.get("auto", "").startswith("cuda") and v.get("allocates"))
        for k, v in out.items() if k.startswith("task num_gpus=") and k != "task num_gpus=0")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
