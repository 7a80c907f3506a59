#!/usr/bin/env bash
# Shoal's DQN and PPO against Stable-Baselines3's on MinAtar Breakout (pip `minatar`), side by
# side in one run: the settings of configs/minatar-breakout-{dqn,ppo}.toml on both sides
# (MinAtar's network; DQN exploring over 100k steps), same budget, same seeds; SB3 on one
# torch thread, Shoal's DQN on one network thread and its PPO on two (the config's
# `net.threads = 2`; TORCH_THREADS=2 gives SB3 two as well); each run then evaluated on 20 deterministic
# episodes. Then IMPALA with 2 actor processes for PPO's wall-clock: env steps/s and return.
# Makes its own venv (PyTorch CPU wheels from PyPI, large).
#   bench/minatar_bench.sh [DQN_STEPS] [PPO_STEPS] [SEEDS...]     (default: 200000 500000 1)
# ALGOS picks the rows (default "dqn ppo impala"; impala runs for PPO's wall-clock, so it
# needs ppo), e.g. ALGOS=ppo bench/minatar_bench.sh 0 500000 1 2 3. TORCH_THREADS gives SB3
# more than one torch thread. Each row's curves, Shoal's and SB3's in one PNG:
# bench/results/minatar-breakout-ALGO-sSEED.png.
set -euo pipefail
cd "$(dirname "$0")/.."
dqn_steps="${1:-200000}"
ppo_steps="${2:-500000}"
shift 2 || true
seeds=("${@:-1}")
algos="${ALGOS:-dqn ppo impala}"
torch_threads="${TORCH_THREADS:-1}"
venv=bench/.venv-sb3
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "gymnasium==1.4.*" minatar stable-baselines3
cargo build --release -q --features python
out=$(mktemp -d)
export VIRTUAL_ENV="$PWD/$venv"
shoal() { target/release/shoal "$@"; }
echo "| algo | peer | seed | env steps | train seconds | env steps/s | eval return (20 ep.) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for seed in "${seeds[@]}"; do
  for algo in $algos; do
    [ "$algo" = impala ] && continue
    steps=$([ "$algo" = dqn ] && echo "$dqn_steps" || echo "$ppo_steps")
    sets=(--set "stop.env_steps=$steps" --set "run.checkpoint_every=$steps")
    [ "$algo" = dqn ] && sets+=(--set "dqn.exploration_fraction=$(python3 -c "print(min(1.0, 100000 / $steps))")")
    run="$out/$algo-s$seed"
    shoal train "configs/minatar-breakout-$algo.toml" --seed "$seed" "${sets[@]}" --out "$run" > "$run.log" 2>&1
    shoal_eval=$(shoal eval "$run" --deterministic --episodes 20 --json 2>> "$run.log")
    sb3=$("$venv/bin/python" -W ignore bench/minatar_peer.py --algo "$algo" --steps "$steps" --seed "$seed" \
      --torch-threads "$torch_threads" --curve "$out/sb3-$algo-s$seed" 2>> "$out/sb3.log")
    mkdir -p bench/results
    shoal plot "$run" "$out/sb3-$algo-s$seed" --out "bench/results/minatar-breakout-$algo-s$seed.png" > /dev/null
    python3 - "$algo" "$seed" "$steps" "$run/summary.json" "$shoal_eval" "$sb3" <<'PY'
import json, sys
algo, seed, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
summary, shoal, sb3 = json.load(open(sys.argv[4])), json.loads(sys.argv[5]), json.loads(sys.argv[6])
secs = summary["wall_seconds"]
print(f"| {algo} | shoal | {seed} | {steps} | {secs:.1f} | {steps / secs:.0f} | {shoal['episode_return_mean']:.2f} ± {shoal['episode_return_std']:.2f} |")
print(f"| {algo} | sb3 | {seed} | {steps} | {sb3['train_seconds']:.1f} | {steps / sb3['train_seconds']:.0f} | {sb3['eval_mean']:.2f} ± {sb3['eval_std']:.2f} |")
print(f"{algo} seed {seed}: Shoal {sb3['train_seconds'] / secs:.2f}x faster; return {shoal['episode_return_mean']:.2f} vs {sb3['eval_mean']:.2f}")
PY
  done
  [[ " $algos " == *" impala "* ]] || continue
  # IMPALA, 2 actor processes, for as long as PPO trained.
  ppo_secs=$(python3 -c "import json; print(json.load(open('$out/ppo-s$seed/summary.json'))['wall_seconds'])")
  run="$out/impala-s$seed"
  shoal train configs/minatar-breakout-impala.toml --seed "$seed" --set cluster.topology=processes \
    --set "stop.wall_seconds=$ppo_secs" --set "stop.env_steps=100000000" --out "$run" > "$run.log" 2>&1
  impala_eval=$(shoal eval "$run" --deterministic --episodes 20 --json 2>> "$run.log")
  python3 - "$seed" "$run/summary.json" "$impala_eval" <<'PY'
import json, sys
summary, ev = json.load(open(sys.argv[2])), json.loads(sys.argv[3])
print(f"impala (2 actor processes) seed {sys.argv[1]}: {summary['env_steps']} env steps in {summary['wall_seconds']:.1f} s "
      f"({summary['env_steps_per_sec']:.0f}/s), eval {ev['episode_return_mean']:.2f} ± {ev['episode_return_std']:.2f}")
PY
done
echo "runs kept in $out"
