//! `shoal worker`: one worker process of a run — the config's agent, with its own envs,
//! sending its updates to the `shoal ps` servers (one address per shard) until they say stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use shoal_algo::actor_learner;
use shoal_algo::cluster::{run_worker, ClusterConfig, Compression};
use shoal_algo::registry::{server_spec, worker_agent};
use shoal_algo::TrainConfig;
use shoal_dist::{ClientOptions, ClientTls, Encoding, GrpcReplay, ShardedStore, Token};

/// Arguments of `shoal worker`.
#[derive(clap::Args)]
pub struct Args {
    /// The run's config (the servers' config).
    config: PathBuf,
    /// The parameter servers, one `host:port` per shard in shard order, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    ps: Vec<String>,
    /// This worker's index in 0..cluster.workers (seeds its envs; names it in rounds).
    #[arg(long, default_value_t = 0)]
    rank: usize,
    /// Override a config key, repeatable (as `shoal train --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    security: ClientSecurity,
    /// Ape-X / IMPALA: the `shoal replay` server this actor inserts into (or the learner
    /// samples from).
    #[arg(long)]
    replay: Option<String>,
    /// Ape-X / IMPALA: run the learner instead of an actor (`--rank` is then ignored).
    #[arg(long, requires = "replay")]
    learner: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let config = TrainConfig::load(&args.config, &args.set)?;
    let cluster = config.cluster().unwrap_or_default();
    ensure!(
        args.ps.len() == cluster.shards,
        "--ps lists {} server(s) but cluster.shards = {}; give one address per shard",
        args.ps.len(),
        cluster.shards
    );
    ensure!(
        args.learner || args.rank < cluster.workers,
        "--rank {} is out of range: cluster.workers = {}",
        args.rank,
        cluster.workers
    );
    ensure!(
        config.algo.has_learner() == args.replay.is_some(),
        "--replay is for Ape-X and IMPALA workers, and they need it (algo = \"{}\")",
        config.algo.name()
    );
    let (token, tls) = args.security.load()?;
    let options = client_options(&cluster, tls, token);
    let role = match (&args.replay, args.learner) {
        (None, _) => WorkerRole::Worker(args.rank),
        (Some(_), false) => WorkerRole::Actor(args.rank),
        (Some(_), true) => WorkerRole::Learner,
    };
    work(&config, role, &args.ps, args.replay.as_deref(), options)
}

/// How a client process (`shoal worker`, `shoal tune-worker`) proves itself to its servers:
/// the run's token, and the CA their TLS certificates are checked against.
#[derive(clap::Args)]
pub struct ClientSecurity {
    /// File holding the run's token (default: $SHOAL_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Connect over TLS, trusting this PEM certificate authority (a build with `--features tls`).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name the servers' certificates carry.
    #[arg(long, default_value = "localhost", requires = "tls_ca")]
    tls_domain: String,
}

impl ClientSecurity {
    /// The run's token, and TLS toward the servers when a CA is given.
    pub fn load(&self) -> Result<(Token, Option<ClientTls>)> {
        let tls = client_tls(self.tls_ca.as_deref(), &self.tls_domain)?;
        Ok((Token::from_file_or_env(self.token_file.as_deref())?, tls))
    }
}

/// TLS toward the servers when a CA is given: trust `ca`'s PEM, expect certificates for
/// `domain`.
pub fn client_tls(ca: Option<&Path>, domain: &str) -> Result<Option<ClientTls>> {
    Ok(match ca {
        Some(ca) => Some(ClientTls { ca_pem: super::ps::read(ca)?, domain: domain.to_string() }),
        None => None,
    })
}

/// How a run's clients talk to its servers: TLS if given, the run's token, the config's
/// wire encoding and retry window.
pub fn client_options(cluster: &ClusterConfig, tls: Option<ClientTls>, token: Token) -> ClientOptions {
    ClientOptions {
        tls,
        token,
        encoding: match cluster.compression {
            Compression::None => Encoding::F32Le,
            Compression::F16 => Encoding::F16Le,
            Compression::Int8 => Encoding::Int8,
        },
        retry_for: Duration::from_secs_f64(cluster.retry_seconds),
    }
}

/// What a worker process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerRole {
    /// Worker `rank` of a PPO / A2C / A3C / DQN cluster.
    Worker(usize),
    /// Ape-X or IMPALA actor `rank`.
    Actor(usize),
    /// The Ape-X or IMPALA learner.
    Learner,
}

/// Runs `role` against the servers at `ps` (one per shard) and, for Ape-X and IMPALA, the
/// replay service at `replay`, until the parameter server stops the run.
pub fn work(
    config: &TrainConfig,
    role: WorkerRole,
    ps: &[String],
    replay: Option<&str>,
    options: ClientOptions,
) -> Result<()> {
    let cluster = config.cluster().unwrap_or_default();
    let spec = server_spec(config)?;
    let store = Arc::new(ShardedStore::connect(ps, spec.layout_hash(), spec.params.len(), &options)?);
    eprintln!("shoal worker ({role:?}): connected to {}", ps.join(","));
    let replay = match replay {
        Some(addr) => {
            ensure!(
                config.algo.has_learner(),
                "--replay is for Ape-X and IMPALA runs: the config needs algo = \"apex\" or \"impala\""
            );
            let (obs_dim, act_dim) = actor_learner::row_widths(config)?;
            Some(GrpcReplay::connect_with_act_dim(addr, obs_dim, act_dim, options)?)
        }
        None => None,
    };
    match (role, replay) {
        (WorkerRole::Worker(rank), None) => {
            let agent = worker_agent(config, rank)?;
            let summary = run_worker(agent, &config.common, &cluster, rank, Arc::clone(&store) as _, store.as_ref())?;
            eprintln!(
                "shoal worker {rank}: stopped by the server after {} env steps of mine ({} iterations); the run has {}",
                summary.env_steps, summary.iterations, summary.total_env_steps
            );
        }
        (WorkerRole::Learner, Some(replay)) => {
            let updates =
                actor_learner::run_learner(config, Arc::clone(&store) as _, &replay, store.as_ref(), cluster.workers)?;
            eprintln!("shoal worker (learner): stopped by the server after {updates} updates");
        }
        (WorkerRole::Actor(rank), Some(replay)) => {
            let (steps, lag) =
                actor_learner::run_actor(config, rank, Arc::clone(&store) as _, &replay, store.as_ref())?;
            eprintln!(
                "shoal worker {rank} (actor): stopped by the server after {steps} env steps of mine (mean parameter lag {lag:.1} versions)"
            );
        }
        (role, _) => bail!("{role:?} does not match the config (algo = \"{}\")", config.algo.name()),
    }
    Ok(())
}
