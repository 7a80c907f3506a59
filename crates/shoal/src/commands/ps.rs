//! `shoal ps`: serve one shard of a run's parameters over gRPC.
//!
//! The server starts from the config's initial network (the same seed every worker uses, so
//! layouts match), optimizes with the algorithm's optimizer in the config's `[cluster]` mode,
//! checkpoints every `cluster.checkpoint_every` updates into `--out`, and counts the progress
//! workers report: it anneals the learning rate on the run's env steps and, once `[stop]` is
//! met, tells workers to stop, lingers so each hears it, saves and exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use shoal_algo::cluster::{stop_rule, ClusterConfig};
use shoal_algo::eval::EvalStop;
use shoal_algo::registry::{server_spec, worker_agent};
use shoal_algo::TrainConfig;
use shoal_dist::status::{shard_members, unix_seconds};
use shoal_dist::{
    shard_range, CheckpointPolicy, ClusterStatus, Coordinator, Member, ParamStore, RateMeter, RunMonitor, ServerTls,
    ServiceConfig, ShardInfo, Token,
};

use shoal::run::csv::CsvWriter;

/// Arguments of `shoal ps`.
#[derive(clap::Args)]
pub struct Args {
    /// The run's config (workers must use the same one).
    config: PathBuf,
    /// Address to listen on; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// Override a config key, repeatable (as `shoal train --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Which of the config's `cluster.shards` shards this server holds.
    #[arg(long, default_value_t = 0)]
    shard: usize,
    /// Directory for this shard's checkpoints, progress and (shard 0) metrics.csv.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the checkpoint in --out (after a crash or kill).
    #[arg(long, requires = "out")]
    resume: bool,
    #[command(flatten)]
    security: Security,
    /// Seconds to keep serving after the stop criterion, so every worker hears it (at least
    /// the round timeout plus 5 s, so a worker waiting in a round gets its answer).
    #[arg(long, default_value_t = 5.0)]
    linger: f64,
}

/// How a server (`shoal ps`, `shoal replay`) checks its callers: the run's token, and TLS
/// when a certificate is given.
#[derive(clap::Args)]
pub struct Security {
    /// File holding the run's token (default: $SHOAL_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve over TLS with this PEM certificate (chain); needs --tls-key and a build with
    /// `--features tls`.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve on an address other machines reach without TLS, so the token crosses the
    /// network in clear text: only on a network you trust (a test's namespaces, a private
    /// cluster fabric).
    #[arg(long)]
    insecure: bool,
}

impl Security {
    /// The token every call must carry, and the TLS identity if any.
    pub fn load(&self) -> Result<(Token, Option<ServerTls>)> {
        let token = Token::from_file_or_env(self.token_file.as_deref())?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls { cert_pem: read(cert)?, key_pem: read(key)? }),
            _ => None,
        };
        Ok((token, tls))
    }

    /// Refuses to serve on a non-loopback address without TLS unless `--insecure` is given:
    /// the token alone would cross the network in clear text.
    pub fn check_exposure(&self, listen: &str) -> Result<()> {
        if self.tls_cert.is_some() || is_loopback(listen) {
            return Ok(());
        }
        ensure!(
            self.insecure,
            "{listen} is reachable from other machines and, without TLS, the run's token would cross the network in clear text: \
             serve over TLS (--tls-cert/--tls-key in a build with --features tls; scripts/make-run-certs.sh makes a run's CA and certificates), \
             or pass --insecure on a network you trust"
        );
        eprintln!("warning: serving {listen} without TLS (--insecure): the token crosses the network in clear text");
        Ok(())
    }
}

/// In an Ape-X or IMPALA run the workers are actors `0..workers` and the learner (rank
/// `workers`): names the dashboard shows them by.
fn name_actors_and_learner(members: &mut [Member], workers: usize) {
    for member in members.iter_mut().filter(|m| m.role == "worker") {
        let rank: Option<usize> = member.name.strip_prefix("worker ").and_then(|r| r.parse().ok());
        (member.role, member.name) = match rank {
            Some(rank) if rank == workers => ("learner".into(), "learner".into()),
            _ => ("actor".into(), member.name.replace("worker", "actor")),
        };
    }
}

/// How long a server keeps serving after the stop: `requested`, but at least the round
/// timeout plus 5 s, so a worker waiting in a round gets its answer. A run's other servers
/// (the replay) stay as long, so workers hear the stop before losing them.
pub fn linger_seconds(requested: f64, cluster: &ClusterConfig) -> f64 {
    requested.max(cluster.round_timeout + 5.0)
}

/// True when `listen` (`host:port`) binds only the loopback interface.
pub(crate) fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host).trim_matches(['[', ']']);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Run totals kept beside the checkpoint, so a restarted server counts on.
#[derive(Serialize, Deserialize)]
struct Progress {
    env_steps: u64,
    episodes: u64,
}

fn write_progress(path: &Path, monitor: &RunMonitor) -> Result<()> {
    let t = monitor.totals();
    let json = serde_json::to_vec(&Progress { env_steps: t.env_steps, episodes: t.episodes })?;
    shoal_nn::io::atomic_write(path, &json)?;
    Ok(())
}

/// Reads a PEM file given on the command line.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(args: &Args) -> Result<()> {
    let config = TrainConfig::load(&args.config, &args.set)?;
    let (token, tls) = args.security.load()?;
    args.security.check_exposure(&args.listen)?;
    let shard = ShardServe {
        listen: args.listen.clone(),
        shard: args.shard,
        metrics: args.out.as_ref().filter(|_| args.shard == 0).map(|out| out.join("metrics.csv")),
        out: args.out.clone(),
        resume: args.resume,
        token,
        tls,
        linger: args.linger,
    };
    serve(&config, shard, |_| Ok(()), || Ok(()))
}

/// How one parameter-server shard is served.
pub struct ShardServe {
    /// `host:port` to bind (port 0: any free port).
    pub listen: String,
    /// Which of the config's `cluster.shards` shards.
    pub shard: usize,
    /// Directory for the shard's checkpoint and progress.
    pub out: Option<PathBuf>,
    /// Where the run's metrics go (shard 0 only).
    pub metrics: Option<PathBuf>,
    /// Continue from the checkpoint in `out`.
    pub resume: bool,
    pub token: Token,
    pub tls: Option<ServerTls>,
    /// Seconds to keep serving after the stop criterion (see `shoal ps --linger`).
    pub linger: f64,
}

/// Serves a shard of `config`'s parameters until the run stops and the linger has passed:
/// `listening` is told the bound address once calls are accepted, `finished` runs after the
/// linger while the server still answers (a rank 0 collects the run's result there).
pub fn serve(
    config: &TrainConfig,
    opts: ShardServe,
    listening: impl FnOnce(std::net::SocketAddr) -> Result<()>,
    finished: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let cluster = config.cluster().unwrap_or_default();
    ensure!(opts.shard < cluster.shards, "shard {} is out of range: cluster.shards = {}", opts.shard, cluster.shards);
    let spec = server_spec(config)?;
    let (index, count) = (opts.shard, cluster.shards);
    let mut server = spec.server(&cluster, index, count);
    let checkpoint = opts.out.as_ref().map(|out| out.join(format!("ps-shard{index}.safetensors")));
    let progress_file = opts.out.as_ref().map(|out| out.join(format!("ps-shard{index}.progress.json")));
    let status_file = opts.out.as_ref().map(|out| out.join(format!("ps-shard{index}.status.json")));
    if let (Some(out), Some(path)) = (&opts.out, &checkpoint) {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let layout = spec.shard_layout(index, count);
        server =
            server.with_checkpoints(CheckpointPolicy { path: path.clone(), layout, every: cluster.checkpoint_every });
    }
    let monitor = Arc::new(RunMonitor::new(stop_rule(&config.common.stop)));
    if opts.resume {
        let version = server.resume().with_context(|| "resuming the parameter server (--resume)")?;
        if let Some(saved) = progress_file.as_ref().and_then(|p| std::fs::read(p).ok()) {
            let saved: Progress = serde_json::from_slice(&saved).context("reading the saved progress")?;
            monitor.resume_from(saved.env_steps, saved.episodes);
        }
        eprintln!("shoal ps: resumed shard {index} at version {version}, {} env steps", monitor.totals().env_steps);
    }
    let server = Arc::new(server);
    let offset = shard_range(spec.params.len(), index, count).start as u64;
    let service = ServiceConfig {
        tls: opts.tls,
        token: opts.token,
        layout_hash: spec.layout_hash(),
        shard: ShardInfo { index: index as u32, count: count as u32, offset },
        limits: cluster.limits(),
    };
    let handle = shoal_dist::spawn(&opts.listen, Arc::clone(&server), Some(Arc::clone(&monitor)), service)?;
    println!(
        "shoal ps listening on {} (shard {index} of {count}, {} mode, {} parameters)",
        handle.addr(),
        server.mode().name(),
        server.len()
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    listening(handle.addr())?;

    let mut csv = match &opts.metrics {
        Some(path) => Some(CsvWriter::open(path)?),
        None => None,
    };
    // `stop.eval_return_mean`: evaluate the served parameters with the config's agent (over
    // several shards no server holds the whole model, and worker 0 evaluates instead).
    let mut evaluator = match EvalStop::from_config(&config.common).filter(|_| count == 1) {
        Some(eval) => Some((eval, worker_agent(config, 0)?)),
        None => None,
    };
    let linger = linger_seconds(opts.linger, &cluster);
    let start = Instant::now();
    let mut run_rate = RateMeter::default();
    let mut stopped_at: Option<Instant> = None;
    // Evaluations are due every `stop.eval_every` env steps, which fast runs (IMPALA on
    // CartPole: ~350k env steps/s) pass in a fraction of a second: the loop looks every
    // 100 ms, and reports every fifth look.
    for tick in 0u64.. {
        std::thread::sleep(Duration::from_millis(100));
        let totals = monitor.totals();
        let progress = config.common.stop.env_steps.map_or(0.0, |b| (totals.env_steps as f64 / b as f64).min(1.0));
        let lr = spec.lr.at(progress);
        server.set_lr(lr as f32);
        let stats = server.stats();
        // `stop.wall_seconds`: the run's clock is this server's (workers start with it).
        if !totals.stopped
            && config.common.stop.wall_seconds.is_some_and(|limit| start.elapsed().as_secs_f64() >= limit)
        {
            monitor.stop_now();
        }
        if let Some((eval, agent)) = evaluator.as_mut().filter(|_| !totals.stopped) {
            let network = agent.network().context("this algorithm has no network to evaluate")?;
            server.pull(None, network.params)?;
            // With the normalization statistics the workers shared (none when nothing is).
            let statistics = monitor.share_statistics(usize::MAX, &[])?;
            if !statistics.is_empty() {
                agent.set_peer_statistics(&statistics)?;
            }
            if let Some(mean) = eval.maybe_evaluate(agent.as_mut(), totals.env_steps)? {
                eprintln!(
                    "shoal ps: deterministic evaluation at {} env steps: mean return {mean:.1}",
                    totals.env_steps
                );
                if eval.reached(mean) {
                    // The evaluated parameters are the run's result, whatever arrives next.
                    server.freeze(agent.network().context("evaluated agent")?.params)?;
                    monitor.stop_now();
                }
            }
        }
        let report = tick % 5 == 0;
        if let Some(path) = progress_file.as_ref().filter(|_| report) {
            write_progress(path, &monitor)?;
        }
        if let Some(path) = status_file.as_ref().filter(|_| report) {
            let me = Member {
                role: "server".into(),
                name: format!("shard {index}"),
                host: handle.addr().to_string(),
                last_seen_unix: unix_seconds(SystemTime::now()),
                env_steps: totals.env_steps,
                env_steps_per_s: run_rate.record(totals.env_steps),
                staleness: Some(stats.staleness_sum as f64 / stats.gradients.max(1) as f64),
                version: Some(server.version()),
                ..Member::default()
            };
            let mut pushes = stats.clone();
            if config.algo.has_learner() {
                // The learner is the only one pushing (as worker 0 of its one-worker round).
                if let Some(learner) = pushes.workers.remove(&0) {
                    pushes.workers.insert(cluster.workers, learner);
                }
            }
            let mut members = shard_members(me, &pushes, &monitor.workers(), "unknown");
            if config.algo.has_learner() {
                name_actors_and_learner(&mut members, cluster.workers);
            }
            ClusterStatus::now(members).write(path)?;
        }
        if let Some(csv) = csv.as_mut().filter(|_| report) {
            csv.row(&[
                ("wall_seconds", start.elapsed().as_secs_f64()),
                ("env_steps", totals.env_steps as f64),
                ("episodes", totals.episodes as f64),
                ("episode_return_mean", totals.return_mean),
                ("ps/version", server.version() as f64),
                ("ps/staleness_mean", stats.staleness_sum as f64 / stats.gradients.max(1) as f64),
                ("ps/rejected", stats.rejected_stale as f64),
                ("ps/dropped_workers", stats.dropped_workers as f64),
                ("ps/connections", handle.open_connections() as f64),
                ("ps/refused_busy", handle.refused_pushes() as f64),
                ("charts/learning_rate", lr),
            ])?;
        }
        if report {
            eprintln!(
                "shoal ps [shard {index}] {:>7.1}s  env steps {:>9}  episodes {:>6}  return mean {:>7.1}  version {}",
                start.elapsed().as_secs_f64(),
                totals.env_steps,
                totals.episodes,
                totals.return_mean,
                server.version()
            );
        }
        match stopped_at {
            None if totals.stopped => stopped_at = Some(Instant::now()),
            Some(at) if at.elapsed().as_secs_f64() >= linger => break,
            _ => {}
        }
    }
    if let Some(path) = &checkpoint {
        server.save(path, &spec.shard_layout(index, count))?;
        eprintln!("shoal ps: stop criterion met; final state in {}", path.display());
    }
    finished()?;
    handle.shutdown()?;
    Ok(())
}
