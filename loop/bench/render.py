"""`dropt bench render`: images/s of the reuse renderer and of a naive rebuild-per-image loop.

Every figure covers the whole path: parameter sampling, RGB + instance-id passes, sensor
effects, masks, boxes and visible fractions, and depth maps with ``depth=True`` (the loop's
configs leave depth off; pyrender reads depth back either way). "one process" renders in this process;
"all cores" renders over one Ray actor per core (the path `dropt render` uses); "1 worker"
is that pool with a single actor, so ``scaling_pool_workers`` is what the second core adds to
the pool and ``scaling_all_cores`` is the pool against a bare loop. "bare processes" renders
the same images over plain processes without Ray: ``scaling_bare_processes`` is the renderer's
own ceiling on the machine at that moment and ``pool_vs_bare_processes`` what Ray's pool keeps
of it. Each figure
is the best of ``repeats`` runs (as timeit does): on a shared machine the slower runs measure
the neighbours. ``scaling_all_cores_median_round`` is the median over rounds of the
pool/one-process ratio within a round, the figure least moved by a neighbour's load.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable


from generator.base import render_dataset

from ..config import config_from_dict
from ..engine.render_pool import RenderPool


MODES = {"gl": "dropt's one-pass GL path (default)", "pyrender": "pyrender renderer, scene reused",
         "naive": "pyrender, scene rebuilt per image",
         "blender": "Blender (bpy): Cycles on the CPU, 8 samples, its scene reused (the optional extra)"}
#: each mode's [generator] table (besides image_size and depth)
GENERATORS = {"gl": {"name": "shapes", "backend": "gl"}, "pyrender": {"name": "shapes", "backend": "pyrender"},
              "naive": {"name": "shapes", "backend": "pyrender-naive"}, "blender": {"name": "blender"}}


def default_modes() -> tuple[str, ...]:
    """Every renderer installed here: Blender's rows when the optional extra is."""
    import importlib.util

    return ("gl", "pyrender", "naive") + (("blender",) if importlib.util.find_spec("bpy") else ())


def _config(size: int, mode: str, depth: bool, workers: int = 0):
    return config_from_dict({"generator": {**GENERATORS[mode], "image_size": size, "depth": depth},
                             "render": {"workers": workers}})


def _warm_generator(size: int, mode: str, depth: bool):
    gen = _config(size, mode, depth).build_generator()
    render_dataset(gen, gen.space.to_vector(), 10, 0)  # warm-up: GL context or Blender scene, shaders, first uploads
    return gen


def _one_process(size: int, mode: str, n: int, seed: int, depth: bool) -> float:
    """The same work as the pool's figure (draw the parameters, render, collect a Dataset),
    in this process."""
    gen = _warm_generator(size, mode, depth)
    theta = gen.space.to_vector()
    t0 = time.perf_counter()
    render_dataset(gen, theta, n, seed + 1)
    dt = time.perf_counter() - t0
    gen.close()
    return n / dt


_BARE: dict[str, Any] = {}


def _bare_init(size: int, depth: bool) -> None:
    _BARE["gen"] = _warm_generator(size, "gl", depth)


def _bare_render(n_seed: tuple[int, int]) -> int:
    gen = _BARE["gen"]
    return len(render_dataset(gen, gen.space.to_vector(), *n_seed).images)


def _bare_processes(size: int, n: int, seed: int, workers: int, depth: bool) -> float:
    """``workers`` plain processes (multiprocessing, no Ray), each rendering ``n // workers``
    images with its own generator: the renderer's own ceiling on this machine, against which the
    Ray pool's cost (calls, shipping images back, the driver) can be read."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers, _bare_init, (size, depth)) as pool:
        pool.map(_bare_render, [(1, seed)] * workers, chunksize=1)  # every process has started
        t0 = time.perf_counter()
        pool.map(_bare_render, [(n // workers, seed + 1 + i) for i in range(workers)], chunksize=1)
        return (n // workers * workers) / (time.perf_counter() - t0)


def _busy_loop(iterations: int) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(iterations):
        x += i * i
    return time.perf_counter() - t0


def machine_scaling(workers: int, repeats: int = 3, iterations: int = 4_000_000) -> float:
    """What ``workers`` processes of plain Python arithmetic get over one on this machine right
    now (best rounds, interleaved): the ceiling the renderer's scaling is measured against on a
    shared or virtual machine, where a neighbour's load shows up here too."""
    import multiprocessing

    best_one, best_all = float("inf"), float("inf")
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_busy_loop, [1000] * workers)  # start-up
        for _ in range(repeats):
            best_one = min(best_one, _busy_loop(iterations))
            t0 = time.perf_counter()
            pool.map(_busy_loop, [iterations] * workers, chunksize=1)
            best_all = min(best_all, time.perf_counter() - t0)
    return workers * best_one / best_all


def _all_cores(size: int, mode: str, n: int, seed: int, workers: int, depth: bool) -> float:
    with RenderPool(_config(size, mode, depth, workers)) as pool:
        theta = pool.generator.space.to_vector()
        pool.render(theta, max(n // 4, 16 * workers), seed)  # warm-up every actor
        t0 = time.perf_counter()
        pool.render(theta, n, seed + 1)
        return n / (time.perf_counter() - t0)


def per_core_images(n: int, mode: str) -> int:
    """Images per core in each figure: ``n`` for the fast gl path, a quarter (at least 50) for the
    pyrender modes, which are 4–7× slower, a sixteenth (at least 24) for Blender (about 100×)."""
    return n if mode == "gl" else max(n // 16, 24) if mode == "blender" else max(n // 4, 50)


def _ratios(fig: dict[str, float], modes) -> dict[str, float]:
    """Speed-ups and scalings between one size's figures."""
    r = {}
    if "naive" in modes:
        r["speedup_vs_naive_one_process"] = fig["gl_one_process"] / fig["naive_one_process"]
        r["speedup_vs_naive_all_cores"] = fig["gl_all_cores"] / fig["naive_all_cores"]
    if "gl_one_worker" in fig:
        r["scaling_pool_workers"] = fig["gl_all_cores"] / fig["gl_one_worker"]
        r["scaling_bare_processes"] = fig["gl_bare_processes"] / fig["gl_one_process"]
        r["pool_vs_bare_processes"] = fig["gl_all_cores"] / fig["gl_bare_processes"]
    if "gl" in modes:
        r["scaling_all_cores"] = fig["gl_all_cores"] / fig["gl_one_process"]
    return r


def check_figures(sizes, n: int, workers: int, modes) -> None:
    """The arguments of :func:`bench_render`, checked before its first figure (each takes minutes):
    renderers it has, sizes the shapes generator takes, workers a local Ray starts, and the images
    of an all-cores figure (``n`` per worker, collected in this process) in memory."""
    from ..engine.cluster import check_local_workers
    from ..errors import ConfigError
    from ..memory import check_images_fit

    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(f"--modes: expected a comma-separated subset of {','.join(MODES)}, got {unknown[0]!r}")
    for size in sizes:
        for mode in modes:
            try:
                _config(size, mode, False).build_generator().close()   # a renderer opens on its first image only
            except ValueError as e:
                raise ConfigError(f"--sizes: {e}") from None
        if "blender" in modes:
            import importlib.util

            if importlib.util.find_spec("bpy") is None:
                raise ConfigError("--modes: expected Blender (bpy) installed for the blender mode, got none: "
                                  "make blender")
        check_images_fit(f"--n × workers ({n} × {workers})", n * workers, size)
    check_local_workers(workers, None)


def bench_render(sizes=(64, 128), n: int = 800, seed: int = 0, workers: int | None = None,
                 modes=None, repeats: int = 3, depth: bool = False, log=print) -> dict[str, Any]:
    """The figures of each mode are taken in interleaved rounds (one process, the pool, and for
    ``gl`` the one-actor pool, then again), so a slow spell of a shared machine lowers all of a
    round rather than one figure, and each figure is its best round."""
    workers = workers or os.cpu_count() or 1
    modes = modes or default_modes()
    out: dict[str, Any] = {"workers": workers, "images": n, "repeats": repeats, "depth": depth,
                           "modes": {m: MODES[m] for m in modes}}
    for size in sizes:
        fig: dict[str, float] = {}
        for mode in modes:
            # every figure renders the same images per core (k), so each is timed over about the
            # same wall time: a best-of over shorter runs would favour the one-process figure
            k = per_core_images(n, mode)
            runs: dict[str, Callable[[], float]] = {
                f"{mode}_one_process": lambda: _one_process(size, mode, k, seed, depth),
                f"{mode}_all_cores": lambda: _all_cores(size, mode, k * workers, seed, workers, depth)}
            if mode == "gl" and workers > 1:
                # the pool with one actor: separates Ray's own cost from what a second core adds
                runs["gl_one_worker"] = lambda: _all_cores(size, "gl", k, seed, 1, depth)
                runs["gl_bare_processes"] = lambda: _bare_processes(size, k * workers, seed, workers, depth)
            rounds: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(repeats):
                for name, run in runs.items():
                    rounds[name].append(run())
            for name in runs:
                fig[name] = max(rounds[name])
                label = name.removeprefix(f"{mode}_").replace("_", " ")
                label = {"all cores": f"{workers} workers", "bare processes": f"{workers} bare procs"}.get(label, label)
                log(f"  {size}²  {mode:8s}  {label:13s} {fig[name]:7.1f} img/s")
            if mode == "gl":
                # the ratio within each round (both figures taken a few seconds apart), robust to a
                # neighbour's load that comes and goes between rounds
                fig["scaling_all_cores_median_round"] = statistics.median(
                    a / b for a, b in zip(rounds["gl_all_cores"], rounds["gl_one_process"]))
        out[str(size)] = {k: round(v, 2) for k, v in {**fig, **_ratios(fig, modes)}.items()}
    if workers > 1:
        out["machine_scaling"] = round(machine_scaling(workers, repeats), 2)
        log(f"  plain Python arithmetic, 1 → {workers} processes on this machine now: "
            f"{out['machine_scaling']:.2f}×")
    return out


def summary_lines(res: dict[str, Any]) -> list[str]:
    """One line per image size with the ratios of :func:`bench_render`'s result, and the
    machine's ceiling."""
    w = res["workers"]
    lines = []
    for key, f in res.items():
        if not key.isdigit():
            continue
        parts = []
        if "blender_one_process" in f and "gl_one_process" in f:
            parts.append(f"Blender {f['blender_one_process']:.1f} img/s in one process "
                         f"({f['gl_one_process'] / f['blender_one_process']:.0f}× slower than gl), "
                         f"{f['blender_all_cores']:.1f} over {w} workers")
        if "speedup_vs_naive_one_process" in f:
            parts.append(f"reuse/naive {f['speedup_vs_naive_one_process']:.2f}× (one process), "
                         f"{f['speedup_vs_naive_all_cores']:.2f}× (all cores)")
        if "scaling_all_cores" in f:
            parts.append(f"one process → {w} workers {f['scaling_all_cores']:.2f}× "
                         f"(median within a round {f['scaling_all_cores_median_round']:.2f}×)")
        if "scaling_pool_workers" in f:
            parts.append(f"pool 1 → {w} workers {f['scaling_pool_workers']:.2f}×; {w} bare processes (no Ray) "
                         f"{f['scaling_bare_processes']:.2f}×, of which the pool keeps {f['pool_vs_bare_processes']:.0%}")
        lines.append(f"{key}²: " + ("; ".join(parts) or "see the figures above"))
    if "machine_scaling" in res:
        lines.append(f"ceiling: plain Python arithmetic scales {res['machine_scaling']:.2f}× from one process "
                     f"to {w} on this machine right now")
    return lines
