"""Shoal from Python: Shoal's Gymnasium-exact envs as fast vector envs, training, and trained
policies.

- :func:`make_vec`: a ``gymnasium.vector.VectorEnv`` stepped in Rust on several threads.
- :func:`make`: one env as a ``gymnasium.Env``.
- :mod:`shoal.sb3`: a Stable-Baselines3 ``VecEnv`` (``shoal.sb3.VecEnv``).
- :func:`train`: ``shoal train`` in this process; :func:`load`: a trained run for ``predict``.

Errors keep Shoal's messages: bad arguments raise ``ValueError`` or ``TypeError``.
"""

from shoal._shoal import __version__
from shoal.env import ShoalEnv, make
from shoal.training import Policy, TrainResult, load, train
from shoal.vector import ShoalVectorEnv, make_vec


def env_ids() -> list[str]:
    """Every env id Shoal knows (its built-ins, with Gymnasium's ids)."""
    from shoal._shoal import env_ids as ids

    return ids()


__all__ = [
    "__version__",
    "ShoalEnv",
    "ShoalVectorEnv",
    "Policy",
    "TrainResult",
    "env_ids",
    "load",
    "make",
    "make_vec",
    "train",
]
