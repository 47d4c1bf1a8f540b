"""A two-node Ray cluster on this host, started as docs/howto/cluster.md starts one.

The head runs ``ray start --head``; the second node runs ``ray start --address`` inside its own
mount namespace (``unshare -m``) where the folders the driver writes (``hide``: the tests'
temporary folder) and the cluster's temp folder are empty tmpfs mounts, so it cannot read what
the driver writes: a run that works on it needs no shared filesystem. The second node carries a
fake GPU (``--num-gpus=1``) and a custom resource ``second`` to place work on it. Every process
is stopped by its PID (found by the cluster's own temp folder), never by ``ray stop``, which
would stop every Ray on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_unshare() -> bool:
    """Whether a private mount namespace with its own tmpfs mounts can be made here (root, util-linux)."""
    if shutil.which("unshare") is None:
        return False
    cmd = ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /tmp"]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _node_ports() -> list[str]:
    """Ports of one node's agents, so two nodes (and the tests' local Ray) never collide."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


def _is_second(node: dict) -> bool:
    return "second" in (node.get("resources_total") or {})


class TwoNodes:
    def __init__(self, root: Path, hide: list[Path] = ()):
        self.root = Path(root)
        self.hide = [Path(p) for p in hide]
        # the cluster's own temp folder names its processes; short, since Ray's socket paths under
        # it must stay within AF_UNIX's 107 bytes
        self.temp = Path(tempfile.mkdtemp(prefix="dropt-ray-", dir="/tmp"))
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYOPENGL_PLATFORM": "egl"}
        self.env.pop("RAY_ADDRESS", None)
        self._second: subprocess.Popen | None = None

    def start(self) -> "TwoNodes":
        head = [str(BIN / "ray"), "start", "--head", f"--port={self.port}", "--num-cpus=2",
                "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                f"--temp-dir={self.temp}", "--disable-usage-stats", *_node_ports(), "--block"]
        self._head = subprocess.Popen(head, env=self.env, stdout=open(self.root / "head.log", "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_for_nodes(1)
        self.start_second()
        return self

    def start_second(self) -> None:
        # a second node killed a moment ago can still count as alive: wait until the head has
        # marked it dead, so that the wait below sees the new one, not a stale count
        self.wait_until(lambda nodes: not any(_is_second(n) for n in nodes), "no live second node")
        second = [str(BIN / "ray"), "start", f"--address={self.address}", "--num-cpus=2", "--num-gpus=1",
                  "--resources=" + json.dumps({"second": 1}), "--disable-usage-stats", *_node_ports(), "--block"]
        mounts = "".join(f"mount -t tmpfs tmpfs '{p}' && " for p in [*self.hide, self.temp])
        inner = mounts + "exec " + " ".join(f"'{a}'" for a in second)
        self._second = subprocess.Popen(["unshare", "-m", "sh", "-c", inner], env=self.env,
                                        stdout=open(self.root / "second.log", "a"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.wait_until(lambda nodes: len(nodes) == 2 and any(_is_second(n) for n in nodes), "2 live nodes")

    def alive_nodes(self) -> list[dict]:
        out = subprocess.run([str(BIN / "ray"), "list", "nodes", "--address", self.dashboard, "--format", "json",
                              "--filter", "state=ALIVE"], env=self.env, capture_output=True, text=True, timeout=60)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return []

    def wait_for_nodes(self, n: int, timeout: float = 90.0) -> None:
        self.wait_until(lambda nodes: len(nodes) == n, f"{n} live nodes", timeout)

    def wait_until(self, ready, what: str, timeout: float = 90.0) -> None:
        """Poll the live nodes until ``ready(nodes)``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if ready(self.alive_nodes()):
                return
            time.sleep(1.0)
        raise RuntimeError(f"the two-node cluster: expected {what} within {timeout:.0f} s (logs in {self.root})")

    def _pids(self, second_only: bool) -> list[int]:
        """Processes of this cluster: their command lines name its temp folder (the second node's
        raylet names the head's session folder, which lies under it, too)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if str(self.temp).encode() in cmd and not (second_only and self._is_head(proc)):
                pids.append(int(proc.name))
        return pids

    def _is_head(self, proc: Path) -> bool:
        """A process of the head node shares the driver's mount namespace; the second's does not."""
        try:
            return os.readlink(proc / "ns" / "mnt") == os.readlink("/proc/self/ns/mnt")
        except OSError:
            return True

    def kill_second(self) -> None:
        """Lose the second node: SIGKILL every process of it, as a machine that dies."""
        for pid in self._pids(second_only=True) + [self._second.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._second is not None:
            self._second.wait(timeout=30)

    def stop(self) -> None:
        for pid in self._pids(second_only=False) + [p.pid for p in (self._head, self._second) if p]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)
