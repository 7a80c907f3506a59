//! The rest of an off-policy continuous-control agent (SAC, TD3) besides its networks: the
//! learner interface Ape-X drives ([`ContinuousLearner`]), a run's envs, replay, collection
//! and checkpoint ([`OffPolicyRun`]), and its part in a cluster of averaging workers
//! ([`ParamSharing`]).

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use shoal_dist::replay::Transitions;
use shoal_env::{Actions, Space, VecEnv};
use shoal_nn::{ParamLayout, Sgd};

use crate::agent::{build_vec_env, LrSchedule, Network};
use crate::checkpoint::{read_json, write_json, CommonState};
use crate::config::CommonConfig;
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, AlgoError, Result};
use crate::replay::{env_step, ReplayBuffer};
use crate::twin_critic::ActionBounds;
use crate::updater::Updater;

/// What one update of a [`ContinuousLearner`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateStats {
    pub critic_loss: f64,
    /// Mean `Q_1(s, a)` over the batch.
    pub mean_q: f64,
    /// NaN when the (delayed) actor did not step.
    pub actor_loss: f64,
    /// `−mean log π` (SAC's actor steps only; NaN otherwise).
    pub entropy: f64,
}

impl UpdateStats {
    /// No update yet: every figure NaN (an iteration reports the same keys before learning).
    pub const NONE: UpdateStats =
        UpdateStats { critic_loss: f64::NAN, mean_q: f64::NAN, actor_loss: f64::NAN, entropy: f64::NAN };
}

/// The learning half of SAC or TD3, apart from where its experience comes from: its own
/// replay buffer (the `Sac` and `Td3` agents), or Ape-X's prioritized replay (`apex.learner`),
/// where copies of it are also the actors, acting with the parameters the learner publishes.
/// Public so that a learner can be driven on batches from elsewhere (`shoal bench sac` times
/// one update on synthetic batches).
pub trait ContinuousLearner: Send {
    /// Actions in [−1, 1] for `rows` observations into `out` (`[rows, act_dim]`): the
    /// deterministic action without `explore`; otherwise a training action (SAC samples its
    /// policy; TD3 adds Gaussian noise of std `explore`).
    fn act(&mut self, obs: &[f32], rows: usize, explore: Option<f64>, rng: &mut Pcg64Mcg, out: &mut [f32]);
    /// One update on `batch` (with a prioritized sample's importance `weights`).
    fn update(&mut self, batch: &Transitions, weights: Option<&[f32]>, rng: &mut Pcg64Mcg) -> Result<UpdateStats>;
    /// `|y − Q_1(s, a)|` per row of the last update: the rows' new priorities.
    fn td_abs(&self) -> &[f32];
    /// `|y − Q_1(s, a)|` per row by the online networks (an actor's initial priorities).
    fn td_errors(&mut self, batch: &Transitions, rng: &mut Pcg64Mcg, out: &mut Vec<f32>);
    /// What actors need, as one flat vector: the actor's and the critics' parameters.
    fn published_layout(&self) -> ParamLayout;
    fn published(&self, out: &mut Vec<f32>);
    fn set_published(&mut self, params: &[f32]);
    /// Critic updates so far (the delays count them), and setting it as a checkpoint recorded.
    fn updates(&self) -> u64;
    fn set_updates(&mut self, updates: u64);
    /// Writes / restores the networks, their targets and optimizers in checkpoint `dir`.
    fn save(&self, dir: &Path) -> Result<()>;
    fn load(&mut self, dir: &Path) -> Result<()>;
}

/// How a SAC or TD3 agent takes part in a cluster of averaging (or EASGD) workers: each worker
/// keeps its own optimizers, and every `push_every` updates its `[actor | critics]` go to the
/// parameter server's round and come back averaged. The parameter server holds that vector
/// (what `Agent::network` hands out; values written into it are taken before the next use).
pub(crate) struct ParamSharing {
    /// Local (alone: never used) or averaging once a cluster attaches it.
    pub updater: Updater,
    published: Vec<f32>,
    handed_out: bool,
}

impl ParamSharing {
    pub fn new() -> Self {
        // The server's spec copies this optimizer; an averaging server never steps it.
        ParamSharing {
            updater: Updater::Local(Box::new(Sgd::new(0, 0.0, false))),
            published: Vec::new(),
            handed_out: false,
        }
    }

    /// The published vector for a parameter server, up to date with `learner`.
    pub fn network<'a>(&'a mut self, learner: &dyn ContinuousLearner, lr: f64) -> Network<'a> {
        learner.published(&mut self.published);
        self.handed_out = true;
        Network {
            params: &mut self.published,
            layout: learner.published_layout(),
            updater: &mut self.updater,
            lr: LrSchedule { learning_rate: lr, anneal: false },
        }
    }

    /// Gives `learner` what was written into the vector [`ParamSharing::network`] handed out.
    pub fn take_back(&mut self, learner: &mut dyn ContinuousLearner) {
        if std::mem::take(&mut self.handed_out) {
            learner.set_published(&self.published);
        }
    }

    /// Before collecting: [`ParamSharing::take_back`], and in a cluster the server's parameters
    /// once at the start (every worker continues from the same ones).
    pub fn sync(&mut self, learner: &mut dyn ContinuousLearner) -> Result<()> {
        self.take_back(learner);
        if !matches!(self.updater, Updater::Local(_)) {
            learner.published(&mut self.published);
            self.updater.sync(&mut self.published)?;
            learner.set_published(&self.published);
        }
        Ok(())
    }

    /// After a checkpoint is restored: what was handed out is stale, and the store's version
    /// is to be pulled again.
    pub fn reset(&mut self) {
        self.handed_out = false;
        self.updater.reset_version();
    }

    /// After one update: the averaging round's parameters when a push is due.
    pub fn after_update(&mut self, learner: &mut dyn ContinuousLearner) -> Result<()> {
        if self.updater.averaging_due() {
            learner.published(&mut self.published);
            self.updater.push_average(&mut self.published)?;
            learner.set_published(&self.published);
        }
        Ok(())
    }
}

/// What an off-policy continuous agent owns besides its networks — its envs, replay buffer,
/// RNG, counters and part in a cluster — with the step that collects experience (in two
/// halves around the agent's choice of actions: [`OffPolicyRun::begin_step`], then
/// [`OffPolicyRun::finish_step`]), the rounds of updates ([`OffPolicyRun::learn`]), acting
/// ([`OffPolicyRun::predict`]) and the checkpoint of all of it with the learner's.
pub(crate) struct OffPolicyRun {
    pub env: Box<dyn VecEnv>,
    pub replay: ReplayBuffer,
    pub rng: Pcg64Mcg,
    pub episodes: EpisodeTracker,
    pub env_steps: u64,
    pub obs_dim: usize,
    pub act_dim: usize,
    pub bounds: ActionBounds,
    /// `[num_envs, obs_dim]`: the observations the step's actions are chosen on.
    pub step_obs: Vec<f32>,
    /// `[num_envs, act_dim]`: the step's actions, in [−1, 1].
    pub step_actions: Vec<f32>,
    env_actions: Vec<f32>,
    /// The sampled batch of an update.
    batch: Transitions,
    /// Averaging with other workers, in a cluster.
    pub sharing: ParamSharing,
}

/// What [`OffPolicyRun`] keeps in `state.json`.
#[derive(Serialize, Deserialize)]
struct OffPolicyState {
    common: CommonState,
    updates: u64,
    replay: serde_json::Value,
}

impl OffPolicyRun {
    /// The config's vector env (a Box of observations, a bounded Box of actions, or an error
    /// naming `section`), a replay of `buffer_size` one-step transitions and the RNG seeded
    /// `seed + seed_offset`.
    pub fn new(config: &CommonConfig, section: &str, buffer_size: usize, gamma: f64, seed_offset: u64) -> Result<Self> {
        let env = build_vec_env(config)?;
        let obs_dim = match env.single_observation_space() {
            Space::Box { low, .. } => low.len(),
            other => {
                return Err(config_err(format!(
                    "{section} needs a Box observation space, but {} has {other}",
                    config.env.id
                )))
            }
        };
        let bounds = ActionBounds::of(env.single_action_space(), section, &config.env.id)?;
        let (n, act_dim) = (env.num_envs(), bounds.dim());
        Ok(OffPolicyRun {
            replay: ReplayBuffer::new(buffer_size, obs_dim, act_dim, n, 1, gamma)?,
            rng: Pcg64Mcg::seed_from_u64(config.seed.wrapping_add(seed_offset)),
            episodes: EpisodeTracker::default(),
            env_steps: 0,
            obs_dim,
            act_dim,
            bounds,
            step_obs: Vec::new(),
            step_actions: vec![0.0; n * act_dim],
            env_actions: vec![0.0; n * act_dim],
            batch: Transitions::with_act_dim(obs_dim, act_dim),
            sharing: ParamSharing::new(),
            env,
        })
    }

    /// Copies the envs' observations into `step_obs`; before `learning_starts` env steps the
    /// actions are drawn uniformly here and `false` is returned, otherwise `true`: the agent
    /// writes `step_actions` from `step_obs`.
    pub fn begin_step(&mut self, learning_starts: u64) -> bool {
        self.step_obs.clear();
        self.step_obs.extend_from_slice(&self.env.batch().obs);
        if self.env_steps >= learning_starts {
            return true;
        }
        let rng = &mut self.rng;
        self.step_actions.iter_mut().for_each(|a| *a = rng.random_range(-1.0..1.0));
        false
    }

    /// Steps the envs with `step_actions` rescaled to their bounds, records finished episodes
    /// and stores every env's transition.
    pub fn finish_step(&mut self) -> Result<()> {
        self.bounds.to_env(&self.step_actions, &mut self.env_actions);
        self.env.step(Actions::Continuous(&self.env_actions))?;
        let (n, a, d) = (self.env.num_envs(), self.act_dim, self.obs_dim);
        self.env_steps += n as u64;
        let batch = self.env.batch();
        self.episodes.record_batch(batch);
        for i in 0..n {
            let step = env_step(batch, i, &self.step_obs[i * d..(i + 1) * d], &self.step_actions[i * a..(i + 1) * a]);
            self.replay.add(i, step)?;
        }
        Ok(())
    }

    /// Once `learning_starts` env steps are in, `gradient_steps` updates of `learner` on fresh
    /// batches of `batch_size`, each followed by the cluster's averaging when due. Returns the
    /// last critic figures and the last actor step's (NaN before learning starts).
    pub fn learn(
        &mut self,
        learner: &mut dyn ContinuousLearner,
        batch_size: usize,
        gradient_steps: usize,
        learning_starts: u64,
    ) -> Result<UpdateStats> {
        let mut last = UpdateStats::NONE;
        if self.env_steps < learning_starts {
            return Ok(last);
        }
        for _ in 0..gradient_steps {
            self.replay.sample(batch_size, &mut self.rng, &mut self.batch);
            let stats = learner.update(&self.batch, None, &mut self.rng)?;
            self.sharing.after_update(learner)?;
            (last.critic_loss, last.mean_q) = (stats.critic_loss, stats.mean_q);
            if stats.actor_loss.is_finite() {
                (last.actor_loss, last.entropy) = (stats.actor_loss, stats.entropy);
            }
        }
        Ok(last)
    }

    /// `learner`'s actions for `rows` observations (see [`ContinuousLearner::act`]) in the
    /// env's bounds.
    pub fn predict(
        &mut self,
        learner: &mut dyn ContinuousLearner,
        obs: &[f32],
        rows: usize,
        explore: Option<f64>,
        actions: &mut [f32],
    ) -> Result<()> {
        self.sharing.take_back(learner);
        let mut squashed = vec![0.0; rows * self.act_dim];
        learner.act(obs, rows, explore, &mut self.rng, &mut squashed);
        self.bounds.to_env(&squashed, actions);
        Ok(())
    }

    /// Writes `learner`'s networks, the replay, the envs, the RNG and the counters into the
    /// checkpoint `dir`.
    pub fn save(&mut self, dir: &Path, learner: &mut dyn ContinuousLearner) -> Result<()> {
        self.sharing.take_back(learner);
        learner.save(dir)?;
        let replay = self.replay.save(&dir.join("replay.safetensors"))?;
        let common = CommonState::capture(self.env_steps, &self.rng, &self.episodes, self.env.as_mut())?;
        write_json(&dir.join("state.json"), &OffPolicyState { common, updates: learner.updates(), replay })
    }

    /// Restores what [`OffPolicyRun::save`] wrote.
    pub fn load(&mut self, dir: &Path, learner: &mut dyn ContinuousLearner) -> Result<()> {
        self.sharing.reset();
        learner.load(dir)?;
        let state: OffPolicyState = read_json(&dir.join("state.json"))?;
        self.replay.load(&dir.join("replay.safetensors"), &state.replay)?;
        self.env.restore(&state.common.env).map_err(AlgoError::from)?;
        self.env_steps = state.common.env_steps;
        self.rng = state.common.rng;
        self.episodes = state.common.episodes;
        learner.set_updates(state.updates);
        Ok(())
    }
}

/// Implements the `Agent` methods an off-policy continuous agent forwards to its `run` (and,
/// for checkpoints, its `learner`).
macro_rules! forward_to_run {
    () => {
        fn env_steps(&self) -> u64 {
            self.run.env_steps
        }
        fn episodes(&self) -> &crate::episodes::EpisodeTracker {
            &self.run.episodes
        }
        fn episodes_mut(&mut self) -> &mut crate::episodes::EpisodeTracker {
            &mut self.run.episodes
        }
        fn obs_dim(&self) -> usize {
            self.run.obs_dim
        }
        fn action_dim(&self) -> usize {
            self.run.act_dim
        }
        fn save(&mut self, dir: &std::path::Path) -> crate::error::Result<()> {
            self.run.save(dir, &mut self.learner)
        }
    };
}
pub(crate) use forward_to_run;
