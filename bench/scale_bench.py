#!/usr/bin/env python3
"""Env steps per second of A3C workers and Ape-X actors spread over 1, 2 and 3 hosts.

Each host is a network namespace on a bridge (scripts/netns.py). Host 1 holds the servers
(the parameter server; for Ape-X also the replay and the learner); every worker or actor gets
a host of its own, so 1, 2, 3 of them run on 1, 2, 3 further hosts. Each run is `shoal run` on
every task with a fixed env-step budget and no evaluation stop; the figure is the env steps
the parameter server counted per second of training (from its metrics.csv: start-up and the
linger after the stop left out). On a 2-core machine the hosts share the cores, so the figures
say what the network path costs, not how a real cluster scales.

    sudo python3 bench/scale_bench.py --shoal target/release/shoal
"""

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from netns import Namespaces  # noqa: E402  (the repository's scripts/)

TOKEN = "scale-bench-token-0123456789"

# (name, config, servers on host 1 before the workers, budget)
RUNS = [
    ("A3C", "cartpole-a3c.toml", 1, 2_000_000),
    ("Ape-X", "cartpole-apex.toml", 3, 100_000),
]


def training_span(metrics):
    """Env steps and seconds between the server's first report of env steps and the one
    that reached the final count (its metrics.csv rows, every 0.5 s): start-up and the
    linger after the stop left out."""
    rows = list(csv.DictReader(open(metrics)))
    points = [(float(r["wall_seconds"]), int(float(r["env_steps"]))) for r in rows]
    final = max(steps for _, steps in points)
    start = next((t, s) for t, s in points if s > 0)
    end = next((t, s) for t, s in points if s == final)
    return end[1] - start[1], max(end[0] - start[0], 1e-9)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoal", required=True, help="the shoal binary (a release build)")
    parser.add_argument("--workers", default="1,2,3", help="worker/actor counts, comma-separated")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    shoal = str(Path(args.shoal).resolve())
    counts = [int(n) for n in args.workers.split(",")]
    print("algorithm  workers  hosts  env_steps  seconds  env_steps_per_sec", flush=True)
    hosts = Namespaces(1 + max(counts))
    try:
        with tempfile.TemporaryDirectory(prefix="shoal-scale-") as tmp:
            for name, config, servers, budget in RUNS:
                for workers in counts:
                    out = Path(tmp) / f"{name}-{workers}"
                    logs = Path(tmp) / f"{name}-{workers}-logs"
                    logs.mkdir()
                    sets = [f"cluster.workers={workers}", f"stop.env_steps={budget}", "stop.eval_return_mean=1e9"]
                    placement = [1] * servers + [2 + w for w in range(workers)]
                    codes = hosts.run_shoal(shoal, str(REPO / "configs" / config), out, placement, sets, str(logs), TOKEN)
                    if any(codes):
                        print(f"{name:10} {workers:7}  failed (exit codes {codes}); logs in {logs}", flush=True)
                        continue
                    steps, seconds = training_span(out / "metrics.csv")
                    print(
                        f"{name:10} {workers:7} {1 + workers:6} {steps:10} {seconds:8.1f} {steps / seconds:18.0f}",
                        flush=True,
                    )
    finally:
        hosts.close()


if __name__ == "__main__":
    main()
