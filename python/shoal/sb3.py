"""A Stable-Baselines3 ``VecEnv`` over Shoal's vector env: ``shoal.sb3.VecEnv("CartPole-v1", 8)``.

Needs ``stable-baselines3`` (``pip install ./python[sb3]``). SB3's conventions: 4-tuple steps,
``dones`` as ``terminated | truncated``, the finished episode's last observation in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` for bootstrapping,
and ``infos[i]["episode"]`` (``r``, ``l``, ``t``) as SB3's ``Monitor`` writes it, so SB3 logs
``rollout/ep_rew_mean`` without a wrapper.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

try:
    from stable_baselines3.common.vec_env import VecEnv as _Sb3VecEnv
except ImportError as err:  # pragma: no cover - depends on the user's environment
    raise ImportError("shoal.sb3 needs stable-baselines3: pip install stable-baselines3 (or ./python[sb3])") from err

from shoal import _shoal
from shoal.spaces import flat_actions, rows_to_obs, to_gym


class VecEnv(_Sb3VecEnv):
    """``num_envs`` copies of a Shoal env stepped in Rust on ``num_threads`` threads, with
    same-step auto-reset (SB3's)."""

    def __init__(self, env_id: str, num_envs: int, num_threads: int = 1, **options: Any) -> None:
        self._core = _shoal.VecEnv(env_id, num_envs, num_threads, "same_step", options or None)
        super().__init__(num_envs, to_gym(self._core.observation_space), to_gym(self._core.action_space))
        self.env_id = env_id
        self._rows = self._core.obs
        self._final_rows = self._core.final_obs
        self._actions: np.ndarray | None = None
        self._start = time.time()

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        if seed is not None and any(s != seed + i for i, s in enumerate(self._seeds)):
            raise ValueError("Shoal seeds env i with seed + i; seed the VecEnv with one int (env.seed(seed))")
        self._core.reset(seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return rows_to_obs(self.observation_space, self._rows, self.num_envs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = flat_actions(self.action_space, actions)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        self._core.step(self._actions)
        self._actions = None
        terminated = self._core.terminated.copy()
        truncated = self._core.truncated.copy()
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            elapsed = round(time.time() - self._start, 6)
            returns, lengths = self._core.finished_return, self._core.finished_length
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = rows_to_obs(self.observation_space, self._final_rows[i], None)
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                infos[i]["episode"] = {"r": float(returns[i]), "l": int(lengths[i]), "t": elapsed}
        obs = rows_to_obs(self.observation_space, self._rows, self.num_envs)
        return obs, self._core.rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self._core = self._rows = self._final_rows = None

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Attributes are the same for every env of a Shoal vector env (``render_mode``: None)."""
        value = None if attr_name == "render_mode" else getattr(self, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"Shoal envs live in Rust; cannot set {attr_name!r} on them (pass env options instead)")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        raise AttributeError(f"Shoal envs live in Rust; they have no Python method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)
