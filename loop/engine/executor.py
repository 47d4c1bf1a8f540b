"""Where evaluation tasks run: as Ray tasks when Ray is up, else in this process."""

from __future__ import annotations

import math
from typing import Any

from .cluster import Request, Waits, ray_failure
from .jobs import CandidateJob, CandidateResult, evaluate_or_fail


class Executor:
    """Runs :class:`CandidateJob` s, each Ray task asking for ``request`` (CPUs, GPUs, custom
    resources, node labels).

    Run-level objects (the real set, a round's signal inputs) go through :meth:`put` once and
    are passed as top-level task arguments, which Ray resolves; an object reference nested in a
    container would reach the task unresolved."""

    def __init__(self, *, use_ray: bool, request: Request | None = None, waits: Waits | None = None):
        self.use_ray = use_ray
        if use_ray:
            import ray

            opts = (request or Request("evaluator", 1, 1.0, 0.0)).options()
            self._remote = ray.remote(evaluate_or_fail).options(**opts)
            self.waits = waits or Waits()

    def put(self, obj: Any) -> Any:
        if not self.use_ray:
            return obj
        import ray

        return ray.put(obj)

    def run(self, jobs: list[CandidateJob], real_ref: Any, inputs_ref: Any = None) -> list[CandidateResult]:
        """One result per job; a job that failed (an exception in the task, a worker that died
        more often than Ray retries it) comes back as a result with ``failed`` set."""
        if not self.use_ray:
            return [evaluate_or_fail(job, real_ref, inputs_ref) for job in jobs]
        refs = [self._remote.remote(job, real_ref, inputs_ref) for job in jobs]
        return [CandidateResult(score=math.nan, failed=ray_failure(v)) if isinstance(v, BaseException) else v
                for v in self.waits.get_all(refs, "evaluation tasks")]
