//! Population-based training (Jaderberg et al., "Population Based Training of Neural
//! Networks", 2017), as Ray Tune runs it: a population of `num_samples` trials trains in
//! intervals of `perturbation_interval` env steps. When a trial finishes an interval in the
//! bottom `quantile_fraction` of the population's latest results, it *exploits* — takes over
//! the checkpoint of a trial drawn from the top quantile — and *explores*: each tuned key is
//! redrawn from its domain with probability `resample_probability`, else a number is
//! multiplied by one of `perturbation_factors` (kept inside its domain) and a listed value
//! moves to a neighbour. Shoal's checkpoints resume exactly, so the copy continues where its
//! source stood; the new values reach the running agent because it is rebuilt from the
//! trial's new config (the learning rate of its optimizer included) and loads the checkpoint.
//! The population moves in generations: once every trial has finished an interval, the next
//! is planned for all of them at once (exploiting trials first, so every copy is taken before
//! its source moves on), so the population keeps in step whatever `max_concurrent` is.

use std::collections::{BTreeMap, VecDeque};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::Deserialize;

use crate::scheduler::{Decision, Exploit, Job, Scheduler};
use crate::space::{Domain, Params, Space};

/// `[pbt]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PbtConfig {
    /// Env steps between two exploit/explore decisions of a trial.
    pub perturbation_interval: u64,
    /// The share of the population that copies (bottom) and is copied (top).
    pub quantile_fraction: f64,
    /// Chance that an exploring key is redrawn from its domain instead of perturbed.
    pub resample_probability: f64,
    /// What an exploring number is multiplied by (one, drawn).
    pub perturbation_factors: Vec<f64>,
}

impl Default for PbtConfig {
    fn default() -> Self {
        PbtConfig {
            perturbation_interval: 10_000,
            quantile_fraction: 0.25,
            resample_probability: 0.25,
            perturbation_factors: vec![1.2, 0.8],
        }
    }
}

/// The PBT scheduler.
pub struct Pbt {
    cfg: PbtConfig,
    space: Space,
    budget: u64,
    rng: Pcg64Mcg,
    /// Every trial's current parameters.
    params: BTreeMap<usize, Params>,
    /// Where every trial stands (the end of its last interval) and its result there.
    position: BTreeMap<usize, u64>,
    score: BTreeMap<usize, f64>,
    /// Trials with a job running.
    running: BTreeMap<usize, ()>,
    /// The planned jobs of the current generation, exploiting trials first.
    queue: VecDeque<Job>,
}

impl Pbt {
    pub fn new(cfg: PbtConfig, space: Space, budget: u64, seed: u64) -> Self {
        Pbt {
            cfg,
            space,
            budget,
            rng: Pcg64Mcg::seed_from_u64(seed ^ 0x9b7),
            params: BTreeMap::new(),
            position: BTreeMap::new(),
            score: BTreeMap::new(),
            running: BTreeMap::new(),
            queue: VecDeque::new(),
        }
    }

    /// The next interval's end after `step`.
    fn next_stop(&self, step: u64) -> u64 {
        let interval = self.cfg.perturbation_interval.max(1);
        ((step / interval + 1) * interval).min(self.budget)
    }

    /// `params` explored: every key redrawn or perturbed.
    pub fn explore(&mut self, params: &Params) -> Params {
        let mut out = params.clone();
        for (key, domain) in &self.space.keys {
            let Some(value) = params.get(key) else { continue };
            let new = if self.rng.random_bool(self.cfg.resample_probability.clamp(0.0, 1.0)) {
                domain.sample(&mut self.rng)
            } else {
                let factor = *self.cfg.perturbation_factors.choose(&mut self.rng).unwrap_or(&1.0);
                perturb(domain, value, factor, self.rng.random_bool(0.5))
            };
            out.insert(key.clone(), new);
        }
        out
    }
}

/// `value` moved by `factor` (numbers, kept in the domain) or to a neighbour in its list
/// (`up`: the next one).
fn perturb(domain: &Domain, value: &toml::Value, factor: f64, up: bool) -> toml::Value {
    if let Some(values) = domain.values() {
        let i = values.iter().position(|v| v == value).unwrap_or(0);
        let j = if up { (i + 1).min(values.len() - 1) } else { i.saturating_sub(1) };
        return values[j].clone();
    }
    let x = value.as_float().or_else(|| value.as_integer().map(|i| i as f64)).unwrap_or(0.0) * factor;
    match *domain {
        Domain::Uniform { low, high } | Domain::LogUniform { low, high } => toml::Value::Float(x.clamp(low, high)),
        Domain::QUniform { low, high, q } => toml::Value::Float(((x / q).round() * q).clamp(low, high)),
        Domain::RandInt { low, high } => toml::Value::Integer((x.round() as i64).clamp(low, high - 1)),
        Domain::QRandInt { low, high, q } => {
            toml::Value::Integer((((x / q as f64).round() as i64) * q).clamp(low, high))
        }
        Domain::Grid(_) | Domain::Choice(_) => value.clone(),
    }
}

impl Pbt {
    /// Plans the next interval of the trials that stand furthest behind (the whole population,
    /// unless a resumed study left some ahead): the bottom quantile of them exploits the top
    /// quantile, and the exploiting trials go first, so that every copy is taken before its
    /// source moves on.
    fn plan_generation(&mut self) {
        let Some(&step) = self.position.values().filter(|&&p| p < self.budget).min() else { return };
        let mut generation: Vec<(usize, f64)> = self
            .position
            .iter()
            .filter(|(_, &p)| p == step)
            .map(|(&t, _)| (t, self.score.get(&t).copied().unwrap_or(f64::NEG_INFINITY)))
            .collect();
        generation.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let n = ((generation.len() as f64 * self.cfg.quantile_fraction).ceil() as usize).min(generation.len() / 2);
        let top: Vec<usize> = generation[generation.len() - n..].iter().map(|p| p.0).collect();
        let until = self.next_stop(step);
        for (i, &(trial, _)) in generation.iter().enumerate() {
            let exploit = match top.choose(&mut self.rng) {
                Some(&source) if i < n => {
                    let source_params = self.params.get(&source).cloned().unwrap_or_default();
                    let params = self.explore(&source_params);
                    self.params.insert(trial, params.clone());
                    Some(Exploit { source, params })
                }
                _ => None,
            };
            self.queue.push_back(Job { trial: Some(trial), until, exploit });
        }
    }
}

impl Scheduler for Pbt {
    fn next_job(&mut self, can_start: bool) -> Option<Job> {
        if can_start {
            return Some(Job::start(self.next_stop(0)));
        }
        // A generation is planned once every trial has finished its interval.
        if self.queue.is_empty() && self.running.is_empty() {
            self.plan_generation();
        }
        let job = self.queue.pop_front()?;
        if let Some(trial) = job.trial {
            self.running.insert(trial, ());
        }
        Some(job)
    }

    fn on_trial(&mut self, trial: usize, params: &Params) {
        self.params.insert(trial, params.clone());
        self.running.insert(trial, ());
    }

    fn on_result(&mut self, _: usize, _: u64, _: f64) -> Decision {
        Decision::Continue
    }

    fn on_job_end(&mut self, trial: usize, until: u64, score: Option<f64>) {
        self.running.remove(&trial);
        self.position.insert(trial, until);
        match score {
            Some(score) => self.score.insert(trial, score),
            // A failed trial drops out of the population.
            None => {
                self.position.insert(trial, self.budget);
                self.score.remove(&trial)
            }
        };
    }

    fn replay_job(&mut self, trial: usize, _until: u64) {
        self.running.insert(trial, ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        let text =
            "lr = { loguniform = [1e-5, 1e-1] }\nh = { choice = [32, 64, 128] }\nn = { qrandint = [16, 256, 16] }";
        Space::parse(&text.parse::<toml::Table>().unwrap()).unwrap()
    }

    fn params(lr: f64, h: i64, n: i64) -> Params {
        [("lr", toml::Value::Float(lr)), ("h", toml::Value::Integer(h)), ("n", toml::Value::Integer(n))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Four trials, intervals of 10 up to 30: after the first interval the worst trial takes
    /// over the best one's checkpoint with explored parameters; the middle ones go on as they
    /// are; nobody runs ahead of the population.
    #[test]
    fn the_worst_trial_copies_the_best_and_explores() {
        let cfg = PbtConfig { perturbation_interval: 10, resample_probability: 0.0, ..PbtConfig::default() };
        let mut pbt = Pbt::new(cfg, space(), 30, 1);
        for t in 0..4 {
            assert_eq!(pbt.next_job(true), Some(Job::start(10)));
            pbt.on_trial(t, &params(1e-3 * (t + 1) as f64, 64, 128));
        }
        for (t, score) in [(0, 5.0), (1, 50.0), (2, 20.0)] {
            pbt.on_job_end(t, 10, Some(score));
        }
        // Trial 3 still runs its first interval: nobody starts the second before it ends.
        assert_eq!(pbt.next_job(false), None);
        pbt.on_job_end(3, 10, Some(30.0));
        // ⌈4 · 0.25⌉ = 1: trial 0 (worst) copies trial 1 (best), and goes first.
        let job = pbt.next_job(false).unwrap();
        assert_eq!((job.trial, job.until), (Some(0), 20));
        let exploit = job.exploit.expect("the worst trial exploits");
        assert_eq!(exploit.source, 1);
        let lr = exploit.params["lr"].as_float().unwrap();
        assert!((lr - 2e-3 * 1.2).abs() < 1e-12 || (lr - 2e-3 * 0.8).abs() < 1e-12, "lr {lr}: 2e-3 × 1.2 or × 0.8");
        let h = exploit.params["h"].as_integer().unwrap();
        assert!(h == 32 || h == 128, "a listed value moves to a neighbour: {h}");
        let n = exploit.params["n"].as_integer().unwrap();
        assert!(n == 96 || n == 160, "128 × 0.8 or × 1.2, on the grid of 16: {n}");
        // The others continue unchanged, worst first.
        for t in [2, 3, 1] {
            assert_eq!(pbt.next_job(false), Some(Job::resume(t, 20)));
        }
        assert_eq!(pbt.next_job(false), None, "all four are running");
        // The last generation ends at the budget; then there is nothing left to run.
        for (t, score) in [(0, 60.0), (1, 55.0), (2, 10.0), (3, 40.0)] {
            pbt.on_job_end(t, 20, Some(score));
        }
        let jobs: Vec<Job> = std::iter::from_fn(|| pbt.next_job(false)).collect();
        assert_eq!(jobs.len(), 4);
        assert_eq!((jobs[0].trial, jobs[0].until), (Some(2), 30));
        assert_eq!(jobs[0].exploit.as_ref().map(|e| e.source), Some(0), "trial 2 copies trial 0 now");
        for t in 0..4 {
            pbt.on_job_end(t, 30, Some(1.0));
        }
        assert_eq!(pbt.next_job(false), None, "every trial at the budget");
    }

    #[test]
    fn explored_values_stay_in_their_domains() {
        let mut pbt = Pbt::new(PbtConfig { resample_probability: 0.5, ..PbtConfig::default() }, space(), 100, 3);
        let mut p = params(0.09, 128, 256);
        for _ in 0..200 {
            p = pbt.explore(&p);
            let lr = p["lr"].as_float().unwrap();
            let n = p["n"].as_integer().unwrap();
            assert!((1e-5..=1e-1).contains(&lr), "{lr}");
            assert!((16..=256).contains(&n) && n % 16 == 0, "{n}");
            assert!([32, 64, 128].contains(&p["h"].as_integer().unwrap()));
        }
    }
}
