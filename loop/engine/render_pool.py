"""Parallel dataset rendering over Ray actors, each holding its own generator and GL context.

The driver draws every image's parameters (vectorised, seeded) and hands contiguous chunks of
them (large first, small last; see :func:`call_sizes`) to whichever actor is free; the actor
derives each image's seed from the run seed and the image index, and the results are put back in
index order. The bytes of a dataset therefore never depend on the number of workers.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Any

import numpy as np

from generator.base import RenderFailed, render_draws, render_samples, samples_to_dataset
from generator.dataset import Dataset

from ..config import ExperimentConfig
from ..errors import RunFailure
from .cluster import Waits, check_local_workers, check_resources, ensure_ray, ray_failure, render_request
from .devices import egl_device_for_render
from .remote_dataset import RemoteDataset, pack, unpack

#: a killed render actor is restarted and its calls retried (they are pure: the same bytes)
ACTOR_RESTARTS = 4

#: actors replaced per dataset (a lost node takes its actors; new ones start on nodes with room)
ACTOR_REPLACEMENTS = 8


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

        egl_device_for_render()        # before the generator opens its GL context
        self.generator = config_from_dict(config_raw).build_generator()

    def render(self, draws: dict[str, np.ndarray], seed: int, start: int) -> tuple:
        """Images ``start`` … of a dataset rendered with ``seed``, from their parameter columns.
        The actor derives the per-image seeds itself (off the driver's serial path). A chunk in,
        a chunk out, both column-wise (stacked images, stacked depths, annotation lists): a few
        arrays cross Ray far faster than many small objects."""
        return pack(render_samples(self.generator, draws, seed, start))

    def render_kept(self, draws: dict[str, np.ndarray], seed: int, start: int) -> tuple[tuple, int]:
        """:meth:`render`, called with ``num_returns=2``: the chunk stays in this node's object
        store (its reference goes to the evaluation task) and only its size goes to the driver."""
        packed = self.render(draws, seed, start)
        return packed, len(packed[2])

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
        self.waits = Waits(config.ray)
        self._replaced: dict[int, tuple[Any, Any]] = {}
        self._actors = []
        self._starting: list[Any] = []
        if self.workers > 0:
            import ray

            check_local_workers(self.workers, address)
            ensure_ray(address, num_cpus=max(self.workers, os.cpu_count() or 1), settings=config.ray)
            request = render_request(config, self.workers)
            check_resources([request])
            self._actor_cls = ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS,
                                         **request.options())(_Worker)
            self._actors = [self._new_actor() for _ in range(self.workers)]
            self._starting = [a.ping.remote() for a in self._actors]
            if wait:
                self.ready()

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self.config.raw)

    def _replace(self, actor: Any, error: BaseException) -> Any:
        """The actor that takes over from ``actor``, lost with ``error`` (its node died, or it
        crashed more often than Ray restarts it): one new actor per lost one, placed by Ray on any
        node with room; every call of the lost actor reaches the same replacement."""
        import ray

        if id(actor) in self._replaced:
            return self._replaced[id(actor)][1]
        if len(self._replaced) >= ACTOR_REPLACEMENTS + 2 * self.workers:
            raise RunFailure(f"render: expected the render actors to keep running, lost {len(self._replaced) + 1} "
                             f"({ray_failure(error)})")
        self.waits.log(f"warning: a render actor was lost ({ray_failure(error)}); a new one takes over its calls")
        try:
            ray.kill(actor, no_restart=True)
        except Exception:   # noqa: BLE001 - already gone with its node
            pass
        new = self._new_actor()
        self._actors = [new if a is actor else a for a in self._actors]
        self._replaced[id(actor)] = (actor, new)    # the lost handle is kept, so its id is not reused
        return new

    def ready(self) -> None:
        """Block until every actor has started (a failed start raises here, in one line)."""
        if self._starting:
            starting, self._starting = self._starting, []
            for value in self.waits.get_all(starting, f"render actors to start (each asks "
                                                      f"{render_request(self.config).options()})"):
                if isinstance(value, BaseException):
                    raise RunFailure(f"render: expected the render actors to start, one failed ({ray_failure(value)}); "
                                     f"a plug-in generator must be importable on every node (ray.py_modules)")

    def render(self, theta: Any, n: int, seed: int, info: dict[str, Any] | None = None, *,
               remote: bool = False) -> Dataset | RemoteDataset:
        return self.render_draws(self.generator.scene_draws(theta, n, seed), seed, info, remote=remote)

    def render_draws(self, draws: dict[str, np.ndarray], seed: int, info: dict[str, Any] | None = None, *,
                     remote: bool = False) -> Dataset | RemoteDataset:
        """Render already drawn per-image parameter values (callers that also need the draws,
        such as the score-function controllers, draw them once). With ``remote`` and render
        actors, the images stay on the actors' nodes: a :class:`RemoteDataset` comes back."""
        gen = self.generator
        meta = {"seed": int(seed), **gen.config(), **(info or {})}
        if not self._actors:
            ds = render_draws(gen, draws, seed)
            ds.info.update(meta)
            return ds
        self.ready()
        chunks = self._render_chunks(draws, seed, remote)
        if remote:
            starts = sorted(chunks)
            return RemoteDataset([chunks[s][0] for s in starts], [chunks[s][1] for s in starts], list(gen.categories),
                                 meta, [(draws, int(seed))])
        samples = [smp for s in sorted(chunks) for smp in unpack(chunks[s])]
        return samples_to_dataset(samples, gen.categories, meta)

    def _render_chunks(self, draws: dict[str, np.ndarray], seed: int, remote: bool) -> dict[int, Any]:
        """Each chunk's result by its first image index: the packed images, or with ``remote``
        (the chunk's object reference, its size). Calls go to whichever actor is free; a lost
        actor's calls go to its replacement."""
        import ray

        n = len(next(iter(draws.values()))) if draws else 0
        sizes = call_sizes(n, len(self._actors), self.config.render.chunk)
        calls = list(zip(itertools.accumulate(sizes, initial=0), sizes))[::-1]  # popped from the end: largest first
        results: dict[int, Any] = {}
        pending: dict[Any, tuple[int, int, Any, Any]] = {}
        # two calls in flight per actor, so no actor idles while the driver collects a result
        free = list(self._actors) * 2
        t0, done, shown = time.perf_counter(), 0, 0.0
        while calls or pending:
            while calls and free:
                (s, k), actor = calls.pop(), free.pop(0)
                cols = {key: v[s:s + k] for key, v in draws.items()}
                if remote:
                    chunk, size = actor.render_kept.options(num_returns=2).remote(cols, int(seed), s)
                else:
                    chunk = size = actor.render.remote(cols, int(seed), s)
                pending[size] = (s, k, actor, chunk)
            ready = self.waits.ready(list(pending), lambda: f"render calls ({done}/{n} images rendered)")[0]
            s, k, actor, chunk = pending.pop(ready)
            try:
                value = ray.get(ready)       # with remote: the chunk's size, a few bytes
            except ray.exceptions.RayActorError as e:   # its node was lost: the same call on a new actor
                new = self._replace(actor, e)
                free = [new if a is actor else a for a in free] + [new]
                calls.append((s, k))
                continue
            except RenderFailed as e:     # the renderer refused this chunk (Ray's error carries it as its cause)
                raise RenderFailed(str(getattr(e, "cause", None) or e)) from None
            results[s] = (chunk, value) if remote else value
            free.append(actor)
            done += k
            if self.progress and (done == n or time.perf_counter() - shown > 2.0):
                shown = time.perf_counter()
                rate = done / max(shown - t0, 1e-9)
                eta = (n - done) / max(rate, 1e-9)
                print(f"rendered {done}/{n} images  {rate:.0f} img/s  ETA {eta:.0f} s", file=sys.stderr, flush=True)
        return results

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
