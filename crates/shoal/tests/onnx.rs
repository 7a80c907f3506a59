//! `shoal export --onnx` against a real ONNX runtime: ONNX Runtime (PyPI `onnxruntime`, in the
//! Python that `VIRTUAL_ENV` names — `.ci/run` installs it) runs the exported policy on 1,000
//! states the policy visits and must give Shoal's outputs within 1e-5 (relative above 1) and
//! its actions: a tanh PPO policy (CartPole), a relu Q-network (CartPole DQN) and a Gaussian
//! policy with observation normalization and clamped actions (Pendulum PPO) — in f32, and
//! after `shoal optimize --quantize int8` in QDQ form, where at most 1 % of the states may
//! differ (a value within float rounding of a quantization boundary, rounded to the
//! neighbouring step by one of the two).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal")).args(args).output().expect("run shoal")
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn python() -> PathBuf {
    let venv = std::env::var("VIRTUAL_ENV").expect(
        "set VIRTUAL_ENV to a venv with onnxruntime and numpy (pip install onnxruntime numpy), as .ci/run does",
    );
    Path::new(&venv).join("bin/python")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn onnx_runtime_gives_shoals_outputs_for_exported_policies() {
    let dir = tempfile::tempdir().unwrap();
    for (config, sets) in [
        ("cartpole-ppo.toml", &["stop.env_steps=20000"][..]),
        ("cartpole-dqn.toml", &["stop.env_steps=5000"][..]),
        ("pendulum-ppo.toml", &["stop.env_steps=20000", "ppo.normalize.obs=true"][..]),
    ] {
        let run = dir.path().join(config);
        let run_arg = run.to_str().unwrap();
        let config_path = repo().join("configs").join(config);
        let mut args = vec!["train", config_path.to_str().unwrap(), "--out", run_arg];
        for set in sets {
            args.extend(["--set", set]);
        }
        ok(shoal(&args));
        export_and_check(&run, "f32", &[]);
        let int8 = dir.path().join(format!("{config}-int8"));
        let int8_arg = int8.to_str().unwrap();
        ok(shoal(&["optimize", run_arg, "--quantize", "int8", "--episodes", "2", "--out", int8_arg]));
        export_and_check(&int8, "int8 in QDQ form", &["--max-differing", "0.01"]);
    }
}

/// Exports `run` with 1,000 samples and runs `scripts/check_onnx.py` on it (`check_args`).
fn export_and_check(run: &Path, kind: &str, check_args: &[&str]) {
    let model = run.join("policy.onnx");
    let printed = ok(shoal(&["export", run.to_str().unwrap(), "--onnx", model.to_str().unwrap(), "--samples", "1000"]));
    assert!(printed.contains("1000 visited states") && printed.contains(kind), "{printed}");
    let check = Command::new(python())
        .arg(repo().join("scripts/check_onnx.py"))
        .arg(&model)
        .args(check_args)
        .output()
        .expect("run scripts/check_onnx.py");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}: {report}{}", run.display(), String::from_utf8_lossy(&check.stderr));
    eprintln!("{} ({kind}): {report}", run.display());
}

#[test]
fn a_tabular_run_is_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("q");
    let config = repo().join("configs/frozenlake-q.toml");
    ok(shoal(&["train", config.to_str().unwrap(), "--set", "stop.env_steps=1000", "--out", run.to_str().unwrap()]));
    let model = dir.path().join("q.onnx");
    let output = shoal(&["export", run.to_str().unwrap(), "--onnx", model.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("q_learning"));
    assert!(!model.exists());
}
