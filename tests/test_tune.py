"""Ray Tune front door: the controller searcher, and `dropt tune` with ASHA and PBT on a tiny setup."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from loop.config import ConfigError, load_config
from loop.controllers import make_controller
from loop.engine.target import make_target
from loop.front.tune import ControllerSearcher, run_tune, theta_of

from smoke import SMOKE  # noqa: E402


def test_searcher_hands_out_a_batch_and_updates_once_per_batch():
    space = load_config(SMOKE).build_generator().space
    ctrl = make_controller("reinforce", space, seed=0)
    s = ControllerSearcher(ctrl, batch=2)
    a, b = s.suggest("t1"), s.suggest("t2")
    assert set(a) == {"theta/" + n for n in space.theta_names()}
    assert not np.array_equal(theta_of(a, space), theta_of(b, space))
    rounds_before = ctrl.rounds
    s.on_trial_complete("t1", {"score": 0.5})
    assert ctrl.rounds == rounds_before
    s.on_trial_complete("t2", {"score": 0.1})
    assert ctrl.rounds == rounds_before + 1
    s.on_trial_complete("unknown", {"score": 1.0})     # ignored, no crash
    with pytest.raises(ConfigError, match="learns from scores alone"):
        ControllerSearcher(make_controller("metasim", space, seed=0))


def test_searcher_learns_only_from_trials_that_ran_every_rung():
    space = load_config(SMOKE).build_generator().space
    ctrl = make_controller("reinforce", space, seed=0)
    s = ControllerSearcher(ctrl, batch=2, full_rung=4)
    s.suggest("early"), s.suggest("full")
    s.on_trial_complete("early", {"score": 0.9, "rung": 1})   # stopped by ASHA after rung 1
    s.on_trial_complete("full", {"score": 0.2, "rung": 4})
    assert ctrl.rounds == 1 and ctrl.best_score == 0.2      # the rung-1 score never reached it


@pytest.mark.parametrize("scheduler", ["asha", "pbt"])
def test_dropt_tune_runs_trials_and_reports_growing_budgets(tmp_path, scheduler):
    make_target(load_config(SMOKE, ["target.val=4", "target.test=4"]), tmp_path / "real", workers=0, progress=False)
    cfg = load_config(SMOKE, [f'evaluator.real="{tmp_path / "real"}"', "evaluator.images=6", "evaluator.steps=2",
                              "evaluator.batch_size=3", "evaluator.width=8", 'loop.optimizer="random"',
                              "loop.candidates=2"])
    res = run_tune(cfg, scheduler=scheduler, budget=2, out=str(tmp_path / "tune"), rungs=2)
    assert res["trials"] == 2 and res["errors"] == 0
    assert math.isfinite(res["best_val"]) and res["best_steps"] in (2, 4)
    saved = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert set(saved["theta"]) == set(cfg.build_generator().space.theta_names())
