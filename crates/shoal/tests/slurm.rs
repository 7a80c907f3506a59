//! Shoal under Slurm, across network hops: `scripts/slurm-testbed.sh` starts a 3-node cluster
//! whose nodes are network namespaces (10.77.0.1-3), and `deploy/slurm/shoal.sbatch` runs an
//! Ape-X job on it — parameter server, replay, learner and two actors as five `srun` tasks on
//! three nodes. The job is cancelled once the server has checkpointed, and the same command
//! submitted again resumes from the checkpoint and solves CartPole. Needs root and Debian's
//! slurm-wlm and munge (`.ci/run` installs them; so does the testbed script); elsewhere the test
//! says so and returns. The testbed is taken down afterwards, whatever happens.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::{geteuid, greedy_return, number_after};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The running testbed; `down` on drop.
struct Testbed {
    conf: PathBuf,
}

impl Testbed {
    fn up() -> Option<Testbed> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { geteuid() } != 0 {
            eprintln!("skipped: the Slurm testbed needs root");
            return None;
        }
        let state = std::env::temp_dir().join(format!("shoal-slurm-{}", std::process::id()));
        let script = repo().join("scripts/slurm-testbed.sh");
        let output = Command::new(&script).arg("up").env("SHOAL_SLURM_STATE", &state).output().unwrap();
        let testbed = Testbed { conf: state.join("slurm.conf") };
        assert!(
            output.status.success(),
            "slurm-testbed.sh up failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Some(testbed)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// Submits the Shoal template; returns the job id.
    fn submit(&self, run: &Path, sets: &[&str]) -> String {
        let mut command = self.command("sbatch");
        command
            .args(["--parsable", "--ntasks=5", "--output"])
            .arg(run.with_extension("slurm-%j.out"))
            .arg(repo().join("deploy/slurm/shoal.sbatch"))
            .arg(repo().join("configs/cartpole-apex.toml"))
            .arg(run)
            .env("SHOAL_BIN", env!("CARGO_BIN_EXE_shoal"))
            .env("SHOAL_INSECURE", "1")
            // The nodes' names resolve nowhere here: rank 0 is n1, at 10.77.0.1.
            .env("SHOAL_COORDINATOR", "10.77.0.1");
        for set in sets {
            command.args(["--set", set]);
        }
        let id = String::from_utf8(ok(command.output().unwrap())).unwrap().trim().to_string();
        eprintln!("submitted job {id}");
        id
    }

    /// Whether job `id` is still queued or running.
    fn active(&self, id: &str) -> bool {
        let out = ok(self.command("squeue").args(["-h", "-j", id, "-o", "%T"]).output().unwrap());
        !String::from_utf8_lossy(&out).trim().is_empty()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let state = self.conf.parent().unwrap();
        let _ =
            Command::new(repo().join("scripts/slurm-testbed.sh")).arg("down").env("SHOAL_SLURM_STATE", state).output();
    }
}

fn ok(output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn job_log(run: &Path, id: &str) -> String {
    std::fs::read_to_string(run.with_extension(format!("slurm-{id}.out"))).unwrap_or_default()
}

#[test]
fn apex_job_on_three_slurm_nodes_solves_cartpole_and_resumes_after_scancel() {
    let Some(slurm) = Testbed::up() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // The server checkpoints every 10 updates (the learner publishes every 10 of its own).
    let sets = ["cluster.checkpoint_every=10"];

    let first = slurm.submit(&run, &sets);
    let checkpoint = run.join("ps/ps-shard0.safetensors");
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(slurm.active(&first), "job {first} ended before checkpointing:\n{}", job_log(&run, &first));
        assert!(start.elapsed() < Duration::from_secs(180), "no checkpoint after 180 s:\n{}", job_log(&run, &first));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    ok(slurm.command("scancel").arg(&first).output().unwrap());
    while slurm.active(&first) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!run.join("summary.json").exists(), "the first job finished before it was cancelled");

    let second = slurm.submit(&run, &sets);
    let start = Instant::now();
    while slurm.active(&second) {
        assert!(start.elapsed() < Duration::from_secs(300), "job {second} still running:\n{}", job_log(&run, &second));
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = job_log(&run, &second);
    let version = number_after(&log, "resumed shard 0 at version ")
        .unwrap_or_else(|| panic!("the second job did not resume:\n{log}"));
    assert!(version > 0, "resumed at version 0:\n{log}");
    assert!(run.join("summary.json").exists(), "no run directory after the second job:\n{log}");
    let greedy = greedy_return(&run);
    eprintln!("Ape-X on Slurm: resumed at server version {version}; deterministic eval {greedy}");
    assert!(greedy >= 475.0, "deterministic eval {greedy} < 475\n{log}");
}
