"""Parallel dataset rendering over Ray actors, each holding its own generator and GL context.

The driver draws every image's parameters (vectorised, seeded) and hands contiguous chunks of
them (large first, small last; see :func:`call_sizes`) to whichever actor is free; the actor
derives each image's seed from the run seed and the image index, and the results are put back in
index order. The bytes of a dataset therefore never depend on the number of workers.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time
from typing import Any

import numpy as np

from generator.base import Sample, render_draws, render_samples, samples_to_dataset
from generator.dataset import Dataset

from ..config import ConfigError, ExperimentConfig

#: a killed render actor is restarted and its calls retried (they are pure: the same bytes)
ACTOR_RESTARTS = 4


#: seconds to wait for something to answer at ``--address`` before saying nothing does
ADDRESS_TIMEOUT_S = 10.0


def check_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """A ``host:port`` address must answer a TCP connection: joining a dead address would
    otherwise print Ray's warnings for minutes and hang."""
    if address == "auto" or "://" in address:
        return                         # Ray resolves these itself (the RAY_ADDRESS file, Ray Client)
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address: expected host:port of a Ray cluster's head (e.g. 10.0.0.1:6379), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: expected a running Ray cluster there, got no answer "
                          f"({e.strerror or e})") from None


def check_resources(requests: dict[str, tuple[float, float]]) -> None:
    """Every request (a name, CPUs and GPUs one task or actor asks for) must fit on one node of
    the Ray cluster, or it would wait for ever: refuse it in one line instead."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for name, (cpus, gpus) in requests.items():
        if not any(n.get("CPU", 0.0) >= cpus and n.get("GPU", 0.0) >= gpus for n in nodes):
            best_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
            best_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
            raise ConfigError(f"{name}.num_cpus/{name}.num_gpus: expected a request some Ray node can satisfy, "
                              f"got num_cpus={cpus:g}, "
                              f"num_gpus={gpus:g} (the largest node has {best_cpu:g} CPUs and {best_gpu:g} GPUs)")


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray (or join ``address``) once per process, quietly."""
    import ray

    if address:
        check_address(address)
    if ray.is_initialized():
        return
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user Ray; clusters keep theirs
    env = {"PYOPENGL_PLATFORM": os.environ["PYOPENGL_PLATFORM"], "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", "0")}
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "ERROR",
                              "runtime_env": {"env_vars": env}}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)


def _pack(samples: list[Sample]) -> tuple:
    depths = [s.depth for s in samples]
    stacked_depth = np.stack(depths) if samples and all(d is not None for d in depths) else None
    return np.stack([s.image for s in samples]), stacked_depth, [s.annotations for s in samples]


def _unpack(packed: tuple) -> list[Sample]:
    images, depths, anns = packed
    return [Sample(images[i], anns[i], None if depths is None else depths[i]) for i in range(len(anns))]


def call_sizes(n: int, workers: int, chunk: int = 0, smallest: int = 16, largest: int = 256) -> list[int]:
    """Images per actor call, in the order the calls are made. ``chunk`` > 0 is taken as given.

    0 sizes the calls "guided": each takes a 1/(2·workers) share of what is left, between
    ``smallest`` and ``largest`` images. Large calls first keep Ray's per-call cost (a few ms,
    mostly shipping the images back) small; small calls last mean that an actor on a slower
    core, or one sharing its core with the driver, ends at most a small call after the others
    instead of a quarter of the dataset after them. The sizes depend only on ``n`` and
    ``workers``, and per-image seeds on the image index, so they never change the bytes."""
    if chunk > 0:
        return [min(chunk, n - s) for s in range(0, n, chunk)]
    share = 2 * max(workers, 1)
    floor = min(smallest, -(-n // share))   # a small dataset still reaches every actor
    sizes, left = [], n
    while left > 0:
        size = min(left, max(floor, min(largest, -(-left // share))))
        if left - size < floor // 2:        # no call of a handful of images at the very end
            size = left
        sizes.append(size)
        left -= size
    return sizes


class _Worker:
    """Body of the Ray actor: one generator (one GL context) for the actor's lifetime."""

    def __init__(self, config_raw: dict[str, Any]):
        from ..config import config_from_dict

        self.generator = config_from_dict(config_raw).build_generator()

    def render(self, draws: dict[str, np.ndarray], seed: int, start: int) -> tuple:
        """Images ``start`` … of a dataset rendered with ``seed``, from their parameter columns.
        The actor derives the per-image seeds itself (off the driver's serial path). A chunk in,
        a chunk out, both column-wise (stacked images, stacked depths, annotation lists): a few
        arrays cross Ray far faster than many small objects."""
        return _pack(render_samples(self.generator, draws, seed, start))

    def ping(self) -> int:
        return os.getpid()


class RenderPool:
    """``workers`` render actors built from one experiment config, reused for every call."""

    def __init__(self, config: ExperimentConfig, *, workers: int | None = None, address: str | None = None,
                 progress: bool = False, wait: bool = True):
        """``wait=False`` returns while the actors are still starting (their processes import the
        generator stack and open a GL context), so the caller can do its own set-up meanwhile;
        :meth:`ready` or the first render waits for them."""
        self.config = config
        self.generator = config.build_generator()  # the driver only samples; its GL context stays unopened
        self.workers = config.render.workers if workers is None else workers
        self.progress = progress
        self._actors = []
        self._starting: list[Any] = []
        if self.workers > 0:
            import ray

            ensure_ray(address, num_cpus=max(self.workers, os.cpu_count() or 1))
            check_resources({"render": (config.render.num_cpus, config.render.num_gpus)})
            actor_cls = ray.remote(num_cpus=config.render.num_cpus, num_gpus=config.render.num_gpus,
                                   max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS,
                                   enable_task_events=False)(_Worker)
            self._actors = [actor_cls.remote(config.raw) for _ in range(self.workers)]
            self._starting = [a.ping.remote() for a in self._actors]
            if wait:
                self.ready()

    def ready(self) -> None:
        """Block until every actor has started (a failed start raises here)."""
        if self._starting:
            import ray

            starting, self._starting = self._starting, []
            ray.get(starting)

    def render(self, theta: Any, n: int, seed: int, info: dict[str, Any] | None = None) -> Dataset:
        return self.render_draws(self.generator.scene_draws(theta, n, seed), seed, info)

    def render_draws(self, draws: dict[str, np.ndarray], seed: int, info: dict[str, Any] | None = None) -> Dataset:
        """Render already drawn per-image parameter values (callers that also need the draws,
        such as the score-function controllers, draw them once)."""
        gen = self.generator
        meta = {"seed": int(seed), **gen.config(), **(info or {})}
        if not self._actors:
            ds = render_draws(gen, draws, seed)
            ds.info.update(meta)
            return ds
        import ray

        self.ready()
        n = len(next(iter(draws.values()))) if draws else 0
        sizes = call_sizes(n, len(self._actors), self.config.render.chunk)
        calls = list(zip(itertools.accumulate(sizes, initial=0), sizes))[::-1]  # popped from the end: largest first
        results: dict[int, list[Sample]] = {}
        pending: dict[Any, tuple[int, Any]] = {}
        # two calls in flight per actor, so no actor idles while the driver collects a result
        free = list(self._actors) * 2
        t0, done, shown = time.perf_counter(), 0, 0.0
        while calls or pending:
            while calls and free:
                (s, k), actor = calls.pop(), free.pop(0)
                cols = {key: v[s:s + k] for key, v in draws.items()}
                pending[actor.render.remote(cols, int(seed), s)] = (s, actor)
            ready, _ = ray.wait(list(pending), num_returns=1)
            s, actor = pending.pop(ready[0])
            results[s] = _unpack(ray.get(ready[0]))
            free.append(actor)
            done += len(results[s])
            if self.progress and (done == n or time.perf_counter() - shown > 2.0):
                shown = time.perf_counter()
                rate = done / max(shown - t0, 1e-9)
                eta = (n - done) / max(rate, 1e-9)
                print(f"rendered {done}/{n} images  {rate:.0f} img/s  ETA {eta:.0f} s", file=sys.stderr, flush=True)
        samples = [smp for s in sorted(results) for smp in results[s]]
        return samples_to_dataset(samples, gen.categories, meta)

    def close(self) -> None:
        if self._actors:
            import ray

            for a in self._actors:
                ray.kill(a)
            self._actors = []
        self.generator.close()

    def __enter__(self) -> "RenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
