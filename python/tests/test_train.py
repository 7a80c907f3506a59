"""`shoal.train` and `shoal.load`: a run trained from Python is a normal Shoal run directory,
and the loaded policy solves CartPole-v1 through `predict`."""

from pathlib import Path

import numpy as np
import pytest

import shoal

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_train_then_load_then_predict_solves_cartpole(tmp_path):
    seen = []

    def progress(p):
        seen.append((p["env_steps"], p["episode_return_mean"]))

    result = shoal.train(CONFIGS / "cartpole-ppo.toml", seed=3, out=tmp_path / "run", callback=progress)
    assert result.run_dir == tmp_path / "run"
    for name in ("config.toml", "metrics.csv", "summary.json", "checkpoints/latest"):
        assert (result.run_dir / name).exists(), name
    assert result.summary["env_steps"] == seen[-1][0] >= 100_000
    assert len(seen) > 100 and seen[0][0] < seen[-1][0]

    policy = shoal.load(result.run_dir)
    assert (policy.algo, policy.env_id) == ("ppo", "CartPole-v1")
    env = shoal.make("CartPole-v1")
    total = 0.0
    obs, _ = env.reset(seed=12345)
    while True:
        action = policy.predict(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated or truncated:
            break
    assert total == 500.0
    report = policy.evaluate(episodes=20)
    assert report["episode_return_mean"] >= 475.0, report
    batch = policy.predict(np.stack([obs, obs, obs]).astype(np.float64))
    assert batch.dtype == np.int64 and batch.shape == (3,) and len(set(batch.tolist())) == 1


def test_dict_config_and_a_callback_that_stops(tmp_path):
    config = {
        "algo": "ppo",
        "seed": 1,
        "env": {"id": "CartPole-v1", "num_envs": 4},
        "stop": {"env_steps": 1_000_000},
        "ppo": {"num_steps": 16},
    }
    result = shoal.train(config, out=tmp_path / "run", callback=lambda p: p["iteration"] < 5)
    assert result.summary["iterations"] == 5 and result.summary["env_steps"] == 5 * 16 * 4
    assert result.summary["stop_reason"] == "callback"
    assert shoal.load(tmp_path / "run").predict(np.zeros(4)) in (0, 1)


def test_an_exception_in_the_callback_reaches_the_caller_after_the_checkpoint(tmp_path):
    def fail(p):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        shoal.train(CONFIGS / "cartpole-ppo.toml", out=tmp_path / "run", callback=fail)
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()


def test_bad_configs_raise_with_shoal_messages(tmp_path):
    with pytest.raises(ValueError, match="ppo.learning_rat"):
        shoal.train(CONFIGS / "cartpole-ppo.toml", overrides=["ppo.learning_rat=1e-3"], out=tmp_path / "a")
    with pytest.raises(ValueError, match="did you mean `CartPole-v1`"):
        shoal.train({"algo": "ppo", "env": {"id": "CartPole-v0"}, "stop": {"env_steps": 100}}, out=tmp_path / "b")
    with pytest.raises(OSError, match="no-such.toml"):
        shoal.train(tmp_path / "no-such.toml")
    with pytest.raises(TypeError, match="config must be a path to a TOML file or a dict"):
        shoal.train(42)
    with pytest.raises(FileNotFoundError, match="not-a-run: no such run directory"):
        shoal.load(tmp_path / "not-a-run")
    with pytest.raises(ValueError, match="no config.toml"):
        shoal.load(tmp_path)
    policy = shoal.load(shoal.train(CONFIGS / "cartpole-ppo.toml", overrides=["stop.env_steps=256"], out=tmp_path / "c").run_dir)
    with pytest.raises(ValueError, match=r"takes \[rows, 4\]"):
        policy.predict(np.zeros((2, 3)))


def test_continuous_policies_predict_rows_of_actions(tmp_path):
    run = shoal.train(CONFIGS / "pendulum-ppo.toml", overrides=["stop.env_steps=4096"], out=tmp_path / "run")
    policy = shoal.load(run.run_dir)
    obs = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5], [-1.0, 0.0, 2.0]])
    actions = policy.predict(obs)
    assert actions.shape == (3, 1) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 2.0)
    single = policy.predict(obs[1])
    assert single.shape == (1,) and single[0] == actions[1, 0]
