#!/usr/bin/env python3
"""Search quality of `shoal tune` on a real task: PPO on Acrobot-v1
(configs/tune/acrobot-ppo-tpe.toml: 30 trials, up to 180k env steps each, 2 at a time),
for several study seeds.

- TPE against random search, both with ASHA: the best full-budget result of each study.
- ASHA against FIFO, both with random search: the wall-clock seconds until a trial that ran
  the whole budget ended within 5% of the best full-budget result either study found
  (for Acrobot's negative returns: within 5% of its magnitude).

Reads each study's study.db (jobs with their end times). Prints one line per study and the
medians. A benchmark, not a test: it takes minutes and its figures vary with the machine.

    python3 bench/tune_quality.py --shoal target/release/shoal --seeds 5
"""

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def study_file(tmp: str, seed: int, searcher: str, scheduler: str) -> str:
    text = open(os.path.join(ROOT, "configs/tune/acrobot-ppo-tpe.toml")).read()
    text = text.replace('base = "../acrobot-ppo.toml"', f'base = "{os.path.join(ROOT, "configs/acrobot-ppo.toml")}"')
    text = re.sub(r'^searcher = ".*"', f'searcher = "{searcher}"', text, flags=re.M)
    text = re.sub(r'^scheduler = ".*"', f'scheduler = "{scheduler}"', text, flags=re.M)
    text = re.sub(r"^seed = \d+", f"seed = {seed}", text, flags=re.M)
    path = os.path.join(tmp, f"{searcher}-{scheduler}-{seed}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def run(shoal: str, tmp: str, seed: int, searcher: str, scheduler: str):
    """The study's full-budget results as (seconds since its start, value), in end order."""
    out = os.path.join(tmp, f"study-{searcher}-{scheduler}-{seed}")
    subprocess.run([shoal, "tune", study_file(tmp, seed, searcher, scheduler), "--out", out],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = sqlite3.connect(os.path.join(out, "study.db"))
    start = db.execute("SELECT MIN(started_at) FROM jobs").fetchone()[0]
    budget = db.execute("SELECT MAX(until) FROM jobs").fetchone()[0]
    rows = db.execute(
        "SELECT ended_at - ?, value FROM jobs WHERE ended = 1 AND until = ? AND value IS NOT NULL ORDER BY ended_at",
        (start, budget)).fetchall()
    wall = db.execute("SELECT MAX(ended_at) - MIN(started_at) FROM jobs").fetchone()[0]
    return rows, wall


def time_to(rows, threshold):
    return next((t for t, v in rows if v >= threshold), float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shoal", default=os.path.join(ROOT, "target/release/shoal"))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    tpe_best, random_best, asha_time, fifo_time = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            tpe, tpe_wall = run(args.shoal, tmp, seed, "tpe", "asha")
            rnd, rnd_wall = run(args.shoal, tmp, seed, "random", "asha")
            fifo, fifo_wall = run(args.shoal, tmp, seed, "random", "fifo")
            best = {name: max((v for _, v in rows), default=float("-inf")) for name, rows in
                    [("tpe", tpe), ("random", rnd), ("fifo", fifo)]}
            good = max(best["random"], best["fifo"])
            threshold = good - 0.05 * abs(good)
            t_asha, t_fifo = time_to(rnd, threshold), time_to(fifo, threshold)
            print(f"seed {seed}: best full-budget return TPE {best['tpe']:.1f} ({tpe_wall:.0f} s), "
                  f"random {best['random']:.1f} ({rnd_wall:.0f} s); within 5% of {good:.1f}: "
                  f"ASHA after {t_asha:.1f} s, FIFO after {t_fifo:.1f} s (FIFO study {fifo_wall:.0f} s)", flush=True)
            tpe_best.append(best["tpe"])
            random_best.append(best["random"])
            asha_time.append(t_asha)
            fifo_time.append(t_fifo)
    print(f"median best: TPE {statistics.median(tpe_best):.1f}, random {statistics.median(random_best):.1f}")
    ratio = statistics.median(fifo_time) / statistics.median(asha_time)
    print(f"median time to within 5%: ASHA {statistics.median(asha_time):.1f} s, FIFO {statistics.median(fifo_time):.1f} s "
          f"(FIFO / ASHA = {ratio:.2f})")


if __name__ == "__main__":
    main()
