"""Record Gymnasium 1.4 reference trajectories and models for shoal-env's parity tests.

Run through scripts/gen_env_fixtures.sh, which makes a venv with `gymnasium==1.4.*`.
Writes crates/shoal-env/tests/fixtures/<env>.json. The Rust tests replay every episode from
the same internal start state and compare observations, rewards and flags step by step. Where
Gymnasium samples (reset distributions, slippery/rainy transitions), RNG streams cannot match,
so we record what it samples *from*: statistics of the first observation over many seeds, and
the complete transition tables and start distributions.
"""

import json
import math
import os
import sys

import gymnasium as gym
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "shoal-env", "tests", "fixtures")
EPISODES = 50
RESET_SAMPLES = 4000


def f32(x):
    """Shortest text that parses back to the same float32."""
    return float("%.9g" % float(x))


def unwrap_state(env):
    s = env.unwrapped.state
    return [float(v) for v in np.asarray(s, dtype=np.float64).ravel()]


def heuristic_action(env_id, obs, rng):
    """A simple controller that reaches the goal (or, for CartPole, the time limit), so the
    fixtures exercise termination and truncation rules that random play never reaches."""
    if env_id == "MountainCar-v0":
        return 2 if obs[1] >= 0 else 0
    if env_id == "MountainCarContinuous-v0":
        return np.array([1.0 if obs[1] >= 0 else -1.0], dtype=np.float32) * np.float32(rng.uniform(0.5, 1.0))
    if env_id == "Acrobot-v1":
        # Torque along the second joint's velocity pumps energy until the tip swings up.
        return 2 if obs[5] > 0 else 0
    if env_id == "CartPole-v1":
        # Push towards where the pole is falling: balances until the time limit.
        return 1 if obs[2] + 0.5 * obs[3] > 0 else 0
    return None


def record_classic(env_id, max_episodes=EPISODES):
    env = gym.make(env_id)
    rng = np.random.default_rng(12345)
    episodes = []
    for k in range(max_episodes):
        seed = 1000 + k
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        state = unwrap_state(env)
        use_heuristic = k % 2 == 1 and heuristic_action(env_id, obs, rng) is not None
        ep = {"seed": seed, "policy": "heuristic" if use_heuristic else "random", "state": state,
              "reset_obs": [f32(v) for v in obs], "actions": [], "obs": [], "rewards": [],
              "terminated": [], "truncated": []}
        done = False
        while not done:
            action = heuristic_action(env_id, obs, rng) if use_heuristic else env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            if isinstance(action, np.ndarray):
                ep["actions"].append([f32(v) for v in action])
            else:
                ep["actions"].append(int(action))
            ep["obs"].append([f32(v) for v in obs])
            ep["rewards"].append(float(reward))
            ep["terminated"].append(bool(terminated))
            ep["truncated"].append(bool(truncated))
            done = terminated or truncated
        episodes.append(ep)
    first = np.array([env.reset(seed=seed)[0] for seed in range(RESET_SAMPLES)], dtype=np.float64)
    return {"id": env_id, "gymnasium_version": gym.__version__, "episodes": episodes,
            "reset_obs_stats": {"n": RESET_SAMPLES, "min": first.min(0).tolist(), "max": first.max(0).tolist(),
                                "mean": first.mean(0).tolist(), "std": first.std(0).tolist()}}


def table(env):
    u = env.unwrapped
    rows = []
    for s in range(u.observation_space.n):
        for a in range(u.action_space.n):
            rows.append([[float(p), int(ns), float(r), bool(t)] for (p, ns, r, t) in u.P[s][a]])
    return {"n_states": int(u.observation_space.n), "n_actions": int(u.action_space.n),
            "transitions": rows, "initial": [float(p) for p in u.initial_state_distrib]}


def record_tabular(env_id, kwargs, deterministic):
    env = gym.make(env_id, **kwargs)
    out = {"id": env_id, "options": kwargs, "gymnasium_version": gym.__version__, "model": table(env)}
    if deterministic:
        rng = np.random.default_rng(777)
        u = env.unwrapped
        episodes = []
        for k in range(EPISODES):
            seed = 2000 + k
            obs, _ = env.reset(seed=seed)
            env.action_space.seed(seed)
            if k % 2 == 1:
                # Start half the episodes from a random state (not the reset distribution's).
                u.s = int(rng.integers(u.observation_space.n))
                obs = int(u.s)
            ep = {"seed": seed, "state": [float(obs)], "actions": [], "obs": [], "rewards": [],
                  "terminated": [], "truncated": []}
            done = False
            steps = 0
            while not done and steps < 300:
                action = env.action_space.sample()
                obs, reward, terminated, truncated, _ = env.step(action)
                ep["actions"].append(int(action))
                ep["obs"].append([float(obs)])
                ep["rewards"].append(float(reward))
                ep["terminated"].append(bool(terminated))
                ep["truncated"].append(bool(truncated))
                done = terminated or truncated
                steps += 1
            episodes.append(ep)
        out["episodes"] = episodes
        out["max_episode_steps"] = env.spec.max_episode_steps
    return out


def write(name, data):
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    print(f"{path}: {os.path.getsize(path) // 1024} KiB")


def main():
    os.makedirs(OUT, exist_ok=True)
    for env_id in ["CartPole-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1", "Acrobot-v1"]:
        write(env_id, record_classic(env_id))
    tabular = [
        ("FrozenLake-v1", {"map_name": "4x4", "is_slippery": False}, True, "FrozenLake-v1-4x4"),
        ("FrozenLake-v1", {"map_name": "4x4", "is_slippery": True}, False, "FrozenLake-v1-4x4-slippery"),
        ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}, True, "FrozenLake-v1-8x8"),
        ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": True}, False, "FrozenLake-v1-8x8-slippery"),
        ("FrozenLake8x8-v1", {}, False, "FrozenLake8x8-v1"),
        ("CliffWalking-v1", {}, True, "CliffWalking-v1"),
        ("CliffWalkingSlippery-v1", {}, False, "CliffWalkingSlippery-v1"),
        ("Taxi-v4", {}, True, "Taxi-v4"),
        ("Taxi-v4", {"is_rainy": True}, False, "Taxi-v4-rainy"),
    ]
    for env_id, kwargs, deterministic, name in tabular:
        write(name, record_tabular(env_id, kwargs, deterministic))


if __name__ == "__main__":
    sys.exit(main())
