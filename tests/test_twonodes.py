"""dropt on a real two-node Ray cluster with no shared filesystem (see tests/twonodes.py): a run
equal to a local one that survives losing a node, what each task is told about GPUs, a
plug-in shipped to the workers (and the one line when it is not), `dropt tune`, and a Ray Job.

Each command runs as a user would run it, as its own process (`dropt run --address ...`,
`ray job submit ...`); the driver's files (config, real set, plug-in, run folder) lie in the
tests' temporary folder, which the second node cannot see.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path

import pytest

from loop.config import load_config
from loop.engine.target import make_target
from loop.run.runner import run_loop
from smoke import SMOKE, tiny
from twonodes import BIN, TwoNodes, can_unshare

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not can_unshare(), reason="needs unshare -m (root) for a node "
                                                                             "that cannot see the driver's files")]

PLUGIN = '''
from evaluator.detection import DetectionEvaluator


class ShippedDetection(DetectionEvaluator):
    """The built-in detector under another name, importable only where this folder is."""
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # the second node sees none of the tests' files (the driver's config, real set, plug-in, runs)
    c = TwoNodes(tmp_path_factory.mktemp("cluster"), hide=[tmp_path_factory.getbasetemp()]).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The driver's files, hidden from the second node: a real set, a plug-in package and a tiny config's overrides."""
    root = tmp_path_factory.mktemp("driver")
    make_target(load_config(SMOKE, ["target.val=6", "target.test=6"]), root / "real", workers=0, progress=False)
    (root / "plugins" / "dropt_shipped").mkdir(parents=True)
    (root / "plugins" / "dropt_shipped" / "__init__.py").write_text(PLUGIN)
    return root


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def dropt(*argv: str, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    full = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})}
    full.pop("RAY_ADDRESS", None)
    return subprocess.run([str(BIN / "dropt"), *argv], env=full, capture_output=True, text=True, timeout=timeout)


def rows(run_dir: Path) -> list[dict]:
    out = []
    for line in (run_dir / "rounds.jsonl").read_text().splitlines():
        r = json.loads(line)
        r.pop("ray_gpus", None)
        metrics = r.pop("metrics")
        r["val"] = metrics.get("val_ap50")
        out.append(r)
    return out


LONGER = ("loop.budget=5", "evaluator.steps=40", "evaluator.final_seeds=1")   # rounds left to lose a node in
SPREAD = ("render.workers=2", "render.num_cpus=0.5", 'render.strategy="spread"', "evaluator.ray=true",
          'evaluator.strategy="spread"')


@pytest.fixture(scope="module")
def local(files, tmp_path_factory):
    """The same tiny run in this process: what every cluster run must equal."""
    out = tmp_path_factory.mktemp("local") / "run"
    best = run_loop(load_config(SMOKE, tiny(files / "real", *LONGER)), out,
                    log=lambda m: None)
    return out, best


def test_a_run_survives_losing_a_node_and_equals_a_local_run(cluster, files, local, tmp_path):
    out = tmp_path / "run"
    argv = ["run", str(SMOKE), "--out", str(out), "--address", cluster.address,
            *sets(*tiny(files / "real", *LONGER), *SPREAD)]
    proc = subprocess.Popen([str(BIN / "dropt"), *argv], env={**os.environ, "RAY_AUTH_MODE": "disabled"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not ((out / "rounds.jsonl").is_file() and len((out / "rounds.jsonl").read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() - t0 < 300, proc.communicate()
        time.sleep(0.2)
    cluster.kill_second()                  # the node with a render actor and evaluation tasks dies mid-run
    lines_at_kill = len((out / "rounds.jsonl").read_text().splitlines())
    assert proc.poll() is None and lines_at_kill < 10, "the run ended before the node was lost"
    stdout, stderr = proc.communicate(timeout=400)
    cluster.start_second()                 # for the tests after this one
    assert proc.returncode == 0, stderr[-3000:]
    local_dir, local_best = local
    assert rows(out) == rows(local_dir)
    best = json.loads((out / "best.json").read_text())
    for key in ("theta", "val", "test", "selected"):
        assert best[key] == local_best[key], key


def test_tasks_use_the_gpu_ray_assigned_and_a_plug_in_reaches_the_workers(cluster, files, tmp_path):
    """The fake GPU is on the second node only: evaluation tasks asking for half of it run there,
    with the plug-in evaluator shipped by ray.py_modules (that node cannot see the driver's files)."""
    base = [*tiny(files / "real", "evaluator.final_seeds=1"), 'evaluator.task="dropt_shipped:ShippedDetection"',
            "evaluator.ray=true", "evaluator.num_gpus=0.5", "render.workers=1"]
    env = {"PYTHONPATH": str(files / "plugins")}         # the driver imports it; the workers cannot
    shipped = dropt("run", str(SMOKE), "--out", str(tmp_path / "shipped"), "--address", cluster.address,
                    *sets(*base, f'ray.py_modules=["{files / "plugins" / "dropt_shipped"}"]'), env=env)
    assert shipped.returncode == 0, shipped.stderr[-3000:]
    got = [json.loads(x) for x in (tmp_path / "shipped" / "rounds.jsonl").read_text().splitlines()]
    assert [(r["ray_gpus"], r["device"]) for r in got] == [([0], "cpu")] * len(got)    # told GPU 0; torch has no CUDA
    assert all(math.isfinite(r["score"]) for r in got)

    missing = dropt("run", str(SMOKE), "--out", str(tmp_path / "missing"), "--address", cluster.address,
                    *sets(*base), env=env)
    last = missing.stderr.strip().splitlines()[-1]
    assert missing.returncode == 1 and "Traceback" not in missing.stderr, missing.stderr[-3000:]
    assert "every one failed" in last and "dropt_shipped" in last and "ship it with ray.py_modules" in last, last


def test_dropt_tune_runs_its_trials_on_the_node_without_the_files(cluster, files, tmp_path):
    base = [*tiny(files / "real"), 'loop.optimizer="random"', "evaluator.resources={second=1}",
            'evaluator.task="dropt_shipped:ShippedDetection"']
    env = {"PYTHONPATH": str(files / "plugins")}
    ok = dropt("tune", str(SMOKE), "--budget", "2", "--rungs", "2", "--out", str(tmp_path / "tune"), "--address",
               cluster.address, *sets(*base, f'ray.py_modules=["{files / "plugins" / "dropt_shipped"}"]'), env=env)
    assert ok.returncode == 0, ok.stderr[-3000:]
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert best["trials"] == 2 and best["errors"] == 0 and math.isfinite(best["best_val"])

    failed = dropt("tune", str(SMOKE), "--budget", "2", "--rungs", "1", "--out", str(tmp_path / "tune2"),
                   "--address", cluster.address, *sets(*base), env=env)
    last = failed.stderr.strip().splitlines()[-1]
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert last.startswith("dropt tune: error: tune: expected at least one trial to report a score, all 2 failed"), last


def test_a_ray_job_runs_dropt_with_its_own_runtime_env(cluster, files, local, tmp_path):
    out = tmp_path / "job"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    # the job sets a key dropt sets too (PYOPENGL_PLATFORM): the two runtime envs merge, the job's wins
    job = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard,
                          "--runtime-env-json", json.dumps({"env_vars": {"PYOPENGL_PLATFORM": "egl"}}), "--",
                          str(BIN / "dropt"), "run", str(SMOKE), "--out", str(out),
                          *sets(*tiny(files / "real", *LONGER), *SPREAD)],
                         env=env, capture_output=True, text=True, timeout=400)
    assert job.returncode == 0 and "succeeded" in job.stdout + job.stderr, (job.stdout + job.stderr)[-3000:]
    local_dir, local_best = local
    assert rows(out) == rows(local_dir)
    assert json.loads((out / "best.json").read_text())["test"] == local_best["test"]
    # the render calls are visible in Ray's state API (`ray list tasks`)
    listed = subprocess.run([str(BIN / "ray"), "list", "tasks", "--address", cluster.dashboard, "--format", "json",
                             "--limit", "10000"], env=env, capture_output=True, text=True, timeout=120)
    names = {t.get("name") for t in json.loads(listed.stdout)}
    assert "_Worker.render_kept" in names, sorted(n for n in names if n)[:20]


def test_the_second_node_cannot_see_the_drivers_files(cluster, files):
    probe = ("import os, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "f = ray.remote(num_cpus=0, resources={'second': 0.01})(lambda p: os.path.exists(p)); "
             "print(ray.get(f.remote(sys.argv[2])), os.path.exists(sys.argv[2]))")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([str(BIN / "python"), "-c", probe, cluster.address, str(files / "real" / "val")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]    # there: no; here: yes
