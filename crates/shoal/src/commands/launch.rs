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
use shoal_algo::cluster::ClusterConfig;
use shoal_algo::registry::{cluster_agent, server_spec};
use shoal_algo::{build_agent, Agent, LoopState, StopReason, Summary, TrainConfig};
use shoal_dist::{ClientOptions, Coordinator, Encoding, ParamStore, ShardedStore, Token, TOKEN_ENV};

use shoal::run::RunDir;

/// Child processes, killed if the launcher returns early.
/// Child processes, killed (by PID) and reaped when dropped, however the run ends.
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh random token for this run's processes.
pub fn fresh_token() -> Result<Token> {
    let mut rng = Pcg64Mcg::from_os_rng();
    Ok(Token::new(format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>()))?)
}

/// Starts a server process (`shoal ps` or `shoal replay`, which print "listening on ADDR"
/// first) and reads the address it printed.
pub(super) fn start_listener(mut command: Command, token: &Token, what: &str) -> Result<(Child, String)> {
    let mut child = command
        .env(TOKEN_ENV, token.secret())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the {what}"))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("the {what} did not start (it printed {line:?})"))?
        .to_string();
    Ok((child, addr))
}

/// Starts shard `index`'s parameter server.
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
    start_listener(command, token, &format!("parameter server of shard {index}"))
}

/// Starts `shoal worker` with `args`.
fn start_worker(exe: &Path, config: &Path, token: &Token, args: &[&str]) -> Result<Child> {
    Command::new(exe)
        .arg("worker")
        .args(args)
        .arg(config)
        .env(TOKEN_ENV, token.secret())
        .spawn()
        .with_context(|| format!("starting shoal worker {}", args.join(" ")))
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
    let ps = addrs.join(",");
    let mut workers = Children(Vec::new());
    let mut extra = Children(Vec::new());
    if config.algo.has_learner() {
        // Ape-X and IMPALA: a replay server (IMPALA's trajectory queue), and the learner as
        // one more worker.
        let mut command = Command::new(&exe);
        command.args(["replay", "--listen", "127.0.0.1:0", "--out"]).arg(run_dir.root.join("replay")).arg(&config_path);
        if resume && config.apex.as_ref().is_some_and(|a| a.checkpoint_replay) {
            command.arg("--resume");
        }
        let (replay, replay_addr) = start_listener(command, &token, "replay server")?;
        eprintln!("started the replay server at {replay_addr}");
        extra.0.push(replay);
        let learner = start_worker(&exe, &config_path, &token, &["--ps", &ps, "--replay", &replay_addr, "--learner"])?;
        workers.0.push(learner);
        for rank in 0..cluster.workers {
            let rank = rank.to_string();
            workers.0.push(start_worker(
                &exe,
                &config_path,
                &token,
                &["--ps", &ps, "--replay", &replay_addr, "--rank", &rank],
            )?);
        }
    } else {
        for rank in 0..cluster.workers {
            workers.0.push(start_worker(&exe, &config_path, &token, &["--ps", &ps, "--rank", &rank.to_string()])?);
        }
    }
    let mut failed = 0;
    for (rank, child) in workers.0.iter_mut().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            eprintln!("worker {rank} exited with {status}");
            failed += 1;
        }
    }
    if failed == workers.0.len() {
        bail!("every worker failed; see their errors above");
    }
    drop(extra);

    // Collect the result before the servers' linger ends.
    let options = ClientOptions { tls: None, token, encoding: Encoding::F32Le, retry_for: Duration::from_secs(10) };
    let summary = collect(config, cluster, &addrs, &options, run_dir, start.elapsed().as_secs_f64())?;
    drop(servers);
    Ok(summary)
}

/// Pulls the run's parameters from its servers (one address per shard) and writes them into
/// `run_dir` as the run's checkpoint, which `shoal eval`, `plot` and `train --resume` read;
/// returns the run's summary as the servers count it.
pub fn collect(
    config: &TrainConfig,
    cluster: &ClusterConfig,
    addrs: &[String],
    options: &ClientOptions,
    run_dir: &RunDir,
    wall_seconds: f64,
) -> Result<Summary> {
    let spec = server_spec(config)?;
    let store = ShardedStore::connect(addrs, spec.layout_hash(), spec.params.len(), options)?;
    let mut params = vec![0.0; spec.params.len()];
    let version = store.pull(None, &mut params)?.unwrap_or(0);
    let status = store.report(0, 0, &[])?;
    let mut agent = agent_with_params(config, cluster, &params, version)?;
    // The normalization statistics every worker shared (none when nothing is normalized).
    let statistics = store.share_statistics(usize::MAX, &[])?;
    if !statistics.is_empty() {
        agent.set_peer_statistics(&statistics)?;
    }
    save_checkpoint(
        agent.as_mut(),
        &LoopState { iteration: 0, wall_seconds, best_return_mean: None },
        &run_dir.checkpoint(),
    )?;
    let return_mean = status.return_mean.is_finite().then_some(status.return_mean);
    let reached = matches!((config.common.stop.episode_return_mean, return_mean), (Some(t), Some(m)) if m >= t);
    let budget_left = config.common.stop.env_steps.is_none_or(|b| status.total_env_steps < b);
    let out_of_time = config.common.stop.wall_seconds.is_some_and(|limit| wall_seconds >= limit);
    let evaluated = config.common.stop.eval_return_mean.is_some() && budget_left && !reached && !out_of_time;
    Ok(Summary {
        env_steps: status.total_env_steps,
        iterations: version,
        wall_seconds,
        env_steps_per_sec: status.total_env_steps as f64 / wall_seconds.max(1e-9),
        episodes: status.episodes,
        final_episode_return_mean: return_mean,
        best_episode_return_mean: None,
        stop_reason: match (reached, evaluated) {
            (true, _) => StopReason::ReturnReached,
            (false, true) => StopReason::EvalReturnReached,
            (false, false) if budget_left && out_of_time => StopReason::WallTime,
            (false, false) => StopReason::EnvSteps,
        },
    })
}

/// The run's agent holding the servers' final parameters, to checkpoint as the run's result.
fn agent_with_params(
    config: &TrainConfig,
    cluster: &ClusterConfig,
    params: &[f32],
    version: u64,
) -> Result<Box<dyn Agent>> {
    if config.algo.has_learner() {
        let mut agent = build_agent(config)?;
        agent.network().context("an actor-learner agent has a network")?.params.copy_from_slice(params);
        return Ok(agent);
    }
    let mut agent = cluster_agent(config, cluster)?;
    agent.set_params(params, version)?;
    Ok(Box::new(agent))
}
