//! `shoal bench solve` and `shoal bench learn`: how fast Shoal learns, in wall-clock time.
//!
//! `solve` trains one config for several seeds until the mean training return over the last
//! 100 episodes reaches a threshold (the criterion `bench/solve_bench.sh` applies to
//! Stable-Baselines3 in the same session); `learn` trains the benchmark configs once each and
//! evaluates them against their targets.

use std::path::PathBuf;

use anyhow::Result;
use shoal_algo::eval::{evaluate, EvalStop};
use shoal_algo::{build_agent, learn, Callback, LoopState, StopReason, TrainConfig};

use super::bench_timing::median;

/// Arguments of `shoal bench solve`.
#[derive(clap::Args)]
pub struct SolveArgs {
    /// One or more configs, run one after the other with the same seeds and criterion (e.g.
    /// `configs/cartpole-apex.toml configs/cartpole-dqn.toml` compares Ape-X with DQN).
    #[arg(required = true)]
    configs: Vec<PathBuf>,
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// The return that counts as solved.
    #[arg(long, default_value_t = 475.0)]
    threshold: f64,
    /// What must reach the threshold: the mean of the last 100 training episodes (`train`),
    /// or a deterministic evaluation every `stop.eval_every` env steps (`eval`: for Ape-X,
    /// whose actors explore with ε up to 0.4, and for comparing it with others).
    #[arg(long, value_enum, default_value_t = Criterion::Train)]
    criterion: Criterion,
    /// Override a config key, repeatable (applies to every config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// What `shoal bench solve` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Criterion {
    Train,
    Eval,
}

/// One config's seeds until solved; prints each and the medians, returns the median seconds.
fn solve_config(args: &SolveArgs, path: &std::path::Path) -> Result<Option<f64>> {
    let mut times = Vec::new();
    let mut steps = Vec::new();
    let name = path.display();
    for seed in 1..=args.seeds {
        let mut overrides = args.set.clone();
        overrides.push(format!("seed={seed}"));
        let (key, reason) = match args.criterion {
            Criterion::Train => ("episode_return_mean", StopReason::ReturnReached),
            Criterion::Eval => ("eval_return_mean", StopReason::EvalReturnReached),
        };
        overrides.push(format!("stop.{key}={}", args.threshold));
        let config = TrainConfig::load(path, &overrides)?;
        let mut agent = build_agent(&config)?;
        let mut eval_stop = EvalStop::from_config(&config.common);
        let mut callbacks: Vec<&mut dyn Callback> = eval_stop.iter_mut().map(|e| e as &mut dyn Callback).collect();
        let summary = learn(agent.as_mut(), &config.common.stop, &mut LoopState::default(), &mut callbacks)?;
        let solved = summary.stop_reason == reason;
        println!(
            "{name} seed {seed}: {} after {:.2} s and {} env steps (training return mean {:.1})",
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
    println!("{name} solved: {}/{}", times.len(), args.seeds);
    if times.is_empty() {
        return Ok(None);
    }
    let seconds = median(&mut times);
    println!("{name} median_seconds: {seconds:.3}");
    println!("{name} median_env_steps: {:.0}", median(&mut steps));
    Ok(Some(seconds))
}

pub fn solve(args: &SolveArgs) -> Result<()> {
    let medians = args.configs.iter().map(|path| solve_config(args, path)).collect::<Result<Vec<_>>>()?;
    if let Some(Some(first)) = medians.first() {
        for (path, other) in args.configs.iter().zip(&medians).skip(1) {
            if let Some(other) = other {
                let base = args.configs[0].display();
                println!("median wall-clock {} / {base}: {:.2}", path.display(), other / first);
            }
        }
    }
    Ok(())
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
const TARGETS: [(&str, f64); 8] = [
    ("cartpole-a2c.toml", 475.0),
    ("acrobot-ppo.toml", -100.0),
    ("acrobot-dqn.toml", -100.0),
    ("mountaincar-dqn.toml", -120.0),
    ("pendulum-ppo.toml", -300.0),
    ("pendulum-sac.toml", -200.0),
    ("pendulum-td3.toml", -200.0),
    ("mountaincar-continuous-sac.toml", 90.0),
];

pub fn learn_table(args: &LearnArgs) -> Result<()> {
    println!("| config | env steps | train seconds | eval return (100 ep.) | target | met |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, target) in TARGETS {
        let config = TrainConfig::load(&args.configs.join(name), &[format!("seed={}", args.seed)])?;
        let mut agent = build_agent(&config)?;
        let summary = learn(agent.as_mut(), &config.common.stop, &mut LoopState::default(), &mut [])?;
        let report = evaluate(agent.as_mut(), &config.common, 100, true, 1_000_000)?;
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
