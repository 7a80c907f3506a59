#!/usr/bin/env bash
# Shoal's SAC against Stable-Baselines3's SAC on MuJoCo's HalfCheetah-v5 (Gymnasium, pip
# `mujoco`, no download), side by side in one run: same settings (rl-zoo3's), same budget,
# same seeds; SB3 on one torch thread (TORCH_THREADS to change), Shoal's SAC with the config's
# `net.threads = 2` (twin critics side by side); each run then evaluated on 10
# deterministic episodes. Makes its own venv (PyTorch CPU wheels from PyPI, large).
#   bench/mujoco_bench.sh [ENV_STEPS] [SEEDS...]        (default: 200000 1)
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-200000}"
shift || true
seeds=("${@:-1}")
venv=bench/.venv-sb3
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "gymnasium[mujoco]==1.4.*" stable-baselines3
cargo build --release -q --features python
out=$(mktemp -d)
echo "| peer | seed | env steps | train seconds | eval return (10 ep.) |"
echo "| --- | --- | --- | --- | --- |"
for seed in "${seeds[@]}"; do
  run="$out/shoal-s$seed"
  VIRTUAL_ENV="$PWD/$venv" target/release/shoal train configs/halfcheetah-sac.toml --seed "$seed" \
    --set "stop.env_steps=$steps" --set "run.checkpoint_every=$steps" --out "$run" > "$run.log" 2>&1
  shoal_secs=$(python3 -c "import json; print(json.load(open('$run/summary.json'))['wall_seconds'])")
  shoal_eval=$(VIRTUAL_ENV="$PWD/$venv" target/release/shoal eval "$run" --deterministic --episodes 10 --json \
    2>> "$run.log")
  sb3=$("$venv/bin/python" -W ignore bench/sac_peer.py --steps "$steps" --seed "$seed" \
    --torch-threads "${TORCH_THREADS:-1}" 2>> "$out/sb3.log")
  python3 - "$seed" "$steps" "$shoal_secs" "$shoal_eval" "$sb3" <<'PY'
import json, sys
seed, steps, shoal_secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
shoal, sb3 = json.loads(sys.argv[4]), json.loads(sys.argv[5])
print(f"| shoal | {seed} | {steps} | {shoal_secs:.1f} | {shoal['episode_return_mean']:.1f} ± {shoal['episode_return_std']:.1f} |")
print(f"| sb3 | {seed} | {steps} | {sb3['train_seconds']:.1f} | {sb3['eval_mean']:.1f} ± {sb3['eval_std']:.1f} |")
print(f"seed {seed}: Shoal {sb3['train_seconds'] / shoal_secs:.2f}x faster; return {shoal['episode_return_mean']:.1f} vs {sb3['eval_mean']:.1f}")
PY
done
rm -rf "$out"
