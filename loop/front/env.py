"""A gymnasium front door: any RL library can act as the controller.

``gymnasium.make("dropt/DomainRandomization-v0", config=PATH)`` (registered by ``import loop``). The action in [-1, 1]^d sets θ (the box of the generator's space, linearly); the
observation is the current θ scaled to [0, 1]^d followed by the last real-val score; the reward
is the real-val score of a downstream model trained on images rendered from θ. An episode lasts
``max_steps`` steps (truncation; it never terminates on its own).

All randomness comes from ``self.np_random`` (seeded by ``reset(seed=...)``), so a fixed seed
gives the same episode: gymnasium's ``check_env`` checks exactly that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from ..config import ConfigError, ExperimentConfig, load_config
from ..engine import Engine, load_real
from ..errors import RunFailure
from ..engine.render_pool import RenderPool

ENV_ID = "dropt/DomainRandomization-v0"

#: (θ, seed) → (score, extras): what a step costs; the default renders and trains
EvaluateFn = Callable[[np.ndarray, int], tuple[float, dict[str, float]]]


class DomainRandomizationEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, config: str | Path | ExperimentConfig | None = None, *, max_steps: int = 20,
                 evaluate: EvaluateFn | None = None, overrides: list[str] | None = None):
        if config is None:
            raise ConfigError("config: expected a config file or an ExperimentConfig "
                              "(gymnasium.make(ENV_ID, config='experiments/shapes/default.toml')), got None")
        self.cfg = config if isinstance(config, ExperimentConfig) else load_config(config, overrides)
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps: expected an integer >= 1, got {max_steps!r}")
        self.max_steps = max_steps
        self.pool = RenderPool(self.cfg, workers=0)    # renders in this process; its GL context opens on first render
        self.generator = self.pool.generator
        self.space = self.generator.space
        self.low, self.high = (np.asarray(b, np.float64) for b in self.space.bounds())
        d = len(self.low)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (d,), np.float32)
        obs_low = np.concatenate([np.zeros(d), [-np.inf]]).astype(np.float32)
        obs_high = np.concatenate([np.ones(d), [np.inf]]).astype(np.float32)
        self.observation_space = gym.spaces.Box(obs_low, obs_high, dtype=np.float32)
        self._evaluate = evaluate or self._render_and_train
        self._engine: Engine | None = None
        self.theta = self.space.to_vector()
        self.last_score = 0.0
        self.steps = 0

    # --- gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.theta = self.space.to_vector()
        self.last_score, self.steps = 0.0, 0
        return self._obs(), {"theta": self.space.named(self.theta)}

    def step(self, action):
        a = np.clip(np.asarray(action, np.float64).reshape(-1), -1.0, 1.0)
        if a.shape != self.low.shape:
            raise ValueError(f"action: expected shape {self.low.shape}, got {np.asarray(action).shape}")
        self.theta = self.space.clip(self.low + (a + 1.0) / 2.0 * (self.high - self.low))
        seed = int(self.np_random.integers(0, 2**31 - 1))
        score, extras = self._evaluate(self.theta, seed)
        self.last_score = float(score)
        self.steps += 1
        info = {"theta": self.space.named(self.theta), "metrics": extras, "seed": seed}
        return self._obs(), self.last_score, False, self.steps >= self.max_steps, info

    def close(self):
        self.pool.close()

    # --- helpers --------------------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        unit = (self.theta - self.low) / np.where(self.high > self.low, self.high - self.low, 1.0)
        return np.concatenate([np.clip(unit, 0.0, 1.0), [self.last_score]]).astype(np.float32)

    def _render_and_train(self, theta: np.ndarray, seed: int) -> tuple[float, dict[str, float]]:
        """The runner's candidate path (:class:`loop.engine.Engine`): render with ``seed``, the
        ``score`` signal at the config's fidelity, in this process. ``info`` gets the evaluation's
        figures, which the seed determines (no wall-clock times: ``check_env`` compares them)."""
        if self._engine is None:
            real = load_real(self.cfg, categories=self.generator.categories)
            self._engine = Engine(self.cfg, self.pool, real, {"score"}, use_ray=False)
        res = self._engine.evaluate([theta], [seed], {"score"})[0]
        if res.failed:
            raise RunFailure(f"step: expected the candidate evaluated, it failed ({res.failed})")
        return float(res.score), {k: float(v) for k, v in res.extras.items()}
