//! `shoal bench tune`: what a trial costs the tuner itself. It runs studies of N trials one at
//! a time — with a runner that reports one result and does nothing else (the cost of the
//! searcher, the scheduler, the study store and the thread per job: what Optuna's figure with
//! an empty objective measures), and with real trials of one training iteration (plus the run
//! directory, metrics, checkpoint and summary every trial writes) — for the random and the
//! TPE searcher, and prints the median milliseconds per trial of a few studies. `bench/tune_bench.sh` runs Optuna's
//! equivalent beside it.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use shoal_tune::{run_study, Decision, JobEnd, Observer, Report, Study, TrialJob, TrialRunner};

use super::bench_timing::median;
use super::tune::InProcess;

/// Arguments of `shoal bench tune`.
#[derive(clap::Args)]
pub struct TuneArgs {
    /// Trials per study.
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// Studies per measurement (the median is printed).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The train config trials start from (one iteration each).
    #[arg(long, default_value = "configs/cartpole-ppo.toml")]
    base: std::path::PathBuf,
}

/// Reports one result computed from the trial's learning rate, and trains nothing.
struct Empty;

impl TrialRunner for Empty {
    fn run(&self, job: &TrialJob<'_>, report: &mut Report<'_>) -> std::result::Result<JobEnd, String> {
        let lr = job.config.ppo.as_ref().map_or(0.0, |p| p.learning_rate);
        let _: Decision = report(1, &[("episode_return_mean", -(lr.log10() + 3.0).powi(2))]);
        Ok(JobEnd { env_steps: 1, stopped_by_tuner: false })
    }

    fn copy_checkpoint(&self, _: &Path, _: &Path) -> std::result::Result<(), String> {
        Err("an empty trial has no checkpoint".into())
    }
}

struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &str) {}
}

/// Milliseconds per trial of a study of `trials` trials with `searcher`, run by `runner`.
fn per_trial(args: &TuneArgs, searcher: &str, runner: &dyn TrialRunner) -> Result<f64> {
    let base = std::fs::read_to_string(&args.base)?;
    let text = format!(
        "base = \"base.toml\"\nnum_samples = {}\nsearcher = \"{searcher}\"\n[set]\n\"stop.env_steps\" = 1\n\"run.checkpoint_every\" = 0\n[space]\n\"ppo.learning_rate\" = {{ loguniform = [1e-5, 1e-2] }}\n",
        args.trials
    );
    let dir = tempfile_dir(searcher)?;
    let study = Study::parse(&text, &dir, Some(base))?;
    let start = Instant::now();
    let trials = run_study(&study, &dir, runner, &Quiet, &AtomicBool::new(false), false)?;
    let elapsed = start.elapsed().as_secs_f64();
    anyhow::ensure!(trials.len() == args.trials, "the study ran {} of {} trials", trials.len(), args.trials);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(elapsed * 1e3 / args.trials as f64)
}

fn tempfile_dir(tag: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("shoal-bench-tune-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn run(args: &TuneArgs) -> Result<()> {
    let real = InProcess::new(Arc::new(AtomicBool::new(false)));
    let runners: [(&str, &dyn TrialRunner); 2] = [("empty", &Empty), ("one_iteration", &real)];
    for searcher in ["random", "tpe"] {
        for (name, runner) in runners {
            let mut times =
                (0..args.repeats.max(1)).map(|_| per_trial(args, searcher, runner)).collect::<Result<Vec<_>>>()?;
            println!("tune_{searcher}_{name}_trial_ms: {:.3}", median(&mut times));
        }
    }
    Ok(())
}
