//! The run's progress as the parameter server sees it: env steps and finished episodes
//! reported by every worker, and the stop rule that ends a multi-process run.
//!
//! In a multi-process run no single worker knows the whole run's progress, so workers report
//! what they did since their last report, and the server answers whether to stop. Reports are
//! deltas, so a worker restarted after a crash simply starts reporting again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::Result;
use crate::rate::RateMeter;

/// When a run is over: a total env-step budget and/or a mean return over the last episodes.
#[derive(Debug, Clone, PartialEq)]
pub struct StopRule {
    pub env_steps: Option<u64>,
    pub episode_return_mean: Option<f64>,
    /// Episodes in the moving mean.
    pub window: usize,
}

/// The server's answer to a report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunStatus {
    pub stop: bool,
    /// Env steps of all workers together (schedules run on this).
    pub total_env_steps: u64,
    pub episodes: u64,
    /// Mean return over the window; NaN before the first episode.
    pub return_mean: f64,
}

/// Where workers report progress: the server's [`RunMonitor`] in process, or the gRPC
/// client of a remote one.
pub trait Coordinator: Send + Sync {
    /// Adds `env_steps` steps and the finished `episodes` (return, length) of `worker`.
    fn report(&self, worker: usize, env_steps: u64, episodes: &[(f64, u64)]) -> Result<RunStatus>;

    /// Worker `worker` evaluated the parameters it holds and they reached the run's
    /// `stop.eval_return_mean`: stop the run (a server also freezes its parameters as they
    /// are — in sync mode no round completes while the evaluating worker is away).
    fn solved(&self, worker: usize) -> Result<RunStatus>;

    /// Records `worker`'s running statistics (an opaque vector: normalization moments; empty
    /// only asks) and returns every other worker's latest, ordered by worker index — so each
    /// worker can merge them into the statistics it normalizes with.
    fn share_statistics(&self, worker: usize, values: &[f64]) -> Result<Vec<Vec<f64>>>;
}

/// Totals for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunTotals {
    pub env_steps: u64,
    pub episodes: u64,
    /// Mean return over the window; NaN before the first episode.
    pub return_mean: f64,
    pub stopped: bool,
}

#[derive(Default)]
struct Tally {
    env_steps: u64,
    episodes: u64,
    window: VecDeque<f64>,
    stopped: bool,
    workers: BTreeMap<usize, WorkerProgress>,
}

/// One worker's reports as the server saw them (for `shoal dashboard`).
#[derive(Debug, Clone)]
pub struct WorkerProgress {
    /// Env steps it reported since the server started (or resumed).
    pub env_steps: u64,
    pub episodes: u64,
    pub last_report: SystemTime,
    /// Where its calls came from, when they came over the network.
    pub host: Option<String>,
    pub rate: RateMeter,
}

/// Counts what workers report and applies the stop rule.
pub struct RunMonitor {
    rule: StopRule,
    tally: Mutex<Tally>,
    /// Each worker's latest shared statistics.
    statistics: Mutex<BTreeMap<usize, Vec<f64>>>,
}

impl RunMonitor {
    pub fn new(rule: StopRule) -> Self {
        RunMonitor { rule, tally: Mutex::new(Tally::default()), statistics: Mutex::new(BTreeMap::new()) }
    }

    /// Starts from totals saved before a restart.
    pub fn resume_from(&self, env_steps: u64, episodes: u64) {
        let mut tally = self.lock();
        tally.env_steps = env_steps;
        tally.episodes = episodes;
    }

    pub fn totals(&self) -> RunTotals {
        let tally = self.lock();
        RunTotals {
            env_steps: tally.env_steps,
            episodes: tally.episodes,
            return_mean: mean(&tally.window),
            stopped: tally.stopped,
        }
    }

    /// Every worker that has reported, by index.
    pub fn workers(&self) -> BTreeMap<usize, WorkerProgress> {
        self.lock().workers.clone()
    }

    /// Notes where worker `worker`'s calls come from (the gRPC peer address).
    pub fn note_host(&self, worker: usize, host: String) {
        self.lock().workers.entry(worker).or_default().host = Some(host);
    }

    /// Ends the run at the next report: a criterion the server checks itself was met (a
    /// deterministic evaluation of its parameters reached `stop.eval_return_mean`).
    pub fn stop_now(&self) {
        self.lock().stopped = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl WorkerProgress {
    /// The worker has taken `env_steps` and finished `episodes` in all, as of now.
    pub fn observe(&mut self, env_steps: u64, episodes: u64) {
        self.env_steps = env_steps;
        self.episodes = episodes;
        self.last_report = SystemTime::now();
        self.rate.record(env_steps);
    }
}

impl Default for WorkerProgress {
    /// A worker not heard from yet.
    fn default() -> Self {
        WorkerProgress {
            env_steps: 0,
            episodes: 0,
            last_report: SystemTime::now(),
            host: None,
            rate: RateMeter::default(),
        }
    }
}

fn mean(window: &VecDeque<f64>) -> f64 {
    if window.is_empty() {
        return f64::NAN;
    }
    window.iter().sum::<f64>() / window.len() as f64
}

impl Coordinator for RunMonitor {
    fn report(&self, worker: usize, env_steps: u64, episodes: &[(f64, u64)]) -> Result<RunStatus> {
        let mut tally = self.lock();
        tally.env_steps += env_steps;
        tally.episodes += episodes.len() as u64;
        let progress = tally.workers.entry(worker).or_default();
        progress.observe(progress.env_steps + env_steps, progress.episodes + episodes.len() as u64);
        for &(ret, _) in episodes {
            if tally.window.len() == self.rule.window.max(1) {
                tally.window.pop_front();
            }
            tally.window.push_back(ret);
        }
        let budget_spent = self.rule.env_steps.is_some_and(|limit| tally.env_steps >= limit);
        let window_full = tally.window.len() >= self.rule.window.max(1);
        let solved = self.rule.episode_return_mean.is_some_and(|target| window_full && mean(&tally.window) >= target);
        tally.stopped |= budget_spent || solved;
        Ok(RunStatus {
            stop: tally.stopped,
            total_env_steps: tally.env_steps,
            episodes: tally.episodes,
            return_mean: mean(&tally.window),
        })
    }

    fn solved(&self, worker: usize) -> Result<RunStatus> {
        self.stop_now();
        self.report(worker, 0, &[])
    }

    fn share_statistics(&self, worker: usize, values: &[f64]) -> Result<Vec<Vec<f64>>> {
        let mut all = self.statistics.lock().unwrap_or_else(|p| p.into_inner());
        if !values.is_empty() {
            all.insert(worker, values.to_vec());
        }
        Ok(all.iter().filter(|(&w, _)| w != worker).map(|(_, v)| v.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_statistics_are_each_workers_latest_but_the_askers_own() {
        let monitor = RunMonitor::new(StopRule { env_steps: None, episode_return_mean: None, window: 1 });
        assert!(monitor.share_statistics(1, &[1.0]).unwrap().is_empty());
        assert_eq!(monitor.share_statistics(0, &[0.5]).unwrap(), vec![vec![1.0]]);
        monitor.share_statistics(1, &[2.0, 3.0]).unwrap();
        assert_eq!(monitor.share_statistics(0, &[0.7]).unwrap(), vec![vec![2.0, 3.0]]);
        assert_eq!(monitor.share_statistics(usize::MAX, &[]).unwrap(), vec![vec![0.7], vec![2.0, 3.0]]);
    }

    #[test]
    fn stops_on_budget_or_on_a_full_window_above_target() {
        let monitor = RunMonitor::new(StopRule { env_steps: Some(100), episode_return_mean: Some(10.0), window: 2 });
        assert!(!monitor.report(0, 40, &[(50.0, 5)]).unwrap().stop, "one episode does not fill the window");
        assert!(!monitor.report(0, 0, &[(-45.0, 5)]).unwrap().stop, "mean of 50 and −45 < 10");
        let status = monitor.report(1, 40, &[(1.0, 5)]).unwrap();
        assert_eq!((status.stop, status.total_env_steps), (false, 80));
        assert!(monitor.report(0, 5, &[(30.0, 5)]).unwrap().stop, "mean of the last two, 1 and 30, ≥ 10");

        let budget = RunMonitor::new(StopRule { env_steps: Some(100), episode_return_mean: None, window: 2 });
        assert!(!budget.report(0, 99, &[]).unwrap().stop);
        assert!(budget.report(1, 1, &[]).unwrap().stop);
        assert_eq!(budget.totals().env_steps, 100);
        let workers = budget.workers();
        assert_eq!((workers[&0].env_steps, workers[&1].env_steps), (99, 1), "each worker's own share");
    }
}
