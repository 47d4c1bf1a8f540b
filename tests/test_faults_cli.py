"""Every command's every argument at its edges (empty, negative, zero, huge, NaN, the wrong
type): one error line, exit status 2 (1 for what the machine cannot do), and no file created or
changed. Then what writing stdout meets: a reader gone (EPIPE) and a full stdout (ENOSPC).

The table follows gymnasium's tests: (case, argv, the whole error line, exit status). In the
line, ``<*>`` stands for a part that depends on the machine (its memory, its cores) or on the
Python version (argparse's choice lists); ``{smoke}``, ``{real}``, ``{run}``, ``{tmp}`` and
``{out}`` are filled in per case. Nothing here starts Ray or trains: each refusal comes before."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loop.bench.loop import CONTROLLERS, TASKS
from loop.config import PLACEMENT_KEYS, load_config
from loop.run.runner import run_loop

from smoke import DIGITS, ROOT, SMOKE, one_line_exit, tiny

ADDRESS = "argument --address: expected a Ray address (host:port, auto or ray://…), got ''"
FORMATS = ".avif, .eps, .gif, .jpeg, .jpg, .pdf, .png, .ps, .raw, .rgba, .svg, .svgz, .tif, .tiff, .webp"
NOT_FIT = "expected images that fit in memory (<*> available), got "
NO_ADDRESS = "--address: expected render workers to run on the cluster, got {} (renders in this process, without Ray)"


def _int(flag: str, got: str, lo: int = 1, hi: int | None = None) -> str:
    bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    return f"argument {flag}: expected an integer {bound}, got {got!r}"


def _path(flag: str) -> str:
    return f"argument {flag}: expected a path, got ''"


def _ints(flag: str, got: str, lo: int = 1, empty: bool = False) -> str:
    none = " (or '' for none)" if empty else ""
    return f"argument {flag}: expected comma-separated distinct integers >= {lo}{none}, got {got!r}"


def _names(flag: str, got: str) -> str:
    return f"argument {flag}: expected comma-separated distinct names, got {got!r}"


def _controller(got: str) -> str:
    # the names listed are the registry's when the line is printed (other tests register their own)
    return f"--optimizer: expected one of [<*>] or 'package.module:Class', got {got!r}"


RENDER = ["render", "{smoke}", "--out", "{out}"]
PREVIEW = ["preview", "{smoke}"]
RUN = ["run", "{smoke}", "--out", "{out}"]
TUNE = ["tune", "{smoke}", "--out", "{out}"]
EXPORT = ["export", "{run}", "--out", "{out}"]
TARGET = ["make-target", "{smoke}", "--out", "{out}"]
EVAL = ["eval", "{real}/val", "--real", "{real}"]
B_RENDER = ["bench", "render", "--sizes", "64", "--n", "1"]
B_EVAL = ["bench", "evaluator"]
B_LOOP = ["bench", "loop", "--out", "{out}"]
B_SIGNAL = ["bench", "signal", "{smoke}", "--out", "{out}"]
BIG = "1000000000000"
U64 = 2**64 - 1
U32 = 2**32 - 1

CASES = [
    # --- dropt itself
    ("no-command", [], "dropt: error: the following arguments are required: command", 2),
    ("unknown-command", ["frobnicate"], "dropt: error: argument command: invalid choice: 'frobnicate' <*>", 2),
    ("plugins-extra-argument", ["plugins", "extra"], "dropt: error: unrecognized arguments: extra", 2),
    ("config-missing-what", ["config"], "dropt config: error: the following arguments are required: what", 2),
    ("config-unknown-what", ["config", "json"], "dropt config: error: argument what: invalid choice: 'json' <*>", 2),
    # --- render
    ("render-n-zero", [*RENDER, "--n", "0"], _int("--n", "0"), 2),
    ("render-n-negative", [*RENDER, "--n", "-1"], _int("--n", "-1"), 2),
    ("render-n-empty", [*RENDER, "--n", ""], _int("--n", ""), 2),
    ("render-n-nan", [*RENDER, "--n", "nan"], _int("--n", "nan"), 2),
    ("render-n-float", [*RENDER, "--n", "1e12"], _int("--n", "1e12"), 2),
    ("render-n-beyond-memory", [*RENDER, "--n", BIG],
     f"--n: {NOT_FIT}{BIG} (32×32×3 bytes each: 2.7 PiB needed)", 2),
    ("render-n-beyond-memory-large-images", [*RENDER, "--n", "100000000", "--set", "generator.image_size=1024"],
     f"--n: {NOT_FIT}100000000 (1024×1024×3 bytes each: 286.1 TiB needed)", 2),
    ("render-seed-negative", [*RENDER, "--seed", "-1"], _int("--seed", "-1", 0), 2),
    ("render-seed-word", [*RENDER, "--seed", "abc"], _int("--seed", "abc", 0), 2),
    ("render-out-empty", ["render", "{smoke}", "--out", ""], _path("--out"), 2),
    ("render-out-missing", ["render", "{smoke}"], "the following arguments are required: --out", 2),
    ("render-workers-negative", [*RENDER, "--workers", "-1"], _int("--workers", "-1", 0), 2),
    ("render-workers-fraction", [*RENDER, "--workers", "1.5"], _int("--workers", "1.5", 0), 2),
    ("render-address-empty", [*RENDER, "--address", ""], ADDRESS, 2),
    ("render-address-no-workers", [*RENDER, "--workers", "0", "--address", "127.0.0.1:1"],
     NO_ADDRESS.format("--workers 0"), 2),
    ("render-address-config-no-workers", [*RENDER, "--set", "render.workers=0", "--address", "127.0.0.1:1"],
     NO_ADDRESS.format("render.workers = 0"), 2),
    ("render-config-empty", ["render", "", "--out", "{out}"], _path("config"), 2),
    ("render-config-missing", ["render", "{tmp}/nope.toml", "--out", "{out}"],
     "config: expected a TOML file, {tmp}/nope.toml not found", 2),
    ("render-config-directory", ["render", "{real}", "--out", "{out}"],
     "config: expected a TOML file, {real} is a directory", 2),
    ("render-set-no-equals", [*RENDER, "--set", "novalue"], "--set: expected key=value, got 'novalue'", 2),
    ("render-set-empty-key", [*RENDER, "--set", "=3"],
     "--set: expected a dotted key like generator.image_size, got ''", 2),
    ("render-set-nul-path", [*RENDER, "--set", 'evaluator.real="a\\u0000b"'], "evaluator.real: <*>NUL<*>", 2),
    ("render-out-nul", ["render", "{smoke}", "--out", "a\0b"], "argument --out: expected a path, got 'a\\x00b'", 2),
    ("render-config-nul", ["render", "{smoke}\0", "--out", "{out}"],
     "argument config: expected a path, got '{smoke}\\x00'", 2),
    # the digits generator does not say its image size: numpy's refusal is the line (an allocation
    # beyond any address space, so it fails at once even where the kernel overcommits)
    ("render-digits-n-beyond-memory", ["render", str(DIGITS), "--n", str(10**17), "--workers", "0", "--out", "{out}"],
     f"out of memory (Unable to allocate <*> for an array with shape ({10**17},) and data type float64)", 1),
    # --- preview
    ("preview-out-empty", [*PREVIEW, "--out", ""], _path("--out"), 2),
    ("preview-out-missing", PREVIEW, "the following arguments are required: --out", 2),
    ("preview-out-txt", [*PREVIEW, "--out", "{tmp}/grid.txt"],
     f"--out: expected a file name ending in {FORMATS}, got '{{tmp}}/grid.txt'", 2),
    ("preview-out-no-extension", [*PREVIEW, "--out", "{tmp}/grid"],
     f"--out: expected a file name ending in {FORMATS}, got '{{tmp}}/grid'", 2),
    ("preview-out-pgf-needs-tex", [*PREVIEW, "--out", "{tmp}/grid.pgf"],
     f"--out: expected a file name ending in {FORMATS}, got '{{tmp}}/grid.pgf'", 2),
    ("preview-out-folder", [*PREVIEW, "--out", "{tmp}/new/"],
     f"--out: expected a file name ending in {FORMATS}, got '{{tmp}}/new/'", 2),
    ("preview-n-zero", [*PREVIEW, "--out", "{tmp}/g.png", "--n", "0"], _int("--n", "0", 1, 1024), 2),
    ("preview-n-beyond-grid", [*PREVIEW, "--out", "{tmp}/g.png", "--n", "1025"], _int("--n", "1025", 1, 1024), 2),
    ("preview-n-huge", [*PREVIEW, "--out", "{tmp}/g.png", "--n", BIG], _int("--n", BIG, 1, 1024), 2),
    ("preview-seed-negative", [*PREVIEW, "--out", "{tmp}/g.png", "--seed", "-5"], _int("--seed", "-5", 0), 2),
    ("preview-styles-of-shapes", [*PREVIEW, "--out", "{tmp}/new/g.png", "--styles"],
     "--styles: expected a generator with style templates (e.g. strokes), got 'shapes'", 2),
    # --- run
    ("run-no-config", ["run"], "config: expected an experiment TOML (or --resume RUN_DIR)", 2),
    ("run-config-empty", ["run", ""], _path("config"), 2),
    ("run-optimizer-empty", [*RUN, "--optimizer", ""], "argument --optimizer: expected a controller name, got ''", 2),
    ("run-optimizer-escapes", ["run", "{smoke}", "--optimizer", "/../../../../escaped"],
     _controller("/../../../../escaped"), 2),
    ("run-optimizer-unknown", [*RUN, "--optimizer", "magic"], _controller("magic"), 2),
    ("run-optimizer-unimportable", [*RUN, "--optimizer", "nope_pkg.mod:Thing"],
     "--optimizer: expected an importable controller, got 'nope_pkg.mod:Thing' (No module named 'nope_pkg')", 2),
    ("run-optimizer-not-a-controller", [*RUN, "--optimizer", "json:dumps"],
     "--optimizer: expected a subclass of loop.controllers.base.Controller, got 'json:dumps' (function dumps)", 2),
    ("run-config-optimizer-unknown", [*RUN, "--set", 'loop.optimizer="magic"'],
     _controller("magic").replace("--optimizer", "loop.optimizer"), 2),
    ("run-out-empty", ["run", "{smoke}", "--out", ""], _path("--out"), 2),
    ("run-budget-zero", [*RUN, "--budget", "0"], _int("--budget", "0"), 2),
    ("run-budget-inf", [*RUN, "--budget", "inf"], _int("--budget", "inf"), 2),
    ("run-seed-negative", [*RUN, "--seed", "-1"], _int("--seed", "-1", 0), 2),
    ("run-seed-nan", [*RUN, "--seed", "nan"], _int("--seed", "nan", 0), 2),
    ("run-address-empty", [*RUN, "--address", ""], ADDRESS, 2),
    ("run-resume-empty", ["run", "--resume", ""], _path("--resume"), 2),
    ("run-resume-missing", ["run", "--resume", "{tmp}/nope"],
     "--resume: expected a run directory with a checkpoint and config.toml, {tmp}/nope/config.toml not found", 2),
    ("run-resume-with-out", ["run", "--resume", "{run}", "--out", "{out}"],
     "--resume: expected no --out (a run resumes in its own directory, {run}), got --out '{out}'", 2),
    ("run-resume-with-config", ["run", "{smoke}", "--resume", "{run}"],
     "--resume: expected no CONFIG, --optimizer, --budget or --seed (a resumed run keeps its own config.toml)", 2),
    ("run-resume-with-optimizer", ["run", "--resume", "{run}", "--optimizer", "random"],
     "--resume: expected no CONFIG, --optimizer, --budget or --seed (a resumed run keeps its own config.toml)", 2),
    ("run-resume-set-score-key", ["run", "--resume", "{run}", "--set", "evaluator.images=3"],
     f"--resume --set: expected a key of where the work runs ({', '.join(PLACEMENT_KEYS)}; the scores do not "
     f"depend on them), got 'evaluator.images=3'", 2),
    # --- tune
    ("tune-scheduler-unknown", [*TUNE, "--scheduler", "hyperband"],
     "argument --scheduler: invalid choice: 'hyperband' <*>", 2),
    ("tune-budget-zero", [*TUNE, "--budget", "0"], _int("--budget", "0"), 2),
    ("tune-rungs-negative", [*TUNE, "--rungs", "-2"], _int("--rungs", "-2"), 2),
    ("tune-out-empty", ["tune", "{smoke}", "--out", ""], _path("--out"), 2),
    ("tune-storage-empty", [*TUNE, "--storage", ""], "argument --storage: expected a path or a URI, got ''", 2),
    ("tune-address-empty", [*TUNE, "--address", ""], ADDRESS, 2),
    ("tune-config-missing", ["tune", "{tmp}/nope.toml"], "config: expected a TOML file, {tmp}/nope.toml not found", 2),
    # --- report
    ("report-run-empty", ["report", ""], _path("RUN_DIR"), 2),
    ("report-run-missing", ["report", "{tmp}/nope"],
     "RUN_DIR: expected a run directory with config.toml, {tmp}/nope/config.toml not found", 2),
    ("report-not-a-run", ["report", "{real}"],
     "RUN_DIR: expected a run directory with config.toml, {real}/config.toml not found", 2),
    ("report-n-zero", ["report", "{run}", "--n", "0"], _int("--n", "0", 1, 1024), 2),
    ("report-n-beyond-grid", ["report", "{run}", "--n", "5000"], _int("--n", "5000", 1, 1024), 2),
    ("report-n-word", ["report", "{run}", "--n", "many"], _int("--n", "many", 1, 1024), 2),
    # --- export
    ("export-run-empty", ["export", "", "--n", "2", "--out", "{out}"], _path("RUN_DIR"), 2),
    ("export-n-missing", EXPORT, "the following arguments are required: --n", 2),
    ("export-n-zero", [*EXPORT, "--n", "0"], _int("--n", "0"), 2),
    ("export-n-beyond-memory", [*EXPORT, "--n", BIG], f"--n: {NOT_FIT}{BIG} (32×32×3 bytes each: 2.7 PiB needed)", 2),
    ("export-out-empty", ["export", "{run}", "--n", "2", "--out", ""], _path("--out"), 2),
    ("export-workers-negative", [*EXPORT, "--n", "2", "--workers", "-3"], _int("--workers", "-3", 0), 2),
    ("export-address-empty", [*EXPORT, "--n", "2", "--address", ""], ADDRESS, 2),
    ("export-address-no-workers", [*EXPORT, "--n", "2", "--workers", "0", "--address", "127.0.0.1:1"],
     NO_ADDRESS.format("--workers 0"), 2),
    ("export-not-a-run", ["export", "{real}", "--n", "2", "--out", "{out}"],
     "RUN_DIR: expected a run directory with config.toml, {real}/config.toml not found", 2),
    # --- make-target
    ("make-target-out-empty", ["make-target", "{smoke}", "--out", ""], _path("--out"), 2),
    ("make-target-out-missing", ["make-target", "{smoke}"], "the following arguments are required: --out", 2),
    ("make-target-workers-negative", [*TARGET, "--workers", "-1"], _int("--workers", "-1", 0), 2),
    ("make-target-address-no-workers", [*TARGET, "--workers", "0", "--address", "127.0.0.1:1"],
     NO_ADDRESS.format("--workers 0"), 2),
    ("make-target-config-missing", ["make-target", "{tmp}/nope.toml", "--out", "{out}"],
     "config: expected a TOML file, {tmp}/nope.toml not found", 2),
    # --- eval
    ("eval-synthetic-empty", ["eval", "", "--real", "{real}"], _path("SYNTHETIC_DIR"), 2),
    ("eval-real-empty", ["eval", "{real}/val", "--real", ""], _path("--real"), 2),
    ("eval-real-missing", ["eval", "{real}/val"], "the following arguments are required: --real", 2),
    ("eval-steps-zero", [*EVAL, "--steps", "0"], _int("--steps", "0"), 2),
    ("eval-batch-size-negative", [*EVAL, "--batch-size", "-32"], _int("--batch-size", "-32"), 2),
    ("eval-images-zero", [*EVAL, "--images", "0"], _int("--images", "0"), 2),
    ("eval-seed-negative", [*EVAL, "--seed", "-1"], _int("--seed", "-1", 0, U64), 2),
    ("eval-seed-beyond-torch", [*EVAL, "--seed", str(2**64)], _int("--seed", str(2**64), 0, U64), 2),
    ("eval-split-seed-beyond-sklearn", [*EVAL, "--split-seed", str(2**32)],
     _int("--split-seed", str(2**32), 0, U32), 2),
    ("eval-split-seed-negative", [*EVAL, "--split-seed", "-1"], _int("--split-seed", "-1", 0, U32), 2),
    ("eval-threads-zero", [*EVAL, "--threads", "0"], _int("--threads", "0", 1, 1024), 2),
    ("eval-threads-beyond", [*EVAL, "--threads", "100000"], _int("--threads", "100000", 1, 1024), 2),
    ("eval-device-unknown", [*EVAL, "--steps", "1", "--device", "tpu"],
     "device: expected 'auto', 'cpu' or 'cuda[:i]', got 'tpu'", 2),
    # --- bench render
    ("bench-render-sizes-empty", ["bench", "render", "--sizes", ""], _ints("--sizes", ""), 2),
    ("bench-render-sizes-zero", ["bench", "render", "--sizes", "0"], _ints("--sizes", "0"), 2),
    ("bench-render-sizes-negative", ["bench", "render", "--sizes", "-64"], _ints("--sizes", "-64"), 2),
    ("bench-render-sizes-float", ["bench", "render", "--sizes", "1e9"], _ints("--sizes", "1e9"), 2),
    ("bench-render-sizes-nan", ["bench", "render", "--sizes", "nan"], _ints("--sizes", "nan"), 2),
    ("bench-render-sizes-twice", ["bench", "render", "--sizes", "64,64"], _ints("--sizes", "64,64"), 2),
    ("bench-render-sizes-too-small", ["bench", "render", "--sizes", "64,8"],
     "--sizes: generator.image_size: expected an integer in [16, 1024], got 8", 2),
    ("bench-render-sizes-huge", ["bench", "render", "--sizes", "1000000000"],
     "--sizes: generator.image_size: expected an integer in [16, 1024], got 1000000000", 2),
    ("bench-render-modes-empty", [*B_RENDER, "--modes", ""], _names("--modes", ""), 2),
    ("bench-render-modes-twice", [*B_RENDER, "--modes", "gl,gl"], _names("--modes", "gl,gl"), 2),
    ("bench-render-modes-unknown", [*B_RENDER, "--modes", "gl,vulkan"],
     "--modes: expected a comma-separated subset of gl,pyrender,naive,blender, got 'vulkan'", 2),
    ("bench-render-n-zero", ["bench", "render", "--n", "0"], _int("--n", "0"), 2),
    ("bench-render-n-beyond-memory", ["bench", "render", "--sizes", "64", "--n", "1000000000", "--workers", "1"],
     f"--n × workers (1000000000 × 1): {NOT_FIT}1000000000 (64×64×3 bytes each: 11.2 TiB needed)", 2),
    ("bench-render-workers-zero", [*B_RENDER, "--workers", "0"], _int("--workers", "0"), 2),
    ("bench-render-workers-beyond-cores", [*B_RENDER, "--workers", "100000"],
     "render workers (--workers / render.workers): expected at most <*>, got 100000<*>", 2),
    ("bench-render-repeats-zero", [*B_RENDER, "--repeats", "0"], _int("--repeats", "0"), 2),
    # --- bench evaluator
    ("bench-evaluator-oracle-steps-zero", [*B_EVAL, "--oracle-steps", "0"], _int("--oracle-steps", "0"), 2),
    ("bench-evaluator-digits-steps-negative", [*B_EVAL, "--digits-steps", "-1"], _int("--digits-steps", "-1"), 2),
    ("bench-evaluator-seed-negative", [*B_EVAL, "--seed", "-1"], _int("--seed", "-1", 0, U64), 2),
    ("bench-evaluator-seed-beyond-torch", [*B_EVAL, "--seed", str(2**70)], _int("--seed", str(2**70), 0, U64), 2),
    ("bench-evaluator-threads-zero", [*B_EVAL, "--threads", "0"], _int("--threads", "0", 1, 1024), 2),
    ("bench-evaluator-threads-beyond", [*B_EVAL, "--threads", "99999"], _int("--threads", "99999", 1, 1024), 2),
    ("bench-evaluator-workers-negative", [*B_EVAL, "--workers", "-1"], _int("--workers", "-1", 0), 2),
    # --- bench loop
    ("bench-loop-seeds-empty", [*B_LOOP, "--seeds", ""], _ints("--seeds", "", 0), 2),
    ("bench-loop-seeds-blank", [*B_LOOP, "--seeds", " , "], _ints("--seeds", " , ", 0), 2),
    ("bench-loop-seeds-negative", [*B_LOOP, "--seeds", "-1"], _ints("--seeds", "-1", 0), 2),
    ("bench-loop-seeds-twice", [*B_LOOP, "--seeds", "1,1"], _ints("--seeds", "1,1", 0), 2),
    ("bench-loop-seeds-word", [*B_LOOP, "--seeds", "a"], _ints("--seeds", "a", 0), 2),
    ("bench-loop-seeds-nan", [*B_LOOP, "--seeds", "0,nan"], _ints("--seeds", "0,nan", 0), 2),
    ("bench-loop-tasks-empty", [*B_LOOP, "--tasks", ""], _names("--tasks", ""), 2),
    ("bench-loop-tasks-trailing-comma", [*B_LOOP, "--tasks", "digits,"], _names("--tasks", "digits,"), 2),
    ("bench-loop-tasks-twice", [*B_LOOP, "--tasks", "digits,digits"], _names("--tasks", "digits,digits"), 2),
    ("bench-loop-tasks-unknown", [*B_LOOP, "--tasks", "faces"],
     f"--tasks: expected names among {sorted(TASKS)}, got 'faces'", 2),
    ("bench-loop-controllers-empty", [*B_LOOP, "--controllers", ""], _names("--controllers", ""), 2),
    ("bench-loop-controllers-unknown", [*B_LOOP, "--controllers", "magic"],
     f"--controllers: expected names among {sorted(CONTROLLERS)}, got 'magic'", 2),
    ("bench-loop-out-empty", ["bench", "loop", "--out", ""], _path("--out"), 2),
    ("bench-loop-quick-and-full", [*B_LOOP, "--quick", "--full"],
     "argument --full: not allowed with argument --quick", 2),
    # --- bench signal
    ("bench-signal-config-empty", ["bench", "signal", ""], _path("config"), 2),
    ("bench-signal-images-zero", [*B_SIGNAL, "--images", "0"], _int("--images", "0"), 2),
    ("bench-signal-steps-negative", [*B_SIGNAL, "--steps", "-10"], _int("--steps", "-10"), 2),
    ("bench-signal-toward-empty", [*B_SIGNAL, "--toward", ""], _path("--toward"), 2),
    ("bench-signal-seeds-zero", [*B_SIGNAL, "--seeds", "0"], _int("--seeds", "0"), 2),
    ("bench-signal-warm-steps-zero", [*B_SIGNAL, "--warm-steps", "0"], _ints("--warm-steps", "0", 1, True), 2),
    ("bench-signal-warm-steps-word", [*B_SIGNAL, "--warm-steps", "25,x"], _ints("--warm-steps", "25,x", 1, True), 2),
    ("bench-signal-warm-steps-twice", [*B_SIGNAL, "--warm-steps", "25,25"],
     _ints("--warm-steps", "25,25", 1, True), 2),
    ("bench-signal-pairs-zero", [*B_SIGNAL, "--pairs", "0"], _int("--pairs", "0"), 2),
    ("bench-signal-drops-negative", [*B_SIGNAL, "--drops", "-1"], _int("--drops", "-1", 0), 2),
    ("bench-signal-workers-zero", [*B_SIGNAL, "--workers", "0"], _int("--workers", "0"), 2),
    ("bench-signal-out-empty", ["bench", "signal", "{smoke}", "--out", ""], _path("--out"), 2),
]


# --------------------------------------------------------------------------------------------
# helpers: a finished run, the folder's state, the expected line
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(smoke_real, tmp_path_factory) -> Path:
    """A finished one-round run of the smoke config (best.json written)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    run_loop(load_config(SMOKE, tiny(smoke_real, "loop.budget=1")), run, log=lambda m: None)
    return run


def state(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``, with a digest of each file's bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def whole_line(argv: list[str], want: str) -> str:
    """The error line a case expects: ``want`` when it names its command ("dropt: error: …"), else
    ``want`` after the command's prefix ("dropt run: error: ", "dropt bench loop: error: ")."""
    if want.startswith("dropt"):
        return want
    return f"dropt {' '.join(argv[:2] if argv[0] == 'bench' else argv[:1])}: error: {want}"


def matches(line: str, want: str) -> bool:
    """``line`` is ``want``, where each ``<*>`` of ``want`` stands for any text."""
    parts = want.split("<*>")
    if len(parts) == 1:
        return line == want
    if not (line.startswith(parts[0]) and line.endswith(parts[-1])):
        return False
    at = len(parts[0])
    for part in parts[1:-1]:
        at = line.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return at <= len(line) - len(parts[-1])


def test_matches_is_strict():
    assert matches("a: b 12 c", "a: b <*> c") and not matches("a: b 12 d", "a: b <*> c")
    assert not matches("x a: b", "a: b") and matches("a: b", "a: b")


@pytest.mark.parametrize("case, argv, want, code", CASES, ids=[c[0] for c in CASES])
def test_a_bad_argument_is_one_line_and_changes_nothing(case, argv, want, code, tmp_path, monkeypatch, capsys,
                                                       smoke_real, request):
    """Run from a folder three deep, so that a path escaping it (``--optimizer /../../x``) still
    lands inside ``tmp_path``, whose every file is compared before and after."""
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    real = tmp_path / "real"
    shutil.copytree(smoke_real, real)
    run = tmp_path / "run"
    if any("{run}" in a for a in argv):
        shutil.copytree(request.getfixturevalue("finished"), run)
    fill = {"smoke": str(SMOKE), "real": str(real), "run": str(run), "tmp": str(tmp_path),
            "out": str(tmp_path / "out")}
    argv = [a.format(**fill) for a in argv]
    before = state(tmp_path)
    monkeypatch.chdir(cwd)
    line = one_line_exit(capsys, argv, code)
    assert matches(line, whole_line(argv, want.format(**fill))), line
    assert state(tmp_path) == before


def test_every_case_has_its_own_name():
    assert len({c[0] for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------------------------
# best.json damaged by hand: one line naming the file and the key
# --------------------------------------------------------------------------------------------

MISSING = object()
DAMAGED_BEST = [
    ("val-a-string", ("val",), "high", "val: expected a valid number, got 'high'"),
    ("test-null", ("test",), None, "test: expected a valid number, got None"),
    ("test-per-seed-a-string", ("test_per_seed",), "0.5", "test_per_seed: expected a valid list, got '0.5'"),
    ("theta-entry-a-string", ("theta", "ambient.low"), "dim", "theta.ambient.low: expected a valid number, got 'dim'"),
    ("timing-wall-a-string", ("timing", "run_wall"), "long", "timing.run_wall: expected a valid number, got 'long'"),
    ("memory-a-bool", ("driver_peak_rss_mb",), True, "driver_peak_rss_mb: expected a valid number, got True"),
    ("metric-a-number", ("metric",), 3, "metric: expected a valid string, got 3"),
    ("selected-missing", ("selected",), MISSING, "selected: expected a value, missing"),
]


@pytest.mark.parametrize("command", ["report", "export"])
@pytest.mark.parametrize("case, key, value, want", DAMAGED_BEST, ids=[c[0] for c in DAMAGED_BEST])
def test_a_damaged_best_json_is_one_line_naming_the_key(case, key, value, want, command, finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    best = json.loads((run / "best.json").read_text())
    table = best
    for part in key[:-1]:
        table = table[part]
    if value is MISSING:
        del table[key[-1]]
    else:
        table[key[-1]] = value
    (run / "best.json").write_text(json.dumps(best))
    before = state(tmp_path)
    argv = ["report", str(run)] if command == "report" else ["export", str(run), "--n", "2", "--out",
                                                                str(tmp_path / "out")]
    line = one_line_exit(capsys, argv, 2)
    assert line == f"dropt {command}: error: {run / 'best.json'}: {want}"
    assert state(tmp_path) == before


def test_a_best_json_without_the_timing_keys_still_reports(finished, tmp_path, capsys):
    """Runs from before the wall time and memory keys: the report leaves that line out."""
    from loop.front.cli import main

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    best = json.loads((run / "best.json").read_text())
    for key in ("timing", "outside_render_and_training_share", "driver_peak_rss_mb"):
        best.pop(key)
    (run / "best.json").write_text(json.dumps(best))
    assert main(["report", str(run), "--n", "1"]) == 0
    summary = (run / "report" / "summary.md").read_text()
    assert "val" in summary and "wall time" not in summary


def test_preview_writes_the_format_its_name_says(tmp_path, capsys):
    from PIL import Image

    from loop.front.cli import main

    for name, fmt in (("g.png", "PNG"), ("g.JPG", "JPEG")):
        assert main(["preview", str(SMOKE), "--n", "1", "--out", str(tmp_path / name)]) == 0
        assert Image.open(tmp_path / name).format == fmt
    assert capsys.readouterr().out.splitlines() == [f"wrote {tmp_path / n}" for n in ("g.png", "g.JPG")]


# --------------------------------------------------------------------------------------------
# writing stdout: a reader that went away, a full device
# --------------------------------------------------------------------------------------------

def _dropt(argv: list[str], stdout, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``dropt ARGV`` in a process of its own, with buffered output (as in a terminal-less shell)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "loop.front.cli", *argv], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=cwd or ROOT, timeout=300)


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["plugins"], ["config", "schema"]])
def test_a_closed_pipe_ends_quietly_with_status_141(argv):
    """`dropt plugins | head -0`: the reader went away before the first byte; the exit status is
    a SIGPIPE death's as the shell shows it (128 + 13), the same as `cat` or `grep` give, so
    ``set -o pipefail`` treats dropt as it treats them; nothing on stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = _dropt(argv, write)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("argv, command", [(["--help"], "dropt"), (["plugins"], "dropt plugins")])
def test_a_full_stdout_is_one_line_with_status_1(argv, command):
    with open("/dev/full", "w") as full:
        proc = _dropt(argv, full)
    assert (proc.returncode, proc.stderr) == (1, f"{command}: error: stdout: No space left on device\n")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_run_into_a_full_stdout_keeps_its_best_json(smoke_real, tmp_path):
    """The run's own files are written before its last print: only the print is lost."""
    run = tmp_path / "run"
    sets = [a for kv in tiny(smoke_real, "loop.budget=1") for a in ("--set", kv)]
    with open("/dev/full", "w") as full:
        proc = _dropt(["run", str(SMOKE), *sets, "--out", str(run)], full)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == "dropt run: error: stdout: No space left on device"
    assert "Traceback" not in proc.stderr
    assert {"val", "test", "theta"} <= set(json.loads((run / "best.json").read_text()))
