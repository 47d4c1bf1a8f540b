"""Ray as a run uses it: which cluster (``--address``, else ``RAY_ADDRESS`` as a Ray Job sets it,
else a local Ray), one runtime env merged with a Ray Job's own, the run's requests checked
against the cluster before anything waits on them, and waits that say what they wait for and
give up in one line."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError, ExperimentConfig
from ..errors import RunFailure
from ..schema import RaySettings

#: seconds to wait for something to answer at ``--address`` before saying nothing does
ADDRESS_TIMEOUT_S = 10.0

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- which cluster -------------------------------------------------------------------------------

def cluster_address(address: str | None) -> str | None:
    """``--address``, else the environment's ``RAY_ADDRESS`` (a Ray Job's own cluster), else None
    (a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_address(address: str, timeout: float | None = None, key: str = "--address") -> None:
    """A ``host:port`` (or ``ray://host:port``) address must answer a TCP connection and speak
    gRPC: joining a dead address, or a port where something else listens, would otherwise print
    Ray's warnings for minutes or wait for ever."""
    where = address.removeprefix("ray://")    # Ray Client's server is a gRPC server too
    if address == "auto" or "://" in where:
        return                         # Ray resolves these itself (the RAY_ADDRESS file, other schemes)
    host, sep, port = where.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{key}: expected host:port of a Ray cluster's head (e.g. 10.0.0.1:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout or ADDRESS_TIMEOUT_S) as conn:
            speaks_grpc = _answers_http2(conn)
    except OSError as e:
        raise ConfigError(f"{key} {address}: expected a running Ray cluster there, got no answer "
                          f"({e.strerror or e})") from None
    if not speaks_grpc:
        raise ConfigError(f"{key} {address}: expected a Ray cluster's head there (its GCS, a gRPC server), "
                          f"got something else answering on that port")


#: an HTTP/2 client's first bytes: the connection preface and an empty SETTINGS frame
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_http2(conn: socket.socket) -> bool:
    """Whether the server answers an HTTP/2 preface with its SETTINGS frame, as Ray's GCS (gRPC)
    does; anything else listening there would make ``ray.init`` wait for ever."""
    try:
        conn.sendall(_HTTP2_HELLO)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:             # a timeout or a reset: not a gRPC server
        return False
    return head[3] == 4         # the frame type of the server's first frame: SETTINGS


def check_local_workers(workers: int, address: str | None) -> None:
    """On a local Ray, at most one render actor per core (at least 2): each is a process with its
    own GL context, more only share the cores, and hundreds would never finish starting."""
    cap = max(2, os.cpu_count() or 1)
    if workers > cap and not cluster_address(address):
        raise ConfigError(f"render workers (--workers / render.workers): expected at most {cap} on this machine's "
                          f"{os.cpu_count()} cores (a local Ray), got {workers}; pass --address to use a cluster")


def render_workers(cfg, workers: int | None, address: str | None) -> int:
    """The render actors of a command that only renders: ``--workers``, else the config's
    ``render.workers``. ``--address`` with none is refused: rendering in this process never
    joins the cluster, so the address would be ignored."""
    given = "render.workers = 0" if workers is None else "--workers 0"
    workers = cfg.render.workers if workers is None else workers
    if address is not None and workers == 0:
        raise ConfigError(f"--address: expected render workers to run on the cluster, got {given} "
                          f"(renders in this process, without Ray)")
    return workers


# --- the runtime env -----------------------------------------------------------------------------

def job_runtime_env() -> dict[str, Any]:
    """The runtime env of the Ray Job this driver runs in (``ray job submit --runtime-env-json``),
    or {} outside a job."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        env = json.loads(raw).get("runtime_env") or {}
    except (ValueError, AttributeError):
        return {}
    return env if isinstance(env, dict) else {}


def runtime_env(settings: RaySettings | None, job_env: dict[str, Any] | None = None, log: Log = _stderr) -> dict:
    """dropt's runtime env for the workers (the GL platform of render actors, the user's
    ``ray.working_dir`` and ``ray.py_modules``), merged with the Ray Job's: Ray refuses a key set
    twice, so where the job sets one, the job's wins."""
    ours: dict[str, Any] = {"env_vars": {"PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl"),
                                         "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", "0")}}
    if settings is not None and settings.working_dir:
        ours["working_dir"] = _local_folder(settings.working_dir, "ray.working_dir")
    if settings is not None and settings.py_modules:
        ours["py_modules"] = [_local_folder(m, "ray.py_modules") for m in settings.py_modules]
    job = job_runtime_env() if job_env is None else job_env
    merged: dict[str, Any] = {}
    for key, value in ours.items():
        if key == "env_vars":
            kept = {k: v for k, v in value.items() if k not in (job.get("env_vars") or {})}
            if kept:
                merged[key] = kept
        elif key in job:
            log(f"warning: the Ray Job's runtime env sets {key}; the config's ray.{key} is not used")
        else:
            merged[key] = value
    return merged


def _local_folder(path: str, key: str) -> str:
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{key}: expected a local folder or module to ship to the workers, {path} not found")
    return str(p.resolve())


def ensure_ray(address: str | None = None, num_cpus: int | None = None, settings: RaySettings | None = None) -> None:
    """Start a local Ray (or join ``address`` / ``RAY_ADDRESS``) once per process, quietly."""
    import ray

    key = "--address" if address else "RAY_ADDRESS"
    address = cluster_address(address)
    if address:
        check_address(address, key=key)
    env = runtime_env(settings)        # checks the config's folders even when Ray is up already
    if ray.is_initialized():
        return
    check_address_space()
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user Ray; clusters keep theirs
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "ERROR",
                              "runtime_env": env}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
    except (ConnectionError, ValueError) as e:
        _give_up_ray(ray)
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ConfigError(f"ray: expected to start or join {where}, got {type(e).__name__}: "
                          f"{_first_line(e)}") from None
    except Exception as e:      # Ray's own start-up failures (a raylet that cannot start: memory, ports)
        _give_up_ray(ray)
        raise RunFailure(f"ray: could not {'join ' + address if address else 'start a local Ray'} "
                         f"({type(e).__name__}: {_first_line(e)})") from None


#: the address space (``ulimit -v``) Ray's processes need, measured on this project's machines:
#: a local Ray with two render actors failed to start at 10 GB (threads that cannot reserve their
#: stacks abort the process) and ran at 16 GB
RAY_ADDRESS_SPACE = 16 * 2 ** 30


def check_address_space() -> None:
    """Refuse, in one line, an address-space limit under which Ray aborts (a C++ thread that
    cannot start ends the process with no message of ours)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft < RAY_ADDRESS_SPACE:
        raise RunFailure(f"ray: expected an address-space limit (ulimit -v) of at least "
                         f"{RAY_ADDRESS_SPACE / 2 ** 30:.0f} GiB for Ray's processes, got {soft / 2 ** 30:.1f} GiB; "
                         f"raise it, or render and evaluate in this process (render.workers = 0, no --address)")


def _give_up_ray(ray) -> None:
    """After a failed ``ray.init``: stop what it started, and drop its exit hook, which would
    otherwise fail again at exit (out of memory, say) with a traceback after our one line."""
    import atexit

    try:
        ray.shutdown()
    except BaseException:       # the failure that stopped ray.init may stop this too
        pass
    atexit.unregister(ray.shutdown)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else ""


# --- requests and placement ----------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """What ``count`` tasks or actors of one kind ask Ray for at once."""

    key: str                 # the config table that sets it: "render" or "evaluator"
    count: int
    num_cpus: float
    num_gpus: float
    resources: dict[str, float] = field(default_factory=dict)
    label_selector: dict[str, str] = field(default_factory=dict)
    strategy: str = "default"

    def amounts(self) -> dict[str, float]:
        return {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}

    def options(self) -> dict[str, Any]:
        """The keyword options of ``ray.remote(...)`` / ``.options(...)``."""
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            opts["resources"] = dict(self.resources)
        if self.label_selector:
            opts["label_selector"] = dict(self.label_selector)
        if self.strategy == "spread":
            opts["scheduling_strategy"] = "SPREAD"
        return opts


def render_request(cfg: ExperimentConfig, workers: int | None = None) -> Request:
    r = cfg.render
    return Request("render", r.workers if workers is None else workers, r.num_cpus, r.num_gpus,
                   dict(r.resources), dict(r.label_selector), r.strategy)


def evaluator_request(cfg: ExperimentConfig, count: int = 1) -> Request:
    e = cfg.evaluator
    return Request("evaluator", count, e.num_cpus, e.num_gpus, dict(e.resources), dict(e.label_selector), e.strategy)


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Plain ``key = value`` selectors are checked here; Ray's operators (``in(...)``, ``!``) by Ray."""
    return all(labels.get(k) == v for k, v in selector.items() if not (v.startswith("!") or "(" in v))


def check_resources(requests: list[Request], nodes: list[dict] | None = None) -> None:
    """Refuse in one line, before anything waits for ever, a request no live node can hold, or
    requests that together exceed the cluster (render actors that reserve every CPU would
    starve the evaluation tasks). ``nodes``: ``ray.nodes()``, read here when not given."""
    if nodes is None:
        import ray

        nodes = ray.nodes()
    alive = [(n.get("Resources", {}), n.get("Labels", {}) or {}) for n in nodes if n.get("Alive")]
    requests = [q for q in requests if q.count > 0]
    for q in requests:
        fits = [res for res, labels in alive if _labels_match(q.label_selector, labels)
                and all(res.get(k, 0.0) >= v for k, v in q.amounts().items() if v > 0)]
        if not fits:
            wanted = ", ".join(f"{k}={v:g}" for k, v in q.amounts().items() if v > 0 or k in ("CPU", "GPU"))
            largest = ", ".join(f"{k}={max((r.get(k, 0.0) for r, _ in alive), default=0.0):g}"
                                for k, v in q.amounts().items() if v > 0 or k in ("CPU", "GPU"))
            sel = f" with labels {q.label_selector}" if q.label_selector else ""
            raise ConfigError(f"{q.key}.num_cpus/num_gpus/resources: expected a request some live Ray node{sel} can "
                              f"hold, got {wanted} (the most any node has: {largest})")
    totals: dict[str, float] = {}
    for res, _ in alive:
        for k, v in res.items():
            totals[k] = totals.get(k, 0.0) + v
    for k in sorted({k for q in requests for k in q.amounts()}):
        asked = sum(q.count * q.amounts().get(k, 0.0) for q in requests)
        if asked > totals.get(k, 0.0) + 1e-9:
            parts = " + ".join(f"{q.count} {q.key} × {q.amounts().get(k, 0.0):g}" for q in requests)
            raise ConfigError(f"render.workers/{_key_of(k)}: expected the run's requests to fit the Ray cluster "
                              f"together, got {asked:g} {k} asked ({parts}) of {totals.get(k, 0.0):g} in the cluster "
                              f"(render actors holding them all would leave no room for an evaluation task)")


def _key_of(resource: str) -> str:
    return {"CPU": "num_cpus", "GPU": "num_gpus"}.get(resource, f"resources.{resource}")


# --- waits that are never silent -----------------------------------------------------------------

def free_resources() -> str:
    """"the cluster has 0 of 3 CPUs and 0 of 1 GPUs free" (custom resources the same way)."""
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    names = ["CPU", "GPU"] + sorted(k for k in total if k not in ("CPU", "GPU", "memory", "object_store_memory")
                                    and not k.startswith("node:") and not k.startswith("accelerator_type"))
    return "the cluster has " + ", ".join(f"{free.get(k, 0.0):g} of {total.get(k, 0.0):g} {k}" for k in names) + " free"


class Waits:
    """``ray.wait`` that prints a line every ``ray.wait_report_s`` while nothing is ready, naming
    what it waits for and what the cluster has free, and raises :class:`RunFailure` after
    ``ray.wait_timeout_s`` with nothing ready."""

    def __init__(self, settings: RaySettings | None = None, log: Log = _stderr):
        s = settings or RaySettings()
        self.report_s, self.timeout_s, self.log = s.wait_report_s, s.wait_timeout_s, log

    def ready(self, pending: list, what: Callable[[], str] | str) -> list:
        """At least one of ``pending`` (object references) once it is ready."""
        import ray

        t0 = time.monotonic()
        while True:
            left = self.timeout_s - (time.monotonic() - t0)
            ready, _ = ray.wait(pending, num_returns=1, timeout=max(0.0, min(self.report_s, left)))
            if ready:
                return ready
            waited = time.monotonic() - t0
            name = what() if callable(what) else what
            if waited >= self.timeout_s - 1e-6:
                raise RunFailure(f"ray: expected {name} within ray.wait_timeout_s = {self.timeout_s:g} s, got nothing "
                                 f"in {waited:.0f} s; {free_resources()}")
            self.log(f"waiting {waited:.0f} s for {name}; {free_resources()}")

    def get_all(self, refs: list, what: str) -> list:
        """Every value of ``refs`` in order; an exception a task raised is returned in its place."""
        import ray

        values: dict[Any, Any] = {}
        pending = list(refs)
        while pending:
            for ref in self.ready(pending, lambda: f"{len(pending)} of {len(refs)} {what}"):
                pending.remove(ref)
                try:
                    values[ref] = ray.get(ref)
                except ray.exceptions.RayError as e:
                    values[ref] = e
        return [values[r] for r in refs]


def ray_failure(e: BaseException) -> str:
    return f"{type(e).__name__}: {_first_line(e)}"


__all__ = ["ADDRESS_TIMEOUT_S", "Request", "Waits", "check_address", "check_resources", "cluster_address",
           "ensure_ray", "evaluator_request", "free_resources", "job_runtime_env", "ray_failure", "render_request",
           "runtime_env"]
