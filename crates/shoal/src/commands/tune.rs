//! `shoal tune`: runs a hyperparameter study (see `shoal-tune`) with every trial trained in
//! this process, as `shoal train` trains, into `DIR/trials/trial-NNNN` — a run directory that
//! `shoal eval`, `plot` and `train --resume` read. `--resume DIR` finishes a killed or
//! interrupted study; `--status DIR` prints its table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shoal_algo::cluster::Topology;
use shoal_algo::{Agent, Callback, Control, Progress, StopReason};
use shoal_dist::jobs::{spawn_job_queue, JobSource};
use shoal_dist::{ServerTls, Token, TOKEN_ENV};
use shoal_tune::remote::RemoteTrials;
use shoal_tune::store::StudyStore;
use shoal_tune::summary::{table, write_outputs};
use shoal_tune::{run_study, store_path, Decision, JobEnd, Observer, Report, Study, TrialJob, TrialRunner};

use super::launch::{fresh_token, Children};
use super::ps::Security;
use super::tune_plot::plot_study;
use shoal::run::RunDir;
use shoal::training::train_into;

/// Arguments of `shoal tune`.
#[derive(clap::Args)]
pub struct Args {
    /// The study file, e.g. configs/tune/cartpole-ppo-lr-grid.toml.
    study: Option<PathBuf>,
    /// The study's directory (default: runs/tune-<study file name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Finish the study in this directory: finished trials are kept, the ones running when it
    /// stopped continue from their checkpoints.
    #[arg(long, conflicts_with_all = ["study", "out"])]
    resume: Option<PathBuf>,
    /// Print the trials of the study in this directory (running or finished) and exit.
    #[arg(long, conflicts_with_all = ["study", "out", "resume"])]
    status: Option<PathBuf>,
    /// Train no trial here: serve them on this address to `shoal tune-worker` processes
    /// (max_concurrent of them at a time), which need the study directory on storage they
    /// share with this process.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// With --serve: seconds of silence after which a worker is taken for dead and its trial
    /// goes back on the queue (continuing from its last checkpoint).
    #[arg(long, default_value_t = 60.0, requires = "serve")]
    worker_timeout: f64,
    /// Train every trial in a child process (`shoal tune-worker` on loopback, max_concurrent
    /// of them) instead of a thread of this one: a trial that takes its process down takes no
    /// other trial and not the study with it.
    #[arg(long, conflicts_with = "serve")]
    processes: bool,
    #[command(flatten)]
    security: Security,
}

pub fn run(args: &Args) -> Result<()> {
    if let Some(dir) = &args.status {
        let study = stored_study(dir)?;
        let trials = StudyStore::open(&store_path(dir))?.trials()?;
        print!("{}", table(&study, &trials));
        return Ok(());
    }
    let (study, dir, resume) = match (&args.resume, &args.study) {
        (Some(dir), _) => (stored_study(dir)?, dir.clone(), true),
        (None, Some(path)) => {
            let study = Study::load(path)?;
            let stem = path.file_stem().map_or("study".into(), |s| s.to_string_lossy().into_owned());
            let dir = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("tune-{stem}")));
            (study, dir, false)
        }
        (None, None) => {
            bail!("give a study file (e.g. configs/tune/cartpole-ppo-lr-grid.toml), --resume DIR or --status DIR")
        }
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    eprintln!(
        "study {}: {} trials, {} at a time, metric {} ({:?})",
        dir.display(),
        study.trial_count(),
        study.max_concurrent,
        study.metric,
        study.mode
    );
    let trials = match (&args.serve, args.processes) {
        (Some(listen), _) => {
            args.security.check_exposure(listen)?;
            let (token, tls) = args.security.load()?;
            let timeout = Duration::from_secs_f64(args.worker_timeout.max(0.1));
            let queue = Queue { listen, token, tls, timeout };
            queue.serve(&study, &dir, &interrupted, resume, |addr| {
                eprintln!("serving trials to `shoal tune-worker --study {addr}`");
                Ok(Children(Vec::new()))
            })?
        }
        (None, true) => {
            let token = fresh_token()?;
            let secret = token.secret().to_string();
            let queue = Queue { listen: "127.0.0.1:0", token, tls: None, timeout: Duration::from_secs(60) };
            queue.serve(&study, &dir, &interrupted, resume, |addr| {
                let exe = std::env::current_exe().context("locating the shoal executable")?;
                let start = |i: usize| {
                    Command::new(&exe)
                        .args(["tune-worker", "--study", addr, "--name", &format!("child-{i}")])
                        .env(TOKEN_ENV, &secret)
                        .spawn()
                        .context("starting a trial process")
                };
                Ok(Children((0..study.max_concurrent).map(start).collect::<Result<_>>()?))
            })?
        }
        (None, false) => {
            run_study(&study, &dir, &InProcess::new(Arc::clone(&interrupted)), &Printer, &interrupted, resume)?
        }
    };
    print!("{}", table(&study, &trials));
    if interrupted.load(Ordering::SeqCst) {
        eprintln!("interrupted: continue with `shoal tune --resume {}`", dir.display());
        return Ok(());
    }
    let best = write_outputs(&study, &dir, &trials)?;
    let store = StudyStore::open(&store_path(&dir))?;
    let results = trials.iter().map(|t| Ok((t.id, store.results(t.id)?))).collect::<Result<_>>()?;
    plot_study(&study, &dir, &trials, &results, best.as_ref().map(|b| b.id))?;
    match best {
        Some(best) => eprintln!(
            "best: trial {} ({} = {:.4}); its config is {}; curves.png and params.png beside it",
            best.id,
            study.metric,
            best.value.unwrap_or(f64::NAN),
            dir.join("best.toml").display()
        ),
        None => eprintln!("no trial reported {}", study.metric),
    }
    Ok(())
}

/// A job queue to serve a study's trials on.
struct Queue<'a> {
    listen: &'a str,
    token: Token,
    tls: Option<ServerTls>,
    /// Silence after which a worker is taken for dead.
    timeout: Duration,
}

impl Queue<'_> {
    /// Runs the study with every trial trained by `shoal tune-worker` processes that take them
    /// from this queue (`workers`, given the address, starts any that belong to this process);
    /// then tells the waiting workers there is nothing left, and reaps this process's.
    fn serve(
        self,
        study: &Study,
        dir: &Path,
        interrupted: &Arc<AtomicBool>,
        resume: bool,
        workers: impl FnOnce(&str) -> Result<Children>,
    ) -> Result<Vec<shoal_tune::TrialRow>> {
        let local = Box::new(InProcess::new(Arc::clone(interrupted)));
        let queue = Arc::new(RemoteTrials::new(self.timeout, local, |line| eprintln!("{line}")));
        let server =
            spawn_job_queue(self.listen, Arc::clone(&queue) as Arc<dyn JobSource>, self.token, self.tls.as_ref())?;
        let mut children = workers(&server.addr().to_string())?;
        let trials = run_study(study, dir, queue.as_ref(), &Printer, interrupted, resume);
        queue.close();
        // Workers ask every 100 ms: a few seconds let every one hear it and exit.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline
            && children.0.iter_mut().any(|c| c.try_wait().ok().flatten().is_none())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if children.0.is_empty() {
            std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        drop(children);
        Ok(trials?)
    }
}

/// The study stored in `dir`, as it was started.
pub(crate) fn stored_study(dir: &Path) -> Result<Study> {
    let store = StudyStore::open(&store_path(dir))?;
    let text = store.meta("study")?.context("the study store has no study text")?;
    let base = store.meta("base")?.context("the study store has no base config")?;
    Ok(Study::parse(&text, dir, Some(base))?)
}

/// Prints the tuner's events, a line each.
struct Printer;

impl Observer for Printer {
    fn event(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Trains trials as threads of this process.
pub struct InProcess {
    interrupted: Arc<AtomicBool>,
}

impl TrialRunner for InProcess {
    fn run(&self, job: &TrialJob<'_>, report: &mut Report<'_>) -> std::result::Result<JobEnd, String> {
        self.train(job, report).map_err(|e| format!("{e:#}"))
    }

    fn copy_checkpoint(&self, from: &Path, to: &Path) -> std::result::Result<(), String> {
        let (source, target) = (
            RunDir::open(from).map_err(|e| format!("{e:#}"))?.checkpoint(),
            RunDir::open(to).map_err(|e| format!("{e:#}"))?.checkpoint(),
        );
        // Copied beside the target, then swapped in: a crash leaves one whole checkpoint.
        let staged = target.with_extension("incoming");
        let old = target.with_extension("replaced");
        let step = |r: std::io::Result<()>, what: &str| r.map_err(|e| format!("{what}: {e}"));
        let _ = std::fs::remove_dir_all(&staged);
        step(copy_dir(&source, &staged), &format!("copying {}", source.display()))?;
        let _ = std::fs::remove_dir_all(&old);
        if target.exists() {
            step(std::fs::rename(&target, &old), "setting the old checkpoint aside")?;
        }
        step(std::fs::rename(&staged, &target), "moving the copy in")?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }
}

/// Copies directory `from` (files and subdirectories) to a new directory `to`.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl InProcess {
    /// A runner whose trials stop (with a checkpoint) once `interrupted` is set.
    pub fn new(interrupted: Arc<AtomicBool>) -> Self {
        InProcess { interrupted }
    }

    fn train(&self, job: &TrialJob<'_>, report: &mut Report<'_>) -> Result<JobEnd> {
        train_trial(job, &self.interrupted, &mut Reporter { report })
    }
}

/// Trains one job of a trial in this process into its run directory — continuing from its
/// checkpoint when the job says so and there is one — with `callback` hearing every iteration
/// (and stopping the job, with a checkpoint, when it says so).
pub fn train_trial(job: &TrialJob<'_>, interrupted: &Arc<AtomicBool>, callback: &mut dyn Callback) -> Result<JobEnd> {
    if job.config.cluster().is_some_and(|c| c.topology == Topology::Processes) {
        bail!("trials run as threads of `shoal tune`: drop cluster.topology = \"processes\" from the base config");
    }
    let resuming = job.resume && job.dir.join("checkpoints").join("latest").exists();
    let run_dir = if resuming { RunDir::open(&job.dir)? } else { fresh_dir(&job.dir)? };
    let summary = train_into(job.config, &run_dir, resuming, interrupted, callback)?;
    Ok(JobEnd { env_steps: summary.env_steps, stopped_by_tuner: summary.stop_reason == StopReason::Callback })
}

/// A trial's directory from scratch (what a killed first job left is started over).
fn fresh_dir(dir: &Path) -> Result<RunDir> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    RunDir::create(Some(dir), "")
}

/// Hands every iteration's metrics to the tuner and stops when it says so.
struct Reporter<'a> {
    report: &'a mut Report<'a>,
}

impl Callback for Reporter<'_> {
    fn on_iteration(&mut self, _: &mut dyn Agent, p: &Progress<'_>) -> shoal_algo::Result<Control> {
        Ok(match (self.report)(p.env_steps, &trial_metrics(p)) {
            Decision::Continue => Control::Continue,
            Decision::Stop => Control::Stop,
        })
    }
}

/// What a trial reports after an iteration: the run's progress and the algorithm's metrics,
/// by the names metrics.csv gives them.
pub fn trial_metrics<'a>(p: &Progress<'a>) -> Vec<(&'a str, f64)> {
    let mut metrics: Vec<(&str, f64)> = vec![("env_steps", p.env_steps as f64), ("wall_seconds", p.wall_seconds)];
    metrics.extend(p.episode_return_mean.map(|v| ("episode_return_mean", v)));
    metrics.extend(p.episode_len_mean.map(|v| ("episode_len_mean", v)));
    metrics.extend(p.metrics.iter().copied());
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A takeover replaces the target's checkpoint with the source's, files and
    /// subdirectories, and leaves no staging directory behind.
    #[test]
    fn a_checkpoint_copy_replaces_the_target_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        for (root, tag) in [(&from, "source"), (&to, "target")] {
            let latest = root.join("checkpoints/latest");
            std::fs::create_dir_all(latest.join("worker-0")).unwrap();
            std::fs::write(root.join("config.toml"), "algo = \"ppo\"").unwrap();
            std::fs::write(latest.join("model.safetensors"), tag).unwrap();
            std::fs::write(latest.join("worker-0/state.json"), tag).unwrap();
        }
        std::fs::write(to.join("checkpoints/latest/stale.json"), "old").unwrap();
        let runner = InProcess::new(Arc::new(AtomicBool::new(false)));
        runner.copy_checkpoint(&from, &to).unwrap();
        let latest = to.join("checkpoints/latest");
        assert_eq!(std::fs::read_to_string(latest.join("model.safetensors")).unwrap(), "source");
        assert_eq!(std::fs::read_to_string(latest.join("worker-0/state.json")).unwrap(), "source");
        assert!(!latest.join("stale.json").exists(), "the old checkpoint is gone whole");
        let left: Vec<_> = std::fs::read_dir(to.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("latest")]);
    }
}
