"""Stable-Baselines3 peer for `shoal bench solve`: PPO on CartPole-v1 with rl-zoo3's tuned
hyperparameters, stopped when the mean training return over the last 100 episodes reaches the
threshold — the same criterion Shoal applies. Prints per-seed lines and the medians.
"""

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env


class StopAtReturn(BaseCallback):
    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold
        self.solved = False

    def _on_step(self):
        buf = self.model.ep_info_buffer
        if len(buf) >= 100 and np.mean([ep["r"] for ep in buf]) >= self.threshold:
            self.solved = True
            return False
        return True


def linear(start):
    return lambda progress_remaining: progress_remaining * start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--timesteps", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    times, steps = [], []
    for seed in range(1, args.seeds + 1):
        env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
        model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                    ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, device="cpu")
        callback = StopAtReturn(args.threshold)
        start = time.perf_counter()
        model.learn(total_timesteps=args.timesteps, callback=callback)
        elapsed = time.perf_counter() - start
        state = "solved" if callback.solved else "NOT solved"
        print(f"seed {seed}: {state} after {elapsed:.2f} s and {model.num_timesteps} env steps", flush=True)
        if callback.solved:
            times.append(elapsed)
            steps.append(model.num_timesteps)
    print(f"solved: {len(times)}/{args.seeds}")
    if times:
        print(f"median_seconds: {statistics.median(times):.3f}")
        print(f"median_env_steps: {statistics.median(steps):.0f}")


if __name__ == "__main__":
    main()
