//! Ape-X (Horgan et al., 2018): distributed prioritized experience replay.
//!
//! - N **actors**, actor i exploring with `εᵢ = ε^(1 + α·i/(N−1))` (ε = 0.4, α = 7), step
//!   their own envs with a copy of the network, assemble n-step transitions, compute their
//!   initial priorities `|δ|` locally (`δ = R + γᵏ·(1 − done)·Q(s', argmax Q(s')) − Q(s, a)` with
//!   their own copy), insert them into the replay in batches, and pull the newest parameters
//!   every `actor_pull_every` env steps.
//! - One **learner** samples prioritized batches (importance exponent β annealed to 1 over the
//!   run), takes a double-DQN step on the n-step targets with a target network, sends the new
//!   `|δ|` back as priorities, and publishes its parameters to the parameter server every
//!   `publish_every` updates. It never consumes data faster than `samples_per_insert` sampled
//!   rows per inserted row (a rate limiter, as in DeepMind's Reverb), so the update-to-data
//!   ratio does not depend on how the OS schedules actors and learner.
//!
//! The replay is a [`ReplayStore`] and the parameters a [`ParamStore`]: in memory for the
//! embedded [`ApexAgent`] (actors as threads), or `shoal replay` and `shoal ps` over gRPC
//! for actor and learner processes ([`run_actor`], [`run_learner`]) — the same [`Actor`] and
//! [`Learner`] either way.
//!
//! **The DPG variant** (the paper's section 4.2, for continuous actions): with
//! `apex.learner = "sac"` or `"td3"` the learner runs that algorithm's own update (from its
//! `[sac]` / `[td3]` section) on the prioritized batches, importance-weighted, and publishes the
//! actor and the critics; actors act with the policy (TD3: plus Gaussian noise of std `εᵢ`,
//! the same per-actor schedule; SAC: sampling its policy), take uniformly random actions for
//! their share of `learning_starts` first, and score their transitions with the critics' TD
//! error. What differs per learner is [`core::ApexCore`]; this file is the same for all.

mod config;
mod core;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use shoal_dist::replay::{NStepAssembler, PrioritizedReplay, Sample, Transitions};
use shoal_dist::{Coordinator, LocalReplay, ParamServer, ParamStore, ReplayStats, ReplayStore};
use shoal_env::VecEnv;
use shoal_nn::Sgd;

pub use self::config::{ApexConfig, ApexLearner, ApexSetup, LearnerKind};
use self::core::ApexCore;
use crate::actor_threads::{iterate, parameter_lag, ActorStats, ActorThread, LearnerTurn, StatusMeters};
use crate::agent::{build_vec_env, Agent, Network};
use crate::checkpoint::{read_json, write_json, CommonState};
use crate::cluster::ServerSpec;
use crate::config::{CommonConfig, Precision};
use crate::episodes::EpisodeTracker;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::replay::env_step;
use crate::updater::{Link, Updater};

/// The number of actors: `cluster.workers`, or 2 without a `[cluster]`.
fn actor_count(config: &CommonConfig) -> usize {
    config.cluster.as_ref().map_or(2, |c| c.workers)
}

/// The widths of a replay row's observation and action in an Ape-X run.
pub fn row_widths(config: &CommonConfig, setup: &ApexSetup) -> Result<(usize, usize)> {
    setup.apex.validate()?;
    let env = build_vec_env(config)?;
    let obs_dim = core::obs_width(env.single_observation_space(), &config.env.id)?;
    Ok((obs_dim, core::act_width(config, setup, env.as_ref())?))
}

/// The replay an Ape-X run's config describes (capacity, row widths, α), empty.
pub fn replay_for(config: &CommonConfig, setup: &ApexSetup) -> Result<PrioritizedReplay> {
    let (obs_dim, act_dim) = row_widths(config, setup)?;
    Ok(PrioritizedReplay::with_act_dim(setup.buffer_size(), obs_dim, act_dim, setup.apex.priority_alpha)?)
}

/// One Ape-X actor: its envs, its copy of the algorithm, its exploration scale.
pub struct Actor {
    rank: usize,
    /// εᵢ: DQN's ε, or the std of TD3's exploration noise.
    scale: f64,
    cfg: ApexConfig,
    env: Box<dyn VecEnv>,
    core: Box<dyn ApexCore>,
    link: Link,
    nstep: NStepAssembler,
    /// Assembled transitions waiting to be inserted, and their priorities.
    outgoing: Transitions,
    priorities: Vec<f32>,
    rng: Pcg64Mcg,
    episodes: EpisodeTracker,
    env_steps: u64,
    /// Env steps of uniformly random actions first.
    warmup: u64,
    /// Replay size at which the learner starts (the rate limiter's allowance).
    learning_starts: usize,
    steps_since_pull: u64,
    stats: ActorStats,
    // Scratch.
    obs: Vec<f32>,
    actions: Vec<f32>,
}

impl Actor {
    /// Actor `rank` of the config's `cluster.workers`, its envs seeded apart from the others'.
    pub fn new(config: &CommonConfig, setup: &ApexSetup, rank: usize, store: Arc<dyn ParamStore>) -> Result<Self> {
        let cfg = setup.apex.clone();
        cfg.validate()?;
        let mut own = config.clone();
        own.seed = config.seed.wrapping_add(10_000 * rank as u64);
        let env = build_vec_env(&own)?;
        let mut core = core::build(config, setup, env.as_ref())?;
        if cfg.actor_precision == Precision::Int8 {
            core.act_in_int8()?;
        }
        let obs_dim = core::obs_width(env.single_observation_space(), &config.env.id)?;
        let (num_envs, act_dim, actors) = (config.env.num_envs, core.act_dim(), actor_count(config));
        Ok(Actor {
            rank,
            scale: cfg.actor_epsilon(rank, actors),
            link: Link::new(store, rank),
            nstep: NStepAssembler::new(num_envs, cfg.n_step, setup.gamma()),
            outgoing: Transitions::with_act_dim(obs_dim, act_dim),
            priorities: Vec::new(),
            rng: Pcg64Mcg::seed_from_u64(own.seed.wrapping_add(0xac7)),
            episodes: EpisodeTracker::default(),
            env_steps: 0,
            warmup: core.warmup_steps(actors),
            learning_starts: setup.learning_starts(),
            steps_since_pull: u64::MAX,
            stats: ActorStats::default(),
            obs: Vec::new(),
            actions: vec![0.0; num_envs * act_dim],
            core,
            cfg,
            env,
        })
    }

    /// Pulls the newest parameters when `actor_pull_every` steps have passed.
    fn maybe_pull(&mut self) -> Result<()> {
        if self.steps_since_pull < self.cfg.actor_pull_every {
            return Ok(());
        }
        self.steps_since_pull = 0;
        let latest = self.link.store.version();
        self.stats.lag_sum += self.link.version.map_or(0, |v| latest.saturating_sub(v));
        self.stats.pulls += 1;
        if let Some(version) = self.link.store.pull(self.link.version, self.core.published())? {
            self.link.version = Some(version);
            self.core.adopt_published();
        }
        Ok(())
    }

    /// Takes `steps` exploring vector steps, inserting every `actor_batch` completed
    /// transitions into `replay`.
    pub fn act(&mut self, steps: u64, replay: &dyn ReplayStore) -> Result<()> {
        let (n, d, a) = (self.env.num_envs(), self.outgoing.obs_dim, self.outgoing.act_dim);
        for _ in 0..steps {
            self.maybe_pull()?;
            self.obs.clear();
            self.obs.extend_from_slice(&self.env.batch().obs);
            let random = self.env_steps < self.warmup;
            self.core.explore(&self.obs, n, self.scale, random, &mut self.rng, &mut self.actions)?;
            self.core.step(self.env.as_mut(), &self.actions)?;
            self.env_steps += n as u64;
            self.steps_since_pull += 1;
            let batch = self.env.batch();
            self.episodes.record_batch(batch);
            for i in 0..n {
                let step = env_step(batch, i, &self.obs[i * d..(i + 1) * d], &self.actions[i * a..(i + 1) * a]);
                self.nstep.add(i, step, &mut self.outgoing);
            }
            if self.outgoing.len() >= self.cfg.actor_batch {
                self.flush(replay)?;
            }
        }
        Ok(())
    }

    /// Inserts the waiting transitions with priorities `|δ|` from this actor's networks.
    fn flush(&mut self, replay: &dyn ReplayStore) -> Result<()> {
        self.core.priorities(&self.outgoing, &mut self.rng, &mut self.priorities)?;
        let stats = replay.insert(&self.outgoing, Some(&self.priorities))?;
        self.outgoing.clear();
        self.throttle(replay, stats)
    }

    /// Waits while the actors are more than `rate_limit_buffer` rows ahead of what the learner
    /// has consumed — at most a second per insert, so an actor still makes progress (and
    /// hears a stop) when the learner is gone.
    fn throttle(&mut self, replay: &dyn ReplayStore, mut stats: ReplayStats) -> Result<()> {
        let ahead = |s: &ReplayStats| {
            let consumed = s.sampled as f64 / self.cfg.samples_per_insert;
            s.inserted as f64 > (self.learning_starts + self.cfg.rate_limit_buffer) as f64 + consumed
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        while ahead(&stats) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(500));
            stats = replay.stats()?;
        }
        Ok(())
    }
}

/// Counters of the learner.
#[derive(Debug, Clone, Copy, Default)]
pub struct LearnerStats {
    pub updates: u64,
    pub sampled: u64,
    pub loss: f64,
    pub mean_q: f64,
}

/// The Ape-X learner: its copy of the algorithm, and where its parameters are published.
pub struct Learner {
    cfg: ApexConfig,
    batch_size: usize,
    learning_starts: usize,
    core: Box<dyn ApexCore>,
    /// The store the learner publishes to every `publish_every` updates, once attached.
    link: Option<Link>,
    /// What a parameter server's spec takes as the learner's optimizer: a publishing
    /// learner's server averages a round of one (takes its parameters), never steps.
    server_updater: Updater,
    /// [`Learner::network`] handed the published vector out: take it back before using the
    /// networks.
    handed_out: bool,
    /// For the learner's own sampling (SAC's actions in its targets and actor step).
    rng: Pcg64Mcg,
    stats: LearnerStats,
    sample: Sample,
}

impl Learner {
    pub fn new(config: &CommonConfig, setup: &ApexSetup) -> Result<Self> {
        setup.apex.validate()?;
        let env = build_vec_env(config)?;
        let core = core::build(config, setup, env.as_ref())?;
        Ok(Learner {
            cfg: setup.apex.clone(),
            batch_size: setup.batch_size(),
            learning_starts: setup.learning_starts(),
            link: None,
            server_updater: Updater::Local(Box::new(Sgd::new(0, 0.0, false))),
            handed_out: false,
            rng: Pcg64Mcg::seed_from_u64(config.seed.wrapping_add(0x1ea7)),
            stats: LearnerStats::default(),
            sample: Sample::default(),
            core,
        })
    }

    /// Publishes the parameters to `store` every `publish_every` updates (as the only
    /// worker of an averaging round of one: what it pushes becomes the store's parameters).
    pub fn publish_to(&mut self, store: Arc<dyn ParamStore>) {
        self.link = Some(Link::new(store, 0));
    }

    /// Whether the rate limiter lets the learner take a batch now, given the replay's size
    /// and how many rows have been inserted.
    pub fn may_sample(&self, len: u64, inserted: u64) -> bool {
        len >= self.learning_starts as u64
            && (self.stats.sampled + self.batch_size as u64) as f64 <= self.cfg.samples_per_insert * inserted as f64
    }

    /// Makes the networks use what [`Learner::network`] handed out.
    fn take_back(&mut self) {
        if std::mem::take(&mut self.handed_out) {
            self.core.adopt_published();
        }
    }

    /// One prioritized update: sample, step, send back `|δ|`, maybe publish.
    pub fn update(&mut self, replay: &dyn ReplayStore, progress: f64) -> Result<()> {
        self.take_back();
        let b = self.batch_size;
        replay.sample(b, self.cfg.beta(progress), &mut self.sample)?;
        let (loss, mean_q) = self.core.update(&self.sample, progress, &mut self.rng)?;
        replay.update_priorities(&self.sample.keys, self.core.td_abs())?;
        self.stats =
            LearnerStats { updates: self.stats.updates + 1, sampled: self.stats.sampled + b as u64, loss, mean_q };
        if let Some(link) = self.link.as_mut().filter(|_| self.stats.updates.is_multiple_of(self.cfg.publish_every)) {
            link.store.push_params(0, self.core.published())?;
        }
        Ok(())
    }

    pub fn stats(&self) -> LearnerStats {
        self.stats
    }

    /// What the parameter server holds: the published parameters.
    fn network(&mut self) -> Network<'_> {
        self.handed_out = true;
        let layout = self.core.published_layout();
        Network { params: self.core.published(), layout, updater: &mut self.server_updater, lr: self.cfg.lr() }
    }
}

/// Rates over one stretch of a run, for metrics.
struct Rates {
    start: Instant,
    replay: ReplayStats,
    updates: u64,
    env_steps: u64,
}

impl Rates {
    fn new(replay: ReplayStats, updates: u64, env_steps: u64) -> Self {
        Rates { start: Instant::now(), replay, updates, env_steps }
    }

    /// Replay, learner and actor metrics since `self`, and a new starting point.
    fn metrics(&self, replay: ReplayStats, learner: LearnerStats, env_steps: u64) -> (Metrics, Rates) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let metrics = vec![
            ("loss/td", learner.loss),
            ("loss/q_values", learner.mean_q),
            ("charts/updates", learner.updates as f64),
            ("replay/size", replay.len as f64),
            ("replay/insert_per_sec", rate(replay.inserted, self.replay.inserted)),
            ("replay/sample_per_sec", rate(replay.sampled, self.replay.sampled)),
            ("replay/priority_mean", replay.priority_mean),
            ("replay/stale_updates", replay.stale_updates as f64),
            ("learner/updates_per_sec", rate(learner.updates, self.updates)),
            ("actors/env_steps_per_sec", rate(env_steps, self.env_steps)),
        ];
        (metrics, Rates::new(replay, learner.updates, env_steps))
    }
}

impl ActorThread for Actor {
    fn act(&mut self, steps: usize, replay: &dyn ReplayStore) -> Result<()> {
        Actor::act(self, steps as u64, replay)
    }

    fn env_steps(&self) -> u64 {
        self.env_steps
    }

    fn pulls(&self) -> ActorStats {
        self.stats
    }
}

impl LearnerTurn for Learner {
    fn ready(&self, replay: &ReplayStats) -> bool {
        self.may_sample(replay.len, replay.inserted)
    }

    fn update(&mut self, replay: &dyn ReplayStore, progress: f64) -> Result<()> {
        Learner::update(self, replay, progress)
    }

    fn updates(&self) -> u64 {
        self.stats.updates
    }
}

/// Ape-X in one process: actor threads and the learner around an in-memory replay and
/// parameter server.
pub struct ApexAgent {
    cfg: ApexConfig,
    actors: Vec<Actor>,
    learner: Learner,
    replay: Arc<LocalReplay>,
    server: Arc<ParamServer>,
    episodes: EpisodeTracker,
    /// Where the current stretch of rates started.
    rates: Rates,
    meters: StatusMeters,
    obs_dim: usize,
    predict_rng: Pcg64Mcg,
}

impl ApexAgent {
    pub fn new(config: &CommonConfig, setup: &ApexSetup) -> Result<Self> {
        let mut learner = Learner::new(config, setup)?;
        let cluster = config.cluster.clone().unwrap_or_default();
        let server = Arc::new(ServerSpec::from_network(learner.network(), true)?.server(&cluster, 0, 1));
        learner.publish_to(Arc::clone(&server) as Arc<dyn ParamStore>);
        let replay = Arc::new(LocalReplay::new(replay_for(config, setup)?, config.seed.wrapping_add(0x4e91a7)));
        let actors = (0..actor_count(config))
            .map(|rank| Actor::new(config, setup, rank, Arc::clone(&server) as Arc<dyn ParamStore>))
            .collect::<Result<Vec<_>>>()?;
        Ok(ApexAgent {
            cfg: setup.apex.clone(),
            obs_dim: actors.first().map_or(0, |a| a.outgoing.obs_dim),
            actors,
            learner,
            replay,
            server,
            episodes: EpisodeTracker::default(),
            rates: Rates::new(Default::default(), 0, 0),
            meters: StatusMeters::default(),
            predict_rng: Pcg64Mcg::seed_from_u64(config.seed),
        })
    }
}

/// What the embedded agent keeps in `state.json` besides the networks.
#[derive(Serialize, Deserialize)]
struct ApexState {
    episodes: EpisodeTracker,
    env_steps: Vec<u64>,
    updates: u64,
    sampled: u64,
    replay_saved: bool,
    /// The learner's RNG (absent in checkpoints of DQN learners written before it existed).
    #[serde(default)]
    learner_rng: Option<Pcg64Mcg>,
}

impl Agent for ApexAgent {
    /// Each actor takes `actor_steps` vector steps on its own thread while the learner
    /// updates on this one as the rate limiter allows; then the learner catches up to the
    /// limit, so every iteration has the same update-to-data ratio.
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        let steps = self.cfg.actor_steps as usize;
        iterate(&mut self.actors, &mut self.learner, &self.replay, steps, progress)?;
        for actor in &mut self.actors {
            actor.episodes.drain_into(&mut self.episodes);
        }
        let replay_stats = self.replay.stats()?;
        let env_steps = self.env_steps();
        let (mut metrics, next) = self.rates.metrics(replay_stats, self.learner.stats(), env_steps);
        self.rates = next;
        metrics.extend([
            ("apex/parameter_lag", parameter_lag(&self.actors)),
            ("apex/beta", self.cfg.beta(progress)),
            ("charts/learning_rate", self.cfg.lr().at(progress)),
        ]);
        Ok(metrics)
    }

    fn env_steps(&self) -> u64 {
        self.actors.iter().map(|a| a.env_steps).sum()
    }

    fn cluster_status(&mut self) -> Option<shoal_dist::ClusterStatus> {
        let replay = self.replay.stats().ok()?;
        Some(self.meters.status(&self.actors, &self.learner, replay, "replay", &self.server))
    }

    fn episodes(&self) -> &EpisodeTracker {
        &self.episodes
    }

    fn episodes_mut(&mut self) -> &mut EpisodeTracker {
        &mut self.episodes
    }

    /// The learner's published parameters (what its parameter server holds); values written
    /// into them are the learner's from its next use on.
    fn network(&mut self) -> Option<Network<'_>> {
        Some(self.learner.network())
    }

    fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    fn action_dim(&self) -> usize {
        self.learner.core.act_dim()
    }

    /// The learner's greedy / mean action, or an exploring one at the greediest actor's scale.
    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        self.learner.take_back();
        let scale = self.actors.last().map_or(0.0, |a| a.scale);
        self.learner.core.predict(obs, rows, deterministic, scale, &mut self.predict_rng, actions)
    }

    /// The learner's networks and optimizers, every actor's envs and RNG, and (with
    /// `apex.checkpoint_replay`) the replay.
    fn save(&mut self, dir: &Path) -> Result<()> {
        self.learner.take_back();
        let learner = &self.learner;
        learner.core.save(dir)?;
        for actor in &mut self.actors {
            let common = CommonState::capture(actor.env_steps, &actor.rng, &actor.episodes, actor.env.as_mut())?;
            write_json(&dir.join(format!("actor-{}.json", actor.rank)), &common)?;
        }
        if self.cfg.checkpoint_replay {
            self.replay.save(&dir.join("replay.safetensors"))?;
        }
        let state = ApexState {
            episodes: self.episodes.clone(),
            env_steps: self.actors.iter().map(|a| a.env_steps).collect(),
            updates: learner.stats.updates,
            sampled: learner.stats.sampled,
            replay_saved: self.cfg.checkpoint_replay,
            learner_rng: Some(learner.rng.clone()),
        };
        write_json(&dir.join("state.json"), &state)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let state: ApexState = read_json(&dir.join("state.json"))?;
        let learner = &mut self.learner;
        learner.handed_out = false;
        learner.core.load(dir)?;
        learner.core.set_updates(state.updates);
        learner.stats.updates = state.updates;
        learner.stats.sampled = state.sampled;
        if let Some(rng) = state.learner_rng {
            learner.rng = rng;
        }
        let published = learner.core.published();
        self.server.with_state(|params, _, _| params.copy_from_slice(published));
        for actor in &mut self.actors {
            let path = dir.join(format!("actor-{}.json", actor.rank));
            if !path.exists() {
                continue; // A checkpoint of a run with fewer actors: the extra ones start fresh.
            }
            let common: CommonState = read_json(&path)?;
            actor.env.restore(&common.env)?;
            actor.env_steps = common.env_steps;
            actor.rng = common.rng;
            actor.episodes = common.episodes;
            actor.link.version = None;
            actor.steps_since_pull = u64::MAX;
        }
        if state.replay_saved && self.cfg.checkpoint_replay {
            self.replay.load(&dir.join("replay.safetensors"))?;
        }
        self.episodes = state.episodes;
        Ok(())
    }
}

/// An actor process's loop: act `actor_steps` steps, report steps and episodes to
/// `coordinator`, until it says stop. Returns the actor's env steps and its mean parameter
/// lag (server version − its version, over its pulls).
pub fn run_actor(
    config: &CommonConfig,
    setup: &ApexSetup,
    rank: usize,
    store: Arc<dyn ParamStore>,
    replay: &dyn ReplayStore,
    coordinator: &dyn Coordinator,
) -> Result<(u64, f64)> {
    let mut actor = Actor::new(config, setup, rank, store)?;
    let steps = actor.cfg.actor_steps;
    let mut status = coordinator.report(rank, 0, &[])?;
    let mut reported = 0;
    while !status.stop {
        actor.act(steps, replay)?;
        let mut finished = EpisodeTracker::default();
        actor.episodes.drain_into(&mut finished);
        status = coordinator.report(rank, actor.env_steps - reported, &finished.recent())?;
        reported = actor.env_steps;
    }
    let lag = parameter_lag(std::slice::from_ref(&actor));
    Ok((actor.env_steps, lag))
}

/// Env steps per second of one Ape-X actor alone, measured for about `seconds`: its envs,
/// exploration through its network (int8 where `apex.actor_precision` says so), n-step
/// assembly, priorities and inserts into an in-memory replay — with no learner, whose rate
/// limiter paces actors in a run (so a run's actor rate says little about the acting itself).
/// The replay's rate limit is lifted for the measurement. `shoal bench actors` prints it for
/// f32 and int8 actors.
pub fn actor_steps_per_second(config: &CommonConfig, setup: &ApexSetup, seconds: f64) -> Result<f64> {
    let mut setup = setup.clone();
    setup.apex.rate_limit_buffer = usize::MAX / 4;
    let mut learner = Learner::new(config, &setup)?;
    let cluster = config.cluster.clone().unwrap_or_default();
    let server = Arc::new(ServerSpec::from_network(learner.network(), true)?.server(&cluster, 0, 1));
    let replay = LocalReplay::new(replay_for(config, &setup)?, config.seed);
    let mut actor = Actor::new(config, &setup, 0, server)?;
    // Warm-up: buffers sized, first pull taken.
    actor.act(setup.apex.actor_steps, &replay)?;
    let (start, first) = (Instant::now(), actor.env_steps);
    while start.elapsed().as_secs_f64() < seconds {
        actor.act(setup.apex.actor_steps, &replay)?;
    }
    Ok((actor.env_steps - first) as f64 / start.elapsed().as_secs_f64())
}

/// The learner process's loop: update as the rate limiter allows, publishing to `store`,
/// until `coordinator` says stop (asked every 200 ms); logs the replay and learner rates to
/// stderr every 5 s. Returns its final statistics.
pub fn run_learner(
    config: &CommonConfig,
    setup: &ApexSetup,
    store: Arc<dyn ParamStore>,
    replay: &dyn ReplayStore,
    coordinator: &dyn Coordinator,
    rank: usize,
) -> Result<LearnerStats> {
    let mut learner = Learner::new(config, setup)?;
    learner.publish_to(store);
    let budget = config.stop.env_steps;
    let check_every = Duration::from_millis(200);
    let mut status = coordinator.report(rank, 0, &[])?;
    let mut last_check = Instant::now();
    let mut replay_stats = replay.stats()?;
    let mut rates = Rates::new(replay_stats, 0, 0);
    while !status.stop {
        let progress = budget.map_or(0.0, |b| (status.total_env_steps as f64 / b as f64).min(1.0));
        if learner.may_sample(replay_stats.len, replay_stats.inserted) {
            learner.update(replay, progress)?;
        } else {
            std::thread::sleep(Duration::from_millis(1));
            replay_stats = replay.stats()?;
        }
        if last_check.elapsed() >= check_every {
            status = coordinator.report(rank, 0, &[])?;
            replay_stats = replay.stats()?;
            last_check = Instant::now();
        }
        if rates.start.elapsed() >= Duration::from_secs(5) {
            let (metrics, next) = rates.metrics(replay_stats, learner.stats(), status.total_env_steps);
            let line: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            eprintln!("learner: {}", line.join("  "));
            rates = next;
        }
    }
    Ok(learner.stats())
}
