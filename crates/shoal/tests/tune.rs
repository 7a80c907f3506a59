//! `shoal tune` as a user runs it: the documents' grid example picks the right learning rate,
//! a bad study fails before any trial runs and names the key, and a study killed with
//! SIGKILL finishes with `--resume`, no trial lost or run twice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal")).args(args).output().expect("run shoal")
}

fn config(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(name).display().to_string()
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A smaller copy of study file `configs/<name>` in `dir`: its base config by absolute path,
/// each `(from, to)` replaced in its text.
fn small_study(dir: &Path, name: &str, changes: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(config(name))
        .unwrap()
        .replace("base = \"../cartpole-ppo.toml\"", &format!("base = {:?}", config("cartpole-ppo.toml")));
    for (from, to) in changes {
        assert!(text.contains(from), "{name} has no `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join(Path::new(name).file_name().unwrap());
    std::fs::write(&path, text).unwrap();
    path
}

/// `trials.csv` as (trial, state, env steps, metric) rows.
fn trials(dir: &Path) -> Vec<(usize, String, u64, Option<f64>)> {
    let text = std::fs::read_to_string(dir.join("trials.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[2].parse().unwrap(), f[3].parse().ok())
        })
        .collect()
}

/// The documents' example: a grid over PPO's learning rate on CartPole reports 1e-3 as best,
/// every trial is a run directory `shoal eval` reads, and `--status` shows the study.
#[test]
fn the_learning_rate_grid_finds_1e_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let table = ok(&shoal(&["tune", &config("tune/cartpole-ppo-lr-grid.toml"), "--out", out.to_str().unwrap()]));
    eprintln!("{table}");
    let rows = trials(&out);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|(_, state, steps, value)| state == "finished" && *steps >= 30_000 && value.is_some()));
    let best = std::fs::read_to_string(out.join("best.toml")).unwrap();
    let best: toml::Table = best.parse().unwrap();
    assert_eq!(best["ppo"]["learning_rate"].as_float(), Some(1e-3), "{best:#?}");
    assert_eq!(best["stop"]["env_steps"].as_integer(), Some(30_000), "[set] lands in the trials");
    let trial = out.join("trials/trial-0000");
    let eval = ok(&shoal(&["eval", trial.to_str().unwrap(), "--episodes", "2"]));
    assert!(eval.contains("episode_return_mean"), "{eval}");
    let status = ok(&shoal(&["tune", "--status", out.to_str().unwrap()]));
    assert_eq!(status.lines().count(), 4, "a header and a line per trial: {status}");
    assert!(out.join("curves.png").exists() && out.join("params.png").exists());
    // The same study with every trial in a child process gives the same trials.
    let in_processes = dir.path().join("processes");
    let grid = config("tune/cartpole-ppo-lr-grid.toml");
    ok(&shoal(&["tune", &grid, "--out", in_processes.to_str().unwrap(), "--processes"]));
    assert_eq!(trials(&in_processes), rows, "trials in child processes");
}

/// A study whose space names a key the train config does not have fails at once, naming it;
/// so do a bad distribution and a grid under a random searcher.
#[test]
fn a_bad_study_names_the_key_before_any_trial_runs() {
    let dir = tempfile::tempdir().unwrap();
    let base = config("cartpole-ppo.toml");
    let cases = [
        ("\"ppo.learnig_rate\" = { loguniform = [1e-5, 1e-2] }", "grid", "unknown field `learnig_rate`"),
        ("\"ppo.learning_rate\" = { loguniform = [0.0, 1e-2] }", "random", "0 < low"),
        ("\"ppo.gamma\" = { choice = [\"high\"] }", "random", "space.\"ppo.gamma\" = \"high\""),
        ("\"ppo.gamma\" = { grid = [0.9, 0.99] }", "random", "only searcher = \"grid\" enumerates"),
    ];
    for (i, (space, searcher, expected)) in cases.iter().enumerate() {
        let study = dir.path().join(format!("s{i}.toml"));
        let text = format!("base = {base:?}\nsearcher = \"{searcher}\"\n[space]\n{space}\n");
        std::fs::write(&study, text).unwrap();
        let out = dir.path().join(format!("out{i}"));
        let output = shoal(&["tune", study.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "case {i}: expected `{expected}` in: {stderr}");
        assert!(!out.join("study.db").exists(), "case {i}: no study may start");
    }
}

/// SIGKILL in the middle of an ASHA study, then `--resume`: every trial of the study is there
/// once and none is left running (the jobs killed mid-way ran again, from the trial's last
/// checkpoint when it had one), and ASHA's rungs still shape the study.
#[test]
fn a_killed_study_resumes_without_losing_or_repeating_a_trial() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let study = small_study(
        dir.path(),
        "tune/cartpole-ppo-asha.toml",
        &[
            ("num_samples = 18", "num_samples = 9"),
            ("grace_period = 10_000", "grace_period = 2_000"),
            ("\"stop.env_steps\" = 90_000", "\"stop.env_steps\" = 18_000"),
        ],
    );
    let log = std::fs::File::create(dir.path().join("first.log")).unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["tune", study.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Kill once trial 4 has started (some trials ended, some running).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default();
        if text.contains("trial 4 starts") {
            break;
        }
        assert!(first.try_wait().unwrap().is_none(), "the study ended before it could be killed: {text}");
        assert!(Instant::now() < deadline, "trial 4 never started: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let resumed = shoal(&["tune", "--resume", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    let rows = trials(&out);
    let ids: BTreeSet<usize> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, (0..9).collect(), "every trial once: {rows:?}");
    assert!(rows.iter().all(|r| r.1 == "paused" || r.1 == "finished"), "none running or failed: {rows:?}");
    assert!(rows.iter().any(|r| r.1 == "finished" && r.2 >= 18_000), "ASHA took one trial to the budget: {rows:?}");
    assert!(rows.iter().filter(|r| r.2 < 6_000).count() >= 5, "most trials stopped at the first rung: {rows:?}");
}

/// Population-based training: trials in the bottom quarter take over a top trial's checkpoint,
/// and the explored learning rate is what they train with afterwards — in their config and in
/// the learning rate their optimizer steps with (`charts/learning_rate`, constant here).
#[test]
fn pbt_trials_take_over_checkpoints_and_train_with_the_explored_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let study = small_study(
        dir.path(),
        "tune/cartpole-ppo-pbt.toml",
        &[
            ("num_samples = 8", "num_samples = 4"),
            ("perturbation_interval = 10_000", "perturbation_interval = 3_000"),
            ("\"stop.env_steps\" = 60_000", "\"stop.env_steps\" = 9_000"),
        ],
    );
    let output = shoal(&["tune", study.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{log}");
    // The last takeover of each trial, with the learning rate it explored.
    let mut takeovers = std::collections::BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("takes over")) {
        let trial: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let lr: f64 =
            line.split("ppo.learning_rate=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        takeovers.insert(trial, lr);
    }
    // Generations start at 3k and 6k env steps, ⌈4 · 0.25⌉ = 1 trial exploiting in each.
    assert_eq!(log.matches("takes over").count(), 2, "{log}");
    for (trial, lr) in takeovers {
        let run = out.join(format!("trials/trial-{trial:04}"));
        let config: toml::Table = std::fs::read_to_string(run.join("config.toml")).unwrap().parse().unwrap();
        assert_eq!(config["ppo"]["learning_rate"].as_float(), Some(lr), "trial {trial}'s config");
        let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
        let column = header.iter().position(|h| *h == "charts/learning_rate").unwrap();
        let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
        let logged: f64 = last[column].parse().unwrap();
        assert!((logged - lr).abs() <= 1e-9 * lr, "trial {trial} steps with {logged}, explored {lr}");
    }
    let rows = trials(&out);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.1 == "finished" && r.2 >= 9_000), "{rows:?}");
}

/// `shoal tune --serve` with two `shoal tune-worker` processes on loopback: both train
/// trials of the one study; one is killed (SIGKILL) in the middle of a trial, the coordinator
/// takes it for dead after `--worker-timeout` and gives the trial to the other, and the study
/// completes with every trial once.
#[test]
fn tune_workers_share_a_study_and_a_dead_workers_trial_is_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let study = small_study(
        dir.path(),
        "tune/cartpole-ppo-asha.toml",
        &[
            ("num_samples = 18", "num_samples = 9"),
            ("grace_period = 10_000", "grace_period = 4_000"),
            ("\"stop.env_steps\" = 90_000", "\"stop.env_steps\" = 36_000"),
        ],
    );
    let token = "tune-workers-token-0123456789";
    let coordinator_log = dir.path().join("coordinator.log");
    let mut coordinator = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["tune", study.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--serve", "127.0.0.1:0", "--worker-timeout", "2"])
        .env("SHOAL_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&coordinator_log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&coordinator_log).unwrap_or_default();
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !read_log().contains(what) {
            assert!(Instant::now() < deadline, "no `{what}` in: {}", read_log());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for("--study 127.0.0.1:");
    let log = read_log();
    let addr = log.split("--study ").nth(1).unwrap().split('`').next().unwrap().to_string();
    let worker = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["tune-worker", "--study", &addr, "--name", name])
            .env("SHOAL_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut doomed = worker("w1");
    wait_for("taken by worker w1");
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let survivor = worker("w2").wait_with_output().unwrap();
    assert!(survivor.status.success(), "{}", String::from_utf8_lossy(&survivor.stderr));
    assert!(coordinator.wait().unwrap().success(), "{}", read_log());
    let log = read_log();
    assert!(log.contains("worker w1 silent for 2s, the trial goes back on the queue"), "{log}");
    assert!(log.contains("taken by worker w2"), "{log}");
    let rows = trials(&out);
    let ids: BTreeSet<usize> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, (0..9).collect(), "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == "paused" || r.1 == "finished"), "{rows:?}");
}
