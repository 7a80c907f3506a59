"""Shoal's space descriptions (plain dicts from the Rust side) as Gymnasium spaces, and the
conversions between Shoal's flat float32 rows and the values Gymnasium users expect."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


def to_gym(description: dict[str, Any]) -> spaces.Space:
    """The Gymnasium space for a description from `shoal._shoal` (Discrete, Box, MultiDiscrete)."""
    kind = description["type"]
    if kind == "discrete":
        return spaces.Discrete(description["n"], start=description["start"])
    if kind == "box":
        shape = tuple(description["shape"])
        low = np.asarray(description["low"], dtype=np.float32).reshape(shape)
        high = np.asarray(description["high"], dtype=np.float32).reshape(shape)
        return spaces.Box(low=low, high=high, shape=shape, dtype=np.float32)
    if kind == "multi_discrete":
        return spaces.MultiDiscrete(np.asarray(description["nvec"], dtype=np.int64))
    raise ValueError(f"unknown space type {kind!r} from shoal._shoal")


def rows_to_obs(space: spaces.Space, rows: np.ndarray, batch: int | None) -> Any:
    """Shoal's `[batch, flat_dim]` float32 rows (or one row) as observations of `space`:
    integers for Discrete and MultiDiscrete, the Box's shape otherwise. Always a new array."""
    if isinstance(space, spaces.Discrete):
        values = rows.reshape(-1).astype(np.int64)
        return values if batch is not None else np.int64(values[0])
    if isinstance(space, spaces.MultiDiscrete):
        shape = space.shape if batch is None else (batch, *space.shape)
        return rows.astype(np.int64).reshape(shape)
    shape = space.shape if batch is None else (batch, *space.shape)
    return np.array(rows, dtype=np.float32, copy=True).reshape(shape)


def flat_actions(space: spaces.Space, actions: Any) -> np.ndarray:
    """Actions of `space` (one or a batch) as the flat contiguous array Shoal steps with:
    int64 for Discrete and MultiDiscrete, float32 for Box."""
    dtype = np.float32 if isinstance(space, spaces.Box) else np.int64
    if type(actions) is np.ndarray and actions.dtype == dtype and actions.ndim == 1 and actions.flags.c_contiguous:
        return actions  # already what Shoal steps with (the common case): no call into NumPy
    return np.ascontiguousarray(np.asarray(actions, dtype=dtype).reshape(-1))
