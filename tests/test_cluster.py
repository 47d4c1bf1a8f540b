"""Ray as a run uses it: the runtime env merged with a Ray Job's, the run's requests checked
against the cluster (each alone and together), the device each task picks from what Ray
assigned it, waits that say what they wait for, and a resume that changes resources."""

from __future__ import annotations

import json

import pytest

from evaluator.base import EvaluatorError
from loop.config import ConfigError, load_config
from loop.engine.cluster import Request, Waits, check_resources, cluster_address, runtime_env
from loop.engine.devices import Assignment, task_device
from loop.errors import RunFailure
from loop.front.cli import main
from loop.run.runner import run_loop
from loop.schema import RaySettings
from smoke import SMOKE, tiny


# --- the runtime env -----------------------------------------------------------------------------

def test_the_runtime_env_gives_way_to_the_jobs_keys(tmp_path):
    (tmp_path / "plugins").mkdir()
    settings = RaySettings(working_dir=str(tmp_path / "plugins"), py_modules=[str(tmp_path / "plugins")])
    ours = runtime_env(settings, job_env={})
    assert ours["working_dir"] == str(tmp_path / "plugins") and ours["py_modules"] == [str(tmp_path / "plugins")]
    assert set(ours["env_vars"]) == {"PYOPENGL_PLATFORM", "LP_NUM_THREADS"}
    said = []
    job = {"env_vars": {"PYOPENGL_PLATFORM": "osmesa"}, "working_dir": "s3://bucket/code.zip"}
    merged = runtime_env(settings, job_env=job, log=said.append)
    # Ray refuses a key the job and the driver both set: the job's stays, dropt's is left out
    assert merged["env_vars"] == {"LP_NUM_THREADS": ours["env_vars"]["LP_NUM_THREADS"]}
    assert "working_dir" not in merged and merged["py_modules"] == ours["py_modules"]
    assert said == ["warning: the Ray Job's runtime env sets working_dir; the config's ray.working_dir is not used"]
    with pytest.raises(ConfigError, match="ray.py_modules: expected a local folder"):
        runtime_env(RaySettings(py_modules=[str(tmp_path / "none")]), job_env={})


def test_the_address_is_the_flag_else_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) is None and cluster_address("10.0.0.1:6379") == "10.0.0.1:6379"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6380")       # as inside a Ray Job
    assert cluster_address(None) == "127.0.0.1:6380" and cluster_address("h:1") == "h:1"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")          # nothing there: one line naming where it came from
    from loop.engine.cluster import ensure_ray

    with pytest.raises(ConfigError, match=r"^RAY_ADDRESS 127.0.0.1:1: expected a running Ray cluster there"):
        ensure_ray()


# --- requests against the cluster ----------------------------------------------------------------

def _node(cpus, gpus=0.0, alive=True, labels=None, **custom):
    return {"Alive": alive, "Resources": {"CPU": cpus, "GPU": gpus, **custom}, "Labels": labels or {}}


NODES = [_node(2.0), _node(1.0, 1.0, labels={"zone": "b"}, fast=1.0), _node(64.0, alive=False)]


@pytest.mark.parametrize("requests, message", [
    ([Request("render", 2, 1.0, 0.0), Request("evaluator", 1, 1.0, 0.0)], None),
    ([Request("evaluator", 1, 1.0, 1.0, {"fast": 1.0})], None),
    ([Request("render", 1, 1.0, 0.0, label_selector={"zone": "b"})], None),
    ([Request("render", 0, 99.0, 0.0)], None),                      # no actors: no request
    # each alone: a dead node's CPUs do not count
    ([Request("evaluator", 1, 3.0, 0.0)], "evaluator.num_cpus/num_gpus/resources: expected a request some live "
                                          "Ray node can hold, got CPU=3, GPU=0 (the most any node has: CPU=2, GPU=1)"),
    ([Request("evaluator", 1, 2.0, 1.0)], "expected a request some live Ray node can hold, got CPU=2, GPU=1"),
    ([Request("render", 1, 1.0, 0.0, {"fast": 2.0})], "got CPU=1, GPU=0, fast=2"),
    ([Request("render", 1, 1.0, 0.0, label_selector={"zone": "a"})], "some live Ray node with labels {'zone': 'a'}"),
    # together: render actors holding every CPU would starve the evaluation tasks
    ([Request("render", 3, 1.0, 0.0), Request("evaluator", 1, 1.0, 0.0)],
     "render.workers/num_cpus: expected the run's requests to fit the Ray cluster together, got 4 CPU asked "
     "(3 render × 1 + 1 evaluator × 1) of 3 in the cluster"),
    ([Request("render", 1, 0.5, 1.0), Request("evaluator", 1, 0.5, 0.5)], "got 1.5 GPU asked"),
])
def test_requests_are_checked_alone_and_together(requests, message):
    if message is None:
        check_resources(requests, nodes=NODES)
    else:
        with pytest.raises(ConfigError) as e:
            check_resources(requests, nodes=NODES)
        assert message in str(e.value)


# --- the device each task picks ------------------------------------------------------------------

ONE = Assignment((3,), visible_set=True)          # Ray assigned GPU 3 and set CUDA_VISIBLE_DEVICES=3
RAW = Assignment((1, 2), visible_set=False)       # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES: physical ids
NONE = Assignment((), visible_set=False)          # a task that asked for no GPU, on a GPU node


@pytest.mark.parametrize("requested, assignment, cuda, want", [
    ("auto", None, 8, "auto"),          # not on Ray: as given (the evaluator checks it where it runs)
    ("cuda:5", None, 8, "cuda:5"),
    ("auto", NONE, 8, "cpu"),           # torch sees 8 GPUs, Ray assigned none: the CPU
    ("auto", ONE, 1, "cuda:0"),         # CUDA_VISIBLE_DEVICES=3: torch calls it cuda:0
    ("auto", ONE, 0, "cpu"),            # a GPU assigned, a CPU-only torch: the CPU
    ("cuda", ONE, 1, "cuda:0"),
    ("cuda:1", RAW, 3, "cuda:2"),       # the second assigned, by its physical id
    ("auto", RAW, 3, "cuda:1"),
    ("cpu", ONE, 1, "cpu"),
    ("cuda", NONE, 8, "expected a GPU Ray assigned to this task (evaluator.num_gpus > 0), got 0 assigned"),
    ("cuda:1", ONE, 1, "got 1 assigned (ids [3])"),
    ("cuda", ONE, 0, "Ray assigned GPU 3, but torch here sees 0 CUDA devices"),
    ("tpu", ONE, 1, "expected 'auto', 'cpu' or 'cuda[:i]', got 'tpu'"),
])
def test_the_device_follows_what_ray_assigned(requested, assignment, cuda, want):
    if want.startswith(("auto", "cpu", "cuda")):
        assert task_device(requested, assignment, cuda_count=cuda) == want
    else:
        with pytest.raises(EvaluatorError) as e:
            task_device(requested, assignment, cuda_count=cuda)
        assert want in str(e.value)


# --- waits ---------------------------------------------------------------------------------------

def test_a_wait_says_what_it_waits_for_and_gives_up_in_one_line():
    import ray

    from loop.engine.cluster import ensure_ray

    ensure_ray()
    total = ray.cluster_resources().get("CPU", 1.0)
    blocked = ray.remote(num_cpus=total + 1)(lambda: 1).remote()     # no node can ever run it
    said = []
    waits = Waits(RaySettings(wait_report_s=0.2, wait_timeout_s=0.7), log=said.append)
    with pytest.raises(RunFailure) as e:
        waits.get_all([blocked], "evaluation tasks")
    ray.cancel(blocked, force=True)
    assert said and all(line.startswith("waiting ") and "for 1 of 1 evaluation tasks; the cluster has" in line
                        for line in said)
    assert str(e.value).startswith("ray: expected 1 of 1 evaluation tasks within ray.wait_timeout_s = 0.7 s, got "
                                   "nothing in 1 s; the cluster has ")
    assert len(str(e.value).splitlines()) == 1
    done = ray.remote(num_cpus=0)(lambda: 7).remote()
    boom = ray.remote(num_cpus=0)(lambda: 1 / 0).remote()
    got = Waits(RaySettings(wait_report_s=0.2, wait_timeout_s=60)).get_all([done, boom], "evaluation tasks")
    assert got[0] == 7 and isinstance(got[1], ray.exceptions.RayTaskError)


# --- a resume may change where the work runs -----------------------------------------------------

def test_a_resume_on_other_resources_continues_the_same_run(smoke_real, tmp_path, capsys):
    base = tiny(smoke_real, 'loop.optimizer="reinforce"', "evaluator.final_seeds=1")
    whole = run_loop(load_config(SMOKE, base), tmp_path / "whole", log=lambda m: None)
    cut = load_config(SMOKE, [*base, "render.workers=1", "evaluator.ray=true"])
    assert run_loop(cut, tmp_path / "cut", stop_after_round=2, log=lambda m: None) == {"stopped_after_round": 2}
    config_before = (tmp_path / "cut" / "config.toml").read_bytes()
    # the resumed process renders and evaluates in this process, with other resources
    assert main(["run", "--resume", str(tmp_path / "cut"), "--set", "render.workers=0",
                 "--set", "evaluator.ray=false", "--set", "ray.wait_report_s=5"]) == 0
    assert (tmp_path / "cut" / "config.toml").read_bytes() == config_before     # the run's config is its own
    resumed = json.loads((tmp_path / "cut" / "best.json").read_text())
    for key in ("theta", "val", "test", "selected"):
        assert resumed[key] == whole[key], key
    rows = lambda d: [{k: v for k, v in json.loads(x).items() if k != "metrics"}  # noqa: E731
                      for x in (d / "rounds.jsonl").read_text().splitlines()]
    assert rows(tmp_path / "cut") == rows(tmp_path / "whole")
    capsys.readouterr()


# --- a lost render actor -------------------------------------------------------------------------

def test_a_lost_render_actor_is_replaced_and_the_dataset_keeps_its_bytes(smoke_real):
    import ray
    from loop.engine.render_pool import RenderPool

    cfg = load_config(SMOKE, tiny(smoke_real, "render.workers=2", "render.num_cpus=0.5", "render.chunk=2"))
    with RenderPool(cfg) as pool:
        theta = pool.generator.space.to_vector()
        before = pool.render(theta, 12, seed=3)
        said = []
        pool.waits.log = said.append
        lost = pool._actors[0]
        ray.kill(lost, no_restart=True)          # as its node dying takes it: Ray will not restart it
        after = pool.render(theta, 12, seed=3)
        assert lost not in pool._actors and len(pool._actors) == 2
        assert said and said[0].startswith("warning: a render actor was lost (")
        assert len(said) == 1                    # both of its calls in flight went to the one replacement
    assert [a.tobytes() for a in after.images] == [b.tobytes() for b in before.images]
    assert after.annotations == before.annotations


# --- images stay where they are rendered ---------------------------------------------------------

def test_the_driver_holds_no_images_and_lost_ones_are_rendered_again(smoke_real):
    import ray

    from loop.engine import Engine, load_real
    from loop.engine.remote_dataset import RemoteDataset
    from loop.engine.render_pool import RenderPool

    base = tiny(smoke_real, "evaluator.final_seeds=1")
    cfg = load_config(SMOKE, [*base, "render.workers=2", "render.num_cpus=0.5", "render.chunk=3",
                              "evaluator.ray=true"])
    with RenderPool(load_config(SMOKE, base)) as here:
        theta = here.generator.space.to_vector()
        want = here.render(theta, 8, 5)
        local = Engine(load_config(SMOKE, base), here, load_real(cfg, log=lambda m: None), {"score"}, use_ray=False)
        want_score = local.train([want], [5])[0].score
    with RenderPool(cfg) as pool:
        engine = Engine(cfg, pool, load_real(cfg, log=lambda m: None), {"score"}, use_ray=True)
        ds = engine.render(theta, 8, 5)
        assert isinstance(ds, RemoteDataset) and len(ds) == 8 and ds.sizes == [3, 3, 2]
        got = ds.fetch()                  # the images, fetched only where they are trained on
        assert [a.tobytes() for a in got.images] == [b.tobytes() for b in want.images]
        assert got.annotations == want.annotations
        assert engine.train([ds], [5])[0].score == want_score
        # a chunk whose render actor died with its node before making it: the engine renders again
        gone = ray.remote(num_cpus=0)(_Gone).remote()
        ray.kill(gone, no_restart=True)
        ds.chunks[1] = gone.chunk.remote()
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(ds.chunks[1])
        res = engine.train([ds], [5])[0]
        assert res.failed is None and res.score == want_score


class _Gone:
    def chunk(self):
        return None
