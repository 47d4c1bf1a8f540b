"""Every front door on the real path: each registered controller through the real runner and
evaluator, in this process and on Ray; gymnasium's own check on the real env; and the runner,
the env and the Ray Tune trainable scoring one θ identically (one evaluation path)."""

from __future__ import annotations

import json
import math
from typing import ClassVar

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from loop.config import load_config
from loop.controllers import Controller
from loop.engine import round_seeds
from loop.front.env import DomainRandomizationEnv
from loop.registry import names, register
from loop.run.runner import run_loop
from smoke import SMOKE, tiny



def _rounds(run_dir):
    rows = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    for r in rows:
        for clock in ("train_seconds", "cpu_seconds"):   # the task's clocks: the only figures allowed to differ
            r["metrics"].pop(clock, None)
    return rows


@pytest.mark.parametrize("name", names("controller"))
def test_every_controller_runs_in_process_and_on_ray_with_the_same_scores(smoke_real, tmp_path, name):
    base = tiny(smoke_real, f'loop.optimizer="{name}"', "loop.budget=2", "evaluator.final_seeds=1")
    local = run_loop(load_config(SMOKE, base), tmp_path / "local", log=lambda m: None)
    # render actors and evaluation tasks on Ray, as the smoke config ships
    on_ray = run_loop(load_config(SMOKE, [*base, "render.workers=1", "evaluator.ray=true"]), tmp_path / "ray",
                      log=lambda m: None)
    rows, ray_rows = _rounds(tmp_path / "local"), _rounds(tmp_path / "ray")
    assert [r.get("failed") for r in rows] == [None] * 4
    assert all(r["score"] is not None and math.isfinite(r["score"]) for r in rows)
    # the Fréchet distance (a matrix square root, a reported figure no controller reads) sums
    # floats in an order that depends on the process's BLAS threads (a Ray worker runs one): it
    # may differ in the last digits; every other figure, θ and the result are the same bytes
    frechet = [(r["metrics"].pop("gap_frechet", None), q["metrics"].pop("gap_frechet", None))
               for r, q in zip(rows, ray_rows)]
    assert ray_rows == rows
    assert all(a == b or a == pytest.approx(b, rel=1e-9) for a, b in frechet)
    for key in ("val", "test", "theta", "selected"):
        assert on_ray[key] == local[key], key


def test_the_real_env_passes_gymnasium_check_env(smoke_real):
    env = DomainRandomizationEnv(SMOKE, max_steps=2, overrides=tiny(smoke_real))
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert 0.0 <= reward <= 1.0 and "val_ap50" in info["metrics"] and not {"train_seconds", "cpu_seconds"} & set(info["metrics"])
    env.close()


@register("controller", "test-config-theta")
class ConfigTheta(Controller):
    """Proposes the config's own θ every round (a fixed point for comparing front doors)."""

    name: ClassVar[str] = "test-config-theta"
    signals: ClassVar[frozenset[str]] = frozenset({"score"})
    learning: ClassVar[bool] = False

    def _propose(self, k):
        return [self.space.clip(self.space.to_vector()) for _ in range(k)]

    def _update(self, thetas, feedback):
        pass

    def _current(self):
        return self.space.to_vector()


def _tune_rung_one_score(cfg, theta, storage) -> float:
    """One Tune trial of θ with one rung, through dropt's own trainable."""
    from ray import tune

    from loop.engine.cluster import ensure_ray
    from loop.front.tune import THETA_PREFIX, make_trainable

    ensure_ray()
    space = cfg.build_generator().space
    params = {THETA_PREFIX + k: float(v) for k, v in zip(space.theta_names(), theta)}
    grid = tune.Tuner(tune.with_resources(make_trainable(cfg, rungs=1), {"cpu": 1}), param_space=params,
                      run_config=tune.RunConfig(storage_path=str(storage), verbose=0)).fit()
    assert len(grid) == 1 and grid[0].error is None
    return float(grid[0].metrics["score"])


def test_runner_env_and_tune_score_a_theta_identically(smoke_real, tmp_path):
    cfg = load_config(SMOKE, tiny(smoke_real, 'loop.optimizer="test-config-theta"', "loop.budget=1",
                                  "loop.candidates=1", "evaluator.final_seeds=1", "evaluator.images=32",
                                  "evaluator.steps=30", "evaluator.width=16"))
    run_loop(cfg, tmp_path / "run", log=lambda m: None)
    row = _rounds(tmp_path / "run")[0]
    runner_score = row["score"]

    space = cfg.build_generator().space
    theta = space.clip(space.to_vector())
    seed = round_seeds(cfg.seed, 0, [theta])[0]
    env = DomainRandomizationEnv(cfg, max_steps=1)
    env_score, env_metrics = env._evaluate(theta, seed)   # what a step computes, with the runner's seed
    env.close()
    tune_score = _tune_rung_one_score(cfg, theta, tmp_path / "tune")
    assert env_metrics == row["metrics"]                  # every figure, not only the score
    assert env_score == runner_score and tune_score == runner_score
