"""`shoal.make`: Gymnasium's own env checker on every built-in env, and errors as Python
exceptions with Shoal's messages."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import shoal


@pytest.mark.parametrize("env_id", shoal.env_ids())
def test_gymnasium_check_env_passes(env_id):
    env = shoal.make(env_id)
    with warnings.catch_warnings():
        # Gymnasium warns about infinite Box bounds, which its own CartPole has too.
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(env, skip_render_check=True)
    assert env.spec.id == env_id


def test_same_seed_same_episode_and_options_reach_the_env():
    a, b = shoal.make("CartPole-v1"), shoal.make("CartPole-v1")
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    assert np.array_equal(obs_a, obs_b) and obs_a.dtype == np.float32
    for _ in range(20):
        step_a, step_b = a.step(1), b.step(1)
        assert np.array_equal(step_a[0], step_b[0]) and step_a[1:] == step_b[1:]
    lake = shoal.make("FrozenLake-v1", is_slippery=False)
    lake.reset(seed=0)
    # Not slippery: right, right, down, down, down, right reaches the goal of the 4x4 map.
    rewards = [lake.step(a)[1] for a in (2, 2, 1, 1, 1, 2)]
    assert rewards[-1] == 1.0


def test_time_limit_truncates_as_registered():
    env = shoal.make("Pendulum-v1")
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
        steps += 1
        assert not terminated
    assert steps == env.spec.max_episode_steps == 200


def test_unknown_id_is_a_value_error_suggesting_the_right_one():
    with pytest.raises(ValueError, match=r"did you mean `CartPole-v1`\?"):
        shoal.make("CartPole-v0")


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(ValueError, match="has no option `slippery`.*is_slippery"):
        shoal.make("FrozenLake-v1", slippery=False)


def test_option_of_an_unsupported_type_is_a_type_error():
    with pytest.raises(TypeError, match="env option `is_slippery` is a dict"):
        shoal.make("FrozenLake-v1", is_slippery={})


def test_action_outside_the_space_is_a_value_error():
    env = shoal.make("CartPole-v1")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"outside the action space Discrete\(2\); valid actions are 0 to 1"):
        env.step(2)
    with pytest.raises(ValueError, match="expected 1 values, got 2"):
        shoal.make("Pendulum-v1").step(np.zeros(2, dtype=np.float32))


def test_step_before_reset_is_an_error_not_a_crash():
    with pytest.raises(RuntimeError, match="reset"):
        shoal.make("CartPole-v1").step(0)
