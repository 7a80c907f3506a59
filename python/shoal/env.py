"""`shoal.make`: one Shoal env as a `gymnasium.Env`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from shoal import _shoal
from shoal.spaces import flat_actions, rows_to_obs, to_gym


class ShoalEnv(gym.Env):
    """A Shoal built-in env behind Gymnasium's `Env` API (`reset`, `step`, spaces, spec).

    Stepping runs in Rust; each call returns new NumPy values, as Gymnasium's own envs do.
    Keyword arguments are the env's options (e.g. ``is_slippery=False`` for FrozenLake-v1).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env_id: str, **options: Any) -> None:
        self._core = _shoal.Env(env_id, options or None)
        self.observation_space = to_gym(self._core.observation_space)
        self.action_space = to_gym(self._core.action_space)
        registered = _shoal.env_spec(env_id)
        self.spec = EnvSpec(
            id=registered["id"],
            entry_point="shoal.env:ShoalEnv",
            reward_threshold=registered["reward_threshold"],
            max_episode_steps=registered["max_episode_steps"],
            kwargs={"env_id": env_id, **options},
        )
        self.render_mode = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Starts an episode; `seed` reseeds Shoal's RNG for this env (PCG-64, its own stream)."""
        super().reset(seed=seed)
        return rows_to_obs(self.observation_space, self._core.reset(seed), None), {}

    def step(self, action: Any):
        """One step: ``(observation, reward, terminated, truncated, info)``."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            core_action = int(np.asarray(action).reshape(()))
        else:
            core_action = flat_actions(self.action_space, action)
        obs, reward, terminated, truncated = self._core.step(core_action)
        return rows_to_obs(self.observation_space, obs, None), float(reward), terminated, truncated, {}

    def snapshot(self) -> str:
        """The env's complete state as JSON, as a Shoal checkpoint stores it."""
        return self._core.snapshot()


def make(env_id: str, **options: Any) -> ShoalEnv:
    """Builds a Shoal env by id (``shoal.make("CartPole-v1")``), with its registered time limit."""
    return ShoalEnv(env_id, **options)
