//! The Tree-structured Parzen Estimator (Bergstra et al., "Algorithms for Hyper-Parameter
//! Optimization", NeurIPS 2011), with Optuna's defaults: the first 10 trials are random; then
//! the observed trials are split into the γ(n) = min(⌈0.1·n⌉, 25) best ("good") and the rest,
//! each key gets a Parzen estimator l(x) over the good values and g(x) over the others, and
//! of 24 candidates drawn from l the one with the largest l(x)/g(x) is suggested — each key on
//! its own (univariate, Optuna's default).
//!
//! Numbers are modelled in their search scale (log for `loguniform`), as a mixture of normals
//! truncated to the domain, one per observation plus a prior (the domain's middle, width the
//! whole range), each as wide as the larger gap to its neighbours, clipped to
//! [range / min(100, n + 1), range] (Optuna's "magic clip"); integers and steps round the
//! draw. Categories get a weight per value: the prior's 1/k plus the observations'. Older
//! observations weigh less once there are more than 25 (Optuna's `default_weights`).
//!
//! Written here (~250 lines) rather than taken from the `tpe` crate, which models every key
//! as one float or one categorical without Optuna's truncation, magic clip and weights, and
//! samples whole configurations from a single RNG stream.

use std::collections::BTreeMap;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;

use crate::searcher::{trial_rng, Searcher};
use crate::space::{Domain, Params, Space};

/// Optuna's defaults.
const STARTUP_TRIALS: usize = 10;
const CANDIDATES: usize = 24;
const PRIOR_WEIGHT: f64 = 1.0;

/// TPE over a study's space.
pub struct Tpe {
    space: Space,
    seed: u64,
    /// Observed trials' parameters and scores (larger is better), by trial index.
    observed: BTreeMap<usize, (Params, f64)>,
}

impl Tpe {
    pub fn new(space: Space, seed: u64) -> Self {
        Tpe { space, seed, observed: BTreeMap::new() }
    }
}

/// γ(n): how many of n observations count as good.
fn good_count(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// Optuna's `default_weights`: equal below 25 observations; beyond, the 25 newest weigh 1
/// and the older ones ramp linearly from 1/n (the oldest) up to 1.
fn weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> =
        (0..ramp).map(|i| 1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1).max(1) as f64).collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

impl Searcher for Tpe {
    fn suggest(&mut self, index: usize) -> Params {
        let mut rng = trial_rng(self.seed, index);
        if self.observed.len() < STARTUP_TRIALS {
            return self.space.keys.iter().map(|(k, d)| (k.clone(), d.sample(&mut rng))).collect();
        }
        // Observations in the order they were made (trial index), best first for the split.
        let mut ranked: Vec<(usize, f64)> = self.observed.iter().map(|(&i, (_, s))| (i, *s)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let n_good = good_count(ranked.len());
        let mut good: Vec<usize> = ranked[..n_good].iter().map(|&(i, _)| i).collect();
        let mut bad: Vec<usize> = ranked[n_good..].iter().map(|&(i, _)| i).collect();
        good.sort_unstable();
        bad.sort_unstable();
        let values = |set: &[usize], key: &str| -> Vec<toml::Value> {
            set.iter().map(|i| self.observed[i].0.get(key).cloned().unwrap_or(toml::Value::Boolean(false))).collect()
        };
        let mut params = Params::new();
        for (key, domain) in &self.space.keys {
            let (l, g) = (values(&good, key), values(&bad, key));
            params.insert(key.clone(), suggest_one(domain, &l, &g, &mut rng));
        }
        params
    }

    fn observe(&mut self, index: usize, params: &Params, score: Option<f64>) {
        match score.filter(|s| s.is_finite()) {
            Some(score) => {
                self.observed.insert(index, (params.clone(), score));
            }
            None => {
                self.observed.remove(&index);
            }
        }
    }
}

/// One key's value: the best of the candidates drawn from l by l(x)/g(x).
fn suggest_one(domain: &Domain, good: &[toml::Value], bad: &[toml::Value], rng: &mut Pcg64Mcg) -> toml::Value {
    if let Some(choices) = domain.values() {
        let index = |v: &toml::Value| choices.iter().position(|c| c == v);
        let l = Categorical::new(choices.len(), &good.iter().filter_map(index).collect::<Vec<_>>());
        let g = Categorical::new(choices.len(), &bad.iter().filter_map(index).collect::<Vec<_>>());
        let best = (0..CANDIDATES)
            .map(|_| l.sample(rng))
            .max_by(|&a, &b| (l.log_p(a) - g.log_p(a)).total_cmp(&(l.log_p(b) - g.log_p(b))))
            .unwrap_or(0);
        return choices[best].clone();
    }
    let scale = Scale::of(domain);
    let numbers = |vs: &[toml::Value]| -> Vec<f64> {
        vs.iter()
            .filter_map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
            .map(|x| scale.to(x))
            .collect()
    };
    let l = Parzen::new(&numbers(good), scale.low, scale.high);
    let g = Parzen::new(&numbers(bad), scale.low, scale.high);
    let best = (0..CANDIDATES)
        .map(|_| l.sample(rng))
        .max_by(|&a, &b| (l.log_pdf(a) - g.log_pdf(a)).total_cmp(&(l.log_pdf(b) - g.log_pdf(b))))
        .unwrap_or(scale.low);
    scale.value(best)
}

/// A numeric domain in its search scale: log for `loguniform`; integers and steps widened by
/// half a step each side, so rounding gives every value its share.
struct Scale<'a> {
    domain: &'a Domain,
    low: f64,
    high: f64,
}

impl<'a> Scale<'a> {
    fn of(domain: &'a Domain) -> Self {
        let (low, high) = match *domain {
            Domain::Uniform { low, high } => (low, high),
            Domain::LogUniform { low, high } => (low.ln(), high.ln()),
            Domain::QUniform { low, high, q } => (low - q / 2.0, high + q / 2.0),
            Domain::RandInt { low, high } => (low as f64 - 0.5, (high - 1) as f64 + 0.5),
            Domain::QRandInt { low, high, q } => (low as f64 - q as f64 / 2.0, high as f64 + q as f64 / 2.0),
            Domain::Grid(_) | Domain::Choice(_) => (0.0, 1.0),
        };
        Scale { domain, low, high }
    }

    /// A config value in the search scale.
    fn to(&self, x: f64) -> f64 {
        match self.domain {
            Domain::LogUniform { .. } => x.ln(),
            _ => x,
        }
    }

    /// The config value of a point of the search scale.
    fn value(&self, x: f64) -> toml::Value {
        let round = |x: f64, q: f64| (x / q).round() * q;
        match *self.domain {
            Domain::LogUniform { low, high } => toml::Value::Float(x.exp().clamp(low, high)),
            Domain::QUniform { low, high, q } => toml::Value::Float(round(x, q).clamp(low, high)),
            Domain::RandInt { low, high } => toml::Value::Integer((x.round() as i64).clamp(low, high - 1)),
            Domain::QRandInt { low, high, q } => toml::Value::Integer((round(x, q as f64) as i64).clamp(low, high)),
            _ => toml::Value::Float(x.clamp(self.low, self.high)),
        }
    }
}

/// A mixture of normals truncated to `[low, high]`: one per observation and the prior.
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// Mixture weights, normalized.
    weights: Vec<f64>,
    low: f64,
    high: f64,
}

impl Parzen {
    fn new(observations: &[f64], low: f64, high: f64) -> Self {
        let range = (high - low).max(f64::MIN_POSITIVE);
        let n = observations.len();
        // The observations with their weights, and the prior, sorted by position.
        let mut points: Vec<(f64, f64, bool)> =
            observations.iter().zip(weights(n)).map(|(&x, w)| (x.clamp(low, high), w, false)).collect();
        points.push(((low + high) / 2.0, PRIOR_WEIGHT, true));
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (min_sigma, max_sigma) = (range / (n as f64 + 1.0).min(100.0), range);
        let mut sigmas = Vec::with_capacity(points.len());
        for (i, &(x, _, prior)) in points.iter().enumerate() {
            let left = if i == 0 { x - low } else { x - points[i - 1].0 };
            let right = if i + 1 == points.len() { high - x } else { points[i + 1].0 - x };
            sigmas.push(if prior { range } else { left.max(right).clamp(min_sigma, max_sigma) });
        }
        let total: f64 = points.iter().map(|p| p.1).sum();
        Parzen {
            mus: points.iter().map(|p| p.0).collect(),
            weights: points.iter().map(|p| p.1 / total).collect(),
            sigmas,
            low,
            high,
        }
    }

    fn sample(&self, rng: &mut Pcg64Mcg) -> f64 {
        let mut u: f64 = rng.random();
        let mut k = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            if u < *w {
                k = i;
                break;
            }
            u -= w;
        }
        // Rejection from the component's normal; every component keeps a fair share of its
        // mass inside the range (its centre is inside), so this ends quickly.
        for _ in 0..1000 {
            let z: f64 = StandardNormal.sample(rng);
            let x = self.mus[k] + self.sigmas[k] * z;
            if (self.low..=self.high).contains(&x) {
                return x;
            }
        }
        self.mus[k]
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let p: f64 = self
            .mus
            .iter()
            .zip(&self.sigmas)
            .zip(&self.weights)
            .map(|((&mu, &sigma), &w)| {
                let mass = normal_cdf((self.high - mu) / sigma) - normal_cdf((self.low - mu) / sigma);
                let z = (x - mu) / sigma;
                w * (-0.5 * z * z).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt() * mass.max(1e-12))
            })
            .sum();
        p.max(1e-300).ln()
    }
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2))
}

/// Category weights: the prior's `PRIOR_WEIGHT / k` each, plus each observation's weight.
struct Categorical {
    p: Vec<f64>,
}

impl Categorical {
    fn new(k: usize, observed: &[usize]) -> Self {
        let mut p = vec![PRIOR_WEIGHT / k as f64; k];
        for (&c, w) in observed.iter().zip(weights(observed.len())) {
            p[c] += w;
        }
        let total: f64 = p.iter().sum();
        Categorical { p: p.into_iter().map(|x| x / total).collect() }
    }

    fn sample(&self, rng: &mut Pcg64Mcg) -> usize {
        let mut u: f64 = rng.random();
        for (i, p) in self.p.iter().enumerate() {
            if u < *p {
                return i;
            }
            u -= p;
        }
        self.p.len() - 1
    }

    fn log_p(&self, c: usize) -> f64 {
        self.p[c].ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::searcher::RandomSearch;

    fn space(text: &str) -> Space {
        Space::parse(&text.parse::<toml::Table>().unwrap()).unwrap()
    }

    /// A 2-D quadratic with a log-scaled axis, the optimum at lr = 1e-3, x = 0.3, and a
    /// categorical that matters: the best value found within `budget` trials.
    fn best_found(searcher: &mut dyn Searcher, budget: usize) -> f64 {
        let mut best = f64::INFINITY;
        for i in 0..budget {
            let p = searcher.suggest(i);
            let lr = p["lr"].as_float().unwrap();
            let x = p["x"].as_float().unwrap();
            let width = p["width"].as_integer().unwrap();
            let loss = (lr.log10() + 3.0).powi(2) + 4.0 * (x - 0.3).powi(2) + if width == 64 { 0.0 } else { 0.5 };
            searcher.observe(i, &p, Some(-loss));
            best = best.min(loss);
        }
        best
    }

    /// Over 100 seeds (measured while writing this test) TPE's best was lower than random
    /// search's in 52 at a budget of 30 trials (10 of them TPE's random start), 67 at 60 and
    /// 88 at 100, with median regrets 0.12 / 0.20, 0.016 / 0.11 and 0.0023 / 0.073.
    #[test]
    fn tpe_finds_lower_regret_than_random_search() {
        let space = space(
            "lr = { loguniform = [1e-6, 1e-1] }\nx = { uniform = [0.0, 1.0] }\nwidth = { choice = [32, 64, 128] }",
        );
        let (mut tpe_regrets, mut random_regrets, mut wins) = (Vec::new(), Vec::new(), 0);
        for seed in 0..20 {
            let tpe = best_found(&mut Tpe::new(space.clone(), seed), 100);
            let random = best_found(&mut RandomSearch::new(space.clone(), seed), 100);
            wins += usize::from(tpe < random);
            tpe_regrets.push(tpe);
            random_regrets.push(random);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[9] + v[10]) / 2.0
        };
        let (tpe, random) = (median(tpe_regrets), median(random_regrets));
        eprintln!("median regret over 20 seeds: TPE {tpe:.4}, random {random:.4}; TPE lower in {wins}/20");
        assert!(tpe < random / 4.0, "TPE {tpe} against random {random}");
        assert!(wins >= 15, "TPE lower in only {wins} of 20 seeds");
    }

    #[test]
    fn suggestions_stay_in_their_domains_and_follow_the_good_trials() {
        let space =
            space("n = { qrandint = [16, 256, 16] }\nk = { randint = [1, 4] }\nq = { quniform = [0.0, 1.0, 0.1] }");
        let mut tpe = Tpe::new(space, 5);
        let mut high = 0;
        for i in 0..60 {
            let p = tpe.suggest(i);
            let n = p["n"].as_integer().unwrap();
            let k = p["k"].as_integer().unwrap();
            let q = p["q"].as_float().unwrap();
            assert!((16..=256).contains(&n) && n % 16 == 0, "{n}");
            assert!((1..4).contains(&k), "{k}");
            assert!((0.0..=1.0).contains(&q) && ((q * 10.0).round() - q * 10.0).abs() < 1e-9, "{q}");
            // Larger n is better.
            tpe.observe(i, &p, Some(n as f64));
            high += usize::from(i >= 30 && n >= 192);
        }
        // 5 of the 16 values are ≥ 192: random search would suggest them 31% of the time.
        assert!(high >= 18, "TPE follows the good trials: {high} of the last 30 suggestions ≥ 192");
    }

    #[test]
    fn optunas_split_and_weights() {
        assert_eq!((good_count(10), good_count(11), good_count(300)), (1, 2, 25));
        assert_eq!(weights(3), vec![1.0; 3]);
        let w = weights(30);
        assert_eq!((w.len(), w[29], w[5]), (30, 1.0, 1.0));
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12 && w[0] < w[1] && w[3] < w[4]);
    }
}
