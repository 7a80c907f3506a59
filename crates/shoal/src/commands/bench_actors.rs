//! `shoal bench actors`: env steps per second of one Ape-X actor acting in f32 and in int8
//! (`apex.actor_precision`), alone and in the same run — what int8 actors buy (ActorQ, Lam
//! et al.), apart from the learner's rate limiter that paces actors in a training run.

use std::path::PathBuf;

use anyhow::{bail, Result};
use shoal_algo::apex::actor_steps_per_second;
use shoal_algo::config::Precision;
use shoal_algo::{Algo, TrainConfig};

use super::bench_timing::median;

/// Arguments of `shoal bench actors`.
#[derive(clap::Args)]
pub struct ActorsArgs {
    /// An Ape-X config with the DQN learner.
    #[arg(default_value = "configs/cartpole-apex.toml")]
    config: PathBuf,
    /// Override a config key, repeatable (e.g. `env.num_envs=64`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Measurements of each precision, alternated; the medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub fn run(args: &ActorsArgs) -> Result<()> {
    let config = TrainConfig::load(&args.config, &args.set)?;
    if config.algo != Algo::Apex {
        bail!("{}: `shoal bench actors` measures Ape-X actors; give an apex config", args.config.display());
    }
    let mut setup = config.apex_setup()?;
    let net = &setup.apex.net;
    println!(
        "actor: {} × {}, Q-network {:?} {}, one actor, no learner",
        config.common.env.num_envs, config.common.env.id, net.hidden, net.activation
    );
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..args.rounds.max(1) {
        for (precision, rates) in [Precision::F32, Precision::Int8].into_iter().zip(&mut rates) {
            setup.apex.actor_precision = precision;
            rates.push(actor_steps_per_second(&config.common, &setup, args.seconds)?);
        }
    }
    let [f32_rate, int8_rate] = rates.map(|mut r| median(&mut r));
    println!("actor_f32_env_steps_per_sec: {f32_rate:.0}");
    println!("actor_int8_env_steps_per_sec: {int8_rate:.0} ({:.2}x f32)", int8_rate / f32_rate);
    Ok(())
}
