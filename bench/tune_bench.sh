#!/usr/bin/env bash
# The tuner's cost per trial, side by side in one run: `shoal bench tune` (empty trials and
# one-iteration trials, random and TPE) and Optuna with an empty objective (bench/tune_peers.py,
# study in memory and in SQLite), 100 trials each, then the ratios. Makes its own venv
# (bench/.venv-optuna) with Optuna from PyPI.
#
#   bash bench/tune_bench.sh [trials]
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-100}
venv=bench/.venv-optuna
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "optuna==4.*"
cargo build --release -q
shoal_out=$(target/release/shoal bench tune --trials "$trials")
optuna_out=$("$venv/bin/python" bench/tune_peers.py --trials "$trials")
echo "$shoal_out"
echo "$optuna_out"
figure() { echo "$1" | awk -v k="$2:" '$1 == k { print $2 }'; }
for sampler in random tpe; do
  shoal_ms=$(figure "$shoal_out" "tune_${sampler}_empty_trial_ms")
  for storage in memory sqlite; do
    optuna_ms=$(figure "$optuna_out" "optuna_${sampler}_${storage}_trial_ms")
    awk -v s="$shoal_ms" -v o="$optuna_ms" -v n="$sampler" -v st="$storage" \
      'BEGIN { printf "overhead_%s_shoal_vs_optuna_%s: %.2f (Shoal %.3f ms, Optuna %.3f ms per trial; below 1 = Shoal cheaper)\n", n, st, s / o, s, o }'
  done
done
