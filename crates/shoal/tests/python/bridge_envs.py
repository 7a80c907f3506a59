"""Python envs for the Gymnasium bridge's tests (crates/shoal/tests/bridge.rs)."""

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class CartPoleFrom(CartPoleEnv):
    """Gymnasium's own CartPole, starting every episode from a given state (`state`: four
    numbers as strings, exactly as Shoal's native env drew them), so the two can be compared
    step for step although their RNGs differ."""

    def __init__(self, state):
        super().__init__()
        self.start = np.array([float(v) for v in state], dtype=np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.start.copy()
        return np.array(self.state, dtype=np.float32), {}


def dict_space_env():
    """An env whose observation space Shoal cannot take (a Dict)."""
    env = gym.make("CartPole-v1")
    env.observation_space = gym.spaces.Dict({"x": env.observation_space})
    return env
