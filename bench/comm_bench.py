#!/usr/bin/env python3
"""Communication overhead of Shoal's parameter-server modes across real network hops.

For each link speed, mode and compression: three network namespaces on a bridge (the server
in one, a worker in each of the others; scripts/netns.py), every cable rate-limited in both
directions with `tc tbf` (none = the bare veth), and data-parallel PPO on CartPole
(configs/cartpole-ppo-sync.toml, 2 workers, `--set cluster.mode=…` and
`cluster.compression=…`) as three `shoal run` tasks until a deterministic evaluation of 500
(or the env-step budget). Prints one row per run: bytes through the server's cable per env
step (both directions, from the kernel's interface counters), wall-clock seconds to the stop,
env steps, and the result's deterministic evaluation over 20 fresh episodes.

Needs root (namespaces, tc). Benchmarks, not tests: figures vary with the machine's load.

    sudo python3 bench/comm_bench.py --shoal target/release/shoal
    sudo python3 bench/comm_bench.py --shoal target/release/shoal --links 100mbit --modes sync,async
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from netns import Namespaces  # noqa: E402  (the repository's scripts/)

TOKEN = "comm-bench-token-0123456789"


def limit(hosts, rate):
    """Rate-limits every cable in both directions (the host side and the namespace side)."""
    if rate == "none":
        return
    for i in range(1, hosts.count + 1):
        for args in (["dev", hosts.cable(i)], ["-n", hosts.name(i), "dev", hosts.inner(i)]):
            netns = args[:2] if args[0] == "-n" else []
            dev = args[2:] if netns else args
            subprocess.run(
                ["tc", *netns, "qdisc", "replace", *dev, "root", "tbf", "rate", rate, "burst", "256kb", "latency", "200ms"],
                check=True,
            )


def counters(hosts, i):
    """Bytes through namespace i's cable so far (received + sent, at the host side)."""
    stats = Path("/sys/class/net") / hosts.cable(i) / "statistics"
    return int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())


def run_once(hosts, shoal, mode, compression, budget, seed, workdir):
    out = workdir / f"{mode}-{compression}"
    config = str(REPO / "configs/cartpole-ppo-sync.toml")
    sets = [
        f"cluster.mode={mode}",
        f"cluster.compression={compression}",
        f"stop.env_steps={budget}",
        f"seed={seed}",
    ]
    before = counters(hosts, 1)
    start = time.time()
    logs = workdir / f"{mode}-{compression}-logs"
    logs.mkdir()
    codes = hosts.run_shoal(shoal, config, out, [1, 2, 3], sets, logs, TOKEN)
    seconds = time.time() - start
    moved = counters(hosts, 1) - before
    if any(codes):
        return {"mode": mode, "compression": compression, "failed": codes}
    summary = json.loads((out / "summary.json").read_text())
    result = subprocess.run(
        [shoal, "eval", "--deterministic", "--json", "--episodes", "20", str(out)], capture_output=True, text=True
    )
    greedy = json.loads(result.stdout)["episode_return_mean"] if result.returncode == 0 else float("nan")
    return {
        "mode": mode,
        "compression": compression,
        "solved": summary["stop_reason"] == "eval_return_reached",
        "env_steps": summary["env_steps"],
        "seconds": seconds,
        "bytes_per_env_step": moved / max(summary["env_steps"], 1),
        "eval": greedy,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoal", required=True, help="the shoal binary (a release build)")
    parser.add_argument("--links", default="none,100mbit,10mbit", help="tbf rates, comma-separated (none: bare veth)")
    parser.add_argument("--modes", default="sync,async,average,easgd")
    parser.add_argument("--compressions", default="none,f16,int8")
    parser.add_argument("--budget", type=int, default=300_000, help="env-step budget of each run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, tc)")
    shoal = str(Path(args.shoal).resolve())
    print("link     mode     compression  solved  env_steps  seconds  bytes/env_step  eval", flush=True)
    for salt, link in enumerate(args.links.split(",")):
        hosts = Namespaces(3, salt)
        try:
            limit(hosts, link)
            with tempfile.TemporaryDirectory(prefix="shoal-comm-") as tmp:
                for mode in args.modes.split(","):
                    for compression in args.compressions.split(","):
                        row = run_once(hosts, shoal, mode, compression, args.budget, args.seed, Path(tmp))
                        if "failed" in row:
                            print(f"{link:8} {mode:8} {compression:12} failed (exit codes {row['failed']})", flush=True)
                            continue
                        print(
                            f"{link:8} {mode:8} {compression:12} {str(row['solved']):7} {row['env_steps']:9} "
                            f"{row['seconds']:8.1f} {row['bytes_per_env_step']:15.0f} {row['eval']:6.1f}",
                            flush=True,
                        )
        finally:
            hosts.close()


if __name__ == "__main__":
    main()
