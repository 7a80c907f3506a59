"""`shoal.sb3.VecEnv` under Stable-Baselines3's own checks, and its conventions (skipped where
stable-baselines3 is not installed: CI has no PyTorch; bench/python_bench.sh runs it)."""

import numpy as np
import pytest

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

import shoal  # noqa: E402
import shoal.sb3  # noqa: E402


def test_steps_like_dummy_vec_env_with_terminal_observations():
    ours = shoal.sb3.VecEnv("CartPole-v1", 4, num_threads=2)
    theirs = make_vec_env("CartPole-v1", n_envs=4)
    assert ours.observation_space == theirs.observation_space and ours.action_space == theirs.action_space
    ours.seed(0)
    obs = ours.reset()
    assert obs.shape == (4, 4) and obs.dtype == np.float32
    ended = 0
    for _ in range(300):
        actions = np.array([ours.action_space.sample() for _ in range(4)])
        obs, rewards, dones, infos = ours.step(actions)
        assert rewards.dtype == np.float32 and dones.dtype == np.bool_ and len(infos) == 4
        for i in np.flatnonzero(dones):
            ended += 1
            assert infos[i]["terminal_observation"].shape == (4,)
            assert not np.array_equal(infos[i]["terminal_observation"], obs[i])
            assert infos[i]["episode"]["l"] > 0 and "TimeLimit.truncated" in infos[i]
    assert ended > 20


def test_sb3_ppo_learns_on_it():
    env = shoal.sb3.VecEnv("CartPole-v1", 8)
    model = sb3.PPO("MlpPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98,
                    learning_rate=1e-3, seed=0, device="cpu")
    model.learn(20_000)
    assert len(model.ep_info_buffer) > 0
    assert np.mean([e["r"] for e in model.ep_info_buffer]) > 100
