"""Python peers for `shoal bench env`: Gymnasium's SyncVectorEnv and EnvPool on CartPole-v1.

Prints `<name>_steps_per_sec: <number>` lines. Run through bench/env_bench.sh, which also runs
Shoal in the same session so the ratios compare like with like.
"""

import argparse
import time

import gymnasium as gym
import numpy as np


def measure(step, actions, seconds):
    """Steps until `seconds` have passed (after a short warm-up); returns batches per second."""
    for i in range(20):
        step(actions[i % len(actions)])
    batches, start = 0, time.perf_counter()
    while True:
        for _ in range(16):
            step(actions[batches % len(actions)])
            batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return batches / elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--peers", default="gymnasium_sync,envpool", help="comma-separated peers to measure")
    args = parser.parse_args()
    peers = args.peers.split(",")
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 2, size=args.num_envs) for _ in range(64)]

    if "gymnasium_sync" in peers:
        envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(args.num_envs)])
        envs.reset(seed=0)
        rate = measure(envs.step, actions, args.seconds) * args.num_envs
        print(f"gymnasium_sync_steps_per_sec: {rate:.0f}", flush=True)

    if "envpool" in peers:
        import envpool

        pool = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=args.num_envs,
                            batch_size=args.num_envs, num_threads=args.threads, seed=0)
        pool.reset()
        rate = measure(pool.step, actions, args.seconds) * args.num_envs
        print(f"envpool_steps_per_sec: {rate:.0f}", flush=True)


if __name__ == "__main__":
    main()
