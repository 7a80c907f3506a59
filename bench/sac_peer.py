"""SB3's SAC on a Gymnasium env with rl-zoo3's settings, timed and evaluated like `shoal train`
followed by `shoal eval --deterministic`: prints one JSON line.

    python bench/sac_peer.py --env HalfCheetah-v5 --steps 200000 --seed 1
"""

import argparse
import json
import time

import gymnasium as gym
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    env = gym.make(args.env)
    # rl-zoo3's hyperparams/sac.yml for MuJoCo: SB3's defaults (256-256 relu, batch 256,
    # lr 3e-4, tau 0.005, buffer 1M, automatic entropy) with learning_starts 10000.
    model = SAC("MlpPolicy", env, learning_starts=args.learning_starts, seed=args.seed, device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=args.steps)
    seconds = time.perf_counter() - start
    eval_env = gym.make(args.env)
    eval_env.reset(seed=1_000_000)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.episodes, deterministic=True)
    print(json.dumps({"peer": "sb3", "env": args.env, "seed": args.seed, "env_steps": args.steps,
                      "train_seconds": seconds, "eval_mean": float(mean), "eval_std": float(std)}))


if __name__ == "__main__":
    main()
