//! Schedulers decide how long each trial runs. The tuner asks one for a *job* whenever a
//! trial slot is free — start a new trial, or resume a paused one from its checkpoint — runs
//! the job to the env-step count it names, and tells the scheduler every intermediate result
//! (which may stop the job at once) and how the job ended.
//!
//! Scores are "larger is better" ([`crate::study::Direction::score`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::space::Params;
use serde::Deserialize;

/// Work for a free slot: trial `trial` (`None`: a new one) runs until `until` env steps —
/// after taking over another trial's checkpoint and new parameters when `exploit` says so
/// (population-based training).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub trial: Option<usize>,
    pub until: u64,
    pub exploit: Option<Exploit>,
}

/// Trial `source`'s checkpoint, to continue from with `params`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exploit {
    pub source: usize,
    pub params: Params,
}

impl Job {
    /// A new trial, until `until`.
    pub fn start(until: u64) -> Self {
        Job { trial: None, until, exploit: None }
    }

    /// Trial `trial` continued from its checkpoint until `until`.
    pub fn resume(trial: usize, until: u64) -> Self {
        Job { trial: Some(trial), until, exploit: None }
    }
}

/// What to do with a running job after an intermediate result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Continue,
    Stop,
}

/// Decides which trial runs next and for how long.
pub trait Scheduler: Send {
    /// The job for a free slot; `can_start` is false once every trial of the study has been
    /// started. `None`: nothing to run now.
    fn next_job(&mut self, can_start: bool) -> Option<Job>;
    /// Trial `trial` reported `score` at `step` env steps.
    fn on_result(&mut self, trial: usize, step: u64, score: f64) -> Decision;
    /// Trial `trial`'s job for `until` ended at `step` with `score` (its last result; `None`
    /// when it failed or reported none).
    fn on_job_end(&mut self, trial: usize, until: u64, score: Option<f64>);
    /// Trial `trial` exists with `params` (a new trial, or a stored one when a study resumes).
    fn on_trial(&mut self, _trial: usize, _params: &Params) {}
    /// A resumed study replays its stored jobs, in order: trial `trial` had a job until
    /// `until` (before its end, if it ended, is told through `on_job_end`).
    fn replay_job(&mut self, _trial: usize, _until: u64) {}
}

/// `[asha]`: rungs at `grace_period · reduction_factorᵏ` env steps, up to the base config's
/// `stop.env_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AshaConfig {
    /// Env steps of the first rung: every trial runs at least this long.
    pub grace_period: u64,
    /// η: one trial in η goes on from each rung.
    pub reduction_factor: u64,
}

impl Default for AshaConfig {
    fn default() -> Self {
        AshaConfig { grace_period: 10_000, reduction_factor: 3 }
    }
}

/// `[median]`: stop a trial whose best result so far is worse than the median of the other
/// trials' running averages at the same env step.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MedianConfig {
    /// Env steps before a trial can be stopped.
    pub grace_period: u64,
    /// Trials that must have reached a step before it is judged there.
    pub min_samples_required: usize,
}

impl Default for MedianConfig {
    fn default() -> Self {
        MedianConfig { grace_period: 10_000, min_samples_required: 3 }
    }
}

/// Every trial runs its whole budget.
pub struct Fifo {
    budget: u64,
}

impl Fifo {
    /// Every trial for `budget` env steps.
    pub fn new(budget: u64) -> Self {
        Fifo { budget }
    }
}

impl Scheduler for Fifo {
    fn next_job(&mut self, can_start: bool) -> Option<Job> {
        can_start.then(|| Job::start(self.budget))
    }
    fn on_result(&mut self, _: usize, _: u64, _: f64) -> Decision {
        Decision::Continue
    }
    fn on_job_end(&mut self, _: usize, _: u64, _: Option<f64>) {}
}

/// Asynchronous successive halving (Li et al., "A System for Massively Parallel
/// Hyperparameter Tuning", MLSys 2020, Algorithm 2). Rung k ends at `r·ηᵏ` env steps (r the
/// grace period), the last rung at the budget. When a slot frees, the highest rung k with a
/// trial in its top ⌊|rung k| / η⌋ that has not been promoted yet promotes that trial to rung
/// k + 1 (it resumes from its checkpoint); with none, a new trial starts at rung 0. A trial
/// never promoted stays paused: it is not stopped by a decision, it is simply not continued.
pub struct Asha {
    /// The env steps each rung ends at.
    rungs: Vec<u64>,
    eta: usize,
    /// Per rung: the trials that ended a job there, with their scores.
    results: Vec<BTreeMap<usize, f64>>,
    /// Per rung: the trials already promoted from it.
    promoted: Vec<BTreeSet<usize>>,
}

impl Asha {
    pub fn new(cfg: AshaConfig, budget: u64) -> Self {
        let mut rungs = Vec::new();
        let mut r = cfg.grace_period.min(budget);
        while r < budget {
            rungs.push(r);
            r = r.saturating_mul(cfg.reduction_factor);
        }
        rungs.push(budget);
        let n = rungs.len();
        Asha {
            rungs,
            eta: cfg.reduction_factor as usize,
            results: vec![BTreeMap::new(); n],
            promoted: vec![BTreeSet::new(); n],
        }
    }

    /// The env steps each rung ends at.
    pub fn rungs(&self) -> &[u64] {
        &self.rungs
    }

    /// The best not-yet-promoted trial among the top 1/η of rung `k`, if any.
    fn promotable(&self, k: usize) -> Option<usize> {
        let mut ranked: Vec<(usize, f64)> = self.results[k].iter().map(|(&t, &s)| (t, s)).collect();
        // Best first; ties to the earlier trial.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = ranked.len() / self.eta;
        ranked.into_iter().take(top).map(|(t, _)| t).find(|t| !self.promoted[k].contains(t))
    }
}

impl Scheduler for Asha {
    fn next_job(&mut self, can_start: bool) -> Option<Job> {
        for k in (0..self.rungs.len() - 1).rev() {
            if let Some(trial) = self.promotable(k) {
                self.promoted[k].insert(trial);
                return Some(Job::resume(trial, self.rungs[k + 1]));
            }
        }
        can_start.then(|| Job::start(self.rungs[0]))
    }

    fn on_result(&mut self, _: usize, _: u64, _: f64) -> Decision {
        Decision::Continue
    }

    fn on_job_end(&mut self, trial: usize, until: u64, score: Option<f64>) {
        if let (Some(k), Some(score)) = (self.rungs.iter().position(|&r| r == until), score) {
            self.results[k].insert(trial, score);
        }
    }

    /// A job to rung k + 1 means a promotion from rung k.
    fn replay_job(&mut self, trial: usize, until: u64) {
        if let Some(k) = self.rungs.iter().position(|&r| r == until).filter(|&k| k > 0) {
            self.promoted[k - 1].insert(trial);
        }
    }
}

/// Median stopping (Golovin et al., "Google Vizier", KDD 2017): after the grace period, a
/// trial whose best score so far is worse than the median, over the other trials that got
/// as far, of their mean score up to the same step, is stopped.
pub struct MedianStopping {
    cfg: MedianConfig,
    budget: u64,
    /// Every trial's results: (step, score), in order.
    history: BTreeMap<usize, Vec<(u64, f64)>>,
}

impl MedianStopping {
    pub fn new(cfg: MedianConfig, budget: u64) -> Self {
        MedianStopping { cfg, budget, history: BTreeMap::new() }
    }
}

impl Scheduler for MedianStopping {
    fn next_job(&mut self, can_start: bool) -> Option<Job> {
        can_start.then(|| Job::start(self.budget))
    }

    fn on_result(&mut self, trial: usize, step: u64, score: f64) -> Decision {
        self.history.entry(trial).or_default().push((step, score));
        if step < self.cfg.grace_period {
            return Decision::Continue;
        }
        let best = self.history[&trial].iter().map(|&(_, s)| s).fold(f64::NEG_INFINITY, f64::max);
        let mut means: Vec<f64> = self
            .history
            .iter()
            .filter(|(&t, h)| t != trial && h.last().is_some_and(|&(s, _)| s >= step))
            .map(|(_, h)| {
                let upto: Vec<f64> = h.iter().take_while(|&&(s, _)| s <= step).map(|&(_, v)| v).collect();
                upto.iter().sum::<f64>() / upto.len().max(1) as f64
            })
            .collect();
        if means.len() < self.cfg.min_samples_required {
            return Decision::Continue;
        }
        means.sort_by(f64::total_cmp);
        let mid = means.len() / 2;
        let median = if means.len() % 2 == 1 { means[mid] } else { (means[mid - 1] + means[mid]) / 2.0 };
        if best < median {
            Decision::Stop
        } else {
            Decision::Continue
        }
    }

    fn on_job_end(&mut self, _: usize, _: u64, _: Option<f64>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asha(grace: u64, eta: u64, budget: u64) -> Asha {
        Asha::new(AshaConfig { grace_period: grace, reduction_factor: eta }, budget)
    }

    /// A scripted run of Li et al.'s rule, η = 3: rungs at 1, 3, 9 (the budget). Slots ask for
    /// jobs; each job's score is given as it ends.
    #[test]
    fn asha_promotes_by_the_papers_rule() {
        let mut s = asha(1, 3, 9);
        assert_eq!(s.rungs(), &[1, 3, 9]);
        let start = Some(Job::start(1));
        // Trials 0, 1: rung 0 has 1 then 2 results: top ⌊n/3⌋ = 0, nothing to promote.
        assert_eq!(s.next_job(true), start);
        s.on_job_end(0, 1, Some(0.5));
        assert_eq!(s.next_job(true), start);
        s.on_job_end(1, 1, Some(0.9));
        // A third result makes the top third one trial: the best (trial 1) is promoted.
        assert_eq!(s.next_job(true), start);
        s.on_job_end(2, 1, Some(0.1));
        assert_eq!(s.next_job(true), Some(Job::resume(1, 3)));
        // Promoted once only: with nothing else promotable a new trial starts.
        assert_eq!(s.next_job(true), start);
        s.on_job_end(3, 1, Some(0.7));
        s.on_job_end(1, 3, Some(0.95));
        assert_eq!(s.next_job(true), start);
        s.on_job_end(4, 1, Some(0.8));
        assert_eq!(s.next_job(true), start);
        // Six results at rung 0: the top two are 1 (promoted) and 4, which goes up now.
        s.on_job_end(5, 1, Some(0.2));
        assert_eq!(s.next_job(true), Some(Job::resume(4, 3)));
        s.on_job_end(4, 3, Some(0.85));
        // Rung 1 holds 2 results: nothing to promote to the top rung yet; and once no new
        // trial may start, no job at all.
        assert_eq!(s.next_job(false), None);
        // A third rung-0 promotion needs 9 results; three more trials, the last the best.
        for (t, score) in [(6, 0.3), (7, 0.4), (8, 0.99)] {
            assert_eq!(s.next_job(true), start);
            s.on_job_end(t, 1, Some(score));
        }
        assert_eq!(s.next_job(true), Some(Job::resume(8, 3)));
        s.on_job_end(8, 3, Some(0.97));
        // Rung 1 now has 3 results (0.95, 0.85, 0.97): trial 8 goes to the top rung — the
        // highest rung is served first.
        assert_eq!(s.next_job(false), Some(Job::resume(8, 9)));
        assert_eq!(s.next_job(false), None);
    }

    #[test]
    fn median_stopping_compares_with_the_others_running_means() {
        let mut s = MedianStopping::new(MedianConfig { grace_period: 20, min_samples_required: 2 }, 100);
        for t in 0..2 {
            for step in [10, 20, 30] {
                assert_eq!(s.on_result(t, step, 10.0 * (t + 1) as f64), Decision::Continue);
            }
        }
        // Trial 2 at step 10 is inside the grace period whatever it scores.
        assert_eq!(s.on_result(2, 10, 0.0), Decision::Continue);
        // At step 20 the others' running means are 10 and 20: the median is 15.
        assert_eq!(s.on_result(2, 20, 14.0), Decision::Stop);
        let mut s2 = MedianStopping::new(MedianConfig { grace_period: 20, min_samples_required: 2 }, 100);
        for t in 0..2 {
            for step in [10, 20, 30] {
                s2.on_result(t, step, 10.0 * (t + 1) as f64);
            }
        }
        assert_eq!(s2.on_result(2, 20, 16.0), Decision::Continue);
        // With one other trial that far, too few to judge.
        assert_eq!(s2.on_result(3, 40, -1.0), Decision::Continue);
    }
}
