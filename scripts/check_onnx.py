#!/usr/bin/env python3
"""Runs an ONNX model `shoal export --onnx MODEL --samples N` wrote in ONNX Runtime and
compares its outputs and actions with Shoal's for the same observations (MODEL.samples.json).

    pip install onnxruntime numpy
    python scripts/check_onnx.py MODEL [--tolerance 1e-5] [--max-differing 0.01]

Outputs must agree within `tolerance · max(1, |shoal's value|)`; discrete actions must be
equal except where Shoal's two best outputs are within the tolerance (a tie either may break).
An int8 model (QDQ) computes the same integers as Shoal's int8 path, except where a value
lies within float rounding of a quantization boundary and the two round it to neighbouring
steps: `--max-differing F` lets that share of the states differ (outputs and actions).
Prints the largest difference; exits 1 on a mismatch.
"""

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--max-differing", type=float, default=0.0)
    args = parser.parse_args()
    with open(args.model + ".samples.json") as f:
        samples = json.load(f)
    rows, obs_dim, out_dim = samples["rows"], samples["obs_dim"], samples["out_dim"]
    obs = np.asarray(samples["obs"], dtype=np.float32).reshape(rows, obs_dim)
    expected = np.asarray(samples["outputs"], dtype=np.float32).reshape(rows, out_dim)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    outputs, actions = session.run(["outputs", "action"], {"obs": obs})
    error = np.abs(outputs - expected) / np.maximum(1.0, np.abs(expected))
    worst = float(error.max())
    beyond = error.max(axis=1) > args.tolerance
    allowed = int(args.max_differing * rows)
    print(
        f"{rows} states: largest output difference {worst:.3g} (relative, tolerance {args.tolerance:g}); "
        f"{int(beyond.sum())} states beyond it (at most {allowed} allowed)"
    )
    if beyond.sum() > allowed:
        print(f"mismatch at row {int(error.max(axis=1).argmax())}", file=sys.stderr)
        return 1
    shoal_actions = np.asarray(samples["actions"], dtype=np.float32).reshape(rows, -1)
    if actions.dtype == np.int64:
        ranked = np.sort(expected, axis=1)
        tie = (ranked[:, -1] - ranked[:, -2]) <= args.tolerance * np.maximum(1.0, np.abs(ranked[:, -1]))
        differ = (actions != shoal_actions[:, 0].astype(np.int64)) & ~tie
    else:
        differ = (np.abs(actions - shoal_actions) > args.tolerance * np.maximum(1.0, np.abs(shoal_actions))).any(axis=1)
    if differ.sum() > allowed:
        print(f"{int(differ.sum())} actions differ, first at row {int(differ.argmax())}", file=sys.stderr)
        return 1
    print(f"actions agree ({int(differ.sum())} of {rows} differ)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
