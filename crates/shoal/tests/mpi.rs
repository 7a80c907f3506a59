//! Data-parallel PPO over MPI_Allreduce (feature `mpi`), as a user runs it:
//! `mpirun -np 2 shoal run configs/cartpole-ppo-allreduce.toml --out DIR`, on this host and
//! with the two ranks in two network namespaces (Open MPI's launcher enters them through an
//! rsh agent that wraps nsenter; MPI's traffic goes over TCP on the test's bridge). Both runs
//! solve CartPole, and since the ranks' arithmetic does not depend on where they run, both
//! runs are the same run: equal summaries.

mod common;

use std::path::Path;
use std::process::Command;

use common::{greedy_return, Hosts};

fn mpirun() -> Command {
    let mut command = Command::new("mpirun");
    // No topology in shared memory: Open MPI 4.1 maps it into a "hole" it guesses in the
    // daemon's address space, which crashed orted in hwloc on one CI machine.
    command.args(["--allow-run-as-root", "--oversubscribe", "-np", "2", "--mca", "rtc_hwloc_vmhole", "none"]);
    command
}

fn config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/cartpole-ppo-allreduce.toml").display().to_string()
}

/// Runs `command` (an mpirun line ending before `shoal run`) and returns the run's summary
/// and deterministic evaluation over 20 fresh episodes.
fn train(mut command: Command, out: &Path) -> (serde_json::Value, f64) {
    let output = command
        .arg(env!("CARGO_BIN_EXE_shoal"))
        .args(["run", &config(), "--out"])
        .arg(out)
        .output()
        .expect("running mpirun (Debian: apt-get install openmpi-bin)");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "mpirun failed:\n{log}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    (summary, greedy_return(out))
}

#[test]
fn allreduce_ppo_solves_cartpole_on_one_host_and_across_two_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let (local, greedy) = train(mpirun(), &dir.path().join("local"));
    eprintln!("mpirun -np 2, one host: deterministic eval {greedy}; {local}");
    assert!(greedy >= 475.0, "deterministic eval {greedy} < 475");

    let Some(hosts) = Hosts::new(2, 2) else { return };
    // Open MPI starts its daemon on a remote host as `AGENT [options] HOST COMMAND…`: enter
    // the namespace that plays HOST instead of logging in.
    let agent = dir.path().join("nsenter-agent.sh");
    let mut script =
        String::from("#!/bin/sh\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nhost=$1; shift\ncase $host in\n");
    for i in 1..=2 {
        script += &format!("  {}) ns={} ;;\n", hosts.addr(i), hosts.namespace(i));
    }
    script += "  *) echo \"unknown host $host\" >&2; exit 1 ;;\nesac\nexec nsenter --net=/run/netns/$ns sh -c \"$*\"\n";
    std::fs::write(&agent, script).unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let subnet = format!("{}.0/24", hosts.addr(0).rsplit_once('.').unwrap().0);
    let mut command = mpirun();
    command
        .args(["--host", &format!("{},{}", hosts.addr(1), hosts.addr(2))])
        .args(["--mca", "plm_rsh_agent"])
        .arg(&agent)
        .args(["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", &subnet])
        .args(["--mca", "oob_tcp_if_include", &subnet]);
    let (across, greedy) = train(command, &dir.path().join("namespaces"));
    eprintln!("mpirun -np 2, two namespaces: deterministic eval {greedy}; {across}");
    assert!(greedy >= 475.0, "deterministic eval {greedy} < 475");
    for key in ["env_steps", "iterations", "episodes", "final_episode_return_mean"] {
        assert_eq!(local[key], across[key], "{key}: the same ranks computed differently across hosts");
    }
}

/// A requeued or resubmitted all-reduce job resumes: every rank checkpoints at the same
/// iterations (rank 0 where `shoal eval` reads, the others in `checkpoints/rank-R`), and the
/// same command on the same directory continues from them; ranks without a matching
/// checkpoint are refused by name rather than silently restarted.
#[test]
fn a_resubmitted_allreduce_run_resumes_every_rank_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = |env_steps: u64| {
        let output = mpirun()
            .arg(env!("CARGO_BIN_EXE_shoal"))
            .args(["run", &config(), "--out"])
            .arg(&out)
            .args(["--set", &format!("stop.env_steps={env_steps}"), "--set", "stop.eval_every=1000000"])
            .args(["--set", "run.checkpoint_every=10240"])
            .output()
            .expect("running mpirun (Debian: apt-get install openmpi-bin)");
        let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), log)
    };
    let summary =
        || -> serde_json::Value { serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap() };
    let (ok, log) = run(20_480);
    assert!(ok, "{log}");
    assert_eq!(summary()["env_steps"], 20_480);
    assert!(out.join("checkpoints/latest/state.json").exists() && out.join("checkpoints/rank-1/state.json").exists());

    let (ok, log) = run(40_960);
    assert!(ok, "{log}");
    // Both ranks' lines (their order, and on a busy machine their pieces, may interleave).
    assert_eq!(log.matches("resumed at 10240 env steps (iteration 80)").count(), 2, "both ranks resume:\n{log}");
    assert_eq!(summary()["env_steps"], 40_960, "the resumed run continued to the new budget");
    let rows = std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().count() - 1;
    assert_eq!(rows, 160, "one metrics row per iteration of both runs, none repeated (256 env steps each)");

    std::fs::remove_dir_all(out.join("checkpoints/rank-1")).unwrap();
    let (ok, log) = run(61_440);
    assert!(!ok, "a rank without its checkpoint must not start over silently:\n{log}");
    assert!(log.contains("1 of 2 ranks hold no checkpoint"), "{log}");
}
