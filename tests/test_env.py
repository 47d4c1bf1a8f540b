"""The gymnasium front door: registered id, spaces, determinism (check_env), a real step."""

from __future__ import annotations


import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import loop  # noqa: F401  (registers the env id)
from loop.front.env import DomainRandomizationEnv

from smoke import ROOT, SMOKE  # noqa: E402


def cheap_evaluate(theta: np.ndarray, seed: int) -> tuple[float, dict[str, float]]:
    """A stand-in evaluator: a seeded noisy score of θ (no rendering, no training)."""
    rng = np.random.default_rng(seed)
    score = float(-np.mean((theta - 0.3) ** 2) + 0.01 * rng.standard_normal())
    return score, {"noise_seed": float(seed % 1000)}


def test_passes_gymnasium_check_env():
    env = gymnasium.make("dropt/DomainRandomization-v0", config=str(SMOKE), evaluate=cheap_evaluate,
                         max_steps=3).unwrapped
    check_env(env, skip_render_check=True)


def test_spaces_and_episode():
    env = DomainRandomizationEnv(SMOKE, evaluate=cheap_evaluate, max_steps=2)
    obs, info = env.reset(seed=5)
    d = len(env.space.theta_names())
    assert env.action_space.shape == (d,) and obs.shape == (d + 1,) and env.observation_space.contains(obs)
    assert set(info["theta"]) == set(env.space.theta_names())
    obs1, r1, term, trunc, info1 = env.step(np.zeros(d, np.float32))
    assert not term and not trunc and np.isfinite(r1) and obs1[-1] == pytest.approx(r1, abs=1e-6)
    lo, hi = env.space.bounds()
    assert np.all(env.theta >= lo) and np.all(env.theta <= hi)
    *_, trunc, _ = env.step(np.ones(d, np.float32))
    assert trunc
    env.reset(seed=5)
    again = env.step(np.zeros(d, np.float32))
    assert again[1] == r1 and again[4]["seed"] == info1["seed"]
    with pytest.raises(ValueError, match="action: expected shape"):
        env.step(np.zeros(d + 1))
    with pytest.raises(ValueError, match="max_steps"):
        DomainRandomizationEnv(SMOKE, max_steps=0)


def test_real_step_renders_and_trains(tmp_path):
    from loop.config import load_config
    from loop.engine.target import make_target

    make_target(load_config(SMOKE, ["target.val=4", "target.test=4"]), tmp_path / "real", workers=0, progress=False)
    env = DomainRandomizationEnv(SMOKE, max_steps=1, overrides=[
        f'evaluator.real="{tmp_path / "real"}"', "evaluator.images=6", "evaluator.steps=2", "evaluator.batch_size=3",
        "evaluator.width=8"])
    env.reset(seed=0)
    _, reward, _, trunc, info = env.step(env.action_space.sample() * 0)
    assert 0.0 <= reward <= 1.0 and trunc and "val_ap50" in info["metrics"]
    env.close()


def test_fixed_parameters_are_not_part_of_the_action_space():
    mixed = DomainRandomizationEnv(ROOT / "experiments" / "digits" / "default.toml", evaluate=cheap_evaluate)
    assert mixed.space.fixed_names[:2] == ["digit", "font.face"] and len(mixed.space.fixed_names) == 12
    assert all(n.startswith("font.") for n in mixed.space.fixed_names[1:])
    assert mixed.action_space.shape == (mixed.space.dim,)
    learned = mixed.space.named(mixed.space.to_vector())
    assert not any(k.startswith(("digit.", "font.")) for k in learned)
    assert any(k.startswith("source.") for k in learned)      # the strokes/fonts mix stays learned
    mixed.close()
    env = DomainRandomizationEnv(ROOT / "experiments" / "digits" / "fonts.toml", evaluate=cheap_evaluate)
    assert env.space.fixed_names == ["digit", "font"]
    assert env.action_space.shape == (env.space.dim,) == (20,)
    _, info = env.reset(seed=0)
    assert not any(k.startswith(("digit.", "font.")) for k in info["theta"])
