//! `shoal bench load` end to end, CI-sized: its server processes start, its simulated workers
//! complete calls without errors and its rows hold what the README's tables read; the soak
//! kills and restarts a worker process, samples the servers and writes its CSV and plot.

use std::process::Command;

fn shoal(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal")).args(args).output().expect("run shoal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "shoal {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_load_tables_count_calls_and_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("load");
    let prefix = prefix.to_str().unwrap();
    let args = ["bench", "load", "--shards", "1,2", "--sizes", "10KB", "--clients", "3", "--seconds", "0.5"];
    shoal(&[&args[..], &["--csv", prefix]].concat());
    let ps = std::fs::read_to_string(format!("{prefix}-ps.csv")).unwrap();
    let rows: Vec<Vec<&str>> = ps.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{ps}");
    for (row, shards) in rows.iter().zip(["1", "2"]) {
        // shards, model, workers, calls/s, MB/s, p50, p95, p99, busy, errors, rss, sockets, cpu
        assert_eq!(&row[..3], &[shards, "10KB", "3"]);
        assert!(row[3].parse::<f64>().unwrap() > 100.0, "calls completed: {row:?}");
        assert!(row[5].parse::<u64>().unwrap() <= row[7].parse::<u64>().unwrap(), "p50 ≤ p99: {row:?}");
        assert_eq!(row[9], "0", "no errors: {row:?}");
        assert!(row[10].parse::<f64>().unwrap() > 1.0, "the server's RSS was read: {row:?}");
        assert!(row[11].parse::<usize>().unwrap() >= 3 * 2, "its sockets were counted: {row:?}");
    }
    let replay = std::fs::read_to_string(format!("{prefix}-replay.csv")).unwrap();
    let row: Vec<&str> = replay.lines().nth(1).unwrap().split(',').collect();
    // actors, inserts/s, rows/s, ins p50, ins p99, samples/s, smp p50, smp p99, busy, errors, …
    assert!(row[1].parse::<f64>().unwrap() > 10.0 && row[5].parse::<f64>().unwrap() > 1.0, "{row:?}");
    assert_eq!(row[9], "0", "{row:?}");
}

#[test]
fn the_soak_survives_a_killed_worker_and_writes_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let printed = shoal(&[
        "bench",
        "load",
        "--soak",
        "5",
        "--shards",
        "2",
        "--sizes",
        "64KB",
        "--soak-clients",
        "4",
        "--rate",
        "50",
        "--kill-every",
        "2",
        "--sample-seconds",
        "1",
        "--checkpoint-seconds",
        "1",
        "--out",
        out,
    ]);
    assert!(printed.contains("soak_errors: 0"), "{printed}");
    let kills: usize = printed.lines().find_map(|l| l.strip_prefix("soak_kills: ")).unwrap().parse().unwrap();
    assert!(kills >= 1, "{printed}");
    let csv = std::fs::read_to_string(dir.path().join("soak.csv")).unwrap();
    assert!(csv.starts_with("seconds,ps-shard0_rss_mb,ps-shard0_fds,ps-shard1_rss_mb"), "{csv}");
    assert!(csv.lines().count() >= 4, "{csv}");
    assert!(std::fs::metadata(dir.path().join("soak.png")).unwrap().len() > 10_000);
    for server in ["ps-shard0", "ps-shard1", "replay"] {
        assert!(dir.path().join(format!("{server}.safetensors")).exists(), "{server} checkpointed");
    }
}
