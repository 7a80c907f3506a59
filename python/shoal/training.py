"""`shoal.train` and `shoal.load`: training runs and trained policies from Python."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from shoal import _shoal


@dataclass(frozen=True)
class TrainResult:
    """Where a run was saved, and its ``summary.json`` (env steps, wall time, returns, stop reason)."""

    run_dir: Path
    summary: dict[str, Any]


def train(
    config: str | os.PathLike[str] | Mapping[str, Any],
    *,
    seed: int | None = None,
    out: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Trains an agent in this process, exactly as ``shoal train`` does, into a run directory
    (``out``, or ``runs/<name>-s<seed>``) that ``shoal eval``, ``shoal plot``, ``--resume`` and
    :func:`load` read.

    ``config`` is a TOML file (e.g. ``configs/cartpole-ppo.toml``) or the same content as a dict
    (``{"algo": "ppo", "env": {"id": "CartPole-v1"}, ...}``); ``overrides`` are ``--set`` items
    (``"ppo.learning_rate=3e-4"``). ``callback`` receives each iteration's progress (env steps,
    ``episode_return_mean``, losses, …); returning ``False`` stops training. Ctrl-C stops it
    too, after the final checkpoint is written, and raises ``KeyboardInterrupt``.
    """
    if isinstance(config, Mapping):
        path, text = None, json.dumps(config)
    elif isinstance(config, (str, os.PathLike)):
        path, text = os.fspath(config), None
    else:
        raise TypeError(f"config must be a path to a TOML file or a dict, got {type(config).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    run_dir, summary = _shoal.train(
        config_path=path,
        config_json=text,
        overrides=[str(o) for o in overrides],
        seed=seed,
        out=None if out is None else os.fspath(out),
        callback=callback,
    )
    return TrainResult(Path(run_dir), summary)


class Policy:
    """A trained agent loaded from a run directory: ``predict`` and ``evaluate`` without any
    training code (and without PyTorch)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._core = _shoal.Policy(os.fspath(path))

    @property
    def env_id(self) -> str:
        return self._core.env_id

    @property
    def algo(self) -> str:
        return self._core.algo

    @property
    def checkpoint(self) -> Path:
        return Path(self._core.checkpoint)

    def predict(self, obs: Any, deterministic: bool = True) -> Any:
        """Actions for a batch of observations ``[rows, obs_dim]`` (or one observation): int64
        indices for Discrete action spaces, float32 ``[rows, action_dim]`` otherwise. Greedy /
        mean actions when ``deterministic``, sampled as in training otherwise."""
        rows = np.ascontiguousarray(np.asarray(obs, dtype=np.float32))
        return self._core.predict(rows, deterministic)

    def evaluate(self, episodes: int = 10, deterministic: bool = True, seed: int = 1_000_000) -> dict[str, Any]:
        """Runs whole episodes (seeded ``seed``, ``seed + 1``, …) and reports return mean/std/min/max,
        length and success rate, as ``shoal eval --json`` prints them."""
        return self._core.evaluate(episodes, deterministic, seed)

    def __repr__(self) -> str:
        return f"shoal.Policy({self.algo} on {self.env_id}, from {self.checkpoint})"


def load(path: str | os.PathLike[str]) -> Policy:
    """Loads a run directory (or one of its checkpoint directories) as a :class:`Policy`."""
    return Policy(path)
