//! Shoal across real network hops on one machine: each "host" is a network namespace with its
//! own address on a bridge the test creates (10.77.N.0/24, N from the test's PID), every task
//! is `shoal run` started inside its namespace as a cluster engine would start it, and the
//! test removes the namespaces, the bridge and every process it started (by PID) afterwards.
//! Traffic goes only to those addresses. Needs root (CI runs as root); elsewhere the tests say
//! so and return.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{greedy_return, ip, number_after, Hosts};

fn config(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(name).display().to_string()
}

/// `shoal run` arguments of task `rank` of `world`, rendezvous at `coordinator`.
fn task_args(
    config_file: &str,
    out: &Path,
    rank: usize,
    world: usize,
    coordinator: &str,
    sets: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "run".to_string(),
        config(config_file),
        "--out".into(),
        out.display().to_string(),
        "--rank".into(),
        rank.to_string(),
        "--world".into(),
        world.to_string(),
        "--coordinator".into(),
        coordinator.into(),
        "--insecure".into(),
    ];
    for set in sets {
        args.extend(["--set".into(), set.to_string()]);
    }
    args
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Synchronous-PS PPO: the server in one namespace, two workers in two others. Worker 2's
/// cable is unplugged for 10 s mid-run (its host side set down): the server drops it from
/// the rounds, and once the cable is back it rejoins and trains until the stop. The run's result,
/// written by rank 0 into the shared run directory, evaluates ≥ 475.
#[test]
fn sync_ppo_across_namespaces_survives_an_unplugged_worker() {
    let Some(mut hosts) = Hosts::new(0, 3) else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let coordinator = format!("{}:29400", hosts.addr(1));
    // The first deterministic evaluation at 400k env steps keeps the run going well past the
    // outage (one worker alone stepped ~150k in 10 s here).
    let sets = ["stop.eval_every=400000", "stop.env_steps=800000", "cluster.retry_seconds=120"];
    let logs: Vec<PathBuf> = (0..3).map(|r| dir.path().join(format!("task{r}.log"))).collect();
    let mut tasks = Vec::new();
    for (rank, log) in logs.iter().enumerate() {
        let args = task_args("cartpole-ppo-sync.toml", &out, rank, 3, &coordinator, &sets);
        tasks.push(hosts.spawn(rank + 1, &args, log));
    }
    // Unplug worker 2 (rank 2, host 3) once it trains.
    let start = Instant::now();
    while !log_of(&logs[2]).contains("connected to") {
        assert!(start.elapsed() < Duration::from_secs(60), "worker 2 never connected:\n{}", log_of(&logs[2]));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    ip(&["link", "set", &hosts.link(3), "down"]);
    std::thread::sleep(Duration::from_secs(10));
    ip(&["link", "set", &hosts.link(3), "up"]);
    for (rank, &task) in tasks.iter().enumerate() {
        assert!(hosts.wait(task, Duration::from_secs(300)), "task {rank} failed:\n{}", log_of(&logs[rank]));
    }
    let worker2 = log_of(&logs[2]);
    // Before the outage worker 2 stepped for half a second (a few thousand env steps): 20k
    // steps of its own mean it trained again after the cable came back.
    let own_steps = number_after(&worker2, "stopped by the server after ")
        .unwrap_or_else(|| panic!("worker 2 did not finish:\n{worker2}"));
    assert!(own_steps >= 20_000, "worker 2 stepped {own_steps} env steps: it did not rejoin\n{worker2}");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "ps/dropped_workers").unwrap();
    let dropped =
        metrics.lines().skip(1).filter_map(|l| l.split(',').nth(column)?.parse::<f64>().ok()).fold(0.0, f64::max);
    assert!(dropped >= 1.0, "the server never dropped the unplugged worker (metrics.csv):\n{metrics}");
    let greedy = greedy_return(&out);
    eprintln!(
        "sync PPO across namespaces: deterministic eval {greedy}, dropped workers {dropped}\nworker 2:\n{worker2}"
    );
    assert!(greedy >= 475.0, "deterministic eval {greedy} < 475\nrank 0:\n{}", log_of(&logs[0]));
}

/// A task started with another world size or config than rank 0 is refused with both named.
#[test]
fn a_task_with_another_world_or_config_is_refused_by_rank_0() {
    let Some(mut hosts) = Hosts::new(1, 2) else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let coordinator = format!("{}:29400", hosts.addr(1));
    let log0 = dir.path().join("rank0.log");
    let rank0 = hosts.spawn(1, &task_args("cartpole-ppo-sync.toml", &out, 0, 3, &coordinator, &[]), &log0);
    let log1 = dir.path().join("rank1.log");
    let other = hosts.spawn(2, &task_args("cartpole-ppo-sync.toml", &out, 1, 3, &coordinator, &["seed=7"]), &log1);
    assert!(!hosts.wait(other, Duration::from_secs(60)), "a task with another config was accepted");
    assert!(log_of(&log1).contains("config mismatch"), "{}", log_of(&log1));
    let log2 = dir.path().join("rank2.log");
    let args = task_args("cartpole-ppo-sync.toml", &out, 2, 4, &coordinator, &["cluster.workers=3"]);
    let bigger = hosts.spawn(2, &args, &log2);
    assert!(!hosts.wait(bigger, Duration::from_secs(60)), "a task with another world size was accepted");
    assert!(log_of(&log2).contains("world size mismatch"), "{}", log_of(&log2));
    let _ = rank0;
}
