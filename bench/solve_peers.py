"""Stable-Baselines3 peer for `shoal bench solve` on CartPole-v1, with rl-zoo3's tuned
hyperparameters and the criterion Shoal applies, 1 torch thread. Prints per-seed lines and the
medians.

- `--algo ppo`: stops when the mean training return over the last 100 episodes reaches the
  threshold (Shoal's `--criterion train`). rl-zoo3 trains 100k steps with linear schedules; both
  sides get the `--timesteps` budget, the schedules spanning it.
- `--algo dqn`: DQN's training episodes explore (ε = 0.04 at the end), so the criterion is a
  deterministic evaluation of 10 episodes every 5000 env steps (EvalCallback with
  StopTrainingOnRewardThreshold; Shoal's `--criterion eval`). rl-zoo3's ε decays over 16% of
  its 50k steps, i.e. 8k steps; the fraction is scaled so it does over `--timesteps` too.
"""

import argparse
import statistics
import time

import numpy as np
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env

EVAL_EVERY = 5000
EVAL_EPISODES = 10


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


def ppo(seed, args):
    """rl-zoo3 hyperparams/ppo.yml, CartPole-v1."""
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, device="cpu")
    callback = StopAtReturn(args.threshold)
    return model, callback, lambda: callback.solved


def dqn(seed, args):
    """rl-zoo3 hyperparams/dqn.yml, CartPole-v1 (its 8k steps of ε decay kept)."""
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
    model = DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
                gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                exploration_fraction=0.16 * 50_000 / args.timesteps, exploration_final_eps=0.04,
                policy_kwargs=dict(net_arch=[256, 256]), seed=seed, device="cpu")
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1000)
    stop = StopTrainingOnRewardThreshold(reward_threshold=args.threshold, verbose=0)
    callback = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=EVAL_EVERY,
                            n_eval_episodes=EVAL_EPISODES, deterministic=True, verbose=0)
    return model, callback, lambda: callback.best_mean_reward >= args.threshold


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", choices=["ppo", "dqn"], default="ppo")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--timesteps", type=int, default=300_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    times, steps = [], []
    for seed in range(1, args.seeds + 1):
        model, callback, solved = {"ppo": ppo, "dqn": dqn}[args.algo](seed, args)
        start = time.perf_counter()
        model.learn(total_timesteps=args.timesteps, callback=callback)
        elapsed = time.perf_counter() - start
        state = "solved" if solved() else "NOT solved"
        print(f"seed {seed}: {state} after {elapsed:.2f} s and {model.num_timesteps} env steps", flush=True)
        if solved():
            times.append(elapsed)
            steps.append(model.num_timesteps)
    print(f"solved: {len(times)}/{args.seeds}")
    if times:
        print(f"median_seconds: {statistics.median(times):.3f}")
        print(f"median_env_steps: {statistics.median(steps):.0f}")


if __name__ == "__main__":
    main()
