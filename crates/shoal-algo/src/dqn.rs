//! Deep Q-Network (Mnih et al., 2015), read top to bottom like CleanRL's `dqn.py`, with the
//! standard extensions: double DQN (van Hasselt et al., 2016), dueling heads (Wang et al.,
//! 2016), n-step returns, Huber or MSE loss, and hard or soft (τ) target updates.
//!
//! Each iteration takes `train_frequency` ε-greedy steps of every env into the replay buffer,
//! then (after `learning_starts`) `gradient_steps` updates on
//! `y = Σ_{k<n} γᵏ r_{t+k} + γⁿ (1 − done) · Q_target(s_{t+n}, a*)`, where
//! `a* = argmax_a Q_target(s', a)` (or `argmax_a Q_online(s', a)` with double DQN).

use std::path::Path;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use shoal_dist::replay::Transitions;
use shoal_env::{Actions, Space, VecEnv};
use shoal_nn::{clip_grad_norm, io, Adam, LinearSchedule, Loss, Model, QNetwork, QNetworkConfig, TdBatch, TdLoss};

use crate::agent::{build_vec_env, Agent, LrSchedule, Network};
use crate::checkpoint::{read_json, write_json, CommonState};
use crate::checks::{check_positive, check_range};
use crate::config::{CommonConfig, NetConfig};
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, AlgoError, Result};
use crate::explore::{argmax, epsilon_greedy};
use crate::metrics::Metrics;
use crate::policy_net::{ActionHead, PolicyNet};
use crate::replay::{env_step, ReplayBuffer};
use crate::updater::Updater;

/// DQN hyperparameters (CleanRL's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqnConfig {
    pub learning_rate: f64,
    pub buffer_size: usize,
    pub gamma: f64,
    /// Target update rate: 1 copies the online network (hard update), < 1 blends (soft).
    pub tau: f64,
    /// Env steps between target updates.
    pub target_network_frequency: u64,
    pub batch_size: usize,
    pub start_e: f64,
    pub end_e: f64,
    /// Fraction of `stop.env_steps` over which ε decays from `start_e` to `end_e`.
    pub exploration_fraction: f64,
    /// Env steps of pure collection before learning starts.
    pub learning_starts: u64,
    /// Vector-env steps between rounds of updates.
    pub train_frequency: usize,
    /// Updates per round.
    pub gradient_steps: usize,
    pub double_dqn: bool,
    pub dueling: bool,
    pub n_step: usize,
    /// `"mse"` or `"huber"`.
    pub loss: String,
    /// Global-norm gradient clipping (0: none).
    pub max_grad_norm: f64,
    pub adam_eps: f64,
    pub net: NetConfig,
}

impl Default for DqnConfig {
    fn default() -> Self {
        DqnConfig {
            learning_rate: 2.5e-4,
            buffer_size: 10_000,
            gamma: 0.99,
            tau: 1.0,
            target_network_frequency: 500,
            batch_size: 128,
            start_e: 1.0,
            end_e: 0.05,
            exploration_fraction: 0.5,
            learning_starts: 10_000,
            train_frequency: 10,
            gradient_steps: 1,
            double_dqn: false,
            dueling: false,
            n_step: 1,
            loss: "mse".into(),
            max_grad_norm: 0.0,
            adam_eps: 1e-8,
            net: NetConfig { hidden: vec![120, 84], activation: "relu".into(), ..NetConfig::default() },
        }
    }
}

impl DqnConfig {
    fn validate(&self) -> Result<TdLoss> {
        check_range("dqn.learning_rate", self.learning_rate, 0.0, 1.0)?;
        check_range("dqn.gamma", self.gamma, 0.0, 1.0)?;
        check_range("dqn.tau", self.tau, 0.0, 1.0)?;
        check_range("dqn.start_e", self.start_e, 0.0, 1.0)?;
        check_range("dqn.end_e", self.end_e, 0.0, 1.0)?;
        check_range("dqn.exploration_fraction", self.exploration_fraction, 0.0, 1.0)?;
        check_positive("dqn.buffer_size", self.buffer_size)?;
        check_positive("dqn.batch_size", self.batch_size)?;
        check_positive("dqn.train_frequency", self.train_frequency)?;
        check_positive("dqn.n_step", self.n_step)?;
        check_positive("dqn.target_network_frequency", self.target_network_frequency as usize)?;
        td_loss("dqn.loss", &self.loss)
    }
}

/// The TD loss a config's `loss` key names (`key` for the error message).
pub(crate) fn td_loss(key: &str, name: &str) -> Result<TdLoss> {
    match name {
        "mse" => Ok(TdLoss::Mse),
        "huber" => Ok(TdLoss::Huber { delta: 1.0 }),
        other => Err(config_err(format!("{key} must be \"mse\" or \"huber\", got \"{other}\""))),
    }
}

/// A DQN agent.
pub struct Dqn {
    cfg: DqnConfig,
    loss: TdLoss,
    env: Box<dyn VecEnv>,
    q: QNetwork<f32>,
    target: QNetwork<f32>,
    /// Adam alone; a parameter server in a cluster (asynchronous distributed DQN: each
    /// worker keeps its own replay and target network).
    updater: Updater,
    replay: ReplayBuffer,
    rng: Pcg64Mcg,
    episodes: EpisodeTracker,
    env_steps: u64,
    updates: u64,
    last_target_update: u64,
    obs_dim: usize,
    n_actions: usize,
    // Scratch.
    batch: Transitions,
    targets: Vec<f32>,
    grads: Vec<f32>,
    obs: Vec<f32>,
    actions: Vec<i64>,
}

impl Dqn {
    pub fn new(config: &CommonConfig, cfg: &DqnConfig) -> Result<Self> {
        let cfg = cfg.clone();
        let loss = cfg.validate()?;
        let env = build_vec_env(config)?;
        let obs_dim = match env.single_observation_space() {
            Space::Box { low, .. } => low.len(),
            other => {
                return Err(config_err(format!("dqn needs a Box observation space, but {} has {other}", config.env.id)))
            }
        };
        let n_actions = match env.single_action_space() {
            Space::Discrete { n, start: 0 } => *n as usize,
            other => {
                return Err(config_err(format!(
                    "dqn needs a Discrete action space, but {} has {other}; use algo = \"ppo\" for continuous actions",
                    config.env.id
                )))
            }
        };
        cfg.net.single_thread("dqn")?;
        let net = QNetworkConfig {
            obs_dim,
            n_actions,
            hidden: cfg.net.hidden.clone(),
            activation: cfg.net.activation("dqn")?,
            dueling: cfg.dueling,
            encoder: cfg.net.encoder("dqn", env.single_observation_space(), &config.env.id)?,
            seed: config.seed,
        };
        let q = QNetwork::new(net)?;
        let target = q.clone();
        let num_envs = config.env.num_envs;
        Ok(Dqn {
            updater: Updater::Local(Box::new(Adam::new(q.layout().len(), 0.9, 0.999, cfg.adam_eps))),
            grads: vec![0.0; q.layout().len()],
            replay: ReplayBuffer::new(cfg.buffer_size, obs_dim, 1, num_envs, cfg.n_step, cfg.gamma)?,
            rng: Pcg64Mcg::seed_from_u64(config.seed.wrapping_add(0x5eed)),
            episodes: EpisodeTracker::default(),
            env_steps: 0,
            updates: 0,
            last_target_update: 0,
            batch: Transitions::new(obs_dim),
            targets: Vec::new(),
            obs: Vec::new(),
            actions: vec![0; num_envs],
            obs_dim,
            n_actions,
            loss,
            cfg,
            env,
            q,
            target,
        })
    }

    /// ε-greedy actions for every env, then one vector step into the replay buffer.
    fn collect_step(&mut self, epsilon: f64) -> Result<()> {
        let n = self.actions.len();
        self.obs.clear();
        self.obs.extend_from_slice(&self.env.batch().obs);
        let q = self.q.q_values(&self.obs, n)?;
        for (i, a) in self.actions.iter_mut().enumerate() {
            *a = epsilon_greedy(&q[i * self.n_actions..(i + 1) * self.n_actions], epsilon, &mut self.rng) as i64;
        }
        self.env.step(Actions::Discrete(&self.actions))?;
        self.env_steps += n as u64;
        let batch = self.env.batch();
        self.episodes.record_batch(batch);
        let d = self.obs_dim;
        for i in 0..n {
            let action = [self.actions[i] as f32];
            self.replay.add(i, env_step(batch, i, &self.obs[i * d..(i + 1) * d], &action))?;
        }
        Ok(())
    }

    /// One gradient step on a sampled batch; returns (loss, mean Q of taken actions).
    fn update(&mut self, lr: f32) -> Result<(f64, f64)> {
        let (b, na) = (self.cfg.batch_size, self.n_actions);
        self.replay.sample(b, &mut self.rng, &mut self.batch);
        td_targets(&mut self.q, Some(&mut self.target), &self.batch, self.cfg.double_dqn, na, &mut self.targets)?;
        let step = TdStep {
            batch: &self.batch,
            targets: &self.targets,
            weights: None,
            kind: self.loss,
            max_grad_norm: self.cfg.max_grad_norm,
            lr,
        };
        let result = td_update(&mut self.q, &mut self.updater, &mut self.grads, step)
            .map_err(|e| diverged_hint(e, self.updates, "dqn"))?;
        self.updates += 1;
        Ok(result)
    }

    /// `θ' ← τθ + (1 − τ)θ'` every `target_network_frequency` env steps.
    fn maybe_update_target(&mut self) {
        if self.env_steps - self.last_target_update < self.cfg.target_network_frequency {
            return;
        }
        self.last_target_update = self.env_steps;
        let tau = self.cfg.tau as f32;
        let online = self.q.params();
        for (t, &o) in self.target.params_mut().iter_mut().zip(online) {
            *t = if tau == 1.0 { o } else { tau * o + (1.0 - tau) * *t };
        }
    }
}

/// The n-step TD targets `y = R + γᵏ·(1 − done)·Q_target(s', a*)` of every row of `batch`
/// into `targets`, with `a* = argmax_a Q_online(s', a)` for double DQN and
/// `argmax_a Q_target(s', a)` otherwise. Without a `target` network the online one bootstraps
/// itself (Ape-X's actors, which hold no target network, computing initial priorities).
pub(crate) fn td_targets(
    online: &mut QNetwork<f32>,
    target: Option<&mut QNetwork<f32>>,
    batch: &Transitions,
    double_dqn: bool,
    n_actions: usize,
    targets: &mut Vec<f32>,
) -> Result<()> {
    let (rows, na) = (batch.len(), n_actions);
    targets.clear();
    if double_dqn {
        let q = online.q_values(&batch.next_obs, rows)?;
        targets.extend(q.chunks_exact(na).map(|row| argmax(row) as f32));
    }
    let bootstrap_net = match target {
        Some(target) => target,
        None => online,
    };
    let next_q = bootstrap_net.q_values(&batch.next_obs, rows)?;
    for i in 0..rows {
        let row = &next_q[i * na..(i + 1) * na];
        let best = if double_dqn { row[targets[i] as usize] } else { row[argmax(row)] };
        let y = batch.rewards[i] + batch.discounts[i] * (1.0 - batch.dones[i]) * best;
        if double_dqn {
            targets[i] = y;
        } else {
            targets.push(y);
        }
    }
    Ok(())
}

/// One TD gradient step's inputs.
pub(crate) struct TdStep<'a> {
    pub batch: &'a Transitions,
    pub targets: &'a [f32],
    /// Importance weights of a prioritized sample.
    pub weights: Option<&'a [f32]>,
    pub kind: TdLoss,
    /// Global-norm gradient clipping (0: none).
    pub max_grad_norm: f64,
    pub lr: f32,
}

/// The TD loss's gradient on `step.batch`, clipped and handed to `updater`; returns (loss,
/// mean Q of the taken actions). A non-finite loss is [`AlgoError::Diverged`].
pub(crate) fn td_update(
    q: &mut QNetwork<f32>,
    updater: &mut Updater,
    grads: &mut [f32],
    step: TdStep<'_>,
) -> Result<(f64, f64)> {
    let rows = step.batch.len();
    let stats = q.loss_and_grad(Loss::Td(TdBatch {
        obs: &step.batch.obs,
        rows,
        actions: &step.batch.actions,
        targets: step.targets,
        weights: step.weights,
        kind: step.kind,
    }))?;
    if !stats.td.is_finite() {
        return Err(AlgoError::Diverged(format!("the TD loss is {}", stats.td)));
    }
    grads.copy_from_slice(q.grads());
    if step.max_grad_norm > 0.0 {
        clip_grad_norm(grads, step.max_grad_norm);
    }
    updater.step(q.params_mut(), grads, step.lr)?;
    let mean_q = step.targets.iter().zip(q.td_errors()).map(|(&y, &e)| (y + e) as f64).sum::<f64>() / rows as f64;
    Ok((stats.td, mean_q))
}

/// Adds where and what to change to a divergence error.
pub(crate) fn diverged_hint(e: AlgoError, updates: u64, section: &str) -> AlgoError {
    match e {
        AlgoError::Diverged(what) => AlgoError::Diverged(format!(
            "{what} at update {updates}; lower {section}.learning_rate or raise {section}.target_network_frequency"
        )),
        other => other,
    }
}

/// What DQN keeps in `state.json` besides the common state.
#[derive(Serialize, Deserialize)]
struct DqnState {
    common: CommonState,
    updates: u64,
    last_target_update: u64,
    replay: serde_json::Value,
}

impl Agent for Dqn {
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        let schedule =
            LinearSchedule { start: self.cfg.start_e, end: self.cfg.end_e, fraction: self.cfg.exploration_fraction };
        let epsilon = schedule.value(progress);
        self.updater.sync(self.q.params_mut())?;
        for _ in 0..self.cfg.train_frequency {
            self.collect_step(epsilon)?;
        }
        // Every iteration reports the same keys (NaN before learning starts), so metric
        // files keep fixed columns.
        let (mut loss, mut q) = (f64::NAN, f64::NAN);
        if self.env_steps > self.cfg.learning_starts {
            (loss, q) = (0.0, 0.0);
            for _ in 0..self.cfg.gradient_steps {
                let (l, m) = self.update(self.cfg.learning_rate as f32)?;
                loss += l;
                q += m;
                self.maybe_update_target();
            }
            let steps = self.cfg.gradient_steps.max(1) as f64;
            (loss, q) = (loss / steps, q / steps);
        }
        let mut metrics = vec![
            ("loss/td", loss),
            ("loss/q_values", q),
            ("charts/epsilon", epsilon),
            ("charts/updates", self.updates as f64),
            ("replay/size", self.replay.len() as f64),
        ];
        metrics.extend(self.updater.metrics());
        Ok(metrics)
    }

    fn env_steps(&self) -> u64 {
        self.env_steps
    }
    fn episodes(&self) -> &EpisodeTracker {
        &self.episodes
    }
    fn episodes_mut(&mut self) -> &mut EpisodeTracker {
        &mut self.episodes
    }
    fn network(&mut self) -> Option<Network<'_>> {
        let layout = self.q.layout().clone();
        Some(Network {
            params: self.q.params_mut(),
            layout,
            updater: &mut self.updater,
            lr: LrSchedule { learning_rate: self.cfg.learning_rate, anneal: false },
        })
    }
    fn obs_dim(&self) -> usize {
        self.obs_dim
    }
    fn action_dim(&self) -> usize {
        1
    }

    fn policy_net(&mut self) -> Option<PolicyNet> {
        let chain = self.q.policy_chain()?;
        Some(PolicyNet::new(self.q.layout().clone(), self.q.params().to_vec(), chain, ActionHead::Argmax, None))
    }

    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        let na = self.n_actions;
        let q = self.q.q_values(obs, rows)?;
        for (a, row) in actions.iter_mut().zip(q.chunks_exact(na)) {
            *a = if deterministic { argmax(row) } else { epsilon_greedy(row, self.cfg.end_e, &mut self.rng) } as f32;
        }
        Ok(())
    }

    fn save(&mut self, dir: &Path) -> Result<()> {
        io::save(&dir.join("model.safetensors"), &self.q, self.updater.optimizer(), &Default::default())?;
        io::save(&dir.join("target.safetensors"), &self.target, None, &Default::default())?;
        let replay = self.replay.save(&dir.join("replay.safetensors"))?;
        let common = CommonState::capture(self.env_steps, &self.rng, &self.episodes, self.env.as_mut())?;
        let state = DqnState { common, updates: self.updates, last_target_update: self.last_target_update, replay };
        write_json(&dir.join("state.json"), &state)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let state: DqnState = read_json(&dir.join("state.json"))?;
        self.updater.reset_version();
        io::load(&dir.join("model.safetensors"), &mut self.q, self.updater.optimizer_mut())?;
        io::load(&dir.join("target.safetensors"), &mut self.target, None)?;
        self.replay.load(&dir.join("replay.safetensors"), &state.replay)?;
        self.env.restore(&state.common.env).map_err(AlgoError::from)?;
        self.env_steps = state.common.env_steps;
        self.rng = state.common.rng;
        self.episodes = state.common.episodes;
        self.updates = state.updates;
        self.last_target_update = state.last_target_update;
        Ok(())
    }
}
