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
//!
//! In a cluster every worker sees only its own envs; so that all normalize alike, each shares
//! its own statistics ([`Normalizer::statistics`]) and applies them merged with the other
//! workers' (parallel Welford, [`Normalizer::set_peers`]) — as if one process saw everything.

use serde::{Deserialize, Serialize};
use shoal_env::wrappers::RunningMeanStd;

use crate::error::{config_err, Result};

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
    /// This worker's own statistics, of the experience it collected.
    obs: Option<RunningMeanStd>,
    returns: Option<RunningMeanStd>,
    /// The other workers' statistics of a cluster, merged (none alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer_obs: Option<RunningMeanStd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer_returns: Option<RunningMeanStd>,
    /// The discounted return of the episode in progress, per env.
    running_return: Vec<f64>,
    gamma: f64,
    #[serde(skip)]
    returns_f32: Vec<f32>,
    /// Own ⊕ peers, what is applied when there are peers (refreshed on every change).
    #[serde(skip)]
    merged_obs: Option<RunningMeanStd>,
    #[serde(skip)]
    merged_returns: Option<RunningMeanStd>,
}

/// `own` merged with `peer` into `merged` (reusing its buffers), or `None` without a peer.
fn refresh(merged: &mut Option<RunningMeanStd>, own: &Option<RunningMeanStd>, peer: &Option<RunningMeanStd>) {
    match (own, peer) {
        (Some(own), Some(peer)) => {
            let m = merged.get_or_insert_with(|| own.clone());
            m.clone_from(own);
            m.merge(peer);
        }
        _ => *merged = None,
    }
}

impl Normalizer {
    pub fn new(cfg: NormalizeConfig, obs_dim: usize, num_envs: usize, gamma: f64) -> Self {
        Normalizer {
            obs: cfg.obs.then(|| RunningMeanStd::new(obs_dim)),
            returns: cfg.reward.then(|| RunningMeanStd::new(1)),
            peer_obs: None,
            peer_returns: None,
            running_return: vec![0.0; num_envs],
            gamma,
            returns_f32: Vec::new(),
            merged_obs: None,
            merged_returns: None,
        }
    }

    /// The observation statistics applied: own, or own ⊕ peers.
    fn applied_obs(&self) -> Option<&RunningMeanStd> {
        self.merged_obs.as_ref().or(self.obs.as_ref())
    }

    /// Rebuilds the merged statistics (own ⊕ peers) after a checkpoint is read.
    pub fn refresh_merged(&mut self) {
        refresh(&mut self.merged_obs, &self.obs, &self.peer_obs);
        refresh(&mut self.merged_returns, &self.returns, &self.peer_returns);
    }

    /// This worker's own statistics as one vector, `[count, mean…, var…]` for the observations
    /// and then the returns (those kept); `None` when nothing is normalized.
    pub fn statistics(&self) -> Option<Vec<f64>> {
        if self.obs.is_none() && self.returns.is_none() {
            return None;
        }
        let mut out = Vec::new();
        for rms in [&self.obs, &self.returns].into_iter().flatten() {
            out.push(rms.count);
            out.extend(&rms.mean);
            out.extend(&rms.var);
        }
        Some(out)
    }

    /// Applies from now on own statistics merged with `peers` (other workers' `statistics`).
    pub fn set_peers(&mut self, peers: &[Vec<f64>]) -> Result<()> {
        let mut merged = [self.obs.as_ref().map(|r| RunningMeanStd::new(r.mean.len())), None];
        merged[1] = self.returns.as_ref().map(|_| RunningMeanStd::new(1));
        let mut any = false;
        for values in peers {
            let mut rest = values.as_slice();
            for rms in merged.iter_mut().flatten() {
                let dim = rms.mean.len();
                if rest.len() < 1 + 2 * dim {
                    return Err(config_err(format!(
                        "a worker shared normalization statistics of {} values, this one keeps {}: run every worker with the same config",
                        values.len(),
                        self.statistics().map_or(0, |s| s.len())
                    )));
                }
                let (count, mean, var) = (rest[0], &rest[1..1 + dim], &rest[1 + dim..1 + 2 * dim]);
                rms.update_moments(mean, var, count);
                rest = &rest[1 + 2 * dim..];
            }
            any = true;
        }
        let [obs, returns] = merged;
        // A merge starts from the prior (count 1e-4, variance 1) like every worker's own.
        (self.peer_obs, self.peer_returns) = if any { (obs, returns) } else { (None, None) };
        self.refresh_merged();
        Ok(())
    }

    /// Folds a batch of observations into the statistics, then writes it normalized into `out`.
    pub fn observe(&mut self, obs: &[f32], out: &mut [f32]) {
        if let Some(rms) = &mut self.obs {
            rms.update_batch(obs);
            refresh(&mut self.merged_obs, &self.obs, &self.peer_obs);
        }
        self.apply(obs, out);
    }

    /// The observation normalization as `(x − shift)·scale` clipped to `±clip` in `f32` (for
    /// an exported model), `None` when observations are not normalized.
    pub fn obs_affine(&self) -> Option<shoal_nn::onnx::InputAffine> {
        let rms = self.applied_obs()?;
        Some(shoal_nn::onnx::InputAffine {
            shift: rms.mean.iter().map(|&m| m as f32).collect(),
            scale: rms.var.iter().map(|&v| (1.0 / (v + EPSILON).sqrt()) as f32).collect(),
            clip: CLIP as f32,
        })
    }

    /// Writes `obs` normalized with the current (frozen) statistics into `out`.
    pub fn apply(&self, obs: &[f32], out: &mut [f32]) {
        match self.applied_obs() {
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
        refresh(&mut self.merged_returns, &self.returns, &self.peer_returns);
        let applied = self.merged_returns.as_ref().or(self.returns.as_ref());
        let scale = applied.map_or(1.0, |r| (r.var[0] + EPSILON).sqrt());
        for (i, r) in rewards.iter_mut().enumerate() {
            *r = (*r as f64 / scale).clamp(-CLIP, CLIP) as f32;
            if done(i) {
                self.running_return[i] = 0.0;
            }
        }
    }
}
