//! `shoal train`: train an agent from a TOML config into a run directory, with metrics,
//! TensorBoard events, a progress bar, periodic atomic checkpoints, Ctrl-C handling and
//! `--resume`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use shoal::run::RunDir;
use shoal::training::train_into;
use shoal_algo::checkpoint::write_json;
use shoal_algo::cluster::{Mode, Topology};
use shoal_algo::{Agent, Callback, Control, Progress, StopReason, TrainConfig};

/// Arguments of `shoal train`.
#[derive(clap::Args)]
pub struct Args {
    /// The config file, e.g. configs/cartpole-ppo.toml (not needed with --resume).
    config: Option<PathBuf>,
    /// Override a config key, repeatable: --set ppo.learning_rate=3e-4.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (default: runs/<config name>-s<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint.
    #[arg(long, conflicts_with_all = ["config", "out", "seed"])]
    resume: Option<PathBuf>,
}

/// The progress bar (drawn only when stderr is a terminal).
struct ProgressReporter {
    bar: ProgressBar,
}

impl Callback for ProgressReporter {
    fn on_iteration(&mut self, _: &mut dyn Agent, p: &Progress<'_>) -> shoal_algo::Result<Control> {
        self.bar.set_position(p.env_steps);
        let ret = p.episode_return_mean.map_or("-".into(), |r| format!("{r:.1}"));
        self.bar.set_message(format!("return {ret}  episodes {}", p.episodes));
        Ok(Control::Continue)
    }
}

pub fn run(args: &Args) -> Result<()> {
    let (run_dir, config, resuming) = match &args.resume {
        Some(dir) => {
            let run_dir = RunDir::open(dir)?;
            let config = TrainConfig::load(&run_dir.config(), &args.set)?;
            (run_dir, config, true)
        }
        None => {
            let path = args
                .config
                .as_deref()
                .context("give a config file (e.g. configs/cartpole-ppo.toml) or --resume RUN_DIR")?;
            let mut overrides = args.set.clone();
            if let Some(seed) = args.seed {
                overrides.push(format!("seed={seed}"));
            }
            let config = TrainConfig::load(path, &overrides)?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
            let run_dir = RunDir::create(args.out.as_deref(), &format!("{stem}-s{}", config.common.seed))?;
            (run_dir, config, false)
        }
    };
    ensure!(
        config.cluster().is_none_or(|c| c.mode != Mode::Allreduce),
        "cluster.mode = \"allreduce\" runs under MPI: `mpirun -np N shoal run CONFIG --out DIR` (a build with --features mpi)"
    );
    if let Some(cluster) = config.cluster().filter(|c| c.topology == Topology::Processes) {
        run_dir.write_config(&config)?;
        let summary = crate::commands::launch::run(&config, &cluster, &run_dir, resuming)?;
        write_json(&run_dir.summary(), &summary)?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        eprintln!("run saved in {}", run_dir.root.display());
        return Ok(());
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    // A second handler cannot be installed in one process (tests run `run` once per process).
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let bar = match config.common.stop.env_steps {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = ProgressReporter { bar: bar.clone() };
    let summary = train_into(&config, &run_dir, resuming, &interrupted, &mut progress)?;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if summary.stop_reason == StopReason::Callback && interrupted.load(Ordering::SeqCst) {
        eprintln!("interrupted: checkpoint saved; continue with `shoal train --resume {}`", run_dir.root.display());
    } else {
        eprintln!("run saved in {}", run_dir.root.display());
    }
    Ok(())
}
