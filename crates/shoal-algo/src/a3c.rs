//! Asynchronous Advantage Actor-Critic (Mnih et al., 2016): `workers` threads, each with its own
//! envs and a local copy of the network, repeatedly pull the newest parameters, collect
//! `num_steps` steps, compute the A2C gradient of
//! `−E[A·log π(a|s)] − c_ent·H[π] + c_vf·½·E[(V−R)²]` and push it to a parameter server that
//! applies it on arrival with a shared optimizer (RMSProp, as in the paper, or Adam).
//!
//! The server is `shoal-dist`'s [`ParamServer`] in asynchronous mode, so the same code runs
//! with a remote store once the gRPC transport exists. Runs are not bit-reproducible: the
//! order in which workers' gradients arrive is up to the OS scheduler.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_dist::{ParamServer, ParamStore, PushOutcome, UpdateMode};
use shoal_nn::{clip_grad_norm, io, Adam, Model, Optimizer, RmsProp};

use crate::agent::{section, Agent, Metrics};
use crate::checkpoint::{read_json, write_json, CommonState};
use crate::config::{check_positive, check_range, Algo, NetConfig, TrainConfig};
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, AlgoError, Result};
use crate::on_policy::OnPolicyCore;

/// A3C hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct A3cConfig {
    /// Worker threads, each stepping `env.num_envs` envs.
    pub workers: usize,
    pub learning_rate: f64,
    /// Anneal the server's learning rate linearly to 0 over `stop.env_steps`.
    pub anneal_lr: bool,
    pub num_steps: usize,
    pub gamma: f64,
    pub gae_lambda: f64,
    pub ent_coef: f64,
    pub vf_coef: f64,
    pub max_grad_norm: f64,
    /// `"rmsprop"` (shared RMSProp, as the paper) or `"adam"`.
    pub optimizer: String,
    pub rms_alpha: f64,
    pub rms_eps: f64,
    pub adam_eps: f64,
    /// Reject gradients computed more than this many updates ago (`None`: accept all).
    pub max_staleness: Option<u64>,
    /// Gradient pushes per worker between two reports of the training loop.
    pub updates_per_iteration: usize,
    pub net: NetConfig,
}

impl Default for A3cConfig {
    fn default() -> Self {
        A3cConfig {
            workers: 2,
            learning_rate: 7e-4,
            anneal_lr: false,
            num_steps: 5,
            gamma: 0.99,
            gae_lambda: 1.0,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            optimizer: "rmsprop".into(),
            rms_alpha: 0.99,
            rms_eps: 1e-5,
            adam_eps: 1e-5,
            max_staleness: None,
            updates_per_iteration: 20,
            net: NetConfig::default(),
        }
    }
}

/// One worker: envs, a local network, and the version of the parameters it holds.
struct Worker {
    core: OnPolicyCore,
    version: Option<u64>,
    grads: Vec<f32>,
}

/// What one worker reports after its share of an iteration.
#[derive(Default)]
struct WorkerReport {
    policy: f64,
    value: f64,
    entropy: f64,
    pushes: f64,
    stale: f64,
}

impl Worker {
    /// Pull, collect, differentiate, push — `updates` times.
    fn run(&mut self, index: usize, server: &ParamServer, cfg: &A3cConfig, updates: usize) -> Result<WorkerReport> {
        let mut report = WorkerReport::default();
        for _ in 0..updates {
            if let Some(v) = server.pull(self.version, self.core.model.params_mut()).map_err(dist_err)? {
                self.version = Some(v);
            }
            self.core.collect(cfg.gamma, cfg.gae_lambda)?;
            let stats = self.core.vanilla_gradient(false, cfg.ent_coef, cfg.vf_coef)?;
            self.grads.copy_from_slice(self.core.model.grads());
            clip_grad_norm(&mut self.grads, cfg.max_grad_norm);
            let outcome = server.push_gradient(index, self.version.unwrap_or(0), &self.grads).map_err(dist_err)?;
            report.stale += f64::from(matches!(outcome, PushOutcome::Stale { .. }));
            report.policy += stats.policy;
            report.value += stats.value;
            report.entropy += stats.entropy;
            report.pushes += 1.0;
        }
        Ok(report)
    }
}

fn dist_err(e: shoal_dist::DistError) -> AlgoError {
    AlgoError::Config(format!("parameter store: {e}"))
}

/// An A3C agent: a parameter server and its worker threads, in this process.
pub struct A3c {
    cfg: A3cConfig,
    server: Arc<ParamServer>,
    workers: Vec<Worker>,
    episodes: EpisodeTracker,
}

/// What A3C keeps in `state.json`: every worker's common state.
#[derive(Serialize, Deserialize)]
struct A3cState {
    workers: Vec<CommonState>,
    episodes: EpisodeTracker,
}

impl A3c {
    pub fn new(config: &TrainConfig) -> Result<Self> {
        let cfg = section(&config.a3c, "a3c")?.clone();
        check_positive("a3c.workers", cfg.workers)?;
        check_positive("a3c.num_steps", cfg.num_steps)?;
        check_positive("a3c.updates_per_iteration", cfg.updates_per_iteration)?;
        check_range("a3c.learning_rate", cfg.learning_rate, 0.0, 1.0)?;
        check_range("a3c.gamma", cfg.gamma, 0.0, 1.0)?;
        check_range("a3c.gae_lambda", cfg.gae_lambda, 0.0, 1.0)?;
        let workers = (0..cfg.workers)
            .map(|w| {
                // Every worker explores its own envs: seeds spaced far apart.
                let mut own = config.clone();
                own.seed = config.seed.wrapping_add(10_000 * w as u64);
                let core = OnPolicyCore::new(&own, &cfg.net, "a3c", false, 0.0, cfg.num_steps)?;
                let grads = vec![0.0; core.model.layout().len()];
                Ok(Worker { core, version: None, grads })
            })
            .collect::<Result<Vec<_>>>()?;
        // All workers start from worker 0's initial parameters, held by the server.
        let params = workers[0].core.model.params().to_vec();
        let optimizer: Box<dyn Optimizer<f32>> = match cfg.optimizer.as_str() {
            "rmsprop" => Box::new(RmsProp::new(params.len(), cfg.rms_alpha, cfg.rms_eps, false, 0.0)),
            "adam" => Box::new(Adam::new(params.len(), 0.9, 0.999, cfg.adam_eps)),
            other => return Err(config_err(format!("a3c.optimizer must be \"rmsprop\" or \"adam\", got \"{other}\""))),
        };
        let mode = UpdateMode::Async { max_staleness: cfg.max_staleness };
        let server = Arc::new(ParamServer::new(params, optimizer, cfg.learning_rate as f32, mode));
        Ok(A3c { cfg, server, workers, episodes: EpisodeTracker::default() })
    }
}

impl Agent for A3c {
    fn algo(&self) -> Algo {
        Algo::A3c
    }

    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        let (server, cfg) = (&*self.server, &self.cfg);
        let lr = if cfg.anneal_lr { cfg.learning_rate * (1.0 - progress) } else { cfg.learning_rate };
        server.set_lr(lr as f32);
        let reports = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .enumerate()
                .map(|(i, worker)| scope.spawn(move || worker.run(i, server, cfg, cfg.updates_per_iteration)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(config_err("an A3C worker panicked"))))
                .collect::<Vec<_>>()
        });
        let mut total = WorkerReport::default();
        for report in reports {
            let r = report?;
            total.policy += r.policy;
            total.value += r.value;
            total.entropy += r.entropy;
            total.pushes += r.pushes;
            total.stale += r.stale;
        }
        for worker in &mut self.workers {
            worker.core.episodes.drain_into(&mut self.episodes);
        }
        let stats = self.server.stats();
        let n = total.pushes.max(1.0);
        Ok(vec![
            ("loss/policy", total.policy / n),
            ("loss/value", total.value / n),
            ("loss/entropy", total.entropy / n),
            ("ps/version", stats.updates as f64),
            ("ps/staleness_mean", stats.staleness_sum as f64 / stats.gradients.max(1) as f64),
            ("ps/staleness_max", stats.max_staleness as f64),
            ("ps/rejected", stats.rejected_stale as f64),
            ("charts/learning_rate", lr),
        ])
    }

    fn env_steps(&self) -> u64 {
        self.workers.iter().map(|w| w.core.env_steps).sum()
    }

    fn episodes(&self) -> &EpisodeTracker {
        &self.episodes
    }

    fn obs_dim(&self) -> usize {
        self.workers[0].core.obs_dim
    }

    fn action_dim(&self) -> usize {
        self.workers[0].core.act_dim
    }

    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        let worker = &mut self.workers[0];
        if let Some(v) = self.server.pull(worker.version, worker.core.model.params_mut()).map_err(dist_err)? {
            worker.version = Some(v);
        }
        worker.core.predict(obs, rows, deterministic, actions)
    }

    fn save(&mut self, dir: &Path) -> Result<()> {
        let model = &mut self.workers[0].core.model;
        self.server.with_state(|params, version, optimizer| {
            model.params_mut().copy_from_slice(params);
            let meta = [("shoal.ps_version".to_string(), version.to_string())].into_iter().collect();
            io::save(&dir.join("model.safetensors"), model, Some(optimizer), &meta)
        })?;
        let workers = self
            .workers
            .iter_mut()
            .map(|w| CommonState::capture(w.core.env_steps, &w.core.rng, &w.core.episodes, w.core.env.as_mut()))
            .collect::<Result<Vec<_>>>()?;
        write_json(&dir.join("state.json"), &A3cState { workers, episodes: self.episodes.clone() })
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let state: A3cState = read_json(&dir.join("state.json"))?;
        if state.workers.len() != self.workers.len() {
            return Err(config_err(format!(
                "the checkpoint has {} A3C workers, the config {}; set a3c.workers to match",
                state.workers.len(),
                self.workers.len()
            )));
        }
        let model = &mut self.workers[0].core.model;
        self.server.with_state(|params, version, optimizer| -> Result<()> {
            let meta = io::load(&dir.join("model.safetensors"), model, Some(optimizer))?;
            params.copy_from_slice(model.params());
            *version = meta.get("shoal.ps_version").and_then(|v| v.parse().ok()).unwrap_or(0);
            Ok(())
        })?;
        for (worker, saved) in self.workers.iter_mut().zip(state.workers) {
            worker.core.env.restore(&saved.env)?;
            worker.core.env_steps = saved.env_steps;
            worker.core.rng = saved.rng;
            worker.core.episodes = saved.episodes;
            worker.version = None;
        }
        self.episodes = state.episodes;
        Ok(())
    }
}
