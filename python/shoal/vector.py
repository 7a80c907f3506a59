"""`shoal.make_vec`: Shoal's threaded vector env as a `gymnasium.vector.VectorEnv`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from shoal import _shoal
from shoal.spaces import flat_actions, rows_to_obs, to_gym


class ShoalVectorEnv(VectorEnv):
    """`num_envs` copies of a Shoal env stepped in Rust on `num_threads` threads.

    Gymnasium's vector API, both auto-reset modes (`metadata["autoreset_mode"]`):

    - ``next_step`` (Gymnasium's default): the step that ends an episode returns its last
      observation; the env's next step ignores its action and returns the reset observation
      with reward 0.
    - ``same_step``: the ending step already returns the next episode's first observation; the
      last one is in ``infos["final_obs"]`` (where ``infos["_final_obs"]``).

    Finished episodes' return and length are in ``infos["episode"]`` (``"r"``, ``"l"``, mask
    ``infos["_episode"]``), as Gymnasium's ``RecordEpisodeStatistics`` reports them.

    Observations live in Shoal's contiguous batch buffer. With ``copy=True`` (the default, as in
    Gymnasium's ``SyncVectorEnv``) each call returns a new array; with ``copy=False`` Box
    observations are a read-only view of that buffer, valid until the next ``step``/``reset``.
    The GIL is released while Rust steps.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        num_threads: int = 1,
        seed: int | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        **options: Any,
    ) -> None:
        mode = _autoreset_mode(autoreset_mode)
        if mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode DISABLED is not supported by Shoal's vector env; use next_step or same_step")
        self._core = _shoal.VecEnv(env_id, num_envs, num_threads, mode.value, options or None)
        self.spec_id = env_id
        self.num_envs = num_envs
        self.num_threads = num_threads
        self.autoreset_mode = mode
        self.copy = copy
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.render_mode = None
        self.single_observation_space = to_gym(self._core.observation_space)
        self.single_action_space = to_gym(self._core.action_space)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._default_seed = seed
        # Views of the Rust batch buffers: allocated once, rewritten in place by every step.
        self._obs = self._core.obs
        self._final_obs = self._core.final_obs
        self._rewards = self._core.rewards
        self._terminated = self._core.terminated
        self._truncated = self._core.truncated
        self._finished_return = self._core.finished_return
        self._finished_length = self._core.finished_length
        for view in (self._obs, self._final_obs, self._rewards, self._terminated, self._truncated):
            view.flags.writeable = False

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        """Resets every env: env ``i`` gets ``seed + i`` (a list of seeds must count up by one)."""
        if seed is None:
            seed, self._default_seed = self._default_seed, None
        elif not isinstance(seed, (int, np.integer)):
            seeds = [int(s) for s in seed]
            if len(seeds) != self.num_envs or seeds != list(range(seeds[0], seeds[0] + self.num_envs)):
                raise ValueError(
                    "Shoal seeds env i with seed + i: pass one int, or a list counting up by one from it "
                    f"(got {seeds[:4]}{'…' if len(seeds) > 4 else ''})"
                )
            seed = seeds[0]
        else:
            self._default_seed = None
        self._core.reset(None if seed is None else int(seed))
        return self._observations(self._obs), {}

    def step(self, actions: Any):
        """Steps every env: ``(observations, rewards, terminations, truncations, infos)``."""
        self._core.step(flat_actions(self.single_action_space, actions))
        terminated = self._terminated.copy()
        truncated = self._truncated.copy()
        done = terminated | truncated
        infos = self._episode_infos(done) if done.any() else {}
        return self._observations(self._obs), self._rewards.astype(np.float64), terminated, truncated, infos

    def _episode_infos(self, done: np.ndarray) -> dict[str, Any]:
        """Gymnasium's info layout for the envs that ended an episode (built with whole-array
        operations: one Python call per env would cost more than stepping 256 envs in Rust)."""
        infos: dict[str, Any] = {
            "episode": {
                "r": np.where(done, self._finished_return, 0.0),
                "l": np.where(done, self._finished_length, 0).astype(np.int64),
                "_r": done,
                "_l": done,
            },
            "_episode": done,
        }
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = rows_to_obs(self.single_observation_space, self._final_obs[i], None)
            infos.update({"final_obs": final_obs, "_final_obs": done, "final_info": {}, "_final_info": done})
        return infos

    def _observations(self, rows: np.ndarray) -> Any:
        if not self.copy and self.single_observation_space.dtype == np.float32:
            return rows.reshape(self.observation_space.shape)
        return rows_to_obs(self.single_observation_space, rows, self.num_envs)

    def snapshot(self) -> str:
        """Every env's state and the batch buffers as JSON, as a Shoal checkpoint stores them."""
        return self._core.snapshot()

    def close_extras(self, **kwargs: Any) -> None:
        """Drops the Rust vector env, whose stepping threads stop with it (as they do when the
        env is garbage-collected)."""
        self._core = self._obs = self._final_obs = self._rewards = None
        self._terminated = self._truncated = self._finished_return = self._finished_length = None

    def __repr__(self) -> str:
        return f"ShoalVectorEnv({self.spec_id!r}, num_envs={self.num_envs}, num_threads={self.num_threads})"


def _autoreset_mode(value: str | AutoresetMode) -> AutoresetMode:
    """Gymnasium's AutoresetMode from itself, its value (``"NextStep"``) or its name (``"next_step"``)."""
    if isinstance(value, AutoresetMode):
        return value
    for mode in AutoresetMode:
        if value in (mode.value, mode.name, mode.name.lower()):
            return mode
    raise ValueError(f"autoreset_mode {value!r} is not one of: next_step, same_step (gymnasium.vector.AutoresetMode)")


def make_vec(
    env_id: str,
    num_envs: int = 1,
    num_threads: int = 1,
    seed: int | None = None,
    autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    copy: bool = True,
    **options: Any,
) -> ShoalVectorEnv:
    """Builds ``num_envs`` copies of a Shoal env as one Gymnasium vector env, stepped on
    ``num_threads`` threads; ``seed`` seeds the first ``reset()`` called without one."""
    return ShoalVectorEnv(env_id, num_envs, num_threads, seed, autoreset_mode, copy, **options)
