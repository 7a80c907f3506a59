#!/usr/bin/env bash
# Time to solve CartPole-v1 (mean training return over the last 100 episodes >= 475) with PPO:
# Stable-Baselines3 (rl-zoo3 hyperparameters, 1 torch thread) and Shoal (the same
# hyperparameters, configs/cartpole-ppo.toml), 5 seeds each, in this one session.
#   bench/solve_bench.sh [SEEDS]
# Makes its own venv (bench/.venv-torch) with torch, stable-baselines3 and gymnasium from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-5}"
venv=bench/.venv-torch
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch numpy stable-baselines3 "gymnasium==1.4.*"
cargo build --release -q
echo "== stable-baselines3"
sb3=$("$venv/bin/python" bench/solve_peers.py --seeds "$seeds" --threshold 475)
echo "$sb3"
echo "== shoal"
shoal=$(./target/release/shoal bench solve configs/cartpole-ppo.toml --seeds "$seeds" --threshold 475)
echo "$shoal"
a=$(echo "$sb3" | awk '/median_seconds/ {print $NF}')
b=$(echo "$shoal" | awk '/median_seconds/ {print $NF}')
awk -v a="$a" -v b="$b" 'BEGIN { printf "shoal is %.1fx faster than stable-baselines3 (median %.2f s vs %.2f s)\n", a / b, b, a }'
