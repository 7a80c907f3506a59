//! The actor side shared by PPO and A2C: step a vector env with the current policy for
//! `num_steps`, store the rollout contiguously, and compute GAE(λ) advantages.
//!
//! Truncated episodes are bootstrapped as Stable-Baselines3 does: at a time-limit truncation
//! the reward gets `γ·V(final_obs)` added, and the step then counts as an episode end.

use std::path::Path;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use shoal_dist::replay::{Row, Transitions};
use shoal_env::{Actions, Space, VecEnv};
use shoal_nn::{
    io, ActorCritic, ActorCriticConfig, Loss, LossStats, Model, Optimizer, PolicyGradientBatch, PolicyHead,
    PolicyObjective,
};

use crate::agent::build_vec_env;
use crate::checkpoint::{read_json, write_json, CommonState};
use crate::config::{CommonConfig, NetConfig};
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, Result};
use crate::normalize::{NormalizeConfig, Normalizer};
use crate::policy_net::{ActionHead, PolicyNet};

/// How an env takes the policy's actions.
enum ActionKind {
    Discrete,
    /// Gaussian samples are clipped into these bounds before stepping (the stored action, and
    /// its log-probability, stay unclipped).
    Continuous {
        low: Vec<f32>,
        high: Vec<f32>,
    },
}

/// Policy, env and rollout storage of an on-policy algorithm.
pub(crate) struct OnPolicyCore {
    pub env: Box<dyn VecEnv>,
    pub model: ActorCritic<f32>,
    pub rng: Pcg64Mcg,
    pub episodes: EpisodeTracker,
    pub env_steps: u64,
    pub num_envs: usize,
    pub num_steps: usize,
    pub obs_dim: usize,
    pub act_dim: usize,
    head: PolicyHead,
    kind: ActionKind,
    /// Observation and reward statistics, saved with the model and applied by `predict`.
    pub normalizer: Normalizer,
    /// Rollout, step-major (`[num_steps, num_envs, …]`), observations normalized.
    pub obs: Vec<f32>,
    pub actions: Vec<f32>,
    pub log_probs: Vec<f32>,
    pub values: Vec<f32>,
    pub rewards: Vec<f32>,
    pub dones: Vec<f32>,
    pub terminated: Vec<f32>,
    pub advantages: Vec<f32>,
    pub returns: Vec<f32>,
    // Scratch reused every step.
    policy_out: Vec<f32>,
    log_std: Vec<f32>,
    env_discrete: Vec<i64>,
    env_continuous: Vec<f32>,
    /// The envs whose episode ended on the last step, and their final observations.
    final_rows: Vec<usize>,
    final_obs: Vec<f32>,
    truncated_rows: Vec<usize>,
    truncated_obs: Vec<f32>,
    /// IMPALA's next observations, step-major like the rollout, and one row's `[a, log μ]`.
    next_obs: Vec<f32>,
    trajectory_action: Vec<f32>,
    next_values: Vec<f32>,
    /// Normalized observations for a forward pass outside the rollout.
    normalized: Vec<f32>,
}

impl OnPolicyCore {
    /// `gamma` is the discount of the reward normalization's return (when `normalize.reward`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &CommonConfig,
        net: &NetConfig,
        section: &str,
        shared_trunk: bool,
        init_log_std: f64,
        num_steps: usize,
        normalize: NormalizeConfig,
        gamma: f64,
    ) -> Result<Self> {
        let env = build_vec_env(config)?;
        let obs_dim = match env.single_observation_space() {
            Space::Box { low, .. } => low.len(),
            other => {
                return Err(config_err(format!(
                    "{section} needs a Box observation space, but {} has {other}; use algo = \"q_learning\" for tabular envs",
                    config.env.id
                )))
            }
        };
        let (head, kind) = match env.single_action_space() {
            Space::Discrete { n, start: 0 } => (PolicyHead::Categorical { n: *n as usize }, ActionKind::Discrete),
            Space::Box { low, high, .. } => (
                PolicyHead::Gaussian { dim: low.len() },
                ActionKind::Continuous { low: low.clone(), high: high.clone() },
            ),
            other => {
                return Err(config_err(format!(
                    "{section} does not support the action space {other} of {}",
                    config.env.id
                )))
            }
        };
        let encoder = net.encoder(section, env.single_observation_space(), &config.env.id)?;
        let mut model = ActorCritic::new(ActorCriticConfig {
            obs_dim,
            head,
            hidden: net.hidden.clone(),
            activation: net.activation(section)?,
            shared_trunk,
            init_log_std,
            encoder,
            seed: config.seed,
        })?;
        model.set_threads(net.threads(section)?);
        let num_envs = config.env.num_envs;
        let rows = num_steps * num_envs;
        let act_dim = head.action_dim();
        Ok(OnPolicyCore {
            env,
            model,
            rng: Pcg64Mcg::seed_from_u64(config.seed.wrapping_add(0x5eed)),
            episodes: EpisodeTracker::default(),
            env_steps: 0,
            num_envs,
            num_steps,
            obs_dim,
            act_dim,
            head,
            kind,
            normalizer: Normalizer::new(normalize, obs_dim, num_envs, gamma),
            obs: vec![0.0; rows * obs_dim],
            actions: vec![0.0; rows * act_dim],
            log_probs: vec![0.0; rows],
            values: vec![0.0; rows],
            rewards: vec![0.0; rows],
            dones: vec![0.0; rows],
            terminated: vec![0.0; rows],
            advantages: vec![0.0; rows],
            returns: vec![0.0; rows],
            policy_out: Vec::new(),
            log_std: Vec::new(),
            env_discrete: vec![0; num_envs],
            env_continuous: vec![0.0; num_envs * act_dim],
            final_rows: Vec::new(),
            final_obs: Vec::new(),
            truncated_rows: Vec::new(),
            truncated_obs: Vec::new(),
            next_obs: Vec::new(),
            trajectory_action: vec![0.0; act_dim + 1],
            next_values: vec![0.0; num_envs],
            normalized: Vec::new(),
        })
    }

    /// Converts policy actions into the env's action batch (clipping continuous ones).
    fn env_actions<'a>(
        kind: &ActionKind,
        actions: &[f32],
        discrete: &'a mut [i64],
        continuous: &'a mut [f32],
    ) -> Actions<'a> {
        match kind {
            ActionKind::Discrete => {
                discrete.iter_mut().zip(actions).for_each(|(d, &a)| *d = a as i64);
                Actions::Discrete(discrete)
            }
            ActionKind::Continuous { low, high } => {
                for (i, (c, &a)) in continuous.iter_mut().zip(actions).enumerate() {
                    let k = i % low.len();
                    *c = a.clamp(low[k], high[k]);
                }
                Actions::Continuous(continuous)
            }
        }
    }

    /// One step of every env with the current policy, stored as rollout row `t`
    /// (observations, actions, log-probabilities, values, rewards, dones, terminations);
    /// `final_rows` / `final_obs` then name the envs whose episode ended and hold their
    /// episodes' last observations (raw).
    fn step(&mut self, t: usize) -> Result<()> {
        let (n, od, ad, width) = (self.num_envs, self.obs_dim, self.act_dim, self.head.out_dim());
        let rows = t * n..(t + 1) * n;
        self.normalizer.observe(&self.env.batch().obs, &mut self.obs[t * n * od..(t + 1) * n * od]);
        self.log_std.clear();
        self.log_std.extend_from_slice(self.model.log_std());
        let out = self.model.forward(&self.obs[t * n * od..(t + 1) * n * od], n)?;
        self.values[rows.clone()].copy_from_slice(out.value.unwrap_or_default());
        self.policy_out.clear();
        self.policy_out.extend_from_slice(out.policy.unwrap_or_default());
        for i in 0..n {
            let action = &mut self.actions[(t * n + i) * ad..(t * n + i + 1) * ad];
            let logp =
                self.head.sample(&self.policy_out[i * width..(i + 1) * width], &self.log_std, &mut self.rng, action);
            self.log_probs[t * n + i] = logp as f32;
        }
        let actions = &self.actions[t * n * ad..(t + 1) * n * ad];
        let env_actions = Self::env_actions(&self.kind, actions, &mut self.env_discrete, &mut self.env_continuous);
        self.env.step(env_actions)?;
        self.env_steps += n as u64;
        let batch = self.env.batch();
        self.episodes.record_batch(batch);
        self.final_rows.clear();
        self.final_obs.clear();
        let rewards = &mut self.rewards[rows.clone()];
        rewards.copy_from_slice(&batch.rewards);
        self.normalizer.scale_rewards(rewards, |i| batch.done(i));
        for i in 0..n {
            self.dones[t * n + i] = if batch.done(i) { 1.0 } else { 0.0 };
            self.terminated[t * n + i] = if batch.terminated[i] { 1.0 } else { 0.0 };
            if let Some(last) = batch.final_obs(i) {
                self.final_rows.push(i);
                self.final_obs.extend_from_slice(last);
            }
        }
        Ok(())
    }

    /// Runs `num_steps` steps of every env and computes advantages and returns.
    pub fn collect(&mut self, gamma: f64, gae_lambda: f64) -> Result<()> {
        let (n, od) = (self.num_envs, self.obs_dim);
        for t in 0..self.num_steps {
            self.step(t)?;
            self.bootstrap_truncations(t, gamma)?;
        }
        self.normalized.resize(n * od, 0.0);
        self.normalizer.apply(&self.env.batch().obs, &mut self.normalized);
        let next = self.model.forward(&self.normalized, n)?.value.unwrap_or_default();
        self.next_values.copy_from_slice(next);
        self.compute_gae(gamma, gae_lambda);
        Ok(())
    }

    /// Adds `γ·V(final_obs)` to the reward of row `t`'s time-limit truncations (a terminated
    /// episode has no value after its end).
    fn bootstrap_truncations(&mut self, t: usize, gamma: f64) -> Result<()> {
        let (n, od) = (self.num_envs, self.obs_dim);
        self.truncated_rows.clear();
        self.truncated_obs.clear();
        for (k, &i) in self.final_rows.iter().enumerate() {
            if self.terminated[t * n + i] == 0.0 {
                self.truncated_rows.push(i);
                self.truncated_obs.extend_from_slice(&self.final_obs[k * od..(k + 1) * od]);
            }
        }
        if self.truncated_rows.is_empty() {
            return Ok(());
        }
        self.normalized.resize(self.truncated_obs.len(), 0.0);
        self.normalizer.apply(&self.truncated_obs, &mut self.normalized);
        let values = self.model.forward(&self.normalized, self.truncated_rows.len())?.value.unwrap_or_default();
        for (&i, &v) in self.truncated_rows.iter().zip(values) {
            self.rewards[t * n + i] += (gamma * v as f64) as f32;
        }
        Ok(())
    }

    /// Runs `num_steps` steps of every env and writes them into `out` as IMPALA's trajectory
    /// rows: env-major (env 0's `num_steps` rows in time order, then env 1's, …), row `t`
    /// holding `x_t`, `[a_t, log μ(a_t|x_t)]`, `r_t`, `x'_t` (the next observation; the
    /// episode's final one where it ended), `end_t` (the episode ended: the trace stops) and
    /// `γ_t` (`gamma`, 0 where it terminated). Observations are normalized as the policy saw
    /// them. `out` must have `obs_dim` and `act_dim + 1` columns.
    pub fn collect_trajectories(&mut self, gamma: f32, out: &mut Transitions) -> Result<()> {
        let (n, od, ad, steps) = (self.num_envs, self.obs_dim, self.act_dim, self.num_steps);
        self.next_obs.resize(steps * n * od, 0.0);
        for t in 0..steps {
            self.step(t)?;
            for (k, &i) in self.final_rows.iter().enumerate() {
                let row = &mut self.next_obs[(t * n + i) * od..(t * n + i + 1) * od];
                self.normalizer.apply(&self.final_obs[k * od..(k + 1) * od], row);
            }
        }
        self.normalized.resize(n * od, 0.0);
        self.normalizer.apply(&self.env.batch().obs, &mut self.normalized);
        out.clear();
        let action = &mut self.trajectory_action;
        for i in 0..n {
            for t in 0..steps {
                let k = t * n + i;
                let next_obs = match (self.dones[k] == 1.0, t + 1 < steps) {
                    (true, _) => &self.next_obs[k * od..(k + 1) * od],
                    (false, true) => &self.obs[(k + n) * od..(k + n + 1) * od],
                    (false, false) => &self.normalized[i * od..(i + 1) * od],
                };
                action[..ad].copy_from_slice(&self.actions[k * ad..(k + 1) * ad]);
                action[ad] = self.log_probs[k];
                out.push(Row {
                    obs: &self.obs[k * od..(k + 1) * od],
                    action,
                    reward: self.rewards[k],
                    next_obs,
                    done: self.dones[k],
                    discount: gamma * (1.0 - self.terminated[k]),
                });
            }
        }
        Ok(())
    }

    /// GAE(λ) (Schulman et al., 2016): `δ_t = r_t + γ·V(s_{t+1})·(1 − d_t) − V(s_t)`,
    /// `A_t = δ_t + γλ·(1 − d_t)·A_{t+1}`; returns `R_t = A_t + V(s_t)`.
    fn compute_gae(&mut self, gamma: f64, gae_lambda: f64) {
        let n = self.num_envs;
        for i in 0..n {
            let mut last = 0.0f64;
            for t in (0..self.num_steps).rev() {
                let k = t * n + i;
                let not_done = 1.0 - self.dones[k] as f64;
                let next_value = if t + 1 == self.num_steps { self.next_values[i] } else { self.values[k + n] } as f64;
                let delta = self.rewards[k] as f64 + gamma * next_value * not_done - self.values[k] as f64;
                last = delta + gamma * gae_lambda * not_done * last;
                self.advantages[k] = last as f32;
                self.returns[k] = (last + self.values[k] as f64) as f32;
            }
        }
    }

    /// The A2C gradient of the whole rollout, `−E[A·log π] − c_ent·H + c_vf·½·E[(V−R)²]`, in
    /// `model.grads()` (A2C applies it locally, A3C pushes it to a parameter server). With
    /// `norm_adv` the rollout's advantages are normalized in place first.
    pub fn vanilla_gradient(&mut self, norm_adv: bool, ent_coef: f64, vf_coef: f64) -> Result<LossStats> {
        if norm_adv {
            normalize_advantages(&mut self.advantages);
        }
        Ok(self.model.loss_and_grad(Loss::PolicyGradient(PolicyGradientBatch {
            obs: &self.obs,
            rows: self.values.len(),
            actions: &self.actions,
            old_log_probs: &self.log_probs,
            advantages: &self.advantages,
            returns: &self.returns,
            old_values: &self.values,
            objective: PolicyObjective::Vanilla,
            value_clip: None,
            ent_coef,
            vf_coef,
        }))?)
    }

    /// `log π(a|x)` of `actions` and `V(x)` for `rows` observations (normalized already),
    /// into `log_probs` and `values`.
    pub fn evaluate(
        &mut self,
        obs: &[f32],
        rows: usize,
        actions: &[f32],
        log_probs: &mut [f32],
        values: &mut [f32],
    ) -> Result<()> {
        let (width, ad) = (self.head.out_dim(), self.act_dim);
        self.log_std.clear();
        self.log_std.extend_from_slice(self.model.log_std());
        let out = self.model.forward(obs, rows)?;
        values.copy_from_slice(out.value.unwrap_or_default());
        let policy = out.policy.unwrap_or_default();
        for (i, logp) in log_probs.iter_mut().enumerate().take(rows) {
            let row = &policy[i * width..(i + 1) * width];
            *logp = self.head.log_prob(row, &self.log_std, &actions[i * ad..(i + 1) * ad]) as f32;
        }
        Ok(())
    }

    /// `V(x)` for `rows` observations (normalized already), into `values`.
    pub fn values(&mut self, obs: &[f32], rows: usize, values: &mut [f32]) -> Result<()> {
        values.copy_from_slice(self.model.forward(obs, rows)?.value.unwrap_or_default());
        Ok(())
    }

    /// `1 − Var(R − V) / Var(R)` over the rollout: how much of the return the critic explains.
    pub fn explained_variance(&self) -> f64 {
        let var = |xs: &mut dyn Iterator<Item = f64>| {
            let v: Vec<f64> = xs.collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64
        };
        let var_r = var(&mut self.returns.iter().map(|&r| r as f64));
        let var_diff = var(&mut self.returns.iter().zip(&self.values).map(|(&r, &v)| (r - v) as f64));
        if var_r == 0.0 {
            f64::NAN
        } else {
            1.0 - var_diff / var_r
        }
    }

    pub fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        let (width, ad) = (self.head.out_dim(), self.act_dim);
        self.log_std.clear();
        self.log_std.extend_from_slice(self.model.log_std());
        self.normalized.resize(obs.len(), 0.0);
        self.normalizer.apply(obs, &mut self.normalized);
        let out = self.model.forward_policy(&self.normalized, rows)?;
        for i in 0..rows {
            let (row, action) = (&out[i * width..(i + 1) * width], &mut actions[i * ad..(i + 1) * ad]);
            if deterministic {
                self.head.mode(row, action);
            } else {
                self.head.sample(row, &self.log_std, &mut self.rng, action);
            }
            if let ActionKind::Continuous { low, high } = &self.kind {
                action.iter_mut().zip(low.iter().zip(high)).for_each(|(a, (&lo, &hi))| *a = a.clamp(lo, hi));
            }
        }
        Ok(())
    }

    /// The actor (or trunk and policy head) with the normalization, acting deterministically;
    /// `None` for a model with a convolutional encoder (not one MLP chain).
    pub fn policy_net(&self) -> Option<PolicyNet> {
        let chain = self.model.policy_chain()?;
        let head = match &self.kind {
            ActionKind::Discrete => ActionHead::Argmax,
            ActionKind::Continuous { low, high } => ActionHead::Clip { low: low.clone(), high: high.clone() },
        };
        let params = self.model.params().to_vec();
        Some(PolicyNet::new(self.model.layout().clone(), params, chain, head, Some(self.normalizer.clone())))
    }

    pub fn save(&mut self, dir: &Path, optimizer: Option<&dyn Optimizer<f32>>) -> Result<()> {
        io::save(&dir.join("model.safetensors"), &self.model, optimizer, &Default::default())?;
        write_json(&dir.join("normalizer.json"), &self.normalizer)?;
        let state = CommonState::capture(self.env_steps, &self.rng, &self.episodes, self.env.as_mut())?;
        write_json(&dir.join("state.json"), &state)
    }

    pub fn load(&mut self, dir: &Path, optimizer: Option<&mut dyn Optimizer<f32>>) -> Result<()> {
        let state: CommonState = read_json(&dir.join("state.json"))?;
        io::load(&dir.join("model.safetensors"), &mut self.model, optimizer)?;
        // Checkpoints written before normalization existed have no statistics: none were used.
        let normalizer = dir.join("normalizer.json");
        if normalizer.exists() {
            self.normalizer = read_json(&normalizer)?;
            self.normalizer.refresh_merged();
        }
        self.env.restore(&state.env)?;
        self.env_steps = state.env_steps;
        self.rng = state.rng;
        self.episodes = state.episodes;
        Ok(())
    }
}

/// `(A − mean) / (std + 1e-8)` with the unbiased std, as `torch.std` (CleanRL, SB3).
pub(crate) fn normalize_advantages(advantages: &mut [f32]) {
    if advantages.len() < 2 {
        return;
    }
    let n = advantages.len() as f64;
    let mean = advantages.iter().map(|&a| a as f64).sum::<f64>() / n;
    let std = (advantages.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    advantages.iter_mut().for_each(|a| *a = ((*a as f64 - mean) / (std + 1e-8)) as f32);
}

/// Implements the `Agent` methods an on-policy agent forwards to its `core` (and its
/// `updater`, for checkpoints and clusters).
macro_rules! forward_to_core {
    () => {
        fn env_steps(&self) -> u64 {
            self.core.env_steps
        }
        fn episodes(&self) -> &crate::episodes::EpisodeTracker {
            &self.core.episodes
        }
        fn episodes_mut(&mut self) -> &mut crate::episodes::EpisodeTracker {
            &mut self.core.episodes
        }
        fn network(&mut self) -> Option<crate::agent::Network<'_>> {
            use shoal_nn::Model;
            let model = &mut self.core.model;
            let layout = model.layout().clone();
            Some(crate::agent::Network {
                params: model.params_mut(),
                layout,
                updater: &mut self.updater,
                lr: crate::agent::LrSchedule { learning_rate: self.cfg.learning_rate, anneal: self.cfg.anneal_lr },
            })
        }
        fn statistics(&self) -> Option<Vec<f64>> {
            self.core.normalizer.statistics()
        }
        fn set_peer_statistics(&mut self, peers: &[Vec<f64>]) -> crate::error::Result<()> {
            self.core.normalizer.set_peers(peers)
        }
        fn policy_net(&mut self) -> Option<crate::policy_net::PolicyNet> {
            self.core.policy_net()
        }
        fn obs_dim(&self) -> usize {
            self.core.obs_dim
        }
        fn action_dim(&self) -> usize {
            self.core.act_dim
        }
        fn predict(
            &mut self,
            obs: &[f32],
            rows: usize,
            deterministic: bool,
            actions: &mut [f32],
        ) -> crate::error::Result<()> {
            self.core.predict(obs, rows, deterministic, actions)
        }
        fn save(&mut self, dir: &std::path::Path) -> crate::error::Result<()> {
            self.core.save(dir, self.updater.optimizer())
        }
        fn load(&mut self, dir: &std::path::Path) -> crate::error::Result<()> {
            self.updater.reset_version();
            self.core.load(dir, self.updater.optimizer_mut())
        }
    };
}
pub(crate) use forward_to_core;
