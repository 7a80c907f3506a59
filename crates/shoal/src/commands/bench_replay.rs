//! `shoal bench replay`: the prioritized replay's three operations — insert with priorities,
//! sample a batch of 512 with importance weights, update priorities — in process (the
//! [`LocalReplay`] an embedded Ape-X run shares between threads) and through the gRPC replay
//! service on loopback (what actor and learner processes call), in the same run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_dist::replay::Row;
use shoal_dist::{
    spawn_replay, ClientOptions, Encoding, GrpcReplay, Limits, LocalReplay, PrioritizedReplay, ReplayStore, Sample,
    Token, Transitions,
};

use super::bench_timing::per_call;

/// Arguments of `shoal bench replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Replay capacity (filled before sampling is measured).
    #[arg(long, default_value_t = 1 << 20)]
    capacity: usize,
    /// Observation width (4 = CartPole).
    #[arg(long, default_value_t = 4)]
    obs_dim: usize,
    /// Rows per insert call (an actor's batch).
    #[arg(long, default_value_t = 64)]
    insert_batch: usize,
    /// Rows per sample (the learner's batch).
    #[arg(long, default_value_t = 512)]
    sample_batch: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

/// Runs `f` (which handles `items` items per call) for about `seconds`; returns (items per
/// second, microseconds per call).
fn rate(seconds: f64, items: usize, f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    let per_call = per_call(seconds, f)?;
    Ok((items as f64 / per_call, per_call * 1e6))
}

fn batch(obs_dim: usize, rows: usize, rng: &mut Pcg64Mcg) -> (Transitions, Vec<f32>) {
    let mut t = Transitions::new(obs_dim);
    let mut priorities = Vec::with_capacity(rows);
    for _ in 0..rows {
        let obs: Vec<f32> = (0..obs_dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        t.push(Row { obs: &obs, action: &[1.0], reward: 1.0, next_obs: &obs, done: 0.0, discount: 0.97 });
        priorities.push(rng.random_range(0.0..2.0));
    }
    (t, priorities)
}

/// Fills `store`, then measures insert, sample and priority-update rates; prints them under
/// `prefix`.
fn measure(prefix: &str, store: &dyn ReplayStore, args: &ReplayArgs) -> Result<()> {
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let (rows, priorities) = batch(args.obs_dim, args.insert_batch, &mut rng);
    let (insert_rate, insert_us) = rate(args.seconds, args.insert_batch, || {
        store.insert(&rows, Some(&priorities))?;
        Ok(())
    })?;
    let (filler, filler_priorities) = batch(args.obs_dim, 16_384, &mut rng);
    while store.stats()?.len < args.capacity as u64 {
        store.insert(&filler, Some(&filler_priorities))?;
    }
    let mut sample = Sample::default();
    let (sample_rate, sample_us) =
        rate(args.seconds, args.sample_batch, || Ok(store.sample(args.sample_batch, 0.4, &mut sample)?))?;
    let keys = sample.keys.clone();
    let new: Vec<f32> = (0..keys.len()).map(|_| rng.random_range(0.0..2.0)).collect();
    let (update_rate, update_us) = rate(args.seconds, keys.len(), || Ok(store.update_priorities(&keys, &new)?))?;
    println!(
        "{prefix}_insert_rows_per_sec: {insert_rate:.0}  ({insert_us:.1} µs per {}-row insert)",
        args.insert_batch
    );
    println!("{prefix}_sample_{}_us: {sample_us:.1}  ({sample_rate:.0} rows/s)", args.sample_batch);
    println!("{prefix}_priority_updates_per_sec: {update_rate:.0}  ({update_us:.1} µs per {}-key update)", keys.len());
    Ok(())
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    println!(
        "prioritized replay: capacity {}, obs_dim {}, alpha 0.6, inserts of {} rows, samples of {}",
        args.capacity, args.obs_dim, args.insert_batch, args.sample_batch
    );
    let fresh = || -> Result<LocalReplay> {
        Ok(LocalReplay::new(PrioritizedReplay::new(args.capacity, args.obs_dim, 0.6)?, 1))
    };
    measure("inproc", &fresh()?, args)?;
    let token = Token::new("bench-replay-token-0123456789")?;
    let server = spawn_replay("127.0.0.1:0", Arc::new(fresh()?), token.clone(), None, Limits::default())?;
    let options = ClientOptions { tls: None, token, encoding: Encoding::F32Le, retry_for: Duration::from_secs(10) };
    let remote = GrpcReplay::connect(&server.addr().to_string(), args.obs_dim, options)?;
    measure("grpc", &remote, args)?;
    server.shutdown()?;
    Ok(())
}
