#!/usr/bin/env bash
# Convolutional Q-network: PyTorch (CPU, 1 thread) and `shoal bench cnn` on the same network
# (the Nature CNN by default; `--preset minatar` for MinAtar's), alternating runs in this one
# session, with the speed-up per figure and run.
#   bench/cnn_bench.sh [RUNS] [shoal bench cnn flags…]
# Makes its own venv (bench/.venv-torch) with torch from PyPI (a large download).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shift || true
venv=bench/.venv-torch
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch numpy
cargo build --release -q
# The peer takes the same --preset and --actions.
peer_args=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --preset | --actions) peer_args+=("${args[$i]}" "${args[$((i + 1))]}") ;;
  esac
done
for run in $(seq "$runs"); do
  echo "== run $run"
  torch_out=$("$venv/bin/python" bench/cnn_peer.py ${peer_args[@]+"${peer_args[@]}"})
  shoal_out=$(./target/release/shoal bench cnn "$@")
  echo "$torch_out" | sed 's/^/torch  /'
  echo "$shoal_out" | sed 's/^/shoal  /'
  for key in cnn_update_batch32_ms cnn_inference_batch1_ms cnn_inference_batch256_ms; do
    t=$(echo "$torch_out" | awk -v k="$key:" '$1 == k {print $2}')
    s=$(echo "$shoal_out" | awk -v k="$key:" '$1 == k {print $2}')
    awk -v k="$key" -v t="$t" -v s="$s" 'BEGIN { printf "speedup %-26s %5.2fx  (torch %s ms, shoal %s ms)\n", k, t / s, t, s }'
  done
done
