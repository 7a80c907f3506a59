"""The Python half of Shoal's Gymnasium bridge (crates/shoal-env/src/gymnasium/): builds Python
envs and vectors of them from Shoal ids, and steps vectors in one call per batch, handing back
contiguous float32 arrays that Rust copies into its batch buffer once.

Embedded into the Shoal binary and run by its interpreter; not a module users import."""

import base64
import importlib
import io
import pickle

import gymnasium as gym
import numpy as np
from gymnasium.utils import EzPickle
from gymnasium.vector import AsyncVectorEnv, AutoresetMode

# How the packages of Gymnasium namespaces register their ids: a module whose import does it,
# and for some a function to call once (MinAtar's).
NAMESPACES = {"ALE/": ("ale_py", None), "MinAtar/": ("minatar.gym", "register_envs")}


def factory(shoal_id, kwargs, max_episode_steps=None):
    """`(gymnasium id or None, a function making one env)` for a `gymnasium:` or `python:` id;
    a time limit goes to `gymnasium.make`, or wraps a `python:` env in Gymnasium's TimeLimit."""
    if shoal_id.startswith("gymnasium:"):
        gym_id = shoal_id[len("gymnasium:"):]
        for prefix, (module, register) in NAMESPACES.items():
            if gym_id.startswith(prefix):
                imported = importlib.import_module(module)
                if register and gym_id not in gym.registry:
                    getattr(imported, register)()
        gym.spec(gym_id)  # an unknown id fails here, with Gymnasium's suggestions
        if max_episode_steps is not None:
            kwargs = {**kwargs, "max_episode_steps": max_episode_steps}
        return gym_id, lambda: gym.make(gym_id, **kwargs)
    if shoal_id.startswith("python:"):
        module, _, name = shoal_id[len("python:"):].rpartition(":")
        if not module:
            raise ValueError("write python:package.module:ClassName")
        target = getattr(importlib.import_module(module), name)
        if max_episode_steps is not None:
            return None, lambda: gym.wrappers.TimeLimit(target(**kwargs), max_episode_steps)
        return None, lambda: target(**kwargs)
    raise ValueError("ids of Python envs start with gymnasium: or python:")


def make_env(shoal_id, kwargs, max_episode_steps):
    return factory(shoal_id, kwargs, max_episode_steps)[1]()


def make_vector(shoal_id, num_envs, threads, kwargs, max_episode_steps):
    """A same-step vector env: the package's own vector env where Gymnasium registers one that
    resets in the same step (ale-py's AtariVectorEnv, whose C++ threads step the games),
    subprocesses when `threads > 1`, otherwise a loop over the envs (EnvLoop)."""
    gym_id, make = factory(shoal_id, kwargs, max_episode_steps)
    if gym_id is not None and gym.spec(gym_id).vector_entry_point is not None:
        extra = {} if "num_threads" in kwargs or threads <= 1 else {"num_threads": threads}
        if max_episode_steps is not None:  # ale-py counts frames, Gymnasium agent steps
            extra["max_num_frames_per_episode"] = max_episode_steps * kwargs.get("frameskip", 4)
        try:
            vec = gym.make_vec(gym_id, num_envs, vectorization_mode="vector_entry_point",
                               autoreset_mode=AutoresetMode.SAME_STEP, **extra, **kwargs)
        except TypeError:
            vec = None  # Gymnasium's own vector envs (CartPole's) reset in the next step only
        if vec is not None and vec.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP:
            return vec
    if threads > 1:
        # copy=False: Rust copies the observations into its batch anyway.
        return AsyncVectorEnv([make] * num_envs, copy=False, autoreset_mode=AutoresetMode.SAME_STEP)
    return EnvLoop([make() for _ in range(num_envs)])


class EnvLoop:
    """Gymnasium's SyncVectorEnv in same-step mode, cut to what Shoal needs: the envs stepped
    in a loop, their observations written into arrays allocated once (no batching of infos, no
    copies Rust would make again), so the bridge costs no more than Python's own loop."""

    def __init__(self, envs):
        self.envs = envs
        self.num_envs = len(envs)
        self.single_observation_space = envs[0].observation_space
        self.single_action_space = envs[0].action_space
        width = int(np.prod(self.single_observation_space.shape, dtype=np.int64)) or 1
        self.obs = np.zeros((self.num_envs, width), dtype=np.float32)
        self.final_obs = np.zeros_like(self.obs)
        self.rewards = np.zeros(self.num_envs, dtype=np.float64)
        self.terminated = np.zeros(self.num_envs, dtype=np.uint8)
        self.truncated = np.zeros(self.num_envs, dtype=np.uint8)

    def reset(self, seed=None):
        for i, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if seed is None else seed + i)
            self.obs[i] = np.ravel(obs)
        return self.obs

    def step(self, actions):
        ended = False
        obs_rows, final_rows = self.obs, self.final_obs
        for i, env in enumerate(self.envs):
            obs, reward, terminated, truncated, _ = env.step(actions[i])
            self.rewards[i] = reward
            self.terminated[i] = terminated
            self.truncated[i] = truncated
            if terminated or truncated:
                final_rows[i] = np.ravel(obs)
                obs, _ = env.reset()
                ended = True
            obs_rows[i] = np.ravel(obs)
        return obs_rows, self.rewards, self.terminated, self.truncated, final_rows if ended else None

    def close(self):
        for env in self.envs:
            env.close()


def flat(values, num_envs):
    """`[num_envs, flat_dim]` float32, contiguous (the one conversion of an observation batch)."""
    return np.ascontiguousarray(values, dtype=np.float32).reshape(num_envs, -1)


def reset(vec, seed):
    if isinstance(vec, EnvLoop):
        return vec.reset(seed)
    obs, _ = vec.reset(seed=seed)
    return flat(obs, vec.num_envs)


def step(vec, raw, raw_dtype, dtype, shape):
    """One batch step from Shoal's action bytes: observations, float64 rewards, uint8
    terminated/truncated flags, and the final observations (rows valid where done) or None when
    no episode ended."""
    actions = actions_from(raw, raw_dtype, dtype, shape)
    if isinstance(vec, EnvLoop):
        return vec.step(actions)
    obs, rewards, terminated, truncated, infos = vec.step(actions)
    done = np.logical_or(terminated, truncated)
    final = None
    if done.any():
        final_obs = infos["final_obs"]
        if final_obs.dtype == object:  # Gymnasium's vector envs: one object per env, None where not done
            template = np.zeros_like(np.asarray(obs[0]))
            final_obs = np.stack([final_obs[i] if done[i] else template for i in range(vec.num_envs)])
        final = flat(final_obs, vec.num_envs)
    return (
        flat(obs, vec.num_envs),
        np.ascontiguousarray(rewards, dtype=np.float64),
        np.ascontiguousarray(terminated, dtype=np.uint8),
        np.ascontiguousarray(truncated, dtype=np.uint8),
        final,
    )


def actions_from(raw, raw_dtype, dtype, shape):
    """Actions from Shoal's bytes (float32 or int64), in the env's dtype and shape."""
    return np.frombuffer(raw, dtype=raw_dtype).astype(dtype, copy=False).reshape(shape)


def _rebuild(cls, state):
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


class _StatePickler(pickle.Pickler):
    """Pickles envs with their state. Gymnasium's EzPickle envs (MuJoCo, Box2D, …) pickle only
    their constructor's arguments, so unpickling would build a fresh env that forgot where it
    was; their `__dict__` (simulation data included) is pickled instead."""

    def reducer_override(self, obj):
        if isinstance(obj, EzPickle):
            return _rebuild, (type(obj), obj.__dict__)
        return NotImplemented


def pickle_env(env):
    buffer = io.BytesIO()
    _StatePickler(buffer).dump(env)
    return base64.b64encode(buffer.getvalue()).decode()


def unpickle_env(text):
    return pickle.loads(base64.b64decode(text))


def snapshot(vec):
    """Each env pickled, or None where the vector env keeps its envs out of reach (ale-py's C++
    vector, subprocesses)."""
    if isinstance(vec, EnvLoop):
        return [pickle_env(env) for env in vec.envs]
    return None


def restore(vec, pickled):
    vec.envs = [unpickle_env(text) for text in pickled]
