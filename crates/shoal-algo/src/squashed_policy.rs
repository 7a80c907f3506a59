//! SAC's actor: a network from observations to a tanh-squashed Gaussian over actions in
//! [−1, 1], explored in one of two ways:
//!
//! - **diagonal** (the paper's): the network outputs `(μ(s), log σ(s))` and every sample draws
//!   fresh noise `ε ~ N(0, I)` ([`shoal_nn::squashed`]);
//! - **gSDE** (`sac.use_sde`, Raffin et al., 2022): the network outputs `μ(s)` (clipped to
//!   ±[`GSDE_CLIP_MEAN`] as SB3 does) and the noise is `h(s)·(σ ⊙ Z)` from its last hidden
//!   features `h(s)` and a learned `log σ` matrix ([`shoal_nn::gsde`]). While collecting, each
//!   env keeps its `Z` for `sde_sample_freq` steps, so exploration is smooth in time; each
//!   batch an update samples draws one `Z` for all its rows.
//!
//! The `log σ` matrix lives at the end of the actor's flat parameter vector (`actor.log_std`),
//! so the actor's optimizer and checkpoint cover it unchanged.

use rand::Rng;
use rand_distr::StandardNormal;
use shoal_nn::gsde::{Gsde, GsdeSamples};
use shoal_nn::mlp::{Mlp, MlpWorkspace};
use shoal_nn::parallel::Helper;
use shoal_nn::squashed::{squashed_backward, squashed_mean, squashed_sample};
use shoal_nn::ParamLayout;

use crate::config::NetConfig;
use crate::error::{config_err, Result};
use crate::twin_critic::actor;

/// gSDE's mean actions are clipped to ±this before squashing (SB3's `clip_mean`), so `tanh`
/// does not saturate where the noise could no longer move the action.
pub const GSDE_CLIP_MEAN: f32 = 2.0;

/// Where a batch's gSDE exploration matrices come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noise {
    /// Fresh noise for every row (diagonal), or one fresh matrix for the whole batch (gSDE):
    /// an update's samples.
    Batch,
    /// The envs' own matrices (gSDE), kept between steps: collecting experience.
    Envs,
}

/// How the policy explores, with its own buffers.
enum Exploration {
    Diagonal {
        log_std: Vec<f32>,
        eps: Vec<f32>,
        d_log_std: Vec<f32>,
    },
    Gsde {
        gsde: Gsde,
        /// Offset of the `[latent, dim]` log σ matrix in the parameter vector.
        log_std_at: usize,
        /// One `[latent, dim]` matrix for an update's batch.
        batch_z: Vec<f32>,
        /// One matrix per env, while collecting.
        env_z: Vec<f32>,
        samples: GsdeSamples<f32>,
        /// Which `Z` the last sample used (the backward pass needs the same).
        last: Noise,
    },
}

/// The actor network, its parameters and gradients, and the buffers of its last batch.
pub(crate) struct SquashedPolicy {
    net: Mlp,
    pub layout: ParamLayout,
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
    dim: usize,
    exploration: Exploration,
    ws: MlpWorkspace<f32>,
    /// `[rows, dim]`: the last forward's means (clipped with gSDE).
    mean: Vec<f32>,
    /// `[rows, dim]` / `[rows]`: the last sample's actions and log-probabilities.
    pub actions: Vec<f32>,
    pub log_probs: Vec<f32>,
    d_mean: Vec<f32>,
}

impl SquashedPolicy {
    /// A diagonal policy, or with `gsde_log_std_init` a gSDE one whose σ matrix starts at
    /// `exp(gsde_log_std_init)` (SB3's `log_std_init`).
    pub fn new(
        obs_dim: usize,
        dim: usize,
        net_cfg: &NetConfig,
        gsde_log_std_init: Option<f64>,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let outputs = if gsde_log_std_init.is_some() { dim } else { 2 * dim };
        let (net, mut layout, mut params) = actor(obs_dim, outputs, net_cfg, "sac", rng)?;
        let exploration = match gsde_log_std_init {
            None => Exploration::Diagonal { log_std: Vec::new(), eps: Vec::new(), d_log_std: Vec::new() },
            Some(init) => {
                let latent = *net_cfg.hidden.last().ok_or_else(|| {
                    config_err("sac.use_sde needs a hidden layer: its noise is a function of the last one's features")
                })?;
                let gsde = Gsde { latent, dim };
                let log_std_at = layout.push("actor.log_std", &[latent, dim]);
                params.resize(layout.len(), init as f32);
                Exploration::Gsde {
                    gsde,
                    log_std_at,
                    batch_z: vec![0.0; gsde.matrix_len()],
                    env_z: Vec::new(),
                    samples: GsdeSamples::default(),
                    last: Noise::Batch,
                }
            }
        };
        Ok(SquashedPolicy {
            grads: vec![0.0; params.len()],
            net,
            layout,
            params,
            dim,
            exploration,
            ws: MlpWorkspace::default(),
            mean: Vec::new(),
            actions: Vec::new(),
            log_probs: Vec::new(),
            d_mean: Vec::new(),
        })
    }

    /// The width of an action.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Runs the network on `rows` observations: the means (and, diagonal, the log-stds); big
    /// batches partly on `helper` (the same bits).
    pub fn forward(&mut self, obs: &[f32], rows: usize, helper: Option<&mut Helper>) {
        self.net.forward_with(helper, &self.params, obs, rows, &mut self.ws);
        let (d, out) = (self.dim, self.ws.output());
        self.mean.resize(rows * d, 0.0);
        match &mut self.exploration {
            Exploration::Diagonal { log_std, .. } => {
                log_std.resize(rows * d, 0.0);
                for (r, row) in out.chunks_exact(2 * d).enumerate() {
                    self.mean[r * d..(r + 1) * d].copy_from_slice(&row[..d]);
                    log_std[r * d..(r + 1) * d].copy_from_slice(&row[d..]);
                }
            }
            Exploration::Gsde { .. } => {
                for (m, &o) in self.mean.iter_mut().zip(out) {
                    *m = o.clamp(-GSDE_CLIP_MEAN, GSDE_CLIP_MEAN);
                }
            }
        }
    }

    /// Draws new exploration matrices for `envs` envs (gSDE; nothing for a diagonal policy).
    pub fn resample_env_noise(&mut self, envs: usize, rng: &mut impl Rng) {
        if let Exploration::Gsde { gsde, env_z, .. } = &mut self.exploration {
            env_z.clear();
            env_z.extend((0..envs * gsde.matrix_len()).map(|_| rng.sample::<f32, _>(StandardNormal)));
        }
    }

    /// Samples actions and log-probabilities for the last forward's rows into `actions` /
    /// `log_probs`. With gSDE, [`Noise::Batch`] draws a new batch matrix first.
    pub fn sample(&mut self, rows: usize, noise: Noise, rng: &mut impl Rng) {
        let n = rows * self.dim;
        self.actions.resize(n, 0.0);
        self.log_probs.resize(rows, 0.0);
        match &mut self.exploration {
            Exploration::Diagonal { log_std, eps, .. } => {
                eps.clear();
                eps.extend((0..n).map(|_| rng.sample::<f32, _>(StandardNormal)));
                squashed_sample(&self.mean, log_std, eps, self.dim, &mut self.actions, &mut self.log_probs);
            }
            Exploration::Gsde { gsde, log_std_at, batch_z, env_z, samples, last } => {
                if noise == Noise::Batch {
                    batch_z.iter_mut().for_each(|z| *z = rng.sample(StandardNormal));
                }
                let z = if noise == Noise::Batch { &batch_z[..] } else { &env_z[..] };
                let log_std = &self.params[*log_std_at..*log_std_at + gsde.matrix_len()];
                gsde.sample(&self.mean, self.ws.features(), log_std, z, samples);
                self.actions.copy_from_slice(&samples.actions);
                self.log_probs.copy_from_slice(&samples.log_probs);
                *last = noise;
            }
        }
    }

    /// The deterministic actions `tanh(μ)` of the last forward.
    pub fn mean_actions(&self, out: &mut [f32]) {
        squashed_mean(&self.mean, out);
    }

    /// Backpropagates a loss's gradients in the last sample's actions and log-probabilities
    /// through the policy into `grads` (overwritten), for the observations of the last forward;
    /// big layers partly on `helper` (the same bits).
    pub fn backward(
        &mut self,
        obs: &[f32],
        rows: usize,
        d_actions: &[f32],
        d_log_probs: &[f32],
        helper: Option<&mut Helper>,
    ) {
        let d = self.dim;
        self.d_mean.resize(rows * d, 0.0);
        self.grads.fill(0.0);
        match &mut self.exploration {
            Exploration::Diagonal { log_std, eps, d_log_std } => {
                d_log_std.resize(rows * d, 0.0);
                squashed_backward(log_std, eps, &self.actions, d_actions, d_log_probs, d, &mut self.d_mean, d_log_std);
                let out_grad = self.ws.output_grad(rows, 2 * d);
                for (r, g) in out_grad.chunks_exact_mut(2 * d).enumerate() {
                    g[..d].copy_from_slice(&self.d_mean[r * d..(r + 1) * d]);
                    g[d..].copy_from_slice(&d_log_std[r * d..(r + 1) * d]);
                }
            }
            Exploration::Gsde { gsde, log_std_at, batch_z, env_z, samples, last } => {
                let z = if *last == Noise::Batch { &batch_z[..] } else { &env_z[..] };
                let range = *log_std_at..*log_std_at + gsde.matrix_len();
                gsde.backward(
                    self.ws.features(),
                    &self.params[range.clone()],
                    z,
                    samples,
                    d_actions,
                    d_log_probs,
                    &mut self.d_mean,
                    &mut self.grads[range],
                );
                // Hardtanh: no gradient where the mean was clipped.
                let (raw, out_grad) = self.ws.output_and_grad(rows, d);
                for ((g, &dm), &o) in out_grad.iter_mut().zip(&self.d_mean).zip(raw) {
                    *g = if o.abs() > GSDE_CLIP_MEAN { 0.0 } else { dm };
                }
            }
        }
        self.net.backward_with(helper, &self.params, &mut self.grads, obs, rows, &mut self.ws, false);
    }
}
