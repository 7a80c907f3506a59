"""Stable-Baselines3's DQN or PPO on MinAtar Breakout with the settings of Shoal's configs
(configs/minatar-breakout-dqn.toml, configs/minatar-breakout-ppo.toml) and MinAtar's network
(16 3×3 filters, then 128 relu units), timed and evaluated like `shoal train` followed by
`shoal eval --deterministic`: prints one JSON line. With `--curve DIR` it also writes the
training curve as DIR/metrics.csv in the columns `shoal plot` reads (env steps, wall-clock
seconds, mean return of the last 100 episodes, as Shoal's own metrics.csv), so one plot can
show both peers.

    python bench/minatar_peer.py --algo dqn --steps 200000 --seed 1
"""

import argparse
import collections
import json
import os
import time

import gymnasium as gym
import minatar.gym
import numpy as np
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MinAtarNet(BaseFeaturesExtractor):
    """Young & Tian's MinAtar network up to its 128 relu units: one convolution of 16 3×3
    filters (stride 1, no padding) over the 10×10×C board, then a linear layer."""

    def __init__(self, observation_space, features_dim=128):
        super().__init__(observation_space, features_dim)
        height, width, channels = observation_space.shape
        self.conv = nn.Sequential(nn.Conv2d(channels, 16, 3), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(16 * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, obs):
        return self.linear(self.conv(obs.float().permute(0, 3, 1, 2)))


class Curve(BaseCallback):
    """Every `every` env steps, one row of (env steps, seconds since training began, mean
    return of the last 100 finished episodes) — what Shoal's metrics.csv holds."""

    def __init__(self, directory, every):
        super().__init__()
        self.directory, self.every = directory, every
        self.returns = collections.deque(maxlen=100)

    def _on_training_start(self):
        os.makedirs(self.directory, exist_ok=True)
        self.file = open(os.path.join(self.directory, "metrics.csv"), "w")
        self.file.write("env_steps,wall_seconds,episode_return_mean\n")
        self.start, self.next_row = time.perf_counter(), self.every

    def _on_step(self):
        self.returns.extend(info["episode"]["r"] for info in self.locals["infos"] if "episode" in info)
        if self.num_timesteps >= self.next_row and self.returns:
            seconds = time.perf_counter() - self.start
            self.file.write(f"{self.num_timesteps},{seconds},{np.mean(self.returns)}\n")
            self.next_row += self.every
        return True

    def _on_training_end(self):
        self.file.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--algo", choices=["dqn", "ppo"], default="dqn")
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=20)
    # Shoal's DQN config explores over 5 % of its 2M-step budget: the same 100k steps here.
    parser.add_argument("--exploration-steps", type=int, default=100_000)
    parser.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--curve", help="write the training curve to CURVE/metrics.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    minatar.gym.register_envs()
    policy_kwargs = dict(features_extractor_class=MinAtarNet, net_arch=[])
    if args.algo == "dqn":
        env = gym.make(args.env)
        model = DQN("MlpPolicy", env, learning_rate=2.5e-4, buffer_size=100_000, learning_starts=5_000,
                    batch_size=32, gamma=0.99, train_freq=1, gradient_steps=1, target_update_interval=1_000,
                    exploration_fraction=min(1.0, args.exploration_steps / args.steps),
                    exploration_initial_eps=1.0, exploration_final_eps=0.1, max_grad_norm=10,
                    policy_kwargs=policy_kwargs, seed=args.seed, device="cpu", verbose=0)
    else:
        env = make_vec_env(args.env, n_envs=8, seed=args.seed)
        model = PPO("MlpPolicy", env, learning_rate=lambda progress: 5e-4 * progress, n_steps=128,
                    batch_size=128, n_epochs=4, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.01,
                    vf_coef=0.5, max_grad_norm=0.5, policy_kwargs=policy_kwargs, seed=args.seed, device="cpu",
                    verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=args.steps, callback=Curve(args.curve, 1024) if args.curve else None)
    seconds = time.perf_counter() - start
    eval_env = gym.make(args.env)
    eval_env.reset(seed=1_000_000)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.episodes, deterministic=True)
    print(json.dumps({"peer": "sb3", "algo": args.algo, "env": args.env, "seed": args.seed, "env_steps": args.steps, "torch_threads": args.torch_threads,
                      "train_seconds": seconds, "eval_mean": float(mean), "eval_std": float(std)}))


if __name__ == "__main__":
    main()
