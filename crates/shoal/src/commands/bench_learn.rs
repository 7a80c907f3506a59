//! `shoal bench solve` and `shoal bench learn`: how fast Shoal learns, in wall-clock time.
//!
//! `solve` trains one config for several seeds until the mean training return over the last
//! 100 episodes reaches a threshold (the criterion `bench/solve_bench.sh` applies to
//! Stable-Baselines3 in the same session); `learn` trains the benchmark configs once each and
//! evaluates them against their targets.

use std::path::PathBuf;

use anyhow::Result;
use shoal_algo::eval::evaluate;
use shoal_algo::{build_agent, learn, LoopState, StopReason, TrainConfig};

/// Arguments of `shoal bench solve`.
#[derive(clap::Args)]
pub struct SolveArgs {
    config: PathBuf,
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Mean training return over the last 100 episodes that counts as solved.
    #[arg(long, default_value_t = 475.0)]
    threshold: f64,
    /// Override a config key, repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub fn solve(args: &SolveArgs) -> Result<()> {
    let mut times = Vec::new();
    let mut steps = Vec::new();
    for seed in 1..=args.seeds {
        let mut overrides = args.set.clone();
        overrides.push(format!("seed={seed}"));
        overrides.push(format!("stop.episode_return_mean={}", args.threshold));
        let config = TrainConfig::load(&args.config, &overrides)?;
        let mut agent = build_agent(&config)?;
        let summary = learn(agent.as_mut(), &config.stop, &mut LoopState::default(), &mut [])?;
        let solved = summary.stop_reason == StopReason::ReturnReached;
        println!(
            "seed {seed}: {} after {:.2} s and {} env steps (return mean {:.1})",
            if solved { "solved" } else { "NOT solved" },
            summary.wall_seconds,
            summary.env_steps,
            summary.final_episode_return_mean.unwrap_or(f64::NAN)
        );
        if solved {
            times.push(summary.wall_seconds);
            steps.push(summary.env_steps as f64);
        }
    }
    println!("solved: {}/{}", times.len(), args.seeds);
    if !times.is_empty() {
        println!("median_seconds: {:.3}", median(&mut times));
        println!("median_env_steps: {:.0}", median(&mut steps));
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Arguments of `shoal bench learn`.
#[derive(clap::Args)]
pub struct LearnArgs {
    /// Directory holding the configs.
    #[arg(long, default_value = "configs")]
    configs: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The benchmark table: (config, target of the deterministic 100-episode eval).
const TARGETS: [(&str, f64); 5] = [
    ("cartpole-a2c.toml", 475.0),
    ("acrobot-ppo.toml", -100.0),
    ("acrobot-dqn.toml", -100.0),
    ("mountaincar-dqn.toml", -120.0),
    ("pendulum-ppo.toml", -300.0),
];

pub fn learn_table(args: &LearnArgs) -> Result<()> {
    println!("| config | env steps | train seconds | eval return (100 ep.) | target | met |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, target) in TARGETS {
        let config = TrainConfig::load(&args.configs.join(name), &[format!("seed={}", args.seed)])?;
        let mut agent = build_agent(&config)?;
        let summary = learn(agent.as_mut(), &config.stop, &mut LoopState::default(), &mut [])?;
        let report = evaluate(agent.as_mut(), &config, 100, true, 1_000_000)?;
        let met = report.episode_return_mean >= target;
        println!(
            "| {name} | {} | {:.1} | {:.1} ± {:.1} | ≥ {target} | {} |",
            summary.env_steps,
            summary.wall_seconds,
            report.episode_return_mean,
            report.episode_return_std,
            if met { "yes" } else { "no" }
        );
    }
    Ok(())
}
