"""Faults and bad input: every case stops with one line and exit status 2, or finishes with the
result an undisturbed run gives; nothing on disk is lost or mixed.

The table follows gymnasium's tests: (case, arguments, the message's fragment)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loop.front.cli import main
from loop.config import load_config
from loop.run.run_dir import RunDir
from loop.run.runner import run_loop
from loop.engine.target import make_target

from smoke import ROOT, SMOKE, one_line_exit  # noqa: E402
QUIET = {"log": lambda m: None}


def tiny(real: Path, *extra: str) -> list[str]:
    return [f'evaluator.real="{real}"', "evaluator.images=8", "evaluator.steps=3", "evaluator.batch_size=4",
            "evaluator.final_seeds=2", "evaluator.final_steps=2", "evaluator.final_images=8", "evaluator.width=8",
            "evaluator.gap_images=6", "loop.budget=3", "loop.candidates=2", "render.workers=0",
            'loop.optimizer="reinforce"', *extra]


def sets(real: Path, *extra: str) -> list[str]:
    return [a for kv in tiny(real, *extra) for a in ("--set", kv)]


def result_of(best: dict) -> dict:
    """best.json without what differs between two identical runs (wall times, memory)."""
    return {k: v for k, v in best.items() if k not in ("timing", "outside_render_and_training_share",
                                                      "driver_peak_rss_mb")}


def rounds_of(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "rounds.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "metrics"} | {"metrics": {k: v for k, v in r["metrics"].items()
                                                                         if not k.endswith("seconds")}}
            for r in rows]


# --------------------------------------------------------------------------------------------
# fixtures: a tiny real set, its damaged copies, a finished and a killed run
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "target"
    make_target(load_config(SMOKE, ["target.val=6", "target.test=6"]), out, workers=0, progress=False)
    return out


def _edit_coco(src: Path, dst: Path, edit) -> Path:
    """A copy of the pre-split set ``src`` with ``edit`` applied to both splits."""
    shutil.copytree(src, dst)
    for split in ("val", "test"):
        path = dst / split / "annotations.json"
        coco = json.loads(path.read_text())
        edit(coco, dst / split)
        path.write_text(json.dumps(coco))
    return dst


def _grey_first(coco, root):
    p = root / coco["images"][0]["file_name"]
    Image.open(p).convert("L").save(p)


def _resize_first(coco, root):
    p = root / coco["images"][0]["file_name"]
    Image.open(p).resize((40, 40)).save(p)
    coco["images"][0].update(width=40, height=40)
    for a in coco["annotations"]:
        if a["image_id"] == coco["images"][0]["id"]:
            a.pop("segmentation", None)


def _rename_category(coco, root):
    coco["categories"][0]["name"] = "blob"


def _drop_category(coco, root):
    gone = coco["categories"].pop()["id"]
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] != gone]


def _no_annotations(coco, root):
    coco["annotations"] = []


def _escape(coco, root):
    coco["images"][0]["file_name"] = "../../other/images/000001.png"


def _id(value):
    def edit(coco, root):
        old = coco["images"][0]["id"]
        coco["images"][0]["id"] = value
        for a in coco["annotations"]:
            if a["image_id"] == old:
                a["image_id"] = 1 if value == 0 else old
    return edit


def _not_json(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "val" / "annotations.json").write_text('{"images": [')
    return dst


def _no_test(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "test" / "annotations.json").unlink()
    return dst


def _three_images(src: Path, dst: Path) -> Path:
    """One unsplit set of 3 images: a 1-image val split."""
    ds = __import__("generator.dataset", fromlist=["Dataset"]).Dataset.read_coco(src / "val")
    ds.subset([0, 1, 2]).write_coco(dst)
    return dst


def _bad_depth(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "val" / "depth").mkdir(exist_ok=True)
    (dst / "val" / "depth" / "depth.npz").write_bytes(np.random.default_rng(0).bytes(300))
    return dst


REAL_SETS = {
    "grey image among RGB": (_grey_first, "one size and channel count"),
    "mixed image sizes": (_resize_first, "one size and channel count"),
    "a renamed category": (_rename_category, "expected the generator's categories"),
    "fewer categories": (_drop_category, "expected the generator's categories"),
    "no annotations": (_no_annotations, "expected annotations in the val split"),
    "file_name outside the set": (_escape, "expected a path inside the set's folder"),
    "image id 0": (_id(0), "images[0].id: expected an integer >= 1, got 0"),
    "image id '1'": (_id("1"), "images[0].id: expected an integer >= 1, got '1'"),
    "annotations not JSON": (_not_json, "expected JSON"),
    "pre-split set without test/": (_no_test, "test/annotations.json not found"),
    "3 images, 1 for val": (_three_images, "expected at least 2 images in the val split"),
    "depth.npz of random bytes": (_bad_depth, "depth.npz: expected the set's depth maps"),
}


@pytest.fixture(scope="module")
def bad_reals(real, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bad-reals")
    out = {}
    for k, (name, (edit, _)) in enumerate(REAL_SETS.items()):
        dst = base / f"set{k}"
        out[name] = edit(real, dst) if edit in (_not_json, _no_test, _three_images, _bad_depth) \
            else _edit_coco(real, dst, edit)
    return out


@pytest.fixture(scope="module")
def finished(real, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    run_loop(load_config(SMOKE, tiny(real)), run, **QUIET)
    return run


@pytest.fixture(scope="module")
def killed(real, tmp_path_factory) -> Path:
    """A run stopped after 2 of its 3 rounds (both checkpoints there)."""
    run = tmp_path_factory.mktemp("killed") / "run"
    run_loop(load_config(SMOKE, tiny(real)), run, stop_after_round=2, **QUIET)
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# the table: bad configs, arguments and real sets → one line, exit 2
# --------------------------------------------------------------------------------------------

S = "SMOKE"
CONFIG_CASES = [
    # (case, --set overrides on top of the tiny run, fragment)
    ("render.num_cpus nan", ["render.num_cpus=nan"], "render.num_cpus: expected a finite number"),
    ("render.num_cpus inf", ["render.num_cpus=inf"], "render.num_cpus: expected a finite number"),
    ("render.num_gpus -1", ["render.num_gpus=-1"], "render.num_gpus"),
    ("render.workers -1", ["render.workers=-1"], "render.workers"),
    ("render.chunk -1", ["render.chunk=-1"], "render.chunk"),
    ("render unknown key", ["render.speed=2"], "render.speed: unknown key"),
    ("evaluator.width 7", ["evaluator.width=7"], "evaluator.width: expected an even integer >= 8, got 7"),
    ("evaluator.width 3", ["evaluator.width=3"], "evaluator.width"),
    ("evaluator.device tpu", ['evaluator.device="tpu"'], "device: expected 'auto', 'cpu' or 'cuda[:i]'"),
    ("evaluator.device cuda without CUDA", ['evaluator.device="cuda"'], "CUDA is not available"),
    ("classification on a detection set", ['evaluator.task="classification"'], "evaluator.real:"),
    ("evaluator.task unknown", ['evaluator.task="segmentation"'], "evaluator.task: expected one of"),
    ("evaluator.task not an evaluator", ['evaluator.task="json:dumps"'], "subclass of evaluator.base.Evaluator"),
    ("evaluator.task missing module", ['evaluator.task="no_such_mod:X"'], "importable evaluator"),
    ("evaluator.score f1", ['evaluator.score="f1"'], "evaluator.score"),
    ("evaluator.images 0", ["evaluator.images=0"], "evaluator.images"),
    ("evaluator.steps -1", ["evaluator.steps=-1"], "evaluator.steps"),
    ("evaluator.batch_size 0", ["evaluator.batch_size=0"], "evaluator.batch_size"),
    ("evaluator.threads 0", ["evaluator.threads=0"], "evaluator.threads"),
    ("evaluator.final_seeds 0", ["evaluator.final_seeds=0"], "evaluator.final_seeds"),
    ("evaluator.final_steps 0", ["evaluator.final_steps=0"], "evaluator.final_steps"),
    ("evaluator.gap_images 1", ["evaluator.gap_images=1"], "evaluator.gap_images"),
    ("evaluator.num_cpus nan", ["evaluator.num_cpus=nan"], "evaluator.num_cpus: expected a finite number"),
    ("evaluator.ray not a bool", ['evaluator.ray="yes"'], "evaluator.ray"),
    ("evaluator.options not a table", ["evaluator.options=3"], "evaluator.options"),
    ("evaluator unknown option", ["evaluator.options.bogus=1"], "expected options accepted by"),
    ("evaluator.real missing", ['evaluator.real="/nonexistent/real"', 'evaluator.target_config=""'],
     "evaluator.real: expected an existing real set"),
    ("evaluator.lr 0", ["evaluator.options.lr=0"], "evaluator.lr"),
    ("loop.budget 0", ["loop.budget=0"], "loop.budget"),
    ("loop.candidates 0", ["loop.candidates=0"], "loop.candidates"),
    ("loop.optimizer unknown", ['loop.optimizer="magic"'], "magic"),
    ("loop.keep_start not a bool", ['loop.keep_start="yes"'], "loop.keep_start: expected true or false"),
    ("loop unknown option", ["loop.options.bogus=1"], "bogus"),
    ("loop.options.lr negative", ["loop.options.lr=-1"], "lr"),
    ("loop.options table of no controller", ['loop.options.reinforc.baseline="round"'],
     "loop: options.reinforc: expected a controller's name"),
    ("loop.options.reinforce bad value", ['loop.options.reinforce.baseline="ema"'], "reinforce.baseline"),
    ("seed negative", ["seed=-1"], "seed: expected an integer >= 0"),
    ("seed a string", ['seed="a"'], "seed"),
    ("generator.image_size 3", ["generator.image_size=3"], "generator.image_size"),
    ("generator unknown option", ["generator.colour=1"], "generator"),
    ("space unknown parameter", ["space.nonexistent.range=[0, 1]"], "nonexistent"),
    ("space range outside bounds", ['space."object.scale".range=[0.1, 5.0]'], "object.scale"),
    ("unknown top-level key", ["bogus=1"], "bogus: unknown key"),
    ("target.camera.noise nan", ["target.camera.noise=nan"], "target.camera.noise: expected a finite number"),
    ("target.camera.blur inf", ["target.camera.blur=inf"], "target.camera.blur: expected a finite number"),
    ("target.camera.gamma nan", ["target.camera.gamma=nan"], "target.camera.gamma"),
    ("target.camera.color_gain nan", ["target.camera.color_gain=[1.0, nan, 1.0]"], "target.camera.color_gain"),
    ("render.num_gpus 1 on no GPU", ["render.num_gpus=1", "render.workers=1"],
     "render.num_cpus/num_gpus/resources: expected a request some live Ray node can hold"),
    ("evaluator.num_gpus 1 on no GPU", ["evaluator.num_gpus=1", "evaluator.ray=true"],
     "evaluator.num_cpus/num_gpus/resources: expected a request some live Ray node can hold"),
    ("evaluator.num_cpus 100", ["evaluator.num_cpus=100", "evaluator.ray=true"],
     "evaluator.num_cpus/num_gpus/resources: expected a request some live Ray node can hold"),
    ("evaluator.resources on no such node", ["evaluator.resources={fast_disk=1}", "evaluator.ray=true"],
     "evaluator.num_cpus/num_gpus/resources: expected a request some live Ray node can hold, got CPU=1, GPU=0, "
     "fast_disk=1"),
    ("render.label_selector on no such node", ["render.label_selector={zone=\"nowhere\"}", "render.workers=1"],
     "render.num_cpus/num_gpus/resources: expected a request some live Ray node with labels"),
    ("evaluator.resources CPU", ["evaluator.resources={CPU=1}"], "evaluator.resources: expected a table of custom resource names (not CPU or GPU)"),
    ("evaluator.device cuda without a GPU request", ['evaluator.device="cuda"', "evaluator.ray=true"],
     "evaluator.num_gpus: expected > 0 with evaluator.device = 'cuda' on Ray"),
    ("ray.working_dir missing", ['ray.working_dir="/nonexistent/plugins"', "evaluator.ray=true"],
     "ray.working_dir: expected a local folder"),
    ("ray.wait_timeout_s 0", ["ray.wait_timeout_s=0"], "ray.wait_timeout_s: expected a finite number > 0"),
]


def _one_line_exit_2(capsys, argv) -> str:
    """A usage error: exit status 2 and one line."""
    return one_line_exit(capsys, argv, 2)


def _one_line_exit_1(capsys, argv) -> str:
    """A runtime failure: exit status 1 and one line."""
    return one_line_exit(capsys, argv, 1)


@pytest.mark.parametrize("case,overrides,fragment", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_stops_in_one_line(real, tmp_path, capsys, case, overrides, fragment):
    if case.startswith("target."):
        argv = ["make-target", str(SMOKE), "--out", str(tmp_path / "t"), "--workers", "0"]
        argv += [a for o in overrides for a in ("--set", o)]
    else:
        argv = ["run", str(SMOKE), "--out", str(tmp_path / "run"), *sets(real, *overrides)]
    assert fragment in _one_line_exit_2(capsys, argv)
    assert not (tmp_path / "t" / "target.json").exists()
    assert not (tmp_path / "run" / "rounds.jsonl").exists()


@pytest.mark.parametrize("option", ['loop.options.reinforce.baseline="ema"', "loop.options.bogus=1",
                                    'loop.options.reinforc.baseline="round"'])
def test_bad_loop_option_stops_before_ray(real, tmp_path, capsys, monkeypatch, option):
    import loop.run.state

    monkeypatch.setattr(loop.run.state, "ensure_ray", lambda *a, **k: pytest.fail("Ray started before the check"))
    argv = ["run", str(SMOKE), "--out", str(tmp_path / "run"), *sets(real, "render.workers=1", option)]
    assert _one_line_exit_2(capsys, argv).startswith("dropt run: error: loop: ")


@pytest.mark.parametrize("case", list(REAL_SETS))
def test_bad_real_set_stops_in_one_line_before_rendering(real, bad_reals, tmp_path, capsys, case):
    argv = ["run", str(SMOKE), "--out", str(tmp_path / "run"), *sets(real), "--set",
            f'evaluator.real="{bad_reals[case]}"']
    assert REAL_SETS[case][1] in _one_line_exit_2(capsys, argv)
    assert not (tmp_path / "run" / "rounds.jsonl").exists()


def _argument_cases(real, finished, killed, tmp):
    """(case, argv, fragment); paths made here."""
    a_file = tmp / "a-file"
    a_file.write_text("x")
    folder = tmp / "ordinary"
    folder.mkdir()
    (folder / "config.toml").write_text("mine = 1\n")
    (folder / "metadata.json").write_text("{}")
    coco = tmp / "coco"
    (coco / "images").mkdir(parents=True)
    (coco / "annotations.json").write_text("{}")
    truncated = tmp / "truncated"
    shutil.copytree(finished, truncated)
    (truncated / "best.json").write_text((truncated / "best.json").read_text()[:40])
    edited = tmp / "edited"
    shutil.copytree(killed, edited)
    (edited / "config.toml").write_text((edited / "config.toml").read_text().replace("budget = 3", "budget = 4"))
    dead = f"127.0.0.1:{_free_port()}"
    run = ["run", str(SMOKE), *sets(real)]
    return [
        ("run --out an existing file", run + ["--out", str(a_file)], "is a file"),
        ("run --out under /proc", run + ["--out", "/proc/dropt-run"], "expected a directory dropt can write"),
        ("run --out an ordinary folder", run + ["--out", str(folder)], "is not a dropt run"),
        ("run --out a finished run", run + ["--out", str(finished)], "already holds a run"),
        ("run --address dead", run + ["--out", str(tmp / "r1"), "--address", dead], f"--address {dead}"),
        ("run --address not host:port", run + ["--out", str(tmp / "r2"), "--address", "nowhere"],
         "--address: expected host:port"),
        ("run config is a directory", ["run", str(tmp), "--out", str(tmp / "r3")], "is a directory"),
        ("run config missing", ["run", str(tmp / "nope.toml")], "not found"),
        ("run config not TOML", ["run", str(a_file)], "expected valid TOML"),
        ("run no config", ["run"], "config: expected an experiment TOML"),
        ("run --budget 0", run + ["--budget", "0"], "--budget"),
        ("run --seed -1", run + ["--seed", "-1"], "--seed"),
        ("run --optimizer unknown", run + ["--optimizer", "gradient-magic", "--out", str(tmp / "r4")], "gradient-magic"),
        ("run --set without =", run + ["--set", "loop.budget"], "key=value"),
        ("resume nothing", ["run", "--resume", str(tmp / "nothing")], "expected a run directory with a checkpoint"),
        ("resume with --budget", ["run", "--resume", str(killed), "--budget", "3"], "--resume: expected no CONFIG"),
        ("resume with --set of a scoring key", ["run", "--resume", str(killed), "--set", "evaluator.steps=3"],
         "--resume --set: expected a key of where the work runs"),
        ("resume a finished run", ["run", "--resume", str(finished)], "has finished"),
        ("resume an edited config", ["run", "--resume", str(edited)], "expected the config the run started with"),
        ("report no run", ["report", str(tmp / "nothing")], "config.toml"),
        ("report truncated best.json", ["report", str(truncated)], "best.json: expected a finished run's best.json"),
        ("export truncated best.json", ["export", str(truncated), "--n", "2", "--out", str(tmp / "e")],
         "best.json: expected a finished run's best.json"),
        ("export onto a COCO set", ["export", str(finished), "--n", "2", "--out", str(coco), "--workers", "0"],
         "is not empty (pass --overwrite"),
        ("render onto a COCO set", ["render", str(SMOKE), "--n", "2", "--out", str(coco), "--workers", "0"],
         "is not empty (pass --overwrite"),
        ("render --n 0", ["render", str(SMOKE), "--n", "0", "--out", str(tmp / "x")], "--n"),
        ("eval a missing real set", ["eval", str(real / "val"), "--real", str(tmp / "none")], "expected a COCO set"),
    ]


ARGUMENT_CASES = [c[0] for c in _argument_cases.__code__.co_consts if False] or list(range(26))


@pytest.mark.parametrize("k", ARGUMENT_CASES)
def test_bad_arguments_stop_in_one_line(real, finished, killed, tmp_path, capsys, k):
    case, argv, fragment = _argument_cases(real, finished, killed, tmp_path)[k]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    t0 = time.perf_counter()
    assert fragment in _one_line_exit_2(capsys, argv), case
    assert time.perf_counter() - t0 < 30, case
    after = {p: p.read_bytes() for p in before if p.is_file()}
    assert after == before, f"{case}: a file was changed"


def test_a_dotted_generator_path_is_checked_before_it_is_called(tmp_path, capsys):
    target = tmp_path / "made-by-the-config"
    cfg = tmp_path / "evil.toml"
    cfg.write_text(f'[generator]\nname = "os:mkdir"\npath = "{target}"\n')
    line = _one_line_exit_2(capsys, ["render", str(cfg), "--n", "1", "--out", str(tmp_path / "o"), "--workers", "0"])
    assert line == ("dropt render: error: generator.name: expected a subclass of generator.base.Generator, "
                    "got 'os:mkdir' (builtin_function_or_method mkdir)")
    assert not target.exists()


def test_nan_never_reaches_json(tmp_path):
    rd = RunDir(tmp_path)
    rd.save_best({"theta": {}, "val": float("nan"), "test": 0.5, "optimizer": "x", "per": [float("inf")]})
    assert json.loads((tmp_path / "best.json").read_text()) == {"theta": {}, "val": None, "test": 0.5,
                                                                "optimizer": "x", "per": [None]}


# --------------------------------------------------------------------------------------------
# run directories: two writers, the lock, corrupt checkpoints and logs
# --------------------------------------------------------------------------------------------

def test_a_second_run_on_a_locked_folder_is_refused_and_changes_nothing(real, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[2]); from loop.run.run_dir import RunDir; "
        "rd = RunDir(sys.argv[1]); rd.lock(new=True); print('locked', flush=True); time.sleep(60)"),
        str(out), str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = _one_line_exit_2(capsys, ["run", str(SMOKE), "--out", str(out), *sets(real)])
        assert "in use by another dropt run" in line
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed, as a crashed run would be): its stale lock does not block
    assert main(["run", str(SMOKE), "--out", str(out), *sets(real, "loop.budget=1")]) == 0


def _truncate(p: Path):
    p.write_text(p.read_text()[: len(p.read_text()) // 2])


def _random_bytes(p: Path):
    p.write_bytes(np.random.default_rng(1).bytes(200))


def _short_vector(p: Path):
    state = json.loads(p.read_text())
    mean = state["controller"]["algorithm"]["policy"]
    key = next(k for k, v in mean.items() if isinstance(v, list) and len(v) > 2)
    mean[key] = mean[key][:-1]
    p.write_text(json.dumps(state))


def _round(value):
    def edit(p: Path):
        state = json.loads(p.read_text())
        state["round"] = value
        p.write_text(json.dumps(state))
    return edit


CHECKPOINT_DAMAGE = {
    "truncated": _truncate, "random bytes": _random_bytes, "empty": lambda p: p.write_text(""),
    "{}": lambda p: p.write_text("{}"), "a vector of the wrong length": _short_vector, "round 100": _round(100),
    "round -1": _round(-1),
}


@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGE))
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(finished, killed, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    CHECKPOINT_DAMAGE[damage](run / "checkpoint" / "state.json")
    assert main(["run", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "resuming from the previous checkpoint state.prev.json" in err and "Traceback" not in err
    assert result_of(json.loads((run / "best.json").read_text())) == result_of(json.loads((finished / "best.json").read_text()))
    assert rounds_of(run) == rounds_of(finished)


@pytest.mark.parametrize("damage", ["truncated", "{}", "a vector of the wrong length", "round 100"])
def test_both_checkpoints_damaged_is_one_line(killed, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    before = (run / "rounds.jsonl").read_bytes()
    for name in ("state.json", "state.prev.json"):
        CHECKPOINT_DAMAGE[damage](run / "checkpoint" / name)
    assert "expected a readable checkpoint" in _one_line_exit_2(capsys, ["run", "--resume", str(run)])
    assert (run / "rounds.jsonl").read_bytes() == before and not (run / "best.json").exists()


def _lines(run: Path) -> list[str]:
    return (run / "rounds.jsonl").read_text().splitlines(keepends=True)


LOG_DAMAGE = {
    "a deleted middle line": lambda ls: ls[:1] + ls[2:],
    "a duplicated line": lambda ls: ls[:2] + ls[1:],
    "an emptied log": lambda ls: [],
    "a damaged middle line": lambda ls: ls[:1] + ['{"round": 0, "cand\n'] + ls[2:],
}


@pytest.mark.parametrize("damage", list(LOG_DAMAGE))
def test_a_log_that_disagrees_with_the_checkpoint_is_one_line(killed, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    (run / "rounds.jsonl").write_text("".join(LOG_DAMAGE[damage](_lines(run))))
    before = (run / "rounds.jsonl").read_bytes()
    line = _one_line_exit_2(capsys, ["run", "--resume", str(run)])
    assert "rounds.jsonl" in line
    assert (run / "rounds.jsonl").read_bytes() == before


def test_a_half_written_last_line_is_dropped_on_resume_and_in_report(finished, killed, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    with open(run / "rounds.jsonl", "a") as f:
        f.write('{"round": 2, "candidate": 0, "sco')
    assert main(["run", "--resume", str(run)]) == 0
    assert "dropped an incomplete last line" in capsys.readouterr().err
    assert rounds_of(run) == rounds_of(finished)
    rows = RunDir(finished).read_rounds()
    cut = tmp_path / "cut"
    shutil.copytree(finished, cut)
    (cut / "rounds.jsonl").write_text((cut / "rounds.jsonl").read_text()[:-20])
    assert RunDir(cut).read_rounds() == rows[:-1]


def test_the_task_model_and_its_checkpoint_are_one_pair(real, tmp_path):
    """A kill after the next round's task model was written but before its checkpoint: the
    checkpoint names its own model file, so the resumed run is exact."""
    cfg = load_config(SMOKE, tiny(real, 'loop.optimizer="vadra"'))
    whole = run_loop(cfg, tmp_path / "whole", **QUIET)
    run_loop(cfg, tmp_path / "cut", stop_after_round=2, **QUIET)
    ckpt = tmp_path / "cut" / "checkpoint"
    assert json.loads((ckpt / "state.json").read_text())["signals"] == {"sample_loss": "task_model-1.pt"}
    shutil.copy(ckpt / "task_model-0.pt", ckpt / "task_model-2.pt")   # the next round's, never checkpointed
    resumed = run_loop(cfg, tmp_path / "cut", resume=True, **QUIET)
    assert result_of(resumed) == result_of(whole)
    assert rounds_of(tmp_path / "cut") == rounds_of(tmp_path / "whole")
    assert sorted(p.name for p in ckpt.glob("task_model*.pt")) == ["task_model-1.pt", "task_model-2.pt"]


# --------------------------------------------------------------------------------------------
# a full disk, a killed driver (also mid-write)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("victim,nth", [("rounds.jsonl", 2), ("state.json", 1), ("best.json", 1)])
def test_a_full_disk_stops_in_one_line_and_the_resumed_run_is_exact(finished, real, tmp_path, capsys, monkeypatch,
                                                                    victim, nth):
    import errno

    real_fsync, calls = os.fsync, []

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(victim + ".tmp"):
            calls.append(fd)
            if len(calls) == nth:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    run = tmp_path / "run"
    monkeypatch.setattr(os, "fsync", fsync)
    line = _one_line_exit_1(capsys, ["run", str(SMOKE), "--out", str(run), *sets(real)])
    assert victim in line and "No space left on device" in line
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not list(run.rglob("*.tmp"))
    for p in run.glob("*.jsonl"):
        assert p.read_text().endswith("\n")
    assert main(["run", "--resume", str(run)]) == 0
    assert result_of(json.loads((run / "best.json").read_text())) == result_of(json.loads((finished / "best.json").read_text()))
    assert rounds_of(run) == rounds_of(finished)


_KILL_MID_WRITE = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import loop.run.run_dir as rdm
victim, nth, calls = sys.argv[2], int(sys.argv[3]), []
real_write = rdm.atomic_write
def atomic_write(path, text):
    if path.name == victim:
        calls.append(path)
        if len(calls) == nth:      # half the new file, then the process dies where it stands
            path.with_name(path.name + ".tmp").write_text(text[: len(text) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    real_write(path, text)
rdm.atomic_write = atomic_write
from loop.front.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _driver(real, out, *prefix) -> list[str]:
    return [sys.executable, *prefix, "run", str(SMOKE), "--out", str(out), *sets(real)]


@pytest.mark.parametrize("victim,nth", [("rounds.jsonl", 2), ("state.json", 3), ("best.json", 1)])
def test_a_driver_killed_mid_write_resumes_to_the_same_result(finished, real, tmp_path, capsys, victim, nth):
    run = tmp_path / "run"
    proc = subprocess.run(_driver(real, run, "-c", _KILL_MID_WRITE, str(ROOT), victim, str(nth)),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert main(["run", "--resume", str(run)]) == 0
    assert result_of(json.loads((run / "best.json").read_text())) == result_of(json.loads((finished / "best.json").read_text()))
    assert rounds_of(run) == rounds_of(finished)


@pytest.mark.parametrize("delay", [float(d) for d in np.random.default_rng(14).uniform(3.5, 6.0, 2).round(2)])
def test_a_driver_killed_at_a_random_point_resumes_to_the_same_result(finished, real, tmp_path, delay):
    run = tmp_path / "run"
    proc = subprocess.Popen(_driver(real, run, "-m", "loop.front.cli"), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if (run / "best.json").exists():
        pass    # it finished before the kill: nothing to resume
    elif not (run / "metadata.json").exists():
        assert main(["run", str(SMOKE), "--out", str(run), *sets(real)]) == 0   # killed before it made anything
    else:
        assert main(["run", "--resume", str(run)]) == 0
    assert result_of(json.loads((run / "best.json").read_text())) == result_of(json.loads((finished / "best.json").read_text()))
    assert rounds_of(run) == rounds_of(finished)


# --------------------------------------------------------------------------------------------
# failed evaluations, killed workers and render actors, the Ray executor path
# --------------------------------------------------------------------------------------------

FAULTY = 'evaluator.task="evaluator.faulty:FaultyEvaluator"'


def test_failed_evaluations_are_recorded_and_skipped(real, tmp_path):
    cfg = load_config(SMOKE, tiny(real, FAULTY, "evaluator.options.fail_share=0.35", "loop.candidates=4"))
    best = run_loop(cfg, tmp_path / "run", **QUIET)
    rows = RunDir(tmp_path / "run").read_rounds()
    failed = [r for r in rows if "failed" in r]
    assert 0 < len(failed) < len(rows)
    assert all(r["failed"].startswith("FloatingPointError: injected failure") and r["score"] is None for r in failed)
    assert best["search_val"] is not None and len(best["test_per_seed"]) >= 1


@pytest.mark.parametrize("fail_with", ["raise", "nan"])
def test_a_round_where_every_evaluation_fails_stops_in_one_line(real, tmp_path, capsys, fail_with):
    argv = ["run", str(SMOKE), "--out", str(tmp_path / "run"),
            *sets(real, FAULTY, "evaluator.options.fail_share=1.0", f'evaluator.options.fail_with="{fail_with}"')]
    line = _one_line_exit_1(capsys, argv)          # a runtime failure, not a usage error
    assert "round 1: expected at least one candidate evaluated, every one failed" in line
    assert ("FloatingPointError" if fail_with == "raise" else "nan") in line


def test_the_ray_executor_gives_the_in_process_result_and_survives_a_killed_evaluation_worker(finished, real, tmp_path):
    marker = tmp_path / "killed-once"
    cfg = load_config(SMOKE, tiny(real, FAULTY, f'evaluator.options.kill_marker="{marker}"', "evaluator.ray=true"))
    best = run_loop(cfg, tmp_path / "run", **QUIET)
    assert marker.is_file()                       # one evaluation worker did die (and Ray re-ran its task)
    assert result_of(best) == result_of(json.loads((finished / "best.json").read_text()))
    assert rounds_of(tmp_path / "run") == rounds_of(finished)


def test_a_killed_render_actor_is_restarted_with_the_same_bytes(real):
    import ray

    from loop.engine.render_pool import RenderPool

    cfg = load_config(SMOKE, ["render.workers=1", "render.chunk=4"])
    with RenderPool(cfg, workers=0) as pool:
        theta = pool.generator.space.to_vector()
        want = pool.render(theta, 48, 7)
    with RenderPool(cfg) as pool:
        for when in ("before", "during"):
            pid = ray.get(pool._actors[0].ping.remote())
            timer = threading.Timer(0.0 if when == "before" else 0.05, os.kill, (pid, 9))
            timer.start()
            if when == "before":
                timer.join()
            got = pool.render(theta, 48, 7)
            timer.join()        # a render faster than the timer: the kill still lands before the ping
            assert ray.get(pool._actors[0].ping.remote()) != pid           # a new actor process
            assert all(np.array_equal(a, b) for a, b in zip(got.images, want.images)) and len(got) == 48


def test_a_tampered_cmaes_checkpoint_cannot_run_code(tmp_path):
    import pickle

    from loop.controllers import Feedback, make_controller

    space = load_config(SMOKE).build_generator().space
    c = make_controller("optuna", space, seed=0, sampler="cmaes", n_startup_trials=0)
    for _ in range(12):      # enough trials for one CMA-ES generation: its optimizer is pickled
        thetas = c.propose(2)
        c.update(thetas, [Feedback(score=float(np.sum(t))) for t in thetas])
    state = json.loads(json.dumps(c.state_dict()))
    fresh = make_controller("optuna", space, seed=0, sampler="cmaes", n_startup_trials=0)
    fresh.load_state_dict(state)                              # the genuine state loads
    marker = tmp_path / "pwned"
    evil = pickle.dumps(type("E", (), {"__reduce__": lambda self: (os.mkdir, (str(marker),))})()).hex()
    trial = next(t for t in state["algorithm"]["trials"] if any(":optimizer:" in k for k in t["system_attrs"]))
    trial["system_attrs"] = {k: v for k, v in trial["system_attrs"].items() if ":optimizer:" not in k}
    trial["system_attrs"]["cma:optimizer:0"] = evil
    with pytest.raises(ValueError, match="got a pickle naming posix.mkdir"):
        make_controller("optuna", space, seed=0, sampler="cmaes", n_startup_trials=0).load_state_dict(state)
    assert not marker.exists()


def test_category_ids_permuted_with_the_same_names_are_the_same_set(real, finished, tmp_path):
    def permute(coco, root):
        new = {c["id"]: len(coco["categories"]) + 1 - c["id"] for c in coco["categories"]}
        for c in coco["categories"]:
            c["id"] = new[c["id"]]
        for a in coco["annotations"]:
            a["category_id"] = new[a["category_id"]]
    permuted = _edit_coco(real, tmp_path / "permuted", permute)
    best = run_loop(load_config(SMOKE, tiny(permuted)), tmp_path / "run", **QUIET)
    assert result_of(best) == result_of(json.loads((finished / "best.json").read_text()))


def test_export_overwrite_replaces_a_set_whole(finished, tmp_path, capsys):
    out = tmp_path / "coco"
    assert main(["export", str(finished), "--n", "6", "--out", str(out), "--workers", "0"]) == 0
    assert main(["export", str(finished), "--n", "3", "--out", str(out), "--workers", "0", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000001.png", "000002.png", "000003.png"]
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]      # no temporary folder left beside it
    (out / "mine.txt").write_text("a file dropt did not write")      # now it is not only a set dropt wrote
    line = one_line_exit(capsys, ["export", str(finished), "--n", "2", "--out", str(out), "--workers", "0",
                                  "--overwrite"], 2)
    assert line == (f"dropt export: error: --out: --overwrite replaces only a COCO set dropt wrote (annotations.json, "
                    f"images/), {out} holds annotations.json, images, mine.txt; nothing was changed")
    assert len(list((out / "images").iterdir())) == 3 and (out / "mine.txt").exists()
