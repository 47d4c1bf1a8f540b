"""Where evaluation tasks run: as Ray tasks when Ray is up, else in this process."""

from __future__ import annotations

import math
from typing import Any

from .jobs import CandidateJob, CandidateResult, evaluate_or_fail


class Executor:
    """Runs :class:`CandidateJob` s with the config's ``num_cpus``/``num_gpus`` per Ray task.

    Run-level objects (the real set, a round's signal inputs) go through :meth:`put` once and
    are passed as top-level task arguments, which Ray resolves; an object reference nested in a
    container would reach the task unresolved."""

    def __init__(self, *, use_ray: bool, num_cpus: float = 1.0, num_gpus: float = 0.0):
        self.use_ray = use_ray
        if use_ray:
            import ray

            self._remote = ray.remote(evaluate_or_fail).options(num_cpus=num_cpus, num_gpus=num_gpus)

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
        import ray

        results = []
        for ref in [self._remote.remote(job, real_ref, inputs_ref) for job in jobs]:
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as e:
                results.append(CandidateResult(score=math.nan, failed=f"{type(e).__name__}: "
                                                                      f"{str(e).strip().splitlines()[0][:200]}"))
        return results
