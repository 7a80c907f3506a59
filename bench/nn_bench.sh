#!/usr/bin/env bash
# Network engine: PyTorch (CPU) and `shoal bench nn` on the same actor-critic, at 1 and 2
# threads each, run one after the other in this one session, with the speed-up per figure.
#   bench/nn_bench.sh [SECONDS]
# Makes its own venv (bench/.venv-torch) with torch from PyPI (a large download).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-3}"
venv=bench/.venv-torch
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch numpy
cargo build --release -q
# CartPole's PPO shape, and the width SAC, TD3 and DQN configs use; each with 1 thread on both
# sides, then 2 (Shoal: actor and critic side by side; PyTorch: intra-op threads).
for shape in "tanh 64,64" "relu 256,256"; do
  read -r activation hidden <<<"$shape"
  for threads in 1 2; do
    echo "== $activation $hidden, $threads thread(s)"
    torch_out=$("$venv/bin/python" bench/nn_peers.py --activation "$activation" --hidden "$hidden" --threads "$threads" --seconds "$seconds")
    shoal_out=$(./target/release/shoal bench nn --activation "$activation" --hidden "$hidden" --threads "$threads" --seconds "$seconds")
    echo "$torch_out" | sed 's/^/torch  /'
    echo "$shoal_out" | sed 's/^/shoal  /'
    for key in ppo_update_batch256_us inference_batch1_us inference_batch16_us inference_batch64_us inference_batch256_us; do
      t=$(echo "$torch_out" | awk -v k="$key:" '$1 == k {print $2}')
      s=$(echo "$shoal_out" | awk -v k="$key:" '$1 == k {print $2}')
      awk -v k="$key" -v t="$t" -v s="$s" 'BEGIN { printf "speedup %-24s %6.1fx  (torch %s us, shoal %s us)\n", k, t / s, t, s }'
    done
  done
done
