//! IMPALA (Espeholt et al., 2018): actors act, one learner learns, and V-trace corrects for
//! the lag between them.
//!
//! - N **actors** each step their own vector env with their copy of the actor-critic for
//!   `unroll_length` steps (the behaviour policy μ), and send the trajectory fragment — per
//!   step `x_t`, `a_t`, `log μ(a_t|x_t)`, `r_t`, the next observation, whether the episode
//!   ended and its discount — to the learner's queue; before each fragment they pull the
//!   newest parameters the learner published.
//! - One **learner** takes `batch_fragments` fragments, oldest first, evaluates them under
//!   its current policy π and value V, computes V-trace targets `v_s` and advantages
//!   `ρ_s·(r_s + γ·v_{s+1} − V(x_s))` ([`crate::vtrace`]), and takes one gradient step on
//!
//!   ```text
//!   L = −E[ρ_s·A_s·log π(a_s|x_s)] + c_vf·½·E[(v_s − V(x_s))²] − c_ent·E[H(π(·|x_s))]
//!   ```
//!
//!   — A2C's loss with V-trace's advantages and targets (the same finite-difference-checked
//!   `Loss::PolicyGradient`) — then publishes its parameters to the parameter server.
//!
//! The queue is a [`ReplayStore`] over a [`TrajectoryQueue`] and the parameters a
//! [`ParamStore`]: in memory for the embedded [`ImpalaAgent`] (actors as threads), `shoal
//! replay` and `shoal ps` over gRPC for actor and learner processes ([`run_actor`],
//! [`run_learner`]) — the same [`Actor`] and [`Learner`] either way. A fragment is inserted
//! in one call and taken in one, so it stays whole and in order whatever the actors
//! interleave. The queue's rows are not checkpointed: a resumed run starts with fresh
//! trajectories.

mod config;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_dist::replay::{max_rows_per_message, Sample, TrajectoryQueue, Transitions};
use shoal_dist::{Coordinator, LocalReplay, ParamServer, ParamStore, ReplayStats, ReplayStore};
use shoal_nn::{clip_grad_norm, io, Adam, Loss, LossStats, Model, PolicyGradientBatch, PolicyObjective, Sgd};

pub use self::config::ImpalaConfig;
use crate::actor_threads::{iterate, parameter_lag, ActorStats, ActorThread, LearnerTurn, StatusMeters};
use crate::agent::{Agent, Network};
use crate::checkpoint::{read_json, write_json, CommonState};
use crate::cluster::ServerSpec;
use crate::config::CommonConfig;
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, Result};
use crate::metrics::Metrics;
use crate::normalize::NormalizeConfig;
use crate::on_policy::{normalize_advantages, OnPolicyCore};
use crate::policy_net::PolicyNet;
use crate::updater::{Link, Updater};
use crate::vtrace::{vtrace, Trajectory};

/// The number of actors: `cluster.workers`, or 2 without a `[cluster]`.
fn actor_count(config: &CommonConfig) -> usize {
    config.cluster.as_ref().map_or(2, |c| c.workers)
}

/// An actor-critic of the config's env and `[impala]` network; `steps` rollout steps.
fn on_policy_core(config: &CommonConfig, cfg: &ImpalaConfig, steps: usize) -> Result<OnPolicyCore> {
    let normalize = NormalizeConfig::default();
    OnPolicyCore::new(config, &cfg.net, "impala", cfg.shared_trunk, cfg.init_log_std, steps, normalize, cfg.gamma)
}

/// The queue an IMPALA run's config describes (`queue_fragments` fragments of
/// `env.num_envs × unroll_length` rows), empty; and the rows of one fragment.
pub fn queue_for(config: &CommonConfig, cfg: &ImpalaConfig) -> Result<(LocalReplay, usize)> {
    cfg.validate()?;
    let core = on_policy_core(config, cfg, 1)?;
    let rows = config.env.num_envs * cfg.unroll_length;
    let queue = TrajectoryQueue::new(cfg.queue_fragments * rows, core.obs_dim, core.act_dim + 1)?;
    Ok((LocalReplay::queue(queue), rows))
}

/// The widths of a trajectory row's observation and action (the action and its behaviour
/// log-probability).
pub fn row_widths(config: &CommonConfig, cfg: &ImpalaConfig) -> Result<(usize, usize)> {
    let core = on_policy_core(config, cfg, 1)?;
    Ok((core.obs_dim, core.act_dim + 1))
}

/// One IMPALA actor: its envs and its copy of the policy.
pub struct Actor {
    rank: usize,
    core: OnPolicyCore,
    link: Link,
    gamma: f32,
    fragment: Transitions,
    stats: ActorStats,
}

impl Actor {
    /// Actor `rank`, its envs seeded apart from the others'.
    pub fn new(config: &CommonConfig, cfg: &ImpalaConfig, rank: usize, store: Arc<dyn ParamStore>) -> Result<Self> {
        cfg.validate()?;
        let mut own = config.clone();
        own.seed = config.seed.wrapping_add(10_000 * rank as u64);
        let core = on_policy_core(&own, cfg, cfg.unroll_length)?;
        Ok(Actor {
            rank,
            link: Link::new(store, rank),
            gamma: cfg.gamma as f32,
            fragment: Transitions::with_act_dim(core.obs_dim, core.act_dim + 1),
            stats: ActorStats::default(),
            core,
        })
    }

    /// Rows of one fragment: `num_envs × unroll_length`.
    fn fragment_rows(&self) -> usize {
        self.core.num_envs * self.core.num_steps
    }

    /// Collects `fragments` trajectory fragments with the newest published policy, inserting
    /// each into `queue`.
    pub fn act(&mut self, fragments: usize, queue: &dyn ReplayStore) -> Result<()> {
        for _ in 0..fragments {
            let latest = self.link.store.version();
            self.stats.lag_sum += self.link.version.map_or(0, |v| latest.saturating_sub(v));
            self.stats.pulls += 1;
            if let Some(version) = self.link.store.pull(self.link.version, self.core.model.params_mut())? {
                self.link.version = Some(version);
            }
            self.core.collect_trajectories(self.gamma, &mut self.fragment)?;
            self.wait_for_room(queue)?;
            queue.insert(&self.fragment, None)?;
        }
        Ok(())
    }

    /// Waits while the queue has no room for this actor's fragment — at most a second, so an
    /// actor still makes progress (the oldest fragment is then dropped) and hears a stop
    /// when the learner is gone.
    fn wait_for_room(&self, queue: &dyn ReplayStore) -> Result<()> {
        let full = |s: &ReplayStats| s.len + self.fragment_rows() as u64 > s.capacity;
        let deadline = Instant::now() + Duration::from_secs(1);
        while full(&queue.stats()?) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }
}

/// Counters and the last update's losses.
#[derive(Debug, Clone, Copy, Default)]
pub struct LearnerStats {
    pub updates: u64,
    pub loss: LossStats,
    pub grad_norm: f64,
    /// Mean importance ratio π/μ of the last batch, and the share of it above ρ̄.
    pub rho_mean: f64,
    pub rho_clipped: f64,
}

/// The IMPALA learner: the current policy and value, their optimizer, and where its
/// parameters are published.
pub struct Learner {
    cfg: ImpalaConfig,
    /// The model (and `predict`, checkpoints) — its env is never stepped.
    core: OnPolicyCore,
    optimizer: Updater,
    /// What a parameter server's spec takes as the learner's optimizer: the server averages a
    /// round of one (takes the learner's parameters), never steps.
    server_updater: Updater,
    link: Option<Link>,
    fragment_rows: usize,
    stats: LearnerStats,
    // Scratch, one batch of `batch_fragments × fragment_rows` rows.
    taken: Sample,
    batch: Transitions,
    actions: Vec<f32>,
    behaviour: Vec<f32>,
    log_rhos: Vec<f32>,
    values: Vec<f32>,
    next_values: Vec<f32>,
    /// The rows whose next observation is not the next row's (see [`Learner::next_values`]),
    /// those observations, and their values.
    bootstrap_rows: Vec<usize>,
    bootstrap_obs: Vec<f32>,
    bootstrap_values: Vec<f32>,
    targets: Vec<f32>,
    advantages: Vec<f32>,
    grads: Vec<f32>,
}

impl Learner {
    pub fn new(config: &CommonConfig, cfg: &ImpalaConfig) -> Result<Self> {
        cfg.validate()?;
        let core = on_policy_core(config, cfg, 1)?;
        let params = core.model.layout().len();
        Ok(Learner {
            cfg: cfg.clone(),
            optimizer: Updater::Local(Box::new(Adam::new(params, 0.9, 0.999, cfg.adam_eps))),
            server_updater: Updater::Local(Box::new(Sgd::new(0, 0.0, false))),
            link: None,
            fragment_rows: config.env.num_envs * cfg.unroll_length,
            stats: LearnerStats::default(),
            taken: Sample::default(),
            batch: Transitions::with_act_dim(core.obs_dim, core.act_dim + 1),
            actions: Vec::new(),
            behaviour: Vec::new(),
            log_rhos: Vec::new(),
            values: Vec::new(),
            next_values: Vec::new(),
            bootstrap_rows: Vec::new(),
            bootstrap_obs: Vec::new(),
            bootstrap_values: Vec::new(),
            targets: Vec::new(),
            advantages: Vec::new(),
            grads: vec![0.0; params],
            core,
        })
    }

    /// Publishes the parameters to `store` every `publish_every` updates.
    pub fn publish_to(&mut self, store: Arc<dyn ParamStore>) {
        self.link = Some(Link::new(store, 0));
    }

    fn batch_rows(&self) -> usize {
        self.cfg.batch_fragments * self.fragment_rows
    }

    /// Whether `queued` rows make a batch.
    pub fn may_update(&self, queued: u64) -> bool {
        queued >= self.batch_rows() as u64
    }

    /// Takes one batch of fragments from `queue` — as many whole fragments per call as one
    /// message carries, so the queue frees room for several actors at once (freed one
    /// fragment at a time, two waiting actors both saw room and one insert dropped a
    /// fragment) — and checks each env's rows chain up (a row's next observation is the following row's
    /// observation unless the episode ended): V-trace on rows out of order would be silently
    /// wrong.
    fn take_batch(&mut self, queue: &dyn ReplayStore) -> Result<()> {
        self.batch.clear();
        let per_message = max_rows_per_message(self.batch.obs_dim, self.batch.act_dim) / self.fragment_rows;
        let per_call = per_message.clamp(1, self.cfg.batch_fragments);
        let mut left = self.cfg.batch_fragments;
        while left > 0 {
            let fragments = per_call.min(left);
            left -= fragments;
            queue.sample(fragments * self.fragment_rows, 1.0, &mut self.taken)?;
            self.batch.extend_from(&self.taken.batch);
        }
        self.batch.check().map_err(config_err)?;
        let d = self.batch.obs_dim;
        let broken = (0..self.batch.len()).find(|&i| {
            self.leads_to_next_row(i)
                && self.batch.next_obs[i * d..(i + 1) * d] != self.batch.obs[(i + 1) * d..(i + 2) * d]
        });
        match broken {
            Some(i) => Err(config_err(format!(
                "trajectory row {i} does not lead to row {}: the queue mixed fragments; actors and learner must share \
                 impala.unroll_length and env.num_envs",
                i + 1
            ))),
            None => Ok(()),
        }
    }

    /// Whether row `i`'s next observation must be row `i + 1`'s: neither its trajectory nor
    /// its episode ends there.
    fn leads_to_next_row(&self, i: usize) -> bool {
        !(i + 1).is_multiple_of(self.cfg.unroll_length) && self.batch.dones[i] == 0.0
    }

    /// One update: take a batch, V-trace it under the current networks, step, maybe publish.
    pub fn update(&mut self, queue: &dyn ReplayStore, progress: f64) -> Result<()> {
        self.take_batch(queue)?;
        let (rows, ad) = (self.batch.len(), self.core.act_dim);
        self.actions.resize(rows * ad, 0.0);
        for v in [&mut self.behaviour, &mut self.log_rhos, &mut self.values, &mut self.next_values] {
            v.resize(rows, 0.0);
        }
        for v in [&mut self.targets, &mut self.advantages] {
            v.resize(rows, 0.0);
        }
        for (i, row) in self.batch.actions.chunks_exact(ad + 1).enumerate() {
            self.actions[i * ad..(i + 1) * ad].copy_from_slice(&row[..ad]);
            self.behaviour[i] = row[ad];
        }
        self.core.evaluate(&self.batch.obs, rows, &self.actions, &mut self.log_rhos, &mut self.values)?;
        self.next_values()?;
        let mut clipped = 0usize;
        let mut rho_sum = 0.0f64;
        for (lr, &mu) in self.log_rhos.iter_mut().zip(&self.behaviour) {
            *lr -= mu;
            let rho = (*lr as f64).exp();
            rho_sum += rho;
            clipped += (rho > self.cfg.rho_bar) as usize;
        }
        let t = self.cfg.unroll_length;
        for s in (0..rows).step_by(t) {
            let r = s..s + t;
            let trajectory = Trajectory {
                log_rhos: &self.log_rhos[r.clone()],
                rewards: &self.batch.rewards[r.clone()],
                discounts: &self.batch.discounts[r.clone()],
                ends: &self.batch.dones[r.clone()],
                values: &self.values[r.clone()],
                next_values: &self.next_values[r.clone()],
            };
            vtrace(trajectory, self.cfg.clips(), &mut self.targets[r.clone()], &mut self.advantages[r]);
        }
        if self.cfg.norm_adv {
            normalize_advantages(&mut self.advantages);
        }
        let loss = self.core.model.loss_and_grad(Loss::PolicyGradient(PolicyGradientBatch {
            obs: &self.batch.obs,
            rows,
            actions: &self.actions,
            old_log_probs: &self.behaviour,
            advantages: &self.advantages,
            returns: &self.targets,
            old_values: &self.values,
            objective: PolicyObjective::Vanilla,
            value_clip: None,
            ent_coef: self.cfg.ent_coef,
            vf_coef: self.cfg.vf_coef,
        }))?;
        self.grads.copy_from_slice(self.core.model.grads());
        let grad_norm = clip_grad_norm(&mut self.grads, self.cfg.max_grad_norm);
        let lr = self.cfg.lr().at(progress) as f32;
        self.optimizer.step(self.core.model.params_mut(), &self.grads, lr)?;
        self.stats = LearnerStats {
            updates: self.stats.updates + 1,
            loss,
            grad_norm,
            rho_mean: rho_sum / rows as f64,
            rho_clipped: clipped as f64 / rows as f64,
        };
        if let Some(link) = self.link.as_mut().filter(|_| self.stats.updates.is_multiple_of(self.cfg.publish_every)) {
            link.store.push_params(0, self.core.model.params_mut())?;
        }
        Ok(())
    }

    /// `V(x')` for every row of the batch, after `values` holds `V(x)`. Inside a trajectory the
    /// next observation is the next row's (`take_batch` checked it), so its value is already
    /// there; only the rows that end a trajectory or an episode need a forward pass of their
    /// own — one row in `unroll_length` and the episode ends, instead of the whole batch again.
    fn next_values(&mut self) -> Result<()> {
        let (rows, d) = (self.batch.len(), self.batch.obs_dim);
        self.bootstrap_rows.clear();
        for i in 0..rows {
            if !self.leads_to_next_row(i) {
                self.bootstrap_rows.push(i);
            }
        }
        self.bootstrap_obs.clear();
        for &i in &self.bootstrap_rows {
            self.bootstrap_obs.extend_from_slice(&self.batch.next_obs[i * d..(i + 1) * d]);
        }
        let n = self.bootstrap_rows.len();
        self.bootstrap_values.resize(n, 0.0);
        self.core.values(&self.bootstrap_obs, n, &mut self.bootstrap_values)?;
        if let Some(last) = rows.checked_sub(1) {
            self.next_values[..last].copy_from_slice(&self.values[1..]);
        }
        for (&i, &v) in self.bootstrap_rows.iter().zip(&self.bootstrap_values) {
            self.next_values[i] = v;
        }
        Ok(())
    }

    pub fn stats(&self) -> LearnerStats {
        self.stats
    }

    /// What the parameter server holds: the learner's parameters.
    fn network(&mut self) -> Network<'_> {
        let layout = self.core.model.layout().clone();
        Network { params: self.core.model.params_mut(), layout, updater: &mut self.server_updater, lr: self.cfg.lr() }
    }
}

/// Rates over one stretch of a run, for metrics.
struct Rates {
    start: Instant,
    updates: u64,
    env_steps: u64,
}

impl Rates {
    fn new(updates: u64, env_steps: u64) -> Self {
        Rates { start: Instant::now(), updates, env_steps }
    }

    /// Learner, queue and actor metrics since `self`, and a new starting point.
    fn metrics(&self, queue: ReplayStats, learner: LearnerStats, env_steps: u64) -> (Metrics, Rates) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let loss = learner.loss;
        let metrics = vec![
            ("loss/policy", loss.policy),
            ("loss/value", loss.value),
            ("loss/entropy", loss.entropy),
            ("loss/grad_norm", learner.grad_norm),
            ("impala/rho_mean", learner.rho_mean),
            ("impala/rho_clipped", learner.rho_clipped),
            ("charts/updates", learner.updates as f64),
            ("queue/size", queue.len as f64),
            ("queue/dropped", queue.inserted.saturating_sub(queue.sampled + queue.len) as f64),
            ("learner/updates_per_sec", rate(learner.updates, self.updates)),
            ("actors/env_steps_per_sec", rate(env_steps, self.env_steps)),
        ];
        (metrics, Rates::new(learner.updates, env_steps))
    }
}

impl ActorThread for Actor {
    fn act(&mut self, fragments: usize, queue: &dyn ReplayStore) -> Result<()> {
        Actor::act(self, fragments, queue)
    }

    fn env_steps(&self) -> u64 {
        self.core.env_steps
    }

    fn pulls(&self) -> ActorStats {
        self.stats
    }
}

impl LearnerTurn for Learner {
    fn ready(&self, queue: &ReplayStats) -> bool {
        self.may_update(queue.len)
    }

    fn update(&mut self, queue: &dyn ReplayStore, progress: f64) -> Result<()> {
        Learner::update(self, queue, progress)
    }

    fn updates(&self) -> u64 {
        self.stats.updates
    }
}

/// IMPALA in one process: actor threads and the learner around an in-memory queue and
/// parameter server.
pub struct ImpalaAgent {
    cfg: ImpalaConfig,
    actors: Vec<Actor>,
    learner: Learner,
    queue: Arc<LocalReplay>,
    server: Arc<ParamServer>,
    episodes: EpisodeTracker,
    rates: Rates,
    meters: StatusMeters,
}

impl ImpalaAgent {
    pub fn new(config: &CommonConfig, cfg: &ImpalaConfig) -> Result<Self> {
        let mut learner = Learner::new(config, cfg)?;
        let cluster = config.cluster.clone().unwrap_or_default();
        let server = Arc::new(ServerSpec::from_network(learner.network(), true)?.server(&cluster, 0, 1));
        learner.publish_to(Arc::clone(&server) as Arc<dyn ParamStore>);
        let (queue, _) = queue_for(config, cfg)?;
        let actors = (0..actor_count(config))
            .map(|rank| Actor::new(config, cfg, rank, Arc::clone(&server) as Arc<dyn ParamStore>))
            .collect::<Result<Vec<_>>>()?;
        Ok(ImpalaAgent {
            cfg: cfg.clone(),
            actors,
            learner,
            queue: Arc::new(queue),
            server,
            episodes: EpisodeTracker::default(),
            rates: Rates::new(0, 0),
            meters: StatusMeters::default(),
        })
    }
}

/// What the embedded agent keeps in `state.json` besides the model.
#[derive(Serialize, Deserialize)]
struct ImpalaState {
    episodes: EpisodeTracker,
    updates: u64,
}

impl Agent for ImpalaAgent {
    /// Each actor collects `actor_fragments` fragments on its own thread while the learner
    /// updates on this one whenever a batch is queued; fragments short of a batch wait for
    /// the next iteration.
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        iterate(&mut self.actors, &mut self.learner, &self.queue, self.cfg.actor_fragments, progress)?;
        for actor in &mut self.actors {
            actor.core.episodes.drain_into(&mut self.episodes);
        }
        let (mut metrics, next) = self.rates.metrics(self.queue.stats()?, self.learner.stats(), self.env_steps());
        self.rates = next;
        metrics.extend([
            ("impala/parameter_lag", parameter_lag(&self.actors)),
            ("charts/learning_rate", self.cfg.lr().at(progress)),
        ]);
        Ok(metrics)
    }

    fn env_steps(&self) -> u64 {
        self.actors.iter().map(|a| a.core.env_steps).sum()
    }

    fn cluster_status(&mut self) -> Option<shoal_dist::ClusterStatus> {
        let queue = self.queue.stats().ok()?;
        Some(self.meters.status(&self.actors, &self.learner, queue, "trajectory queue", &self.server))
    }

    fn episodes(&self) -> &EpisodeTracker {
        &self.episodes
    }

    fn episodes_mut(&mut self) -> &mut EpisodeTracker {
        &mut self.episodes
    }

    /// The learner's parameters (what its parameter server holds).
    fn network(&mut self) -> Option<Network<'_>> {
        Some(self.learner.network())
    }

    fn policy_net(&mut self) -> Option<PolicyNet> {
        self.learner.core.policy_net()
    }

    fn obs_dim(&self) -> usize {
        self.learner.core.obs_dim
    }

    fn action_dim(&self) -> usize {
        self.learner.core.act_dim
    }

    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        self.learner.core.predict(obs, rows, deterministic, actions)
    }

    /// The learner's model and optimizer, and every actor's envs and RNG.
    fn save(&mut self, dir: &Path) -> Result<()> {
        let learner = &self.learner;
        io::save(
            &dir.join("model.safetensors"),
            &learner.core.model,
            learner.optimizer.optimizer(),
            &Default::default(),
        )?;
        for actor in &mut self.actors {
            let core = &mut actor.core;
            let common = CommonState::capture(core.env_steps, &core.rng, &core.episodes, core.env.as_mut())?;
            write_json(&dir.join(format!("actor-{}.json", actor.rank)), &common)?;
        }
        write_json(
            &dir.join("state.json"),
            &ImpalaState { episodes: self.episodes.clone(), updates: learner.stats.updates },
        )
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let state: ImpalaState = read_json(&dir.join("state.json"))?;
        let learner = &mut self.learner;
        io::load(&dir.join("model.safetensors"), &mut learner.core.model, learner.optimizer.optimizer_mut())?;
        learner.stats.updates = state.updates;
        let params = learner.core.model.params();
        self.server.with_state(|server, _, _| server.copy_from_slice(params));
        for actor in &mut self.actors {
            let path = dir.join(format!("actor-{}.json", actor.rank));
            if !path.exists() {
                continue; // A checkpoint of a run with fewer actors: the extra ones start fresh.
            }
            let common: CommonState = read_json(&path)?;
            let core = &mut actor.core;
            core.env.restore(&common.env)?;
            core.env_steps = common.env_steps;
            core.rng = common.rng;
            core.episodes = common.episodes;
            actor.link.version = None;
        }
        self.episodes = state.episodes;
        Ok(())
    }
}

/// An actor process's loop: collect `actor_fragments` fragments, report steps and episodes
/// to `coordinator`, until it says stop. Returns the actor's env steps and its mean
/// parameter lag.
pub fn run_actor(
    config: &CommonConfig,
    cfg: &ImpalaConfig,
    rank: usize,
    store: Arc<dyn ParamStore>,
    queue: &dyn ReplayStore,
    coordinator: &dyn Coordinator,
) -> Result<(u64, f64)> {
    let mut actor = Actor::new(config, cfg, rank, store)?;
    // A fragment split over several inserts could interleave with another actor's.
    let (rows, fits) = (actor.fragment_rows(), max_rows_per_message(actor.core.obs_dim, actor.core.act_dim + 1));
    if rows > fits {
        return Err(config_err(format!(
            "a trajectory fragment of {rows} rows (env.num_envs × impala.unroll_length) exceeds one message to the queue \
             ({fits} rows of obs_dim {}); lower impala.unroll_length or env.num_envs",
            actor.core.obs_dim
        )));
    }
    let mut status = coordinator.report(rank, 0, &[])?;
    let mut reported = 0;
    while !status.stop {
        actor.act(cfg.actor_fragments, queue)?;
        let mut finished = EpisodeTracker::default();
        actor.core.episodes.drain_into(&mut finished);
        status = coordinator.report(rank, actor.core.env_steps - reported, &finished.recent())?;
        reported = actor.core.env_steps;
    }
    Ok((actor.core.env_steps, parameter_lag(std::slice::from_ref(&actor))))
}

/// The learner process's loop: update whenever a batch is queued, publishing to `store`,
/// until `coordinator` says stop (asked every 200 ms); logs its rates to stderr every 5 s.
pub fn run_learner(
    config: &CommonConfig,
    cfg: &ImpalaConfig,
    store: Arc<dyn ParamStore>,
    queue: &dyn ReplayStore,
    coordinator: &dyn Coordinator,
    rank: usize,
) -> Result<LearnerStats> {
    let mut learner = Learner::new(config, cfg)?;
    learner.publish_to(store);
    let budget = config.stop.env_steps;
    let check_every = Duration::from_millis(200);
    let mut status = coordinator.report(rank, 0, &[])?;
    let mut last_check = Instant::now();
    let mut queued = queue.stats()?;
    let mut rates = Rates::new(0, 0);
    while !status.stop {
        let progress = budget.map_or(0.0, |b| (status.total_env_steps as f64 / b as f64).min(1.0));
        if learner.may_update(queued.len) {
            learner.update(queue, progress)?;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
        queued = queue.stats()?;
        if last_check.elapsed() >= check_every {
            status = coordinator.report(rank, 0, &[])?;
            last_check = Instant::now();
        }
        if rates.start.elapsed() >= Duration::from_secs(5) {
            let (metrics, next) = rates.metrics(queued, learner.stats(), status.total_env_steps);
            let line: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            eprintln!("learner: {}", line.join("  "));
            rates = next;
        }
    }
    Ok(learner.stats())
}

#[cfg(test)]
mod tests {
    use shoal_dist::replay::Row;

    use super::*;

    /// The values the learner takes from the next row equal a forward pass over every next
    /// observation, in a batch of two trajectories of 4 steps where the first episode ends at
    /// row 1 (its next observation then a terminal one, not row 2's): bit for bit where taken
    /// from the next row, to rounding where computed in their own smaller batch (a batch of
    /// at most 4 rows takes the engine's row loops, which sum in another order).
    #[test]
    fn next_values_equal_a_forward_pass_over_the_next_observations() {
        let config: CommonConfig = toml::from_str("[env]\nid = \"CartPole-v1\"\nnum_envs = 1").unwrap();
        let cfg = ImpalaConfig { unroll_length: 4, batch_fragments: 2, ..ImpalaConfig::default() };
        let mut learner = Learner::new(&config, &cfg).unwrap();
        let state = |i: usize| -> Vec<f32> { (0..4).map(|j| ((i * 4 + j) as f32 * 0.37).sin()).collect() };
        for i in 0..8 {
            let ends_episode = i == 1;
            let next = if ends_episode || i % 4 == 3 { state(100 + i) } else { state(i + 1) };
            let done = if ends_episode { 1.0 } else { 0.0 };
            let row = Row { obs: &state(i), action: &[0.0, -0.7], reward: 1.0, next_obs: &next, done, discount: 0.99 };
            learner.batch.push(row);
        }
        learner.values.resize(8, 0.0);
        learner.next_values.resize(8, 0.0);
        learner.core.values(&learner.batch.obs, 8, &mut learner.values).unwrap();
        learner.next_values().unwrap();
        let mut want = vec![0.0; 8];
        learner.core.values(&learner.batch.next_obs, 8, &mut want).unwrap();
        assert_eq!(learner.bootstrap_rows, [1, 3, 7]);
        for (i, (&got, &want)) in learner.next_values.iter().zip(&want).enumerate() {
            if learner.bootstrap_rows.contains(&i) {
                assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "row {i}: {got} vs {want}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "row {i}");
            }
        }
    }
}
