//! `shoal envs` and `shoal rollout`, run as a user runs them.

use std::process::{Command, Output};

use serde_json::Value;
use shoal_env::{make, Action};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal")).args(args).output().expect("run shoal")
}

fn stdout_lines(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn envs_lists_every_registered_env_with_its_spaces() {
    let out = shoal(&["envs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for id in [
        "CartPole-v1",
        "MountainCar-v0",
        "MountainCarContinuous-v0",
        "Pendulum-v1",
        "Acrobot-v1",
        "FrozenLake-v1",
        "FrozenLake8x8-v1",
        "CliffWalking-v1",
        "CliffWalkingSlippery-v1",
        "Taxi-v4",
    ] {
        assert!(text.contains(id), "missing {id} in:\n{text}");
    }
    assert!(text.contains("Discrete(2)") && text.contains("Box(-2.0, 2.0, (1,), float32)"), "{text}");
    let json = stdout_lines(&shoal(&["envs", "--json"]));
    let cartpole = json.iter().find(|v| v["id"] == "CartPole-v1").unwrap();
    assert_eq!(cartpole["max_episode_steps"], 500);
    assert_eq!(cartpole["action_space"], "Discrete(2)");
}

#[test]
fn rollout_prints_reset_then_steps_and_is_reproducible() {
    let args = ["rollout", "--env", "CartPole-v1", "--seed", "3", "--steps", "40"];
    let lines = stdout_lines(&shoal(&args));
    assert_eq!(lines, stdout_lines(&shoal(&args)), "same seed, same output");
    assert_eq!(lines[0]["reset_obs"].as_array().unwrap().len(), 4);

    // Replay the printed actions through the library: same observations and flags.
    let mut env = make("CartPole-v1").unwrap();
    let mut obs = [0.0f32; 4];
    env.reset(Some(3), &mut obs).unwrap();
    let mut steps = 0;
    for line in &lines[1..] {
        if let Some(reset) = line.get("reset_obs") {
            env.reset(None, &mut obs).unwrap();
            assert_eq!(reset.as_array().unwrap().len(), 4);
            continue;
        }
        assert_eq!(line["step"], steps);
        let r = env.step(Action::Discrete(line["action"].as_i64().unwrap()), &mut obs).unwrap();
        let printed: Vec<f32> = line["obs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(printed, obs);
        assert_eq!(line["reward"].as_f64().unwrap(), r.reward);
        assert_eq!(line["terminated"], r.terminated);
        assert_eq!(line["truncated"], r.truncated);
        steps += 1;
    }
    assert_eq!(steps, 40);
}

#[test]
fn rollout_takes_actions_from_a_file() {
    let dir = std::env::temp_dir().join(format!("shoal-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("actions.json");
    std::fs::write(&file, "[[0.5], [-2.0], [1.25]]").unwrap();
    let lines =
        stdout_lines(&shoal(&["rollout", "--env", "Pendulum-v1", "--steps", "3", "--actions", file.to_str().unwrap()]));
    let actions: Vec<f64> = lines[1..].iter().map(|l| l["action"][0].as_f64().unwrap()).collect();
    assert_eq!(actions, [0.5, -2.0, 1.25]);

    std::fs::write(&file, "[0, 1, 7]").unwrap();
    let err = stderr(&shoal(&["rollout", "--env", "CartPole-v1", "--steps", "3", "--actions", file.to_str().unwrap()]));
    assert!(err.contains("action 2") && err.contains("outside the action space Discrete(2)"), "{err}");

    let err = stderr(&shoal(&["rollout", "--env", "CartPole-v1", "--steps", "5", "--actions", file.to_str().unwrap()]));
    assert!(err.contains("has 3 actions but --steps is 5"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rollout_passes_env_options() {
    let lines = stdout_lines(&shoal(&[
        "rollout",
        "--env",
        "FrozenLake-v1",
        "--opt",
        "map_name=8x8",
        "--opt",
        "is_slippery=false",
        "--steps",
        "3",
    ]));
    assert_eq!(lines[0]["reset_obs"][0], 0.0);
}

#[test]
fn bad_input_gets_clear_errors() {
    let err = stderr(&shoal(&["rollout", "--env", "CartPole-v0"]));
    assert!(
        err.contains("unknown environment id `CartPole-v0`") && err.contains("did you mean `CartPole-v1`"),
        "{err}"
    );
    let err = stderr(&shoal(&["rollout", "--env", "FrozenLake-v1", "--opt", "slippery=false"]));
    assert!(err.contains("has no option `slippery`") && err.contains("is_slippery"), "{err}");
    let err = stderr(&shoal(&["rollout", "--env", "FrozenLake-v1", "--opt", "is_slippery"]));
    assert!(err.contains("--opt takes key=value"), "{err}");
    let err = stderr(&shoal(&["bench", "env", "--env", "Taxi-v3", "--seconds", "0.1"]));
    assert!(err.contains("did you mean `Taxi-v4`"), "{err}");
}

#[test]
fn bench_env_prints_throughput_last() {
    let out = shoal(&["bench", "env", "--env", "CartPole-v1", "--num-envs", "8", "--threads", "2", "--seconds", "0.2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap();
    let rate: f64 = last.strip_prefix("env_steps_per_sec: ").unwrap().parse().unwrap();
    assert!(rate > 0.0);
}

#[test]
fn bench_ps_reports_in_process_data_plane_grpc_and_tcp_figures() {
    let out = shoal(&["bench", "ps", "--seconds", "0.05"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let keys = [
        "inproc_push_pull_10KB_us",
        "inproc_pull_1MB_us",
        "grpc_push_pull_10KB_us",
        "data_plane_push_pull_1MB_us",
        "tcp_loopback_polled_roundtrip_10MB_us",
        "data_plane_vs_tcp_10MB",
    ];
    for key in keys {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in:\n{text}"));
        let value: f64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(value > 0.0, "{line}");
    }
}

/// Two processes, one network: the pipeline bench trains the same MLP in one piece and cut into
/// two stages (the second in a child process) and refuses to print unless both end equal.
#[test]
fn bench_pipeline_trains_across_two_processes_to_one_process_parameters() {
    let out = shoal(&["bench", "pipeline", "--widths", "16", "--layers", "2", "--batch", "8", "--steps", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pipeline_width_16_params_equal: true"), "{text}");
    let ratio = text.lines().find_map(|l| l.strip_prefix("pipeline_vs_one_process_width_16: ")).unwrap();
    assert!(ratio.parse::<f64>().unwrap() > 0.0, "{text}");
}
