"""The `shoal` Python package against Python's own options, side by side in one process:

1. vector env stepping from Python: `shoal.make_vec("CartPole-v1", 256, num_threads=2)` against
   EnvPool (same envs, threads) and Gymnasium's SyncVectorEnv;
2. Stable-Baselines3 PPO (rl-zoo3's CartPole settings) to a budget of env steps on
   `shoal.sb3.VecEnv` against SB3's own DummyVecEnv of Gymnasium envs;
3. with `--bridge SHOAL_BINARY`: the Gymnasium bridge's overhead — Shoal stepping
   `gymnasium:Pendulum-v1` (`shoal bench env`) against Gymnasium's SyncVectorEnv stepping it.

Prints one `name: value` line per measurement and the ratios. Run through bench/python_bench.sh.
"""

import argparse
import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np

import shoal
from env_peers import measure as rate  # batches per second of a step function, after a warm-up


def stepping(num_envs, threads, seconds):
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 2, size=num_envs) for _ in range(64)]
    results = {}
    ours = shoal.make_vec("CartPole-v1", num_envs, num_threads=threads, seed=0)
    ours.reset()
    results["shoal_make_vec"] = rate(ours.step, actions, seconds) * num_envs
    view = shoal.make_vec("CartPole-v1", num_envs, num_threads=threads, seed=0, copy=False)
    view.reset()
    results["shoal_make_vec_copy_false"] = rate(view.step, actions, seconds) * num_envs
    import envpool

    pool = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=num_envs, batch_size=num_envs,
                        num_threads=threads, seed=0)
    pool.reset()
    results["envpool"] = rate(pool.step, actions, seconds) * num_envs
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(num_envs)])
    sync.reset(seed=0)
    results["gymnasium_sync"] = rate(sync.step, actions, seconds) * num_envs
    for name, value in results.items():
        print(f"{name}_steps_per_sec: {value:.0f}", flush=True)
    print(f"shoal / envpool: {results['shoal_make_vec'] / results['envpool']:.1f}x")
    print(f"shoal / gymnasium_sync: {results['shoal_make_vec'] / results['gymnasium_sync']:.1f}x", flush=True)


def sb3_ppo(steps):
    import shoal.sb3
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    settings = dict(n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98, learning_rate=1e-3,
                    clip_range=0.2, seed=0, device="cpu")
    times = {}
    for name, env in (("sb3_on_dummy_vec_env", make_vec_env("CartPole-v1", n_envs=8, seed=0)),
                      ("sb3_on_shoal_vec_env", shoal.sb3.VecEnv("CartPole-v1", 8))):
        model = PPO("MlpPolicy", env, **settings)
        start = time.perf_counter()
        model.learn(steps)
        times[name] = time.perf_counter() - start
        ret = np.mean([e["r"] for e in model.ep_info_buffer]) if model.ep_info_buffer else float("nan")
        print(f"{name}_seconds: {times[name]:.2f} (last-100 return {ret:.1f})", flush=True)
    ratio = times["sb3_on_dummy_vec_env"] / times["sb3_on_shoal_vec_env"]
    print(f"sb3 ppo wall-clock, dummy / shoal: {ratio:.2f}x", flush=True)


def bridge(shoal_binary, num_envs, seconds):
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-2, 2, size=(num_envs, 1)).astype(np.float32) for _ in range(64)]
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1") for _ in range(num_envs)])
    sync.reset(seed=0)
    theirs = rate(sync.step, actions, seconds) * num_envs
    print(f"gymnasium_sync_pendulum_steps_per_sec: {theirs:.0f}", flush=True)
    out = subprocess.run([shoal_binary, "bench", "env", "--env", "gymnasium:Pendulum-v1", "--num-envs",
                          str(num_envs), "--threads", "1", "--seconds", str(seconds)],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "VIRTUAL_ENV": sys.prefix}).stdout.strip().splitlines()[-1]
    ours = float(out.split()[1])
    print(f"shoal_bridge_pendulum_steps_per_sec: {ours:.0f}")
    print(f"bridge / gymnasium_sync: {ours / theirs:.2f}x", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sb3-steps", type=int, default=100_000)
    parser.add_argument("--bridge", metavar="SHOAL_BINARY", help="also measure the Gymnasium bridge")
    parser.add_argument("--only", choices=["stepping", "sb3", "bridge"])
    args = parser.parse_args()
    if args.only in (None, "stepping"):
        stepping(args.num_envs, args.threads, args.seconds)
    if args.only in (None, "sb3"):
        sb3_ppo(args.sb3_steps)
    if args.bridge and args.only in (None, "bridge"):
        bridge(args.bridge, 8, args.seconds)


if __name__ == "__main__":
    main()
