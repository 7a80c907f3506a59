//! `shoal replay`: serve an Ape-X run's prioritized replay — or an IMPALA run's trajectory
//! queue — over gRPC.
//!
//! The replay is built from the config (`apex.buffer_size`, `apex.priority_alpha`, the env's
//! observation width; IMPALA: `impala.queue_fragments` fragments); actors insert into it,
//! the learner samples from it (and updates priorities; IMPALA's learner takes the oldest
//! fragments). With `--out` and `apex.checkpoint_replay`, it saves itself every
//! `--checkpoint-seconds` and when stopped with Ctrl-C, so a restart with `--resume`
//! (and with it a restarted learner) does not start from an empty replay. With `--out` it also
//! keeps `replay.status.json` there (its fill and rates, for `shoal dashboard`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use shoal_algo::actor_learner::replay_service;
use shoal_algo::registry::Algo;
use shoal_algo::TrainConfig;
use shoal_dist::status::unix_seconds;
use shoal_dist::{spawn_replay, ClusterStatus, Member, RateMeter, ReplayStore, ServerTls, Token};

/// Arguments of `shoal replay`.
#[derive(clap::Args)]
pub struct Args {
    /// The run's config (`algo = "apex"` or `"impala"`; actors and learner use the same one).
    config: PathBuf,
    /// Address to listen on; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:50061")]
    listen: String,
    /// Override a config key, repeatable (as `shoal train --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Directory for the replay checkpoint (`replay.safetensors`, with apex.checkpoint_replay).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start from the checkpoint in --out.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Seconds between two replay checkpoints.
    #[arg(long, default_value_t = 30.0)]
    checkpoint_seconds: f64,
    #[command(flatten)]
    security: super::ps::Security,
}

pub fn run(args: &Args) -> Result<()> {
    let config = TrainConfig::load(&args.config, &args.set)?;
    let (token, tls) = args.security.load()?;
    args.security.check_exposure(&args.listen)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let opts = ReplayServe {
        listen: args.listen.clone(),
        out: args.out.clone(),
        resume: args.resume,
        checkpoint_seconds: args.checkpoint_seconds,
        token,
        tls,
    };
    serve(&config, opts, |_| Ok(()), || Ok(stop.load(Ordering::SeqCst)))
}

/// How a replay is served.
pub struct ReplayServe {
    /// `host:port` to bind (port 0: any free port).
    pub listen: String,
    /// Directory for `replay.safetensors` (with `apex.checkpoint_replay`).
    pub out: Option<PathBuf>,
    /// Start from the checkpoint in `out`.
    pub resume: bool,
    pub checkpoint_seconds: f64,
    pub token: Token,
    pub tls: Option<ServerTls>,
}

/// Serves `config`'s replay until `stopped` says so (asked every 200 ms): `listening` is told
/// the bound address once calls are accepted; the replay is saved on the way out.
pub fn serve(
    config: &TrainConfig,
    opts: ReplayServe,
    listening: impl FnOnce(std::net::SocketAddr) -> Result<()>,
    mut stopped: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let replay = Arc::new(replay_service(config)?);
    let checkpoint_replay = config.apex.as_ref().is_some_and(|a| a.checkpoint_replay);
    if let Some(out) = &opts.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    let checkpoint = opts.out.as_ref().filter(|_| checkpoint_replay).map(|out| out.join("replay.safetensors"));
    // What `shoal dashboard` shows of this server: its fill and rates, twice a second.
    let status_file = opts.out.as_ref().map(|out| out.join("replay.status.json"));
    if opts.resume {
        let path = checkpoint.as_ref().context("--resume needs apex.checkpoint_replay = true in the config")?;
        replay.load(path).with_context(|| format!("resuming the replay from {}", path.display()))?;
        eprintln!("shoal replay: resumed {} transitions", replay.stats()?.len);
    }
    let limits = config.cluster().unwrap_or_default().limits();
    let handle = spawn_replay(&opts.listen, Arc::clone(&replay), opts.token, opts.tls.as_ref(), limits)?;
    let stats = replay.stats()?;
    println!("shoal replay listening on {} (capacity {}, obs_dim {})", handle.addr(), stats.capacity, replay.obs_dim());
    use std::io::Write;
    std::io::stdout().flush()?;
    listening(handle.addr())?;

    let every = Duration::from_secs_f64(opts.checkpoint_seconds.max(0.1));
    let mut last = Instant::now();
    let mut before = stats;
    let (mut inserts, mut samples) = (RateMeter::default(), RateMeter::default());
    let name = if config.algo == Algo::Impala { "trajectory queue" } else { "replay" };
    while !stopped()? {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(path) = &status_file {
            let now = replay.stats()?;
            let detail = format!(
                "{} of {} rows, {:.0} inserted/s, {:.0} taken/s",
                now.len,
                now.capacity,
                inserts.record(now.inserted),
                samples.record(now.sampled)
            );
            let me = Member {
                role: "replay".into(),
                name: name.into(),
                host: handle.addr().to_string(),
                last_seen_unix: unix_seconds(SystemTime::now()),
                detail: Some(detail),
                ..Member::default()
            };
            ClusterStatus::now(vec![me]).write(path)?;
        }
        if last.elapsed() < every {
            continue;
        }
        let secs = last.elapsed().as_secs_f64();
        let now = replay.stats()?;
        eprintln!(
            "shoal replay: {} transitions, {:.0} inserted/s, {:.0} sampled/s, {:.0} priority updates/s, mean priority {:.4}",
            now.len,
            (now.inserted - before.inserted) as f64 / secs,
            (now.sampled - before.sampled) as f64 / secs,
            (now.priority_updates - before.priority_updates) as f64 / secs,
            now.priority_mean
        );
        if let Some(path) = &checkpoint {
            replay.save(path)?;
        }
        before = now;
        last = Instant::now();
    }
    if let Some(path) = &checkpoint {
        replay.save(path)?;
        eprintln!("shoal replay: saved {} transitions to {}", replay.stats()?.len, path.display());
    }
    handle.shutdown()?;
    Ok(())
}
