//! `shoal eval`: run a trained agent for whole episodes and report return, length, success.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shoal_algo::checkpoint::load_checkpoint;
use shoal_algo::eval::evaluate;
use shoal_algo::{build_agent, TrainConfig};

use shoal::run::find_config;

/// Arguments of `shoal eval`.
#[derive(clap::Args)]
pub struct Args {
    /// A run directory or one of its checkpoint directories.
    checkpoint: PathBuf,
    #[arg(long, default_value_t = 100)]
    episodes: usize,
    /// Greedy / mean actions instead of sampling as in training.
    #[arg(long)]
    deterministic: bool,
    /// Seed of the first evaluation episode (episode i uses seed + i).
    #[arg(long, default_value_t = 1_000_000)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let dir = shoal::training::checkpoint_dir(&args.checkpoint);
    let config = TrainConfig::load(&find_config(&dir)?, &[])?;
    let mut agent = build_agent(&config)?;
    load_checkpoint(agent.as_mut(), &dir).with_context(|| format!("loading {}", dir.display()))?;
    let report = evaluate(agent.as_mut(), &config.common, args.episodes, args.deterministic, args.seed)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("env: {}\n{}", config.common.env.id, report.table());
    }
    Ok(())
}
