#!/usr/bin/env bash
# Env stepping throughput: Gymnasium SyncVectorEnv, EnvPool and Shoal on CartPole-v1,
# 256 envs, 2 threads, measured one after another in this one run. Makes its own venv.
#   bench/env_bench.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
venv=bench/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "gymnasium==1.4.*" envpool numpy
cargo build --release -q
peers=$("$venv/bin/python" bench/env_peers.py --num-envs 256 --threads 2 --seconds "$seconds")
echo "$peers"
shoal=$(./target/release/shoal bench env --env CartPole-v1 --num-envs 256 --threads 2 --seconds "$seconds" | tail -1)
echo "shoal_${shoal}"
gym=$(echo "$peers" | awk '/gymnasium_sync/ {print $2}')
pool=$(echo "$peers" | awk '/envpool/ {print $2}')
ours=$(echo "$shoal" | awk '{print $2}')
awk -v g="$gym" -v p="$pool" -v s="$ours" 'BEGIN {
  printf "shoal / gymnasium_sync: %.1fx\n", s / g
  printf "shoal / envpool: %.1fx\n", s / p
}'
