//! One module per `shoal` subcommand.

pub mod bench;
pub mod bench_actors;
pub mod bench_allreduce;
pub mod bench_cnn;
pub mod bench_learn;
pub mod bench_load;
pub mod bench_nn;
pub mod bench_pipeline;
pub mod bench_ps;
pub mod bench_replay;
pub mod bench_sac;
pub mod bench_soak;
pub mod bench_timing;
pub mod bench_tune;
pub mod dashboard;
pub mod envs;
pub mod eval;
pub mod export;
pub mod launch;
pub mod load_workers;
pub mod optimize;
pub mod plot;
pub mod ps;
pub mod replay;
pub mod rollout;
pub mod run_task;
pub mod train;
pub mod trained;
pub mod tune;
pub mod tune_plot;
pub mod tune_worker;
pub mod worker;

use anyhow::{bail, Result};
use shoal_env::OptionValue;

/// Parses repeated `--opt key=value` flags into env options.
pub fn parse_env_options(pairs: &[String]) -> Result<Vec<(&str, OptionValue)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key, OptionValue::parse(value))),
            _ => bail!("--opt takes key=value (e.g. --opt is_slippery=false), got `{pair}`"),
        })
        .collect()
}
