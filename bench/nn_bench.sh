#!/usr/bin/env bash
# Network engine: PyTorch (CPU, 1 thread) and `shoal bench nn` on the same actor-critic,
# run one after the other in this one session, with the speed-up per figure.
#   bench/nn_bench.sh [SECONDS]
# Makes its own venv (bench/.venv-torch) with torch from PyPI (a large download).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-3}"
venv=bench/.venv-torch
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch numpy
cargo build --release -q
for activation in tanh relu; do
  echo "== $activation"
  torch_out=$("$venv/bin/python" bench/nn_peers.py --activation "$activation" --seconds "$seconds")
  shoal_out=$(./target/release/shoal bench nn --activation "$activation" --seconds "$seconds")
  echo "$torch_out" | sed 's/^/torch  /'
  echo "$shoal_out" | sed 's/^/shoal  /'
  for key in ppo_update_batch256_us inference_batch1_us inference_batch16_us inference_batch64_us inference_batch256_us; do
    t=$(echo "$torch_out" | awk -v k="$key:" '$1 == k {print $2}')
    s=$(echo "$shoal_out" | awk -v k="$key:" '$1 == k {print $2}')
    awk -v k="$key" -v t="$t" -v s="$s" 'BEGIN { printf "speedup %-24s %6.1fx  (torch %s us, shoal %s us)\n", k, t / s, t, s }'
  done
done
