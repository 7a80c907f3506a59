//! `shoal train` for `cluster.topology = "processes"`: starts the run's `shoal ps` shards and
//! `shoal worker`s on this machine as child processes talking gRPC on loopback, waits for the
//! servers' stop, then stores the servers' parameters as the run's checkpoint (so `shoal eval`
//! reads it like any run). On a cluster engine, start the same two commands yourself.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_algo::checkpoint::save_checkpoint;
use shoal_algo::cluster::{ClusterAgent, ClusterConfig, ServerSpec};
use shoal_algo::{LoopState, StopReason, Summary, TrainConfig};
use shoal_dist::{ClientOptions, Coordinator, Encoding, ParamStore, ShardedStore, Token, TOKEN_ENV};

use crate::run::RunDir;

/// Child processes, killed if the launcher returns early.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh random token for this run's processes.
fn fresh_token() -> Result<Token> {
    let mut rng = Pcg64Mcg::from_os_rng();
    Ok(Token::new(format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>()))?)
}

/// Starts shard `index`'s server and reads the address it printed.
fn start_server(
    exe: &Path,
    config: &Path,
    run_dir: &RunDir,
    index: usize,
    resume: bool,
    token: &Token,
) -> Result<(Child, String)> {
    let mut command = Command::new(exe);
    // The launcher stops the servers itself once it has their result.
    command.args(["ps", "--listen", "127.0.0.1:0", "--linger", "86400", "--shard", &index.to_string(), "--out"]);
    command.arg(run_dir.root.join("ps")).arg(config);
    if resume {
        command.arg("--resume");
    }
    let mut child = command
        .env(TOKEN_ENV, token.secret())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} ps", exe.display()))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("shard {index}'s server did not start (it printed {line:?})"))?
        .to_string();
    Ok((child, addr))
}

pub fn run(config: &TrainConfig, cluster: &ClusterConfig, run_dir: &RunDir, resume: bool) -> Result<Summary> {
    let start = Instant::now();
    let exe = std::env::current_exe().context("locating the shoal executable")?;
    let config_path = run_dir.config();
    let token = fresh_token()?;
    let mut servers = Children(Vec::new());
    let mut addrs = Vec::new();
    for shard in 0..cluster.shards {
        let (child, addr) = start_server(&exe, &config_path, run_dir, shard, resume, &token)?;
        servers.0.push(child);
        addrs.push(addr);
    }
    eprintln!("started {} parameter server(s) at {}", cluster.shards, addrs.join(","));
    let mut workers = Children(Vec::new());
    for rank in 0..cluster.workers {
        let child = Command::new(&exe)
            .args(["worker", "--ps", &addrs.join(","), "--rank", &rank.to_string()])
            .arg(&config_path)
            .env(TOKEN_ENV, token.secret())
            .spawn()
            .with_context(|| format!("starting worker {rank}"))?;
        workers.0.push(child);
    }
    let mut failed = 0;
    for (rank, child) in workers.0.iter_mut().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            eprintln!("worker {rank} exited with {status}");
            failed += 1;
        }
    }
    if failed == cluster.workers {
        bail!("every worker failed; see their errors above");
    }

    // Collect the result before the servers' linger ends.
    let options = ClientOptions { tls: None, token, encoding: Encoding::F32Le, retry_for: Duration::from_secs(10) };
    let spec = ServerSpec::new(config)?;
    let store = ShardedStore::connect(&addrs, spec.layout_hash(), spec.params.len(), &options)?;
    let mut params = vec![0.0; spec.params.len()];
    let version = store.pull(None, &mut params)?.unwrap_or(0);
    let status = store.report(0, 0, &[])?;
    drop(servers);

    let mut agent = ClusterAgent::new(config, cluster)?;
    agent.set_params(&params, version)?;
    let wall_seconds = start.elapsed().as_secs_f64();
    save_checkpoint(
        &mut agent,
        &LoopState { iteration: 0, wall_seconds, best_return_mean: None },
        &run_dir.checkpoint(),
    )?;
    let return_mean = status.return_mean.is_finite().then_some(status.return_mean);
    let reached = matches!((config.stop.episode_return_mean, return_mean), (Some(t), Some(m)) if m >= t);
    Ok(Summary {
        env_steps: status.total_env_steps,
        iterations: version,
        wall_seconds,
        env_steps_per_sec: status.total_env_steps as f64 / wall_seconds.max(1e-9),
        episodes: status.episodes,
        final_episode_return_mean: return_mean,
        best_episode_return_mean: None,
        stop_reason: if reached { StopReason::ReturnReached } else { StopReason::EnvSteps },
    })
}
