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


def atari_reference(game):
    """Gymnasium's own Atari preprocessing, the reference for ale-py's vector env (what Shoal
    trains Atari on): ALE/{game}-v5 without frame skipping or sticky actions, then
    AtariPreprocessing (4 frames per step, the last two max-pooled, grayscale, 84×84 by
    OpenCV's INTER_AREA, no no-op starts, no life-loss ends), FrameStackObservation (4 frames,
    zero-padded after a reset, as ale-py pads) and rewards clipped to their sign."""
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False)
    env = gym.wrappers.FrameStackObservation(env, 4, padding_type="zero")
    return gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
