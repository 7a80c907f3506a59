//! Running a cluster: one algorithm, any topology. The same agent code (PPO, A2C/A3C, DQN) runs
//! - alone (no `[cluster]` section, or one worker and one shard);
//! - *embedded*: `workers` copies of the agent as threads of this process, each with its own
//!   envs (seeded apart), sharing parameter servers in memory ([`ClusterAgent`]);
//! - as *processes*: `shoal ps` serves the parameters over gRPC and every `shoal worker`
//!   runs [`run_worker`] — the very same agent, attached to a remote store.
//!
//! What differs between those is only where [`Updater`] sends gradients. The update mode
//! decides the algorithm family: `sync` is data-parallel PPO/A2C (one averaged gradient per
//! step across workers), `async` is A3C and asynchronous distributed DQN (each worker keeps its
//! own replay and target network), `average` and `easgd` train locally and average parameters
//! every `push_every` optimizer steps.
//!
//! This module knows no algorithm: the registry hands it the agents it runs (a builder by
//! rank) and the [`ServerSpec`] their servers start from. The `[cluster]` section itself is
//! `cluster_config.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use shoal_dist::status::{host_name, shard_members, unix_seconds};
use shoal_dist::{
    shard_range, ClusterStatus, Coordinator, Member, ParamServer, ParamStore, RateMeter, ShardedStore, StopRule,
    UpdateMode, WorkerProgress,
};
use shoal_nn::{Optimizer, ParamLayout};

use crate::agent::{Agent, LrSchedule, Network};
use crate::checkpoint::{read_json, write_json};
use crate::config::{CommonConfig, StopConfig};
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, io_err, Result};
use crate::eval::EvalStop;
use crate::metrics::{mean_metrics, Metrics};
use crate::policy_net::PolicyNet;
use crate::updater::Link;

pub use crate::cluster_config::{ClusterConfig, Compression, Mode, Topology};

/// Sends `agent`'s updates to `store` as worker `rank`.
pub fn attach(agent: &mut dyn Agent, store: Arc<dyn ParamStore>, rank: usize, cluster: &ClusterConfig) -> Result<()> {
    let network = agent.network().ok_or_else(|| config_err("this algorithm has no network to distribute"))?;
    network.updater.attach(Link::new(store, rank).overlapping(cluster.overlap_push), cluster.push_params_every());
    Ok(())
}

/// What a parameter server starts from: rank 0's initial parameters and the algorithm's
/// optimizer and learning-rate schedule.
pub struct ServerSpec {
    pub params: Vec<f32>,
    pub layout: ParamLayout,
    optimizer: Box<dyn Optimizer<f32>>,
    /// The server's learning rate over the run.
    pub lr: LrSchedule,
    /// Ape-X's learner publishes its parameters (an averaging round of one worker);
    /// otherwise the cluster's mode applies.
    publishes: bool,
}

impl ServerSpec {
    /// The spec of an agent's `network` (its initial parameters and optimizer); `publishes`
    /// for Ape-X's learner, whose server takes its parameters instead of running the
    /// cluster's mode.
    pub fn from_network(network: Network<'_>, publishes: bool) -> Result<Self> {
        let optimizer = network
            .updater
            .optimizer()
            .map(|o| o.fresh(network.params.len()))
            .ok_or_else(|| config_err("the agent's optimizer is already remote"))?;
        Ok(ServerSpec {
            params: network.params.to_vec(),
            layout: network.layout.clone(),
            optimizer,
            lr: network.lr,
            publishes,
        })
    }

    /// The server of shard `index` of `count`.
    pub fn server(&self, cluster: &ClusterConfig, index: usize, count: usize) -> ParamServer {
        let range = shard_range(self.params.len(), index, count);
        let optimizer = self.optimizer.fresh(range.len());
        let mode = match self.publishes {
            true => UpdateMode::Average { workers: 1, timeout: Duration::from_secs_f64(cluster.round_timeout) },
            false => cluster.update_mode(),
        };
        ParamServer::new(self.params[range].to_vec(), optimizer, self.lr.learning_rate as f32, mode)
    }

    /// The layout a shard's checkpoint is written with: the model's own names for a single
    /// shard, one flat tensor per shard otherwise.
    pub fn shard_layout(&self, index: usize, count: usize) -> ParamLayout {
        if count == 1 {
            return self.layout.clone();
        }
        let mut layout = ParamLayout::new();
        layout.push(format!("shard{index}"), &[shard_range(self.params.len(), index, count).len()]);
        layout
    }

    /// The fingerprint workers and servers compare at connect.
    pub fn layout_hash(&self) -> u64 {
        self.layout.fingerprint()
    }
}

/// The stop rule a multi-process run's server applies, from `[stop]`.
pub fn stop_rule(stop: &StopConfig) -> StopRule {
    StopRule {
        env_steps: stop.env_steps,
        episode_return_mean: stop.episode_return_mean,
        window: EpisodeTracker::WINDOW,
    }
}

/// An embedded cluster: worker agents as threads around in-process parameter servers.
pub struct ClusterAgent {
    cluster: ClusterConfig,
    spec: ServerSpec,
    servers: Vec<Arc<ParamServer>>,
    workers: Vec<Box<dyn Agent>>,
    /// A rank-0 agent that holds the servers' parameters for `predict` and `save`.
    view: Box<dyn Agent>,
    episodes: EpisodeTracker,
    /// Each worker's progress and the whole run's rate, for [`Agent::cluster_status`].
    progress: BTreeMap<usize, WorkerProgress>,
    run_rate: RateMeter,
}

/// A store over every shard, for one worker.
fn store_for(servers: &[Arc<ParamServer>], len: usize) -> Result<Arc<dyn ParamStore>> {
    if servers.len() == 1 {
        return Ok(Arc::clone(&servers[0]) as Arc<dyn ParamStore>);
    }
    Ok(Arc::new(ShardedStore::new(servers.to_vec(), len)?))
}

impl ClusterAgent {
    /// `cluster.workers` agents from `build(rank)`, attached to servers started from `spec`,
    /// and one more from `build(0)` that holds the servers' parameters for `predict`.
    pub fn new(
        cluster: &ClusterConfig,
        spec: ServerSpec,
        mut build: impl FnMut(usize) -> Result<Box<dyn Agent>>,
    ) -> Result<Self> {
        let servers: Vec<Arc<ParamServer>> =
            (0..cluster.shards).map(|i| Arc::new(spec.server(cluster, i, cluster.shards))).collect();
        let workers = (0..cluster.workers)
            .map(|rank| {
                let mut agent = build(rank)?;
                attach(agent.as_mut(), store_for(&servers, spec.params.len())?, rank, cluster)?;
                Ok(agent)
            })
            .collect::<Result<Vec<_>>>()?;
        let view = build(0)?;
        Ok(ClusterAgent {
            cluster: cluster.clone(),
            spec,
            servers,
            workers,
            view,
            episodes: EpisodeTracker::default(),
            progress: BTreeMap::new(),
            run_rate: RateMeter::default(),
        })
    }

    /// Copies the servers' parameters into the view agent.
    fn refresh_view(&mut self) -> Result<()> {
        let store = store_for(&self.servers, self.spec.params.len())?;
        let network = self.view.network().ok_or_else(|| config_err("no network"))?;
        store.pull(None, network.params)?;
        Ok(())
    }

    /// Overwrites every shard's parameters (how a launcher stores a remote run's result).
    pub fn set_params(&mut self, params: &[f32], version: u64) -> Result<()> {
        let count = self.servers.len();
        for (i, server) in self.servers.iter().enumerate() {
            let range = shard_range(params.len(), i, count);
            server.with_state(|p, v, _| {
                p.copy_from_slice(&params[range]);
                *v = version;
            });
        }
        Ok(())
    }
}

/// Makes every worker normalize with all workers' statistics merged and the view with all of
/// them (nothing for agents that keep none).
fn share_statistics(workers: &mut [Box<dyn Agent>], view: &mut dyn Agent) -> Result<()> {
    let all: Vec<Option<Vec<f64>>> = workers.iter().map(|w| w.statistics()).collect();
    if all.iter().all(Option::is_none) {
        return Ok(());
    }
    for (rank, worker) in workers.iter_mut().enumerate() {
        let peers: Vec<Vec<f64>> =
            all.iter().enumerate().filter(|&(r, _)| r != rank).filter_map(|(_, s)| s.clone()).collect();
        worker.set_peer_statistics(&peers)?;
    }
    view.set_peer_statistics(&all.into_iter().flatten().collect::<Vec<_>>())
}

#[derive(Serialize, Deserialize)]
struct ClusterState {
    workers: usize,
    shards: usize,
    episodes: EpisodeTracker,
}

impl Agent for ClusterAgent {
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        let lr = self.spec.lr.at(progress);
        self.servers.iter().for_each(|s| s.set_lr(lr as f32));
        let iterations = self.cluster.worker_iterations;
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .map(|worker| {
                    scope.spawn(move || -> Result<Metrics> {
                        let mut metrics = Vec::new();
                        for _ in 0..iterations {
                            metrics = worker.train_iteration(progress)?;
                        }
                        Ok(metrics)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(config_err("a cluster worker thread panicked"))))
                .collect::<Vec<_>>()
        });
        let metrics = results.into_iter().collect::<Result<Vec<_>>>()?;
        for worker in &mut self.workers {
            worker.episodes_mut().drain_into(&mut self.episodes);
        }
        share_statistics(&mut self.workers, self.view.as_mut())?;
        let mut out = mean_metrics(&metrics);
        out.retain(|(k, _)| !k.starts_with("ps/") && *k != "charts/learning_rate");
        let stats = self.servers[0].stats();
        out.extend([
            ("charts/learning_rate", lr),
            ("ps/version", stats.updates as f64),
            ("ps/staleness_mean", stats.staleness_sum as f64 / stats.gradients.max(1) as f64),
            ("ps/staleness_max", stats.max_staleness as f64),
            ("ps/rejected", stats.rejected_stale as f64),
            ("ps/dropped_workers", stats.dropped_workers as f64),
        ]);
        Ok(out)
    }

    fn env_steps(&self) -> u64 {
        self.workers.iter().map(|w| w.env_steps()).sum()
    }

    fn cluster_status(&mut self) -> Option<ClusterStatus> {
        let host = host_name();
        for (rank, worker) in self.workers.iter().enumerate() {
            let progress = self.progress.entry(rank).or_default();
            progress.observe(worker.env_steps(), progress.episodes);
        }
        let env_steps = self.env_steps();
        let env_steps_per_s = self.run_rate.record(env_steps);
        let mut members = Vec::new();
        for (index, server) in self.servers.iter().enumerate() {
            let stats = server.stats();
            let me = Member {
                role: "server".into(),
                name: format!("shard {index}"),
                host: host.clone(),
                last_seen_unix: unix_seconds(SystemTime::now()),
                env_steps,
                env_steps_per_s,
                staleness: Some(stats.staleness_sum as f64 / stats.gradients.max(1) as f64),
                version: Some(stats.updates),
                ..Member::default()
            };
            let mut seen = shard_members(me, &stats, &self.progress, &host);
            if index > 0 {
                seen.truncate(1); // every shard sees the same workers
            }
            members.extend(seen);
        }
        Some(ClusterStatus::now(members))
    }

    fn episodes(&self) -> &EpisodeTracker {
        &self.episodes
    }

    fn episodes_mut(&mut self) -> &mut EpisodeTracker {
        &mut self.episodes
    }

    fn obs_dim(&self) -> usize {
        self.view.obs_dim()
    }

    fn action_dim(&self) -> usize {
        self.view.action_dim()
    }

    fn policy_net(&mut self) -> Option<PolicyNet> {
        self.refresh_view().ok()?;
        self.view.policy_net()
    }

    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        self.refresh_view()?;
        self.view.predict(obs, rows, deterministic, actions)
    }

    /// The servers' parameters as the run's model (`model.safetensors`, what `shoal eval`
    /// reads), each server's state, and every worker's state in `worker-<rank>/`.
    fn save(&mut self, dir: &Path) -> Result<()> {
        self.refresh_view()?;
        self.view.save(dir)?;
        let count = self.servers.len();
        for (i, server) in self.servers.iter().enumerate() {
            server.save(&dir.join(format!("server-{i}.safetensors")), &self.spec.shard_layout(i, count))?;
        }
        for (rank, worker) in self.workers.iter_mut().enumerate() {
            let sub = dir.join(format!("worker-{rank}"));
            std::fs::create_dir_all(&sub).map_err(io_err(&sub))?;
            worker.save(&sub)?;
        }
        let state = ClusterState { workers: self.workers.len(), shards: count, episodes: self.episodes.clone() };
        write_json(&dir.join("cluster.json"), &state)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let state: ClusterState = read_json(&dir.join("cluster.json"))?;
        if (state.workers, state.shards) != (self.workers.len(), self.servers.len()) {
            return Err(config_err(format!(
                "the checkpoint has {} workers and {} shards, the config {} and {}; set cluster.workers and cluster.shards to match",
                state.workers,
                state.shards,
                self.workers.len(),
                self.servers.len()
            )));
        }
        self.view.load(dir)?;
        let count = self.servers.len();
        for (i, server) in self.servers.iter().enumerate() {
            server.load(&dir.join(format!("server-{i}.safetensors")), &self.spec.shard_layout(i, count))?;
        }
        for (rank, worker) in self.workers.iter_mut().enumerate() {
            worker.load(&dir.join(format!("worker-{rank}")))?;
        }
        self.episodes = state.episodes;
        Ok(())
    }

    /// The view (what `predict` and `save` use) takes `peers`: how a launcher gives a remote
    /// run's result the statistics its workers shared.
    fn set_peer_statistics(&mut self, peers: &[Vec<f64>]) -> Result<()> {
        self.view.set_peer_statistics(peers)
    }
}

/// What a worker process did, for its exit message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerSummary {
    pub env_steps: u64,
    pub iterations: u64,
    /// Env steps of all workers when the server said stop.
    pub total_env_steps: u64,
}

/// A worker process's loop: `agent` (worker `rank`'s copy) trains `worker_iterations`
/// iterations against `store`, reports steps and episodes to `coordinator`, until it says
/// stop. Progress (for schedules) is the whole run's, as the coordinator counts it.
pub fn run_worker(
    mut agent: Box<dyn Agent>,
    common: &CommonConfig,
    cluster: &ClusterConfig,
    rank: usize,
    store: Arc<dyn ParamStore>,
    coordinator: &dyn Coordinator,
) -> Result<WorkerSummary> {
    attach(agent.as_mut(), store, rank, cluster)?;
    let budget = common.stop.env_steps;
    // `stop.eval_return_mean`: a single server evaluates what it holds; over shards, no server
    // holds the whole model, so worker 0 evaluates the parameters it pulled.
    let mut evaluator = EvalStop::from_config(common).filter(|_| rank == 0 && cluster.shards > 1);
    let mut status = coordinator.report(rank, 0, &[])?;
    let (mut reported, mut iterations) = (0u64, 0u64);
    while !status.stop {
        let progress = budget.map_or(0.0, |b| (status.total_env_steps as f64 / b as f64).min(1.0));
        for _ in 0..cluster.worker_iterations {
            agent.train_iteration(progress)?;
            iterations += 1;
        }
        let mut finished = EpisodeTracker::default();
        agent.episodes_mut().drain_into(&mut finished);
        let episodes = finished.recent();
        status = coordinator.report(rank, agent.env_steps() - reported, &episodes)?;
        reported = agent.env_steps();
        if let Some(own) = agent.statistics() {
            let peers = coordinator.share_statistics(rank, &own)?;
            agent.set_peer_statistics(&peers)?;
        }
        if let Some(eval) = evaluator.as_mut().filter(|_| !status.stop) {
            if eval.maybe_evaluate(agent.as_mut(), status.total_env_steps)?.is_some_and(|mean| eval.reached(mean)) {
                status = coordinator.solved(rank)?;
            }
        }
    }
    if let Some(network) = agent.network() {
        network.updater.settle(network.params)?;
    }
    Ok(WorkerSummary { env_steps: agent.env_steps(), iterations, total_env_steps: status.total_env_steps })
}
