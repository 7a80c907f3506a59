#!/usr/bin/env python3
"""Optuna's cost per trial with an empty objective, as `shoal bench tune` measures Shoal's:
N trials one at a time, a log-uniform learning rate, the objective a quadratic of it (no
training). Random and TPE samplers, with the study in memory and in SQLite (Shoal keeps its
study in SQLite). Prints `optuna_<sampler>_<storage>_trial_ms: <ms>` lines."""

import argparse
import math
import os
import tempfile
import time

import optuna


def per_trial(sampler_name: str, storage: str, trials: int) -> float:
    sampler = optuna.samplers.RandomSampler(seed=0) if sampler_name == "random" else optuna.samplers.TPESampler(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        url = None if storage == "memory" else "sqlite:///" + os.path.join(tmp, "study.db")
        study = optuna.create_study(direction="maximize", sampler=sampler, storage=url)

        def objective(trial):
            lr = trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True)
            return -((math.log10(lr) + 3.0) ** 2)

        start = time.perf_counter()
        study.optimize(objective, n_trials=trials)
        return (time.perf_counter() - start) * 1e3 / trials


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for sampler in ["random", "tpe"]:
        for storage in ["memory", "sqlite"]:
            print(f"optuna_{sampler}_{storage}_trial_ms: {per_trial(sampler, storage, args.trials):.3f}")


if __name__ == "__main__":
    main()
