//! Observation and reward normalization that travels with the model.
//!
//! Running statistics as Gymnasium's `NormalizeObservation` / `NormalizeReward` keep them
//! (`RunningMeanStd`, updated with each vector step's batch), but held by the agent, not by an
//! env wrapper: they are saved in the checkpoint and applied by `predict`, so `shoal eval`,
//! `shoal.load(...).predict` and a resumed run see exactly the normalization training used —
//! the mismatch SB3 users meet when `VecNormalize`'s statistics live apart from the model
//! (SB3 issues #468, #1556).
//!
//! - observations: `clip((o − μ) / √(σ² + ε), ±10)`, statistics updated with every collected
//!   batch, frozen when predicting;
//! - rewards: divided by the standard deviation of the discounted return `G ← γG + r` (reset at
//!   episode ends, as SB3's `VecNormalize` does), clipped to ±10 — the scale of the rewards,
//!   not their sign or offset.

use serde::{Deserialize, Serialize};
use shoal_env::wrappers::RunningMeanStd;

const EPSILON: f64 = 1e-8;
const CLIP: f64 = 10.0;

/// Which normalizations an on-policy algorithm applies (`ppo.normalize = { obs = true, reward = true }`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    pub obs: bool,
    pub reward: bool,
}

/// The running statistics, as a checkpoint stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Normalizer {
    obs: Option<RunningMeanStd>,
    returns: Option<RunningMeanStd>,
    /// The discounted return of the episode in progress, per env.
    running_return: Vec<f64>,
    gamma: f64,
    #[serde(skip)]
    returns_f32: Vec<f32>,
}

impl Normalizer {
    pub fn new(cfg: NormalizeConfig, obs_dim: usize, num_envs: usize, gamma: f64) -> Self {
        Normalizer {
            obs: cfg.obs.then(|| RunningMeanStd::new(obs_dim)),
            returns: cfg.reward.then(|| RunningMeanStd::new(1)),
            running_return: vec![0.0; num_envs],
            gamma,
            returns_f32: Vec::new(),
        }
    }

    /// Folds a batch of observations into the statistics, then writes it normalized into `out`.
    pub fn observe(&mut self, obs: &[f32], out: &mut [f32]) {
        if let Some(rms) = &mut self.obs {
            rms.update_batch(obs);
        }
        self.apply(obs, out);
    }

    /// Writes `obs` normalized with the current (frozen) statistics into `out`.
    pub fn apply(&self, obs: &[f32], out: &mut [f32]) {
        match &self.obs {
            None => out.copy_from_slice(obs),
            Some(rms) => {
                let dim = rms.mean.len();
                for (i, (o, &x)) in out.iter_mut().zip(obs).enumerate() {
                    *o = rms.normalize(i % dim, x as f64, EPSILON).clamp(-CLIP, CLIP) as f32;
                }
            }
        }
    }

    /// Scales one vector step's rewards in place (env `i`'s episode ended where `done[i]`).
    pub fn scale_rewards(&mut self, rewards: &mut [f32], done: impl Fn(usize) -> bool) {
        let Some(rms) = &mut self.returns else { return };
        for (g, &r) in self.running_return.iter_mut().zip(rewards.iter()) {
            *g = *g * self.gamma + r as f64;
        }
        self.returns_f32.clear();
        self.returns_f32.extend(self.running_return.iter().map(|&g| g as f32));
        rms.update_batch(&self.returns_f32);
        let scale = (rms.var[0] + EPSILON).sqrt();
        for (i, r) in rewards.iter_mut().enumerate() {
            *r = (*r as f64 / scale).clamp(-CLIP, CLIP) as f32;
            if done(i) {
                self.running_return[i] = 0.0;
            }
        }
    }
}
