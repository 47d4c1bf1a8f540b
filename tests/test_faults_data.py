"""Faults that could lose or mix data: a refused command leaves every file as it was; `--overwrite`
replaces only what the same command writes; a resumed run scores on the real set it started
with; a killed writer leaves nothing behind for long; a killed bench leaves no run going on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loop.config import load_config
from loop.engine.target import make_target
from loop.front.cli import main
from loop.run.run_dir import RunDir
from loop.run.runner import run_loop

from smoke import SMOKE, one_line_exit, tiny

QUIET = {"log": lambda m: None}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def real(smoke_real) -> Path:
    """The session's tiny real set (tests here copy it before changing anything)."""
    return smoke_real


@pytest.fixture
def killed(real, tmp_path) -> Path:
    """A run stopped after 2 of its 3 rounds, in this test's own folder."""
    run = tmp_path / "run"
    run_loop(load_config(SMOKE, tiny(real)), run, stop_after_round=2, **QUIET)
    return run


@pytest.fixture(scope="module")
def finished(real, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    run_loop(load_config(SMOKE, tiny(real)), run, **QUIET)
    return run


# --------------------------------------------------------------------------------------------
# a refused resume changes nothing
# --------------------------------------------------------------------------------------------

def _checkpoint_a_file(run: Path) -> None:
    shutil.rmtree(run / "checkpoint")
    (run / "checkpoint").write_text("not a folder")


def _checkpoints_gone(run: Path) -> None:
    for name in ("state.json", "state.prev.json"):
        (run / "checkpoint" / name).unlink()


RESUME_DAMAGE = {
    "checkpoint/ replaced by a file": (_checkpoint_a_file, "checkpoint: expected the run's checkpoint folder, got a file"),
    "both checkpoints deleted": (_checkpoints_gone, "rounds.jsonl: expected no lines beyond round 1 (the checkpoint "
                                                    "covers 0 rounds), got lines of round 2; the run's checkpoint is "
                                                    "missing or older than its log, nothing was changed"),
}


@pytest.mark.parametrize("damage", list(RESUME_DAMAGE))
def test_a_refused_resume_leaves_the_log_and_every_file_as_they_were(killed, capsys, damage):
    edit, fragment = RESUME_DAMAGE[damage]
    edit(killed)
    before = snapshot(killed)
    assert len(before["rounds.jsonl"].splitlines()) == 4           # 2 rounds × 2 candidates
    line = one_line_exit(capsys, ["run", "--resume", str(killed)], 2)
    assert fragment in line and "starting at round 1" not in capsys.readouterr().err
    assert snapshot(killed) == before


def test_a_refused_new_run_leaves_no_lock_in_the_users_folder(real, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    line = one_line_exit(capsys, ["run", str(SMOKE), "--out", str(folder),
                                  *[a for o in tiny(real) for a in ("--set", o)]], 2)
    assert line.endswith(f"{folder} holds notes.txt and is not a dropt run")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------------------------
# a resumed run scores on the real set it started with
# --------------------------------------------------------------------------------------------

def _copy_real(real: Path, dst: Path) -> Path:
    shutil.copytree(real, dst)
    return dst


def test_a_resume_after_the_real_set_was_deleted_is_refused_and_makes_none(real, tmp_path, capsys):
    mine = _copy_real(real, tmp_path / "real")
    run = tmp_path / "run"
    run_loop(load_config(SMOKE, tiny(mine, f'evaluator.target_config="{SMOKE}"')), run, stop_after_round=1, **QUIET)
    shutil.rmtree(mine)
    line = one_line_exit(capsys, ["run", "--resume", str(run)], 2)
    assert line == (f"dropt run: error: evaluator.real: expected an existing real set (a COCO dir or 'digits'), "
                    f"{mine} not found")
    assert not mine.exists()           # not re-made from the target config behind the user's back


def test_a_resume_onto_another_real_set_is_refused_and_the_same_set_resumes(real, tmp_path, capsys):
    mine = _copy_real(real, tmp_path / "real")
    run = tmp_path / "run"
    run_loop(load_config(SMOKE, tiny(mine)), run, stop_after_round=1, **QUIET)
    digest = json.loads((run / "metadata.json").read_text())["real_sha256"]
    shutil.rmtree(mine)
    make_target(load_config(SMOKE, ["target.val=7", "target.test=6"]), mine, workers=0, progress=False)
    line = one_line_exit(capsys, ["run", "--resume", str(run)], 2)
    assert line.startswith(f"dropt run: error: evaluator.real: expected the real set the run started with "
                           f"(sha256 {digest[:12]}…), got another set at that path")
    shutil.rmtree(mine)
    _copy_real(real, mine)              # the same set back (its bytes): the run goes on
    assert main(["run", "--resume", str(run)]) == 0
    assert (run / "best.json").is_file()


# --------------------------------------------------------------------------------------------
# --overwrite replaces only what the same command writes; a folder is written all at once
# --------------------------------------------------------------------------------------------

def _render(out: Path, *extra: str) -> list[str]:
    return ["render", str(SMOKE), "--n", "2", "--out", str(out), "--workers", "0", *extra]


def _export(run: Path, out: Path, *extra: str) -> list[str]:
    return ["export", str(run), "--n", "2", "--out", str(out), "--workers", "0", *extra]


def _target(out: Path, *extra: str) -> list[str]:
    return ["make-target", str(SMOKE), "--out", str(out), "--workers", "0", "--set", "target.val=2",
            "--set", "target.test=2", *extra]


SET = "a COCO set dropt wrote (annotations.json, images/)"
TARGET = "a target made by dropt make-target (target.json, val/, test/)"
OVERWRITES = [
    # (case, the argv given the folder, what is in the folder, the message's end)
    ("export --overwrite onto its own run", "export", "run", f"replaces only {SET}, {{}} holds .lock, best.json, "
                                                             f"checkpoint, config.toml; nothing was changed"),
    ("render --overwrite onto a run", "render", "run", f"replaces only {SET}, {{}} holds .lock, best.json, "
                                                       f"checkpoint, config.toml; nothing was changed"),
    ("render --overwrite onto a real set", "render", "real", f"replaces only {SET}, {{}} holds preview.png, "
                                                              f"target.json, test, val; nothing was changed"),
    ("make-target --overwrite onto a run", "target", "run", f"replaces only {TARGET}, {{}} holds .lock, best.json, "
                                                            f"checkpoint, config.toml; nothing was changed"),
    ("make-target --overwrite onto a COCO set", "target", "set", f"replaces only {TARGET}, {{}} holds "
                                                                 f"annotations.json, images; nothing was changed"),
    ("make-target onto a target", "target-no-overwrite", "real", "is not empty (pass --overwrite to replace it)"),
    ("make-target into a folder of notes", "target-no-overwrite", "notes", "is not empty (pass --overwrite to "
                                                                           "replace it)"),
]


@pytest.mark.parametrize("case,command,holds,end", OVERWRITES, ids=[c[0] for c in OVERWRITES])
def test_overwrite_never_replaces_what_another_command_wrote(real, finished, tmp_path, capsys, case, command,
                                                             holds, end):
    folder = tmp_path / "folder"
    if holds == "set":
        assert main(_render(folder)) == 0
    elif holds == "notes":
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    else:
        shutil.copytree({"run": finished, "real": real}[holds], folder)
    before = snapshot(folder)
    argv = {"export": _export(finished, folder, "--overwrite"), "render": _render(folder, "--overwrite"),
            "target": _target(folder, "--overwrite"), "target-no-overwrite": _target(folder)}[command]
    line = one_line_exit(capsys, argv, 2)
    assert line.endswith(end.format(folder)), line
    assert snapshot(folder) == before


def test_make_target_overwrites_its_own_target_with_the_same_bytes(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(_target(out)) == 0
    first = snapshot(out)
    (out / "val" / "images" / "000001.png").write_bytes(b"damaged")
    assert main(_target(out, "--overwrite")) == 0
    assert snapshot(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]     # nothing hidden left beside it


def test_render_overwrite_through_a_link_replaces_the_folder_it_points_to(tmp_path):
    data = tmp_path / "data"
    assert main(_render(data)) == 0
    link = tmp_path / "link"
    link.symlink_to(data, target_is_directory=True)
    assert main(["render", str(SMOKE), "--n", "3", "--out", str(link), "--workers", "0", "--overwrite"]) == 0
    assert link.is_symlink() and link.resolve() == data.resolve()
    assert len(json.loads((data / "annotations.json").read_text())["images"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "link"]


def test_a_killed_writers_hidden_folder_is_removed_by_the_next_one(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)                      # a process that has ended
    stale = tmp_path / f".out.tmp-{pid}"
    (stale / "images").mkdir(parents=True)
    mine = tmp_path / ".out.notes"               # not a writer's folder: kept
    mine.mkdir()
    assert main(_render(tmp_path / "out")) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.notes", "out"]


def test_a_writer_killed_between_its_two_renames_gets_the_old_set_back(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_render(out)) == 0
    before = snapshot(out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.replace(out, tmp_path / f".out.old-{int(dead.stdout)}")       # as a kill after the first rename leaves it
    assert main(_render(tmp_path / "other")) == 0                       # another folder's writer: not its business
    assert not out.exists()
    line = one_line_exit(capsys, _render(out), 2)     # the next writer of out puts the old set back first
    assert line.endswith("is not empty (pass --overwrite to replace it)")
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["other", "out"]


# --------------------------------------------------------------------------------------------
# addresses that are not a Ray cluster, local requests that could never start
# --------------------------------------------------------------------------------------------

def _silent_listener() -> socket.socket:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    return srv


@pytest.mark.parametrize("command", ["run", "render"])
def test_an_address_where_something_else_listens_is_one_line_not_a_hang(real, tmp_path, capsys, monkeypatch,
                                                                      command):
    monkeypatch.setattr("loop.engine.cluster.ADDRESS_TIMEOUT_S", 2.0)     # it answers nothing: wait 2 s, not 10
    with _silent_listener() as srv:
        address = f"127.0.0.1:{srv.getsockname()[1]}"
        argv = (["run", str(SMOKE), "--out", str(tmp_path / "run"), *[a for o in tiny(real) for a in ("--set", o)]]
                if command == "run" else ["render", str(SMOKE), "--n", "2", "--out", str(tmp_path / "out")])
        t0 = time.monotonic()
        line = one_line_exit(capsys, [*argv, "--address", address], 2)
    assert line == (f"dropt {command}: error: --address {address}: expected a Ray cluster's head there (its GCS, "
                    f"a gRPC server), got something else answering on that port")
    assert time.monotonic() - t0 < 30 and not (tmp_path / "out").exists()


def test_more_local_render_workers_than_cores_are_refused_before_any_starts(finished, tmp_path, capsys):
    line = one_line_exit(capsys, _export(finished, tmp_path / "out")[:-2] + ["--workers", "999"], 2)
    cap = max(2, os.cpu_count() or 1)
    assert line == (f"dropt export: error: render workers (--workers / render.workers): expected at most {cap} on "
                    f"this machine's {os.cpu_count()} cores (a local Ray), got 999; pass --address to use a cluster")


# --------------------------------------------------------------------------------------------
# a killed bench leaves no run going on, and its rerun refuses a folder a live run holds
# --------------------------------------------------------------------------------------------

def test_a_run_of_a_killed_bench_dies_with_it(tmp_path):
    """SIGKILL `dropt bench loop` while its child `dropt run` holds its run folder: the child ends
    with it (it gets SIGTERM from Linux), so the folder's lock is free again within seconds."""
    from smoke import ROOT

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    bench = subprocess.Popen([sys.executable, "-c", "import sys; from loop.front.cli import main; sys.exit(main())",
                              "bench", "loop", "--quick", "--tasks", "digits", "--controllers", "prior", "--seeds",
                              "0", "--out", str(tmp_path / "bench")], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunDir(tmp_path / "bench" / "digits" / "prior-s0")
    deadline = time.monotonic() + 180
    while not run.in_use() and time.monotonic() < deadline and bench.poll() is None:
        time.sleep(0.2)
    assert run.in_use(), "the bench's run never started"
    bench.kill()
    bench.wait(timeout=30)
    deadline = time.monotonic() + 10       # an orphan would hold it for the rest of its run (30 s or more)
    while run.in_use() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not run.in_use(), "the bench's run outlived it"


def test_a_folder_a_live_run_holds_is_in_use(tmp_path):
    import fcntl

    rd = RunDir(tmp_path)
    assert not rd.in_use()
    with open(tmp_path / ".lock", "a") as held:
        holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                                   "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                                   str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        assert rd.in_use()
        holder.kill()
        holder.wait()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)      # released with its process
    assert not rd.in_use()


def test_a_render_stopped_by_sigterm_while_writing_leaves_no_hidden_folder(tmp_path):
    """SIGTERM stops a command as Ctrl-C does: its clean-up runs, one line, exit 128 + 15."""
    out = tmp_path / "out"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYOPENGL_PLATFORM": "egl"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from loop.front.cli import main; sys.exit(main())",
                             *_render(out)[:3], "2000", *_render(out)[4:]], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(tmp_path.glob(".out.tmp-*/images/*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1].strip()
    assert proc.returncode in (0, 143), err[-2000:]
    if proc.returncode == 143:
        assert err.splitlines()[-1] == "dropt render: interrupted (SIGTERM)" and "Traceback" not in err, err[-2000:]
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] in ([], ["out"])     # no hidden folder beside it


def test_an_address_space_limit_ray_cannot_start_under_is_one_line(tmp_path):
    """Under `ulimit -v 3G` Ray's processes abort; the command says so before starting them."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2 ** 30, resource.RLIM_INFINITY))

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", "import sys; from loop.front.cli import main; sys.exit(main())",
                           "render", str(SMOKE), "--n", "2", "--out", str(tmp_path / "out"), "--workers", "1"],
                          env=env, preexec_fn=limit, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "dropt render: error: ray: expected an address-space limit (ulimit -v) of at least 16 GiB for Ray's "
        "processes, got 3.0 GiB; raise it, or render and evaluate in this process (render.workers = 0, no --address)")
    assert not (tmp_path / "out").exists()


def test_a_gl_context_that_cannot_open_is_one_line(tmp_path):
    """Mesa without its drivers (as under a tight memory limit): one line, exit 1, nothing written."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYOPENGL_PLATFORM": "egl", "LIBGL_DRIVERS_PATH": "/nonexistent"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from loop.front.cli import main; sys.exit(main())",
                           *_render(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "dropt render: error: could not open a headless GL context (EGL: GLError); it needs libEGL with Mesa's "
        "llvmpipe (`make install` installs them) and memory to map its driver")
    assert not (tmp_path / "out").exists()
