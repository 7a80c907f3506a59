use crate::env::{Env, StepResult};
use crate::error::Result;
use crate::space::{Action, Space};

use super::forward_env;

/// Running mean and variance over batches (Chan et al.'s parallel update), exactly as
/// Gymnasium's `RunningMeanStd`: count starts at `1e-4`, mean at 0, variance at 1.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunningMeanStd {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    pub count: f64,
}

impl RunningMeanStd {
    pub fn new(dim: usize) -> Self {
        RunningMeanStd { mean: vec![0.0; dim], var: vec![1.0; dim], count: 1e-4 }
    }

    /// Folds in one sample.
    pub fn update_one(&mut self, x: impl IntoIterator<Item = f64>) {
        for ((mean, var), x) in self.mean.iter_mut().zip(&mut self.var).zip(x) {
            // Batch of one: batch mean = x, batch variance = 0.
            let delta = x - *mean;
            let total = self.count + 1.0;
            *mean += delta / total;
            *var = (*var * self.count + delta * delta * self.count / total) / total;
        }
        self.count += 1.0;
    }

    /// Folds in a batch given by its moments (Chan et al.'s parallel update; Gymnasium's
    /// `update_from_moments`): also how the statistics of several workers merge.
    pub fn update_moments(&mut self, batch_mean: &[f64], batch_var: &[f64], batch_count: f64) {
        let total = self.count + batch_count;
        for ((mean, var), (&bm, &bv)) in self.mean.iter_mut().zip(&mut self.var).zip(batch_mean.iter().zip(batch_var)) {
            let delta = bm - *mean;
            let m2 = *var * self.count + bv * batch_count + delta * delta * self.count * batch_count / total;
            *mean += delta * batch_count / total;
            *var = m2 / total;
        }
        self.count = total;
    }

    /// Folds in `rows` rows of `self.mean.len()` values each (Gymnasium's `update(x)` on a
    /// batch: its mean and population variance, then [`RunningMeanStd::update_moments`]).
    pub fn update_batch(&mut self, rows: &[f32]) {
        let dim = self.mean.len();
        let n = rows.len() / dim.max(1);
        if n == 0 {
            return;
        }
        let mut mean = vec![0.0; dim];
        rows.chunks_exact(dim).for_each(|row| mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64));
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; dim];
        rows.chunks_exact(dim)
            .for_each(|row| var.iter_mut().zip(row).zip(&mean).for_each(|((v, &x), m)| *v += (x as f64 - m).powi(2)));
        var.iter_mut().for_each(|v| *v /= n as f64);
        self.update_moments(&mean, &var, n as f64);
    }

    /// Merges another worker's statistics into these (parallel Welford).
    pub fn merge(&mut self, other: &RunningMeanStd) {
        self.update_moments(&other.mean, &other.var, other.count);
    }

    /// `(x - mean) / sqrt(var + epsilon)` for element `i`.
    pub fn normalize(&self, i: usize, x: f64, epsilon: f64) -> f64 {
        (x - self.mean[i]) / (self.var[i] + epsilon).sqrt()
    }
}

/// Normalizes observations to zero mean and unit variance with running statistics
/// (Gymnasium's `NormalizeObservation`). Freeze the statistics for evaluation with
/// [`NormalizeObservation::set_update`].
#[derive(Debug, Clone)]
pub struct NormalizeObservation<E> {
    inner: E,
    rms: RunningMeanStd,
    epsilon: f64,
    update: bool,
    observation_space: Space,
}

impl<E: Env> NormalizeObservation<E> {
    /// `epsilon` (Gymnasium's default 1e-8) keeps the division finite for constant elements.
    pub fn new(inner: E, epsilon: f64) -> Self {
        let dim = inner.observation_space().flat_dim();
        let shape = match inner.observation_space() {
            Space::Box { shape, .. } => shape.clone(),
            _ => vec![dim],
        };
        NormalizeObservation {
            rms: RunningMeanStd::new(dim),
            epsilon,
            update: true,
            observation_space: Space::box_uniform(f32::NEG_INFINITY, f32::INFINITY, shape),
            inner,
        }
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The running statistics, to save with a trained policy.
    pub fn stats(&self) -> &RunningMeanStd {
        &self.rms
    }

    /// Replaces the running statistics (e.g. loaded with a trained policy).
    pub fn set_stats(&mut self, rms: RunningMeanStd) {
        self.rms = rms;
    }

    /// Whether new observations update the statistics.
    pub fn set_update(&mut self, update: bool) {
        self.update = update;
    }

    fn normalize(&mut self, obs: &mut [f32]) {
        if self.update {
            self.rms.update_one(obs.iter().map(|&x| x as f64));
        }
        for (i, x) in obs.iter_mut().enumerate() {
            *x = self.rms.normalize(i, *x as f64, self.epsilon) as f32;
        }
    }
}

impl<E: Env> Env for NormalizeObservation<E> {
    crate::env::snapshot_fields!(inner; rms, update);

    forward_env!(name, action_space);

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        self.inner.reset(seed, obs)?;
        self.normalize(obs);
        Ok(())
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        self.inner.reset_to_state(state, obs)?;
        self.normalize(obs);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let result = self.inner.step(action, obs)?;
        self.normalize(obs);
        Ok(result)
    }
}

/// Scales rewards by the running standard deviation of the discounted return
/// (Gymnasium's `NormalizeReward`): `r / sqrt(var(G) + ε)` with `G ← γ·G·(1 − terminated) + r`.
#[derive(Debug, Clone)]
pub struct NormalizeReward<E> {
    inner: E,
    rms: RunningMeanStd,
    discounted_return: f64,
    gamma: f64,
    epsilon: f64,
    update: bool,
}

impl<E: Env> NormalizeReward<E> {
    /// Gymnasium's defaults are `gamma = 0.99`, `epsilon = 1e-8`.
    pub fn new(inner: E, gamma: f64, epsilon: f64) -> Self {
        NormalizeReward { inner, rms: RunningMeanStd::new(1), discounted_return: 0.0, gamma, epsilon, update: true }
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The running statistics of the discounted return.
    pub fn stats(&self) -> &RunningMeanStd {
        &self.rms
    }

    /// Whether new rewards update the statistics.
    pub fn set_update(&mut self, update: bool) {
        self.update = update;
    }
}

impl<E: Env> Env for NormalizeReward<E> {
    crate::env::snapshot_fields!(inner; rms, discounted_return, update);

    forward_env!(name, observation_space, action_space, reset, reset_to_state);

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let mut result = self.inner.step(action, obs)?;
        let not_terminal = if result.terminated { 0.0 } else { 1.0 };
        self.discounted_return = self.discounted_return * self.gamma * not_terminal + result.reward;
        if self.update {
            self.rms.update_one([self.discounted_return]);
        }
        result.reward /= (self.rms.var[0] + self.epsilon).sqrt();
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_stats_match_the_batch_formula() {
        let xs = [1.0, 4.0, -2.0, 7.5, 3.25];
        let mut rms = RunningMeanStd::new(1);
        for &x in &xs {
            rms.update_one([x]);
        }
        // Prior: mean 0, var 1, count 1e-4 — combined with the sample's moments in one go.
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let c = 1e-4;
        let total = c + n;
        let expect_mean = mean * n / total;
        let expect_var = (c * 1.0 + n * var + mean * mean * c * n / total) / total;
        assert!((rms.mean[0] - expect_mean).abs() < 1e-12, "{} vs {expect_mean}", rms.mean[0]);
        assert!((rms.var[0] - expect_var).abs() < 1e-9, "{} vs {expect_var}", rms.var[0]);
    }

    /// Workers that each saw part of the data and merge their statistics (parallel Welford)
    /// end where one process that saw all of it ends, whatever the split.
    #[test]
    fn merged_worker_statistics_equal_one_process_seeing_everything() {
        let rows: Vec<f32> = (0..60).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7 + (i % 3) as f32).collect();
        let mut all = RunningMeanStd::new(3);
        for batch in rows.chunks(9) {
            all.update_batch(batch);
        }
        for split in [3, 15, 27, 45] {
            let (mut a, mut b) = (RunningMeanStd::new(3), RunningMeanStd::new(3));
            a.update_batch(&rows[..split]);
            b.update_batch(&rows[split..]);
            // Every worker starts from the prior (count 1e-4); the extra priors a merge brings
            // weigh 1e-4 of a row, below the tolerance.
            let mut merged = RunningMeanStd::new(3);
            merged.merge(&a);
            merged.merge(&b);
            for d in 0..3 {
                assert!(
                    (merged.mean[d] - all.mean[d]).abs() < 1e-4,
                    "split {split}: mean {} vs {}",
                    merged.mean[d],
                    all.mean[d]
                );
                assert!(
                    (merged.var[d] - all.var[d]).abs() / all.var[d] < 1e-4,
                    "split {split}: var {} vs {}",
                    merged.var[d],
                    all.var[d]
                );
            }
        }
    }
}
