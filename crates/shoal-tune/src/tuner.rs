//! The tuner: keeps `max_concurrent` trial jobs running — each job asked of the scheduler,
//! each new trial's parameters of the searcher — records everything in the study store as it
//! happens, and resumes a killed study from that store.
//!
//! How a trial trains is not this crate's business: a [`TrialRunner`] (the CLI's trains in
//! this process, as `shoal train` does, into the trial's own run directory) runs a job and
//! reports every iteration's metrics, and the tuner answers whether to go on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use shoal_algo::TrainConfig;

use crate::error::{spec_err, Result};
use crate::pbt::Pbt;
use crate::scheduler::{Asha, Decision, Fifo, MedianStopping, Scheduler};
use crate::searcher::{GridSearch, RandomSearch, Searcher};
use crate::space::{show, Params};
use crate::store::{StudyStore, TrialRow, TrialState};
use crate::study::{SchedulerKind, SearcherKind, Study};
use crate::tpe::Tpe;

/// The searcher a study asks for.
pub fn searcher_for(study: &Study) -> Box<dyn Searcher> {
    let (space, seed) = (study.space.clone(), study.seed);
    match study.searcher {
        SearcherKind::Grid => Box::new(GridSearch::new(space, seed)),
        SearcherKind::Random => Box::new(RandomSearch::new(space, seed)),
        SearcherKind::Tpe => Box::new(Tpe::new(space, seed)),
    }
}

/// The scheduler a study asks for. `budget`: a trial's whole run in env steps.
pub fn scheduler_for(study: &Study) -> Box<dyn Scheduler> {
    let budget = study.budget.unwrap_or(u64::MAX);
    match study.scheduler {
        SchedulerKind::Fifo => Box::new(Fifo::new(budget)),
        SchedulerKind::Asha => Box::new(Asha::new(study.asha, budget)),
        SchedulerKind::Median => Box::new(MedianStopping::new(study.median, budget)),
        SchedulerKind::Pbt => Box::new(Pbt::new(study.pbt.clone(), study.space.clone(), budget, study.seed)),
    }
}

/// One job for a runner: train trial `trial` (config `config`, run directory `dir`) until
/// `until` env steps, continuing from its checkpoint when `resume`.
pub struct TrialJob<'a> {
    pub trial: usize,
    pub config: &'a TrainConfig,
    pub dir: PathBuf,
    pub until: u64,
    pub resume: bool,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobEnd {
    pub env_steps: u64,
    /// The tuner's answer stopped it (a rung reached, a scheduler's stop, an interrupt);
    /// otherwise the run's own stop rule ended it.
    pub stopped_by_tuner: bool,
}

/// What a runner calls after every iteration: `(env_steps, metrics)`, answered with whether
/// to go on.
pub type Report<'a> = dyn FnMut(u64, &[(&str, f64)]) -> Decision + 'a;

/// Trains trials.
pub trait TrialRunner: Sync {
    /// Runs `job`, calling `report(env_steps, metrics)` after every iteration and stopping
    /// (with a checkpoint to continue from) when it answers [`Decision::Stop`]. An error is the
    /// trial's failure, as its message.
    fn run(&self, job: &TrialJob<'_>, report: &mut Report<'_>) -> std::result::Result<JobEnd, String>;

    /// Replaces the checkpoint in trial directory `to` with the one in `from` (population-based
    /// training's exploit).
    fn copy_checkpoint(&self, from: &Path, to: &Path) -> std::result::Result<(), String>;
}

/// What the tuner tells whoever watches: a line per event.
pub trait Observer: Sync {
    fn event(&self, line: &str);
}

/// The directory of trial `id` inside study directory `dir`.
pub fn trial_dir(dir: &Path, id: usize) -> PathBuf {
    dir.join("trials").join(format!("trial-{id:04}"))
}

/// The study's database inside its directory.
pub fn store_path(dir: &Path) -> PathBuf {
    dir.join("study.db")
}

struct State {
    store: StudyStore,
    searcher: Box<dyn Searcher>,
    scheduler: Box<dyn Scheduler>,
    /// Trials started so far (the next new trial's id).
    started: usize,
    running: usize,
    /// How often each trial's jobs failed and ran again.
    retries: BTreeMap<usize, usize>,
    /// Trials whose job is to be run again first (running when a resumed study was killed).
    requeued: Vec<(usize, u64)>,
    /// Every trial's parameters, by id.
    params: Vec<Params>,
    /// The study store failed: every slot stops.
    broken: bool,
}

/// Runs a study in `dir` to its end (or until `interrupted`): a new one from `study`, or
/// (`resume`) the one stored there.
pub fn run_study(
    study: &Study,
    dir: &Path,
    runner: &dyn TrialRunner,
    observer: &dyn Observer,
    interrupted: &AtomicBool,
    resume: bool,
) -> Result<Vec<TrialRow>> {
    let path = store_path(dir);
    let (store, trials) = if resume {
        let store = StudyStore::open(&path)?;
        let trials = store.trials()?;
        (store, trials)
    } else {
        std::fs::create_dir_all(dir).map_err(crate::error::io_err(dir))?;
        let base_path = study.base_path.display().to_string();
        let meta = [("study", study.text.as_str()), ("base", study.base_text.as_str()), ("base_path", &base_path)];
        (StudyStore::create(&path, &meta)?, Vec::new())
    };
    let mut state = State {
        searcher: searcher_for(study),
        scheduler: scheduler_for(study),
        started: trials.len(),
        running: 0,
        retries: BTreeMap::new(),
        requeued: Vec::new(),
        params: trials.iter().map(|t| t.params.clone()).collect(),
        broken: false,
        store,
    };
    restore(study, &mut state, &trials)?;
    let slots =
        Slots { study, dir, runner, observer, interrupted, state: Mutex::new(state), job_ended: Condvar::new() };
    // `max_concurrent` slots, each taking job after job itself: no thread per trial and no
    // hand-off through a dispatcher (on this machine a thread spawn alone costs ~50 µs).
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..study.max_concurrent).map(|_| scope.spawn(|| slots.work())).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(spec_err("a trial slot panicked")))).collect()
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let state = slots.state;
    let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    st.store.trials()
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn verb(resume: bool) -> &'static str {
    if resume {
        "continues"
    } else {
        "starts"
    }
}

/// The next job: a requeued one first, then the scheduler's; a new trial is drawn and stored,
/// an exploiting one takes over its source's checkpoint and its new parameters.
fn next(
    study: &Study,
    dir: &Path,
    st: &mut State,
    runner: &dyn TrialRunner,
    observer: &dyn Observer,
) -> Result<Option<(usize, u64, bool)>> {
    if let Some((trial, until)) = st.requeued.pop() {
        return Ok(Some((trial, until, true)));
    }
    let can_start = st.started < study.trial_count();
    let Some(job) = st.scheduler.next_job(can_start) else { return Ok(None) };
    let Some(trial) = job.trial else {
        let id = st.started;
        st.started += 1;
        let params = st.searcher.suggest(id);
        st.store.add_trial(id, &params, job.until)?;
        st.scheduler.on_trial(id, &params);
        st.params.push(params);
        return Ok(Some((id, job.until, false)));
    };
    if let Some(exploit) = job.exploit {
        runner
            .copy_checkpoint(&trial_dir(dir, exploit.source), &trial_dir(dir, trial))
            .map_err(|e| spec_err(format!("trial {trial} taking over trial {}'s checkpoint: {e}", exploit.source)))?;
        st.store.set_params(trial, &exploit.params)?;
        observer.event(&format!(
            "trial {trial} takes over trial {}'s checkpoint: {}",
            exploit.source,
            show(&exploit.params)
        ));
        st.params[trial] = exploit.params;
    }
    st.store.start_job(trial, job.until)?;
    Ok(Some((trial, job.until, true)))
}

/// What every trial slot shares.
struct Slots<'a> {
    study: &'a Study,
    dir: &'a Path,
    runner: &'a dyn TrialRunner,
    observer: &'a dyn Observer,
    interrupted: &'a AtomicBool,
    state: Mutex<State>,
    job_ended: Condvar,
}

impl Slots<'_> {
    /// One slot: runs the next job while there is one; waits while others run (their ends may
    /// make new jobs, e.g. ASHA promotions); returns when nothing runs and nothing is left, or
    /// after an error of the study store, which stops every slot.
    fn work(&self) -> Result<()> {
        let study = self.study;
        let mut st = lock(&self.state);
        loop {
            let stopping = self.interrupted.load(Ordering::SeqCst) || st.broken;
            let job = match stopping {
                true => None,
                false => {
                    next(study, self.dir, &mut st, self.runner, self.observer).inspect_err(|_| st.broken = true)?
                }
            };
            let Some((trial, until, resume)) = job else {
                if st.running == 0 {
                    self.job_ended.notify_all();
                    return Ok(());
                }
                st = self.job_ended.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let config = study.trial_config(trial, &st.params[trial]).inspect_err(|_| st.broken = true)?;
            st.running += 1;
            self.observer.event(&format!(
                "trial {trial} {} until {until} env steps: {}",
                verb(resume),
                show(&st.params[trial])
            ));
            drop(st);
            let job = TrialJob { trial, config: &config, dir: trial_dir(self.dir, trial), until, resume };
            let line = run_job(study, &self.state, self.runner, self.interrupted, &job);
            self.observer.event(&line);
            st = lock(&self.state);
            st.running -= 1;
            self.job_ended.notify_all();
        }
    }
}

/// Rebuilds a resumed study's searcher and scheduler from the store, and requeues the jobs
/// that were running when it stopped.
fn restore(study: &Study, st: &mut State, trials: &[TrialRow]) -> Result<()> {
    for trial in trials {
        st.scheduler.on_trial(trial.id, &trial.params);
        let ended = matches!(trial.state, TrialState::Finished | TrialState::Stopped | TrialState::Failed);
        if ended {
            st.searcher.observe(trial.id, &trial.params, trial.value.map(|v| study.mode.score(v)));
        }
        for (step, value) in st.store.results(trial.id)? {
            st.scheduler.on_result(trial.id, step, study.mode.score(value));
        }
    }
    for job in st.store.jobs()? {
        st.scheduler.replay_job(job.trial, job.until);
        if job.ended {
            st.scheduler.on_job_end(job.trial, job.until, job.value.map(|v| study.mode.score(v)));
        } else {
            st.requeued.push((job.trial, job.until));
        }
    }
    Ok(())
}

/// Runs one job and records how it ended; the line to show.
fn run_job(
    study: &Study,
    state: &Mutex<State>,
    runner: &dyn TrialRunner,
    interrupted: &AtomicBool,
    job: &TrialJob<'_>,
) -> String {
    let budget = study.budget.unwrap_or(u64::MAX);
    let mut last: Option<f64> = None;
    let mut stopped_early = false;
    let mut record_error = None;
    let mut report = |steps: u64, metrics: &[(&str, f64)]| -> Decision {
        let value = metrics.iter().find(|(name, _)| *name == study.metric).map(|&(_, v)| v).filter(|v| v.is_finite());
        let mut decision = Decision::Continue;
        if let Some(value) = value {
            last = Some(value);
            let mut st = lock(state);
            if let Err(e) = st.store.add_result(job.trial, steps, value) {
                record_error = Some(e.to_string());
                return Decision::Stop;
            }
            if st.scheduler.on_result(job.trial, steps, study.mode.score(value)) == Decision::Stop {
                stopped_early = true;
                decision = Decision::Stop;
            }
        }
        if interrupted.load(Ordering::SeqCst) || (steps >= job.until && job.until < budget) {
            decision = Decision::Stop;
        }
        decision
    };
    let outcome = runner.run(job, &mut report);
    let mut st = lock(state);
    if interrupted.load(Ordering::SeqCst) && record_error.is_none() {
        // Left running in the store: `--resume` runs this job again from its checkpoint.
        return format!("trial {} interrupted", job.trial);
    }
    let runner_failed = outcome.is_err() || record_error.is_some();
    let (trial_state, steps, error) = match (outcome, record_error) {
        (_, Some(e)) | (Err(e), None) => (TrialState::Failed, 0, Some(e)),
        (Ok(end), None) => {
            let state = if stopped_early {
                TrialState::Stopped
            } else if end.stopped_by_tuner {
                TrialState::Paused
            } else {
                TrialState::Finished
            };
            (state, end.env_steps, None)
        }
    };
    let error = error.or_else(|| {
        (trial_state != TrialState::Failed && last.is_none()).then(|| {
            format!("the run never reported `{}` (metric = in the study file): name one the run reports", study.metric)
        })
    });
    let trial_state = if error.is_some() { TrialState::Failed } else { trial_state };
    // A crashed job runs again (Ray Tune's `max_failures`); a run that reports no metric
    // would only fail again.
    if runner_failed {
        let attempts = st.retries.entry(job.trial).or_insert(0);
        if *attempts < study.max_failures {
            *attempts += 1;
            let attempt = *attempts;
            // The job stays open in the store; its next run continues it.
            st.requeued.push((job.trial, job.until));
            return format!(
                "trial {} failed ({}); running it again from its last checkpoint (retry {attempt} of max_failures = {})",
                job.trial,
                error.unwrap_or_default(),
                study.max_failures
            );
        }
    }
    let score = last.map(|v| study.mode.score(v));
    let saved = st.store.end_job(job.trial, steps, last, trial_state, error.as_deref());
    st.scheduler.on_job_end(job.trial, job.until, if trial_state == TrialState::Failed { None } else { score });
    if trial_state != TrialState::Paused {
        let params = st.params[job.trial].clone();
        st.searcher.observe(job.trial, &params, score);
    }
    let value = last.map_or("-".to_string(), |v| format!("{v:.4}"));
    match (saved, error) {
        (Err(e), _) => format!("trial {} could not be recorded: {e}", job.trial),
        (Ok(()), Some(e)) => format!("trial {} failed: {e}", job.trial),
        (Ok(()), None) => {
            format!("trial {} {} at {steps} env steps: {} = {value}", job.trial, trial_state.name(), study.metric)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trains nothing: reports the trial's id as its result; the first job of trial 1 crashes.
    #[derive(Default)]
    struct Flaky {
        attempts: Mutex<BTreeMap<usize, usize>>,
    }

    impl TrialRunner for Flaky {
        fn run(&self, job: &TrialJob<'_>, report: &mut Report<'_>) -> std::result::Result<JobEnd, String> {
            let attempt = {
                let mut attempts = self.attempts.lock().unwrap();
                let a = attempts.entry(job.trial).or_insert(0);
                *a += 1;
                *a
            };
            if job.trial == 1 && attempt == 1 {
                return Err("the env crashed".into());
            }
            report(100, &[("episode_return_mean", job.trial as f64)]);
            Ok(JobEnd { env_steps: 100, stopped_by_tuner: false })
        }

        fn copy_checkpoint(&self, _: &Path, _: &Path) -> std::result::Result<(), String> {
            Err("no checkpoints here".into())
        }
    }

    struct Quiet;

    impl Observer for Quiet {
        fn event(&self, _: &str) {}
    }

    fn study(max_failures: usize) -> Study {
        let base = "algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 100\n";
        let text = format!(
            "base = \"b.toml\"\nnum_samples = 3\nmax_failures = {max_failures}\n[space]\n\"ppo.gamma\" = {{ uniform = [0.9, 0.99] }}\n"
        );
        Study::parse(&text, Path::new("."), Some(base.into())).unwrap()
    }

    /// `max_failures`: a crashed trial runs again that often before it counts as failed, and
    /// a failed trial does not stop the study.
    #[test]
    fn a_crashed_trial_is_retried_then_recorded_and_the_study_goes_on() {
        for (max_failures, trial_1) in [(1, TrialState::Finished), (0, TrialState::Failed)] {
            let dir = tempfile::tempdir().unwrap();
            let runner = Flaky::default();
            let trials =
                run_study(&study(max_failures), dir.path(), &runner, &Quiet, &AtomicBool::new(false), false).unwrap();
            let states: Vec<TrialState> = trials.iter().map(|t| t.state).collect();
            assert_eq!(
                states,
                vec![TrialState::Finished, trial_1, TrialState::Finished],
                "max_failures {max_failures}"
            );
            let attempts = runner.attempts.lock().unwrap()[&1];
            assert_eq!(attempts, 1 + max_failures, "trial 1 ran {attempts} times");
            if trial_1 == TrialState::Failed {
                assert_eq!(trials[1].error.as_deref(), Some("the env crashed"));
            }
        }
    }
}
