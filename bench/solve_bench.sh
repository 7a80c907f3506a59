#!/usr/bin/env bash
# Time to solve CartPole-v1 with Stable-Baselines3 (rl-zoo3 hyperparameters, 1 torch thread)
# and Shoal, 5 seeds each, the same criterion and budget, in this one session:
# - PPO (configs/cartpole-ppo.toml): mean training return over the last 100 episodes >= 475,
#   300k env steps;
# - DQN (configs/cartpole-dqn.toml): a deterministic 10-episode evaluation every 5000 env steps
#   >= 475 (DQN's training episodes explore), 100k env steps.
#   bench/solve_bench.sh [SEEDS] [ALGOS]     e.g. bench/solve_bench.sh 5 "ppo dqn"
# Makes its own venv (bench/.venv-torch) with torch, stable-baselines3 and gymnasium from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-5}"
algos="${2:-ppo dqn}"
venv=bench/.venv-torch
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch numpy stable-baselines3 "gymnasium==1.4.*"
cargo build --release -q

# compare NAME "PEER ARGS" "SHOAL ARGS": both sides, then the ratio of the median times.
compare() {
  echo "== $1: stable-baselines3"
  sb3=$("$venv/bin/python" bench/solve_peers.py --seeds "$seeds" --threshold 475 $2)
  echo "$sb3"
  echo "== $1: shoal"
  shoal=$(./target/release/shoal bench solve --seeds "$seeds" --threshold 475 $3)
  echo "$shoal"
  a=$(echo "$sb3" | awk '/median_seconds/ {print $NF}')
  b=$(echo "$shoal" | awk '/median_seconds/ {print $NF}')
  awk -v n="$1" -v a="${a:-nan}" -v b="${b:-nan}" \
    'BEGIN { printf "%s: shoal is %.1fx faster than stable-baselines3 (median %.2f s vs %.2f s)\n", n, a / b, b, a }'
}

for algo in $algos; do
  case "$algo" in
    ppo) compare PPO "--algo ppo --timesteps 300000" "configs/cartpole-ppo.toml" ;;
    dqn) compare DQN "--algo dqn --timesteps 100000" \
           "configs/cartpole-dqn.toml --criterion eval --set stop.eval_every=5000" ;;
    *) echo "unknown algo $algo (ppo, dqn)" >&2; exit 2 ;;
  esac
done
