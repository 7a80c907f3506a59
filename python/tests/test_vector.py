"""`shoal.make_vec`: Gymnasium's vector API contract, and step-for-step equality with
`gymnasium.make_vec(..., vectorization_mode="sync")` in both auto-reset modes.

Shoal's RNG is its own (PCG-64), so Gymnasium's envs are put in the state Shoal's reset drew,
read from Shoal's snapshot, after every reset — as the Rust parity suite does."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import shoal

MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP]


def shoal_states(vec):
    """Each env's own state variables, from Shoal's snapshot: wrappers nest as
    `[inner, their fields…]`, an env's fields start with its state."""
    states = []
    for env in json.loads(vec.snapshot())["envs"]:
        while isinstance(env[0], list):
            env = env[0]
        states.append(env)
    return states


def put_state(env, env_id, state):
    """Puts one Gymnasium env in `state` and returns the observation it now shows."""
    inner = env.unwrapped
    if env_id == "CartPole-v1":
        inner.state = np.array(state, dtype=np.float64)
        inner.steps_beyond_terminated = None
        return np.array(inner.state, dtype=np.float32)
    if env_id == "Pendulum-v1":
        inner.state = np.array(state, dtype=np.float64)
        return inner._get_obs()
    if env_id == "Taxi-v4":
        inner.s = int(state[0])  # Taxi's fields: the state index, then its RNG
        return np.int64(state[0])
    raise AssertionError(env_id)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Taxi-v4"])
def test_matches_gymnasium_sync_vector_env_step_for_step(env_id, mode):
    n, steps = 6, 600
    ours = shoal.make_vec(env_id, n, num_threads=2, autoreset_mode=mode)
    theirs = gym.make_vec(env_id, n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode})
    assert ours.metadata["autoreset_mode"] == theirs.metadata["autoreset_mode"] == mode
    assert ours.single_observation_space == theirs.single_observation_space
    assert ours.single_action_space == theirs.single_action_space
    assert ours.observation_space == theirs.observation_space and ours.action_space == theirs.action_space

    def resync(indices, their_obs):
        states = shoal_states(ours)
        for i in indices:
            their_obs[i] = put_state(theirs.envs[i], env_id, states[i])

    our_obs, _ = ours.reset(seed=3)
    their_obs, _ = theirs.reset(seed=3)
    resync(range(n), their_obs)
    assert np.array_equal(our_obs, their_obs)
    theirs.action_space.seed(11)
    pending = np.zeros(n, dtype=bool)  # next-step mode: envs that reset on this step
    episodes = 0
    for t in range(steps):
        actions = theirs.action_space.sample()
        our_obs, our_rew, our_term, our_trunc, our_info = ours.step(actions)
        their_obs, their_rew, their_term, their_trunc, their_info = theirs.step(actions)
        done = their_term | their_trunc
        episodes += int(done.sum())
        assert np.array_equal(our_term, their_term) and np.array_equal(our_trunc, their_trunc), f"step {t}"
        assert our_rew.dtype == their_rew.dtype == np.float64
        # Shoal's batch keeps rewards as float32.
        assert np.array_equal(our_rew, their_rew.astype(np.float32)), f"step {t}"
        if mode == AutoresetMode.SAME_STEP:
            if done.any():
                assert np.array_equal(our_info["_final_obs"], their_info["_final_obs"])
                for i in np.flatnonzero(done):
                    assert np.array_equal(our_info["final_obs"][i], their_info["final_obs"][i]), f"step {t} env {i}"
            resync(np.flatnonzero(done), their_obs)
        else:
            resync(np.flatnonzero(pending), their_obs)
            assert np.array_equal(our_rew[pending], np.zeros(pending.sum()))
            pending = done
        assert np.array_equal(our_obs, their_obs), f"step {t}"
    assert episodes >= 3, f"only {episodes} episodes ended: the test saw no auto-reset"


@pytest.mark.parametrize("env_id", shoal.env_ids())
def test_vector_contract(env_id):
    """What a vector env checker asks: batched spaces, dtypes and shapes of every return, values
    inside the spaces, seeded determinism, fresh arrays per call."""
    a = shoal.make_vec(env_id, 4, num_threads=2)
    b = shoal.make_vec(env_id, 4)
    assert a.num_envs == 4 and a.observation_space == gym.vector.utils.batch_space(a.single_observation_space, 4)
    obs_a, info = a.reset(seed=5)
    obs_b, _ = b.reset(seed=5)
    assert isinstance(info, dict)
    assert obs_a in a.observation_space and np.array_equal(obs_a, obs_b)
    a.action_space.seed(0)
    for _ in range(50):
        actions = a.action_space.sample()
        obs, rew, term, trunc, infos = a.step(actions)
        obs_b, rew_b, term_b, trunc_b, _ = b.step(actions)
        assert obs in a.observation_space
        assert rew.shape == (4,) and rew.dtype == np.float64
        assert term.dtype == trunc.dtype == np.bool_ and term.shape == trunc.shape == (4,)
        assert isinstance(infos, dict)
        assert np.array_equal(obs, obs_b) and np.array_equal(rew, rew_b)
        assert np.array_equal(term, term_b) and np.array_equal(trunc, trunc_b)
    again, *_ = a.step(a.action_space.sample())
    assert again is not obs and not np.shares_memory(again, obs)


def test_copy_false_hands_out_a_read_only_view_of_the_batch():
    vec = shoal.make_vec("CartPole-v1", 3, copy=False)
    first, _ = vec.reset(seed=0)
    second, *_ = vec.step(np.ones(3, dtype=np.int64))
    assert np.shares_memory(first, second) and not first.flags.writeable


def test_episode_statistics_are_reported_when_episodes_end():
    vec = shoal.make_vec("CartPole-v1", 2, seed=0)
    vec.reset()
    returns = np.zeros(2)
    for _ in range(200):
        obs, rew, term, trunc, infos = vec.step(np.zeros(2, dtype=np.int64))
        returns += rew
        if "episode" in infos:
            i = int(np.flatnonzero(infos["_episode"])[0])
            assert infos["episode"]["r"][i] == returns[i] and infos["episode"]["l"][i] == returns[i]
            return
    pytest.fail("no episode ended in 200 steps of always-left CartPole")


def test_bad_arguments_raise_with_shoal_messages():
    with pytest.raises(ValueError, match="did you mean `Pendulum-v1`"):
        shoal.make_vec("Pendulum-v0", 2)
    with pytest.raises(ValueError, match="num_envs must be at least 1"):
        shoal.make_vec("CartPole-v1", 0)
    with pytest.raises(ValueError, match="autoreset_mode 'sometimes'"):
        shoal.make_vec("CartPole-v1", 2, autoreset_mode="sometimes")
    vec = shoal.make_vec("CartPole-v1", 2)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="got 3 action values, this vector env takes 2"):
        vec.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="outside the action space"):
        vec.step(np.array([0, 5]))
    with pytest.raises(ValueError, match="seed \\+ i"):
        vec.reset(seed=[1, 5])
