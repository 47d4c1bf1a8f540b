"""The example plug-in package (examples/plugins): installed by `make install`, found by its
entry points, and run by `dropt run` with its generator, evaluator, controller and signal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from loop.controllers.testing import ControllerConformance
from loop.registry import lookup, names
from smoke import ROOT


PLUGINS = {"generator": "example-blobs", "evaluator": "example-centroids", "controller": "example-hill-climb",
           "signal": "example-brightness-gap"}


@pytest.fixture(scope="module", autouse=True)
def installed():
    try:
        distribution("dropt-example-plugins")
    except PackageNotFoundError:
        pytest.fail("expected the example plug-ins installed (make install runs "
                    "`pip install -e examples/plugins`), got no dropt-example-plugins distribution")


@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_each_plug_in_is_found_by_its_entry_point(kind):
    assert PLUGINS[kind] in names(kind)
    cls = lookup(kind, PLUGINS[kind])
    assert cls.__module__.startswith("dropt_example.")


class TestExampleHillClimb(ControllerConformance):
    controller_name = "example-hill-climb"


def test_dropt_run_uses_all_four(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "loop.front.cli", "run", str(ROOT / "examples" / "plugins" / "blobs.toml"),
           "--out", str(tmp_path / "run"), "--budget", "2",
           "--set", f'evaluator.real="{tmp_path / "real"}"']
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["optimizer"] == "example-hill-climb" and best["metric"] == "accuracy"
    rows = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 and all("brightness_gap" in r["metrics"] for r in rows)   # the example signal
    assert json.loads((tmp_path / "real" / "target.json").read_text())["generator"]["generator"] == "example-blobs"


def test_dropt_plugins_lists_the_built_ins_and_the_example(capsys):
    from loop.front.cli import main

    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  example-hill-climb       dropt_example.hill_climb:HillClimb  signals ['example-brightness-gap', 'score']" \
        in lines
    assert "  shapes                   generator.shapes:ShapesGenerator" in lines
    assert [ln for ln in lines if not ln.startswith("  ")] == ["generators:", "evaluators:", "controllers:", "signals:"]
