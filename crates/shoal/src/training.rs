//! Training into a run directory: what `shoal train`, every `shoal tune` trial, a cluster
//! task and the Python package's `shoal.train` share — metrics to CSV and TensorBoard,
//! periodic atomic checkpoints, a stop on request, the final checkpoint and `summary.json`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use shoal_algo::checkpoint::{load_checkpoint, save_checkpoint, write_json};
use shoal_algo::eval::EvalStop;
use shoal_algo::pruning::GradualPruning;
use shoal_algo::{build_agent, learn, Agent, Callback, Control, LoopState, Progress, Summary, TrainConfig};

use crate::run::csv::CsvWriter;
use crate::run::tensorboard::EventWriter;
use crate::run::RunDir;

/// Writes each iteration to `metrics.csv` and TensorBoard.
pub struct MetricsLogger {
    csv: CsvWriter,
    events: EventWriter,
    /// Env steps of the whole run per env step of this agent (an all-reduce rank logs for
    /// the group of equal ranks).
    steps_scale: u64,
}

impl MetricsLogger {
    /// Appends to the run directory's `metrics.csv` and a new TensorBoard event file.
    pub fn open(run_dir: &RunDir, steps_scale: u64) -> Result<Self> {
        Ok(MetricsLogger {
            csv: CsvWriter::open(&run_dir.metrics())?,
            events: EventWriter::create(&run_dir.root)?,
            steps_scale,
        })
    }
}

impl Callback for MetricsLogger {
    fn on_iteration(&mut self, _: &mut dyn Agent, p: &Progress<'_>) -> shoal_algo::Result<Control> {
        let env_steps = p.env_steps * self.steps_scale;
        let mut row: Vec<(&str, f64)> = vec![
            ("iteration", p.iteration as f64),
            ("env_steps", env_steps as f64),
            ("wall_seconds", p.wall_seconds),
            ("episode_return_mean", p.episode_return_mean.unwrap_or(f64::NAN)),
            ("episode_len_mean", p.episode_len_mean.unwrap_or(f64::NAN)),
            ("episodes", p.episodes as f64),
        ];
        row.extend(p.metrics.iter().copied());
        let io =
            |e: anyhow::Error| shoal_algo::AlgoError::Io { path: "run directory".into(), message: format!("{e:#}") };
        self.csv.row(&row).map_err(io)?;
        self.events.scalars(env_steps, &row[3..]).map_err(io)?;
        Ok(Control::Continue)
    }
}

/// Writes an embedded cluster's `cluster-status.json` (its servers and workers, for
/// `shoal dashboard`) after iterations, at most twice a second.
pub struct ClusterStatusWriter {
    path: PathBuf,
    last: Option<Instant>,
}

impl ClusterStatusWriter {
    const EVERY: Duration = Duration::from_millis(500);

    pub fn new(run_dir: &RunDir) -> Self {
        ClusterStatusWriter { path: run_dir.cluster_status(), last: None }
    }
}

impl Callback for ClusterStatusWriter {
    fn on_iteration(&mut self, agent: &mut dyn Agent, _: &Progress<'_>) -> shoal_algo::Result<Control> {
        if self.last.is_some_and(|at| at.elapsed() < Self::EVERY) {
            return Ok(Control::Continue);
        }
        if let Some(status) = agent.cluster_status() {
            status.write(&self.path).map_err(|e| shoal_algo::AlgoError::Io {
                path: self.path.display().to_string(),
                message: e.to_string(),
            })?;
            self.last = Some(Instant::now());
        }
        Ok(Control::Continue)
    }
}

/// Saves a checkpoint every `every` env steps; stops the loop on Ctrl-C.
pub struct Checkpointer {
    dir: PathBuf,
    every: u64,
    next: u64,
    interrupted: Arc<AtomicBool>,
    state: LoopState,
}

impl Checkpointer {
    /// Checkpoints into `dir` every `every` of the agent's env steps (0: never), from the
    /// agent's current count; stops the loop once `interrupted` is set.
    pub fn new(dir: PathBuf, every: u64, agent: &dyn Agent, state: LoopState, interrupted: Arc<AtomicBool>) -> Self {
        let next = agent.env_steps().checked_div(every).map_or(u64::MAX, |k| (k + 1) * every);
        Checkpointer { dir, every, next, interrupted, state }
    }
}

impl Callback for Checkpointer {
    fn on_iteration(&mut self, agent: &mut dyn Agent, p: &Progress<'_>) -> shoal_algo::Result<Control> {
        self.state.iteration = p.iteration;
        self.state.wall_seconds = p.wall_seconds;
        if let Some(m) = p.episode_return_mean {
            self.state.best_return_mean = Some(self.state.best_return_mean.map_or(m, |b| b.max(m)));
        }
        if self.interrupted.load(Ordering::SeqCst) {
            return Ok(Control::Stop);
        }
        if self.every > 0 && p.env_steps >= self.next {
            save_checkpoint(agent, &self.state, &self.dir)?;
            while self.next <= p.env_steps {
                self.next += self.every;
            }
        }
        Ok(Control::Continue)
    }
}

/// Trains `config` in this process into `run_dir` — continuing from its checkpoint when
/// `resuming` — with what every run gets (metrics.csv and TensorBoard, periodic checkpoints,
/// the config's evaluation stop, a stop once `interrupted` is set) and `extra`; then
/// saves the final checkpoint and `summary.json`. `shoal train` and every `shoal tune` trial run
/// through here.
pub fn train_into(
    config: &TrainConfig,
    run_dir: &RunDir,
    resuming: bool,
    interrupted: &Arc<AtomicBool>,
    extra: &mut dyn Callback,
) -> Result<Summary> {
    let mut agent = build_agent(config)?;
    let mut state = LoopState::default();
    if resuming {
        state = load_checkpoint(agent.as_mut(), &run_dir.checkpoint())
            .with_context(|| format!("resuming from {}", run_dir.checkpoint().display()))?;
        eprintln!("resumed {} at {} env steps", run_dir.root.display(), agent.env_steps());
    }
    run_dir.write_config(config)?;
    let mut logger = MetricsLogger::open(run_dir, 1)?;
    let every = config.common.run.checkpoint_every;
    let mut checkpointer =
        Checkpointer::new(run_dir.checkpoint(), every, agent.as_ref(), state, Arc::clone(interrupted));
    let mut pruning = pruning_for(config, agent.as_mut(), run_dir, resuming)?;
    // Pruning goes first: the other callbacks (checkpoints, evaluation) see the pruned model.
    let mut callbacks: Vec<&mut dyn Callback> = Vec::new();
    if let Some(pruning) = pruning.as_mut() {
        callbacks.push(pruning);
    }
    let mut cluster_status = ClusterStatusWriter::new(run_dir);
    callbacks.extend([&mut logger as &mut dyn Callback, &mut cluster_status, &mut checkpointer, extra]);
    let mut eval_stop = EvalStop::from_config(&config.common);
    if let Some(eval_stop) = eval_stop.as_mut() {
        callbacks.push(eval_stop);
    }
    let summary = learn(agent.as_mut(), &config.common.stop, &mut state, &mut callbacks)?;
    save_checkpoint(agent.as_mut(), &state, &run_dir.checkpoint())?;
    if let Some(mask) = pruning.as_ref().and_then(GradualPruning::mask) {
        let network = agent.network().context("pruning needs a network")?;
        shoal_nn::io::save_mask(mask, &run_dir.checkpoint().join(MASK_FILE), &network.layout)?;
    }
    write_json(&run_dir.summary(), &summary)?;
    Ok(summary)
}

/// Where a pruned run keeps its mask, beside the model in the checkpoint.
pub const MASK_FILE: &str = "mask.safetensors";

/// The `[prune]` schedule of `config`, continuing from the checkpoint's mask when resuming.
fn pruning_for(
    config: &TrainConfig,
    agent: &mut dyn Agent,
    run_dir: &RunDir,
    resuming: bool,
) -> Result<Option<GradualPruning>> {
    let Some(prune) = &config.common.prune else { return Ok(None) };
    let total = config.common.stop.env_steps.context("[prune] needs stop.env_steps")?;
    let mut pruning = GradualPruning::from_config(prune, total)?;
    let saved = run_dir.checkpoint().join(MASK_FILE);
    if resuming && saved.exists() {
        let layout = agent.network().context("pruning needs a network")?.layout;
        let mask = shoal_nn::io::load_mask(&saved, &layout).with_context(|| format!("reading {}", saved.display()))?;
        pruning.resume(agent, mask)?;
    }
    Ok(Some(pruning))
}

/// The checkpoint directory for a path given to `eval`: a checkpoint itself or a run directory.
pub fn checkpoint_dir(path: &Path) -> PathBuf {
    if path.join("state.json").exists() {
        path.to_path_buf()
    } else {
        path.join("checkpoints").join("latest")
    }
}
