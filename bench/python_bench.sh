#!/usr/bin/env bash
# The `shoal` Python package against Python's options, side by side in one run (see
# bench/python_peers.py): make_vec vs EnvPool and Gymnasium's SyncVectorEnv, SB3 PPO on
# shoal.sb3.VecEnv vs its DummyVecEnv, and (with the `python` feature built) the Gymnasium
# bridge's overhead. Makes its own venv with PyTorch (CPU wheels from PyPI, large).
#   bench/python_bench.sh [SECONDS] [SB3_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
sb3_steps="${2:-100000}"
venv=bench/.venv-sb3
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "gymnasium==1.4.*" numpy envpool stable-baselines3 pytest
"$venv/bin/pip" install -q ./python
"$venv/bin/pytest" -q python/tests/test_sb3.py
cargo build --release -q --features python
"$venv/bin/python" -W ignore bench/python_peers.py --seconds "$seconds" --sb3-steps "$sb3_steps" \
  --bridge target/release/shoal
