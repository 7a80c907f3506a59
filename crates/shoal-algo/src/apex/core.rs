//! What Ape-X distributes, behind one trait: the paper's double-DQN learner
//! (`apex.learner = "dqn"`), or its DPG variant with SAC or TD3 (`"sac"`, `"td3"`; Horgan et
//! al.'s section 4.2: actors add exploration noise, priorities come from the critic's TD
//! error). The learner trains one [`ApexCore`]; every actor holds another and acts with the
//! parameters the learner publishes — for DQN the Q-network, for SAC and TD3 the actor and
//! the critics (`[actor | critics]`, so actors can score their own transitions).
//!
//! The algorithms themselves are untouched: the DQN core calls `dqn.rs`'s TD functions, the
//! continuous core a [`ContinuousLearner`] (`SacLearner`, `Td3Learner`), the same update
//! their single-process agents run.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_dist::replay::{Sample, Transitions};
use shoal_env::{Actions, Space, VecEnv};
use shoal_nn::conv::EncoderConfig;
use shoal_nn::quant::QuantizedMlp;
use shoal_nn::{io, Adam, Model, ParamLayout, QNetwork, QNetworkConfig, TdLoss};

use super::config::{ApexConfig, ApexLearner, ApexSetup};
use crate::config::CommonConfig;
use crate::dqn::{diverged_hint, td_targets, td_update, TdStep};
use crate::error::{config_err, Result};
use crate::explore::{argmax, epsilon_greedy};
use crate::off_policy::ContinuousLearner;
use crate::sac::SacLearner;
use crate::td3::Td3Learner;
use crate::twin_critic::ActionBounds;
use crate::updater::Updater;

/// One copy of the distributed algorithm: the learner's, or an actor's.
pub(crate) trait ApexCore: Send {
    /// Values per action in a replay row (1: a discrete action index).
    fn act_dim(&self) -> usize;
    /// The layout of what the learner publishes and actors pull.
    fn published_layout(&self) -> ParamLayout;
    /// Those parameters, up to date with the networks; values written into the slice take
    /// effect at [`ApexCore::adopt_published`].
    fn published(&mut self) -> &mut [f32];
    fn adopt_published(&mut self);
    /// Env steps an actor (of `actors`) takes with uniformly random actions first: the
    /// continuous learners' `learning_starts`, shared out; none for DQN, whose ε explores.
    fn warmup_steps(&self, actors: usize) -> u64;
    /// Training actions for `rows` observations into `actions` (`[rows, act_dim]`, as replay
    /// rows hold them) at the actor's exploration `scale` — DQN's ε, the std of TD3's Gaussian
    /// noise; SAC samples its own policy — or uniformly random ones.
    fn explore(
        &mut self,
        obs: &[f32],
        rows: usize,
        scale: f64,
        random: bool,
        rng: &mut Pcg64Mcg,
        actions: &mut [f32],
    ) -> Result<()>;
    /// Steps `env` with replay-form `actions`.
    fn step(&mut self, env: &mut dyn VecEnv, actions: &[f32]) -> Result<()>;
    /// The initial priorities `|δ|` of an actor's new transitions, by its own networks.
    fn priorities(&mut self, batch: &Transitions, rng: &mut Pcg64Mcg, out: &mut Vec<f32>) -> Result<()>;
    /// One learner update on a prioritized sample; returns (loss, mean Q). `|δ|` per row (the
    /// new priorities) is then [`ApexCore::td_abs`].
    fn update(&mut self, sample: &Sample, progress: f64, rng: &mut Pcg64Mcg) -> Result<(f64, f64)>;
    fn td_abs(&self) -> &[f32];
    /// Env-form actions (what `Agent::predict` writes): greedy / mean when `deterministic`,
    /// otherwise exploring at `scale`.
    fn predict(
        &mut self,
        obs: &[f32],
        rows: usize,
        deterministic: bool,
        scale: f64,
        rng: &mut Pcg64Mcg,
        out: &mut [f32],
    ) -> Result<()>;
    /// The learner's networks, targets and optimizers, and its update count.
    fn save(&self, dir: &Path) -> Result<()>;
    fn load(&mut self, dir: &Path) -> Result<()>;
    fn set_updates(&mut self, updates: u64);
    /// Acts (explores and predicts) from now on through the published parameters quantized
    /// to int8, re-quantized at every [`ApexCore::adopt_published`] (an actor's
    /// `apex.actor_precision = "int8"`).
    fn act_in_int8(&mut self) -> Result<()> {
        Err(config_err(
            "apex.actor_precision = \"int8\" needs the DQN learner (apex.learner = \"dqn\"): continuous actors act in f32",
        ))
    }
}

/// The width of an observation row, or an error naming Ape-X.
pub(crate) fn obs_width(space: &Space, env_id: &str) -> Result<usize> {
    match space {
        Space::Box { low, .. } => Ok(low.len()),
        other => Err(config_err(format!("apex needs a Box observation space, but {env_id} has {other}"))),
    }
}

/// What `setup`'s learner acts on in `space`: a DQN's number of discrete actions, or a
/// continuous learner's action bounds — or an error naming the fix.
enum ActionShape {
    Discrete(usize),
    Continuous(ActionBounds),
}

impl ActionShape {
    fn of(setup: &ApexSetup, space: &Space, env_id: &str) -> Result<Self> {
        match &setup.learner {
            ApexLearner::Dqn => match space {
                Space::Discrete { n, start: 0 } => Ok(ActionShape::Discrete(*n as usize)),
                other => Err(config_err(format!(
                    "apex with a DQN learner needs a Discrete action space, but {env_id} has {other}; \
                     set apex.learner = \"sac\" or \"td3\" for continuous actions"
                ))),
            },
            ApexLearner::Sac(cfg) if cfg.use_sde => Err(config_err(
                "apex with a SAC learner explores with SAC's own samples: set sac.use_sde = false (gSDE actors are not built)",
            )),
            ApexLearner::Sac(_) => Ok(ActionShape::Continuous(ActionBounds::of(space, "sac", env_id)?)),
            ApexLearner::Td3(_) => Ok(ActionShape::Continuous(ActionBounds::of(space, "td3", env_id)?)),
        }
    }

    /// Values per action in a replay row.
    fn width(&self) -> usize {
        match self {
            ActionShape::Discrete(_) => 1,
            ActionShape::Continuous(bounds) => bounds.dim(),
        }
    }
}

/// The width of a replay row's action for `setup`'s learner on `env` (checked as
/// [`build`] checks it, without building networks).
pub(crate) fn act_width(config: &CommonConfig, setup: &ApexSetup, env: &dyn VecEnv) -> Result<usize> {
    Ok(ActionShape::of(setup, env.single_action_space(), &config.env.id)?.width())
}

/// A fresh core for `setup`'s learner on `env`'s spaces; every copy starts from the same
/// parameters (drawn from the config's seed).
pub(crate) fn build(config: &CommonConfig, setup: &ApexSetup, env: &dyn VecEnv) -> Result<Box<dyn ApexCore>> {
    let id = &config.env.id;
    let obs_dim = obs_width(env.single_observation_space(), id)?;
    let bounds = match ActionShape::of(setup, env.single_action_space(), id)? {
        ActionShape::Discrete(n_actions) => {
            let encoder = setup.apex.net.encoder("apex", env.single_observation_space(), id)?;
            return Ok(Box::new(DqnCore::new(config, &setup.apex, obs_dim, n_actions, encoder)?));
        }
        ActionShape::Continuous(bounds) => bounds,
    };
    let mut rng = Pcg64Mcg::seed_from_u64(config.seed.wrapping_add(0xa9e));
    let act_dim = bounds.dim();
    let learner: Box<dyn ContinuousLearner> = match &setup.learner {
        ApexLearner::Sac(cfg) => Box::new(SacLearner::new(obs_dim, act_dim, cfg, &mut rng)?),
        ApexLearner::Td3(cfg) => Box::new(Td3Learner::new(obs_dim, act_dim, cfg, &mut rng)?),
        ApexLearner::Dqn => return Err(config_err("apex: a DQN learner has discrete actions")),
    };
    Ok(Box::new(ContinuousCore {
        act_dim,
        bounds,
        learner,
        samples_policy: matches!(setup.learner, ApexLearner::Sac(_)),
        learning_starts: setup.learning_starts() as u64,
        published: Vec::new(),
        env_actions: Vec::new(),
    }))
}

/// The paper's learner: double DQN on n-step targets with a target network, actors ε-greedy.
struct DqnCore {
    cfg: ApexConfig,
    loss: TdLoss,
    n_actions: usize,
    q: QNetwork<f32>,
    target: QNetwork<f32>,
    /// Adam (the learner publishes through its own link, not through the updater).
    updater: Updater,
    updates: u64,
    targets: Vec<f32>,
    grads: Vec<f32>,
    td_abs: Vec<f32>,
    env_actions: Vec<i64>,
    /// The int8 copy of `q` an int8 actor acts with.
    int8: Option<QuantizedMlp>,
}

impl DqnCore {
    /// Quantizes the current Q-network for acting.
    fn quantize(&mut self) -> Result<()> {
        let chain = self.q.policy_chain().ok_or_else(|| {
            config_err("apex.actor_precision = \"int8\" needs a Q-network that is one MLP: set apex.dueling = false and no apex.net.encoder")
        })?;
        let [net] = chain.as_slice() else {
            return Err(config_err("int8 actors quantize one MLP; this Q-network has several"));
        };
        self.int8 = Some(QuantizedMlp::new(net, self.q.params()));
        Ok(())
    }

    fn new(
        config: &CommonConfig,
        cfg: &ApexConfig,
        obs_dim: usize,
        n_actions: usize,
        encoder: Option<EncoderConfig>,
    ) -> Result<Self> {
        cfg.net.single_thread("apex")?;
        let q = QNetwork::new(QNetworkConfig {
            obs_dim,
            n_actions,
            hidden: cfg.net.hidden.clone(),
            activation: cfg.net.activation("apex")?,
            dueling: cfg.dueling,
            encoder,
            seed: config.seed,
        })?;
        Ok(DqnCore {
            loss: cfg.validate()?,
            updater: Updater::Local(Box::new(Adam::new(q.layout().len(), 0.9, 0.999, cfg.adam_eps))),
            grads: vec![0.0; q.layout().len()],
            target: q.clone(),
            q,
            n_actions,
            updates: 0,
            targets: Vec::new(),
            td_abs: Vec::new(),
            env_actions: Vec::new(),
            int8: None,
            cfg: cfg.clone(),
        })
    }
}

/// Q-values of `rows` observations from the network an actor acts with: its int8 copy if it
/// has one, else the f32 network.
fn acting_q_values<'a>(
    q: &'a mut QNetwork<f32>,
    int8: &'a mut Option<QuantizedMlp>,
    obs: &[f32],
    rows: usize,
) -> Result<&'a [f32]> {
    Ok(match int8 {
        Some(int8) => int8.forward(obs, rows),
        None => q.q_values(obs, rows)?,
    })
}

impl ApexCore for DqnCore {
    fn act_dim(&self) -> usize {
        1
    }

    fn published_layout(&self) -> ParamLayout {
        self.q.layout().clone()
    }

    fn published(&mut self) -> &mut [f32] {
        self.q.params_mut()
    }

    fn adopt_published(&mut self) {
        if self.int8.is_some() {
            // The network is the one `act_in_int8` quantized, so this cannot fail.
            let _ = self.quantize();
        }
    }

    fn act_in_int8(&mut self) -> Result<()> {
        self.quantize()
    }

    fn warmup_steps(&self, _actors: usize) -> u64 {
        0
    }

    fn explore(
        &mut self,
        obs: &[f32],
        rows: usize,
        scale: f64,
        _random: bool,
        rng: &mut Pcg64Mcg,
        actions: &mut [f32],
    ) -> Result<()> {
        self.predict(obs, rows, false, scale, rng, actions)
    }

    fn step(&mut self, env: &mut dyn VecEnv, actions: &[f32]) -> Result<()> {
        self.env_actions.clear();
        self.env_actions.extend(actions.iter().map(|&a| a as i64));
        env.step(Actions::Discrete(&self.env_actions))?;
        Ok(())
    }

    /// `|δ|` with `δ = R + γᵏ(1 − d)·Q(s', argmax Q(s')) − Q(s, a)`, all from the network
    /// this actor acts with (int8 for an int8 actor): with one network, double DQN's argmax
    /// and evaluation coincide, so `Q(s', argmax Q(s')) = max Q(s')`, one forward pass.
    fn priorities(&mut self, batch: &Transitions, _rng: &mut Pcg64Mcg, out: &mut Vec<f32>) -> Result<()> {
        let (rows, na) = (batch.len(), self.n_actions);
        let next_q = acting_q_values(&mut self.q, &mut self.int8, &batch.next_obs, rows)?;
        self.targets.clear();
        self.targets.extend(next_q.chunks_exact(na).map(|row| row[argmax(row)]));
        let q = acting_q_values(&mut self.q, &mut self.int8, &batch.obs, rows)?;
        out.clear();
        for (i, &best) in self.targets.iter().enumerate() {
            let y = batch.rewards[i] + batch.discounts[i] * (1.0 - batch.dones[i]) * best;
            out.push((y - q[i * na + batch.actions[i] as usize]).abs());
        }
        Ok(())
    }

    fn update(&mut self, sample: &Sample, progress: f64, _rng: &mut Pcg64Mcg) -> Result<(f64, f64)> {
        let batch = &sample.batch;
        td_targets(&mut self.q, Some(&mut self.target), batch, true, self.n_actions, &mut self.targets)?;
        let step = TdStep {
            batch,
            targets: &self.targets,
            weights: Some(&sample.weights),
            kind: self.loss,
            max_grad_norm: self.cfg.max_grad_norm,
            lr: self.cfg.lr().at(progress) as f32,
        };
        let stats = td_update(&mut self.q, &mut self.updater, &mut self.grads, step)
            .map_err(|e| diverged_hint(e, self.updates, "apex"))?;
        self.td_abs.clear();
        self.td_abs.extend(self.q.td_errors().iter().map(|e| e.abs()));
        self.updates += 1;
        if self.updates.is_multiple_of(self.cfg.target_network_frequency) {
            self.target.params_mut().copy_from_slice(self.q.params());
        }
        Ok(stats)
    }

    fn td_abs(&self) -> &[f32] {
        &self.td_abs
    }

    fn predict(
        &mut self,
        obs: &[f32],
        rows: usize,
        deterministic: bool,
        scale: f64,
        rng: &mut Pcg64Mcg,
        out: &mut [f32],
    ) -> Result<()> {
        let na = self.n_actions;
        let q = acting_q_values(&mut self.q, &mut self.int8, obs, rows)?;
        for (a, row) in out.iter_mut().zip(q.chunks_exact(na)) {
            *a = if deterministic { argmax(row) } else { epsilon_greedy(row, scale, rng) } as f32;
        }
        Ok(())
    }

    /// `model.safetensors` (with Adam's state) and `target.safetensors`.
    fn save(&self, dir: &Path) -> Result<()> {
        io::save(&dir.join("model.safetensors"), &self.q, self.updater.optimizer(), &Default::default())?;
        io::save(&dir.join("target.safetensors"), &self.target, None, &Default::default())?;
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        io::load(&dir.join("model.safetensors"), &mut self.q, self.updater.optimizer_mut())?;
        io::load(&dir.join("target.safetensors"), &mut self.target, None)?;
        Ok(())
    }

    fn set_updates(&mut self, updates: u64) {
        self.updates = updates;
    }
}

/// The DPG variant: a SAC or TD3 learner; actions in [−1, 1] in the replay, rescaled to the
/// env's bounds when stepped.
struct ContinuousCore {
    learner: Box<dyn ContinuousLearner>,
    bounds: ActionBounds,
    act_dim: usize,
    /// SAC's actors sample its policy; TD3's add Gaussian noise of their scale.
    samples_policy: bool,
    learning_starts: u64,
    published: Vec<f32>,
    env_actions: Vec<f32>,
}

impl ApexCore for ContinuousCore {
    fn act_dim(&self) -> usize {
        self.act_dim
    }

    fn published_layout(&self) -> ParamLayout {
        self.learner.published_layout()
    }

    fn published(&mut self) -> &mut [f32] {
        self.learner.published(&mut self.published);
        &mut self.published
    }

    fn adopt_published(&mut self) {
        self.learner.set_published(&self.published);
    }

    fn warmup_steps(&self, actors: usize) -> u64 {
        self.learning_starts / actors.max(1) as u64
    }

    fn explore(
        &mut self,
        obs: &[f32],
        rows: usize,
        scale: f64,
        random: bool,
        rng: &mut Pcg64Mcg,
        actions: &mut [f32],
    ) -> Result<()> {
        if random {
            actions.iter_mut().for_each(|a| *a = rng.random_range(-1.0..1.0));
        } else {
            let explore = if self.samples_policy { 1.0 } else { scale };
            self.learner.act(obs, rows, Some(explore), rng, actions);
        }
        Ok(())
    }

    fn step(&mut self, env: &mut dyn VecEnv, actions: &[f32]) -> Result<()> {
        self.env_actions.resize(actions.len(), 0.0);
        self.bounds.to_env(actions, &mut self.env_actions);
        env.step(Actions::Continuous(&self.env_actions))?;
        Ok(())
    }

    fn priorities(&mut self, batch: &Transitions, rng: &mut Pcg64Mcg, out: &mut Vec<f32>) -> Result<()> {
        self.learner.td_errors(batch, rng, out);
        Ok(())
    }

    fn update(&mut self, sample: &Sample, _progress: f64, rng: &mut Pcg64Mcg) -> Result<(f64, f64)> {
        let stats = self.learner.update(&sample.batch, Some(&sample.weights), rng)?;
        Ok((stats.critic_loss, stats.mean_q))
    }

    fn td_abs(&self) -> &[f32] {
        self.learner.td_abs()
    }

    fn predict(
        &mut self,
        obs: &[f32],
        rows: usize,
        deterministic: bool,
        scale: f64,
        rng: &mut Pcg64Mcg,
        out: &mut [f32],
    ) -> Result<()> {
        let mut squashed = vec![0.0; rows * self.act_dim];
        let explore = (!deterministic).then_some(if self.samples_policy { 1.0 } else { scale });
        self.learner.act(obs, rows, explore, rng, &mut squashed);
        self.bounds.to_env(&squashed, out);
        Ok(())
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.learner.save(dir)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.learner.load(dir)
    }

    fn set_updates(&mut self, updates: u64) {
        self.learner.set_updates(updates);
    }
}
