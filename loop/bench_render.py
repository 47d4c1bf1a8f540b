"""`dropt bench render`: images/s of the reuse renderer and of a naive rebuild-per-image loop.

Every figure covers the whole path: parameter sampling, RGB + depth + instance-id passes,
sensor effects, masks, boxes and visible fractions. "one process" renders in this process;
"all cores" renders over one Ray actor per core (the path `dropt render` uses); "1 worker"
is that pool with a single actor, so ``scaling_pool_workers`` is what the second core adds to
the pool and ``scaling_all_cores`` is the pool against a bare loop. Each figure
is the best of ``repeats`` runs (as timeit does): on a shared machine the slower runs measure
the neighbours.
"""

from __future__ import annotations

import os
import time
from typing import Any


from generator.base import image_seeds
from generator.shapes import ShapesGenerator

from .config import config_from_dict
from .render_pool import RenderPool


MODES = {"gl": "dropt's one-pass GL path (default)", "pyrender": "pyrender renderer, scene reused",
         "naive": "pyrender, scene rebuilt per image"}
_BACKEND = {"gl": "gl", "pyrender": "pyrender", "naive": "pyrender-naive"}


def _one_process(size: int, mode: str, n: int, seed: int) -> float:
    gen = ShapesGenerator(image_size=size, backend=_BACKEND[mode])
    theta = gen.space.to_vector()
    rows = gen.scene_params(theta, n + 10, seed)
    seeds = image_seeds(seed, n + 10)
    for r, s in zip(rows[:10], seeds[:10]):  # warm-up: GL context, shaders, first uploads
        gen.render(r, s)
    t0 = time.perf_counter()
    for r, s in zip(rows[10:], seeds[10:]):
        gen.render(r, s)
    dt = time.perf_counter() - t0
    gen.close()
    return n / dt


def _all_cores(size: int, mode: str, n: int, seed: int, workers: int) -> float:
    cfg = config_from_dict({"generator": {"name": "shapes", "image_size": size, "backend": _BACKEND[mode]},
                            "render": {"workers": workers, "chunk": 32}})
    with RenderPool(cfg) as pool:
        theta = pool.generator.space.to_vector()
        pool.render(theta, 4 * pool.config.render.chunk * workers, seed)  # warm-up every actor
        t0 = time.perf_counter()
        pool.render(theta, n, seed + 1)
        return n / (time.perf_counter() - t0)


def bench_render(sizes=(64, 128), n: int = 400, seed: int = 0, workers: int | None = None,
                 modes=("gl", "pyrender", "naive"), repeats: int = 2, log=print) -> dict[str, Any]:
    workers = workers or os.cpu_count() or 1
    out: dict[str, Any] = {"workers": workers, "images": n, "repeats": repeats,
                           "modes": {m: MODES[m] for m in modes}}
    for size in sizes:
        fig: dict[str, float] = {}
        for mode in modes:
            k = n if mode == "gl" else max(n // 2, 50)
            fig[f"{mode}_one_process"] = max(_one_process(size, mode, k, seed) for _ in range(repeats))
            log(f"  {size}²  {mode:8s}  one process   {fig[f'{mode}_one_process']:7.1f} img/s")
            fig[f"{mode}_all_cores"] = max(_all_cores(size, mode, 2 * k * workers, seed, workers)
                                           for _ in range(repeats))
            log(f"  {size}²  {mode:8s}  {workers} workers     {fig[f'{mode}_all_cores']:7.1f} img/s")
        if "naive" in modes:
            fig["speedup_vs_naive_one_process"] = fig["gl_one_process"] / fig["naive_one_process"]
            fig["speedup_vs_naive_all_cores"] = fig["gl_all_cores"] / fig["naive_all_cores"]
        if "gl" in modes and workers > 1:
            # the pool with one actor: separates Ray's own cost from what a second core adds
            fig["gl_one_worker"] = max(_all_cores(size, "gl", 2 * n, seed, 1) for _ in range(repeats))
            log(f"  {size}²  gl        1 worker      {fig['gl_one_worker']:7.1f} img/s")
            fig["scaling_pool_workers"] = fig["gl_all_cores"] / fig["gl_one_worker"]
        fig["scaling_all_cores"] = fig["gl_all_cores"] / fig["gl_one_process"]
        out[str(size)] = {k: round(v, 2) for k, v in fig.items()}
    return out
