#!/usr/bin/env bash
# Env stepping throughput: Gymnasium SyncVectorEnv, EnvPool and Shoal on CartPole-v1,
# 256 envs, 2 threads, measured in this one run. Makes its own venv. EnvPool and Shoal
# alternate for ROUNDS rounds (this VM's speed drifts by tens of percent within minutes, so
# each round's ratio compares neighbours); the last line is the median round's ratio.
#   bench/env_bench.sh [SECONDS] [ROUNDS]      (default: 5 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
rounds="${2:-3}"
venv=bench/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "gymnasium==1.4.*" envpool numpy
cargo build --release -q
peer() { "$venv/bin/python" bench/env_peers.py --num-envs 256 --threads 2 --seconds "$seconds" --peers "$1"; }
shoal() {
  ./target/release/shoal bench env --env CartPole-v1 --num-envs 256 --threads 2 --seconds "$seconds" |
    awk '/env_steps_per_sec/ {print $2}'
}
gym=$(peer gymnasium_sync | awk '{print $2}')
echo "gymnasium_sync_steps_per_sec: $gym"
ratios=()
for round in $(seq "$rounds"); do
  pool=$(peer envpool | awk '{print $2}')
  ours=$(shoal)
  ratio=$(awk -v s="$ours" -v p="$pool" 'BEGIN {printf "%.1f", s / p}')
  ratios+=("$ratio")
  echo "round $round: envpool_steps_per_sec: $pool shoal_env_steps_per_sec: $ours shoal / envpool: ${ratio}x" \
    "shoal / gymnasium_sync: $(awk -v s="$ours" -v g="$gym" 'BEGIN {printf "%.1f", s / g}')x"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
echo "shoal / envpool, median of $rounds rounds: ${median}x"
