//! The `[cluster]` section: where a run's roles live (threads or processes), how many workers
//! and parameter-server shards there are, and how the servers combine what workers push.
//! What runs them is `cluster.rs`; which algorithms may run in a cluster is the registry's
//! check.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_dist::{Limits, UpdateMode};

use crate::checks::{check_positive, check_range};
use crate::error::{config_err, Result};

/// Where a cluster's roles run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// Threads of one process, stores in memory (the default, fastest on one machine).
    #[default]
    Embedded,
    /// `shoal train` starts `shoal ps` and `shoal worker` processes talking gRPC on loopback.
    Processes,
}

/// How the parameter server combines what workers push (see `shoal_dist::UpdateMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Sync,
    Async,
    Average,
    Easgd,
    /// No server: the ranks of `mpirun` sum their gradients with MPI_Allreduce and each takes
    /// the same optimizer step on the mean (`mpirun -np N shoal run CONFIG`, feature `mpi`).
    Allreduce,
}

/// Wire encoding of tensors between processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    /// Half precision: half the bytes, ~3 significant digits.
    F16,
    /// Gradients as int8 with a scale per 64 Ki values (a quarter of the bytes), with error
    /// feedback: what rounding takes from one push is added to the next. Parameters travel
    /// in f32.
    Int8,
}

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub topology: Topology,
    /// Worker copies of the agent, each stepping `env.num_envs` envs.
    pub workers: usize,
    pub mode: Mode,
    /// Parameter-server shards the flat parameter vector is split over.
    pub shards: usize,
    /// Sync / average / EASGD: seconds a round waits for a missing worker before going on
    /// without it (the worker rejoins when it pushes again).
    pub round_timeout: f64,
    /// Async: refuse gradients computed more than this many updates ago.
    pub max_staleness: Option<u64>,
    /// Async worker processes: send each gradient and read the server's reply (the
    /// parameters after it) at the next update, so that the round trip runs while the worker
    /// acts instead of before. Every gradient is one update staler; one server shard only
    /// (over several, pushes wait for their replies).
    pub overlap_push: bool,
    /// Average / EASGD: local optimizer steps between two parameter pushes.
    pub push_every: u64,
    /// EASGD's elastic coefficient α (= learning rate × ρ in the paper).
    pub easgd_alpha: f64,
    /// Training iterations a worker runs between two reports (embedded: per thread hand-off).
    pub worker_iterations: usize,
    /// Processes: server updates between two server checkpoints.
    pub checkpoint_every: u64,
    pub compression: Compression,
    /// Processes: seconds a worker keeps retrying an unreachable (or busy) server.
    pub retry_seconds: f64,
    /// Processes: connections one server (a shard, the replay) holds open, gRPC and data
    /// plane together; a worker holds two per shard. Beyond them calls are answered busy.
    pub max_connections: usize,
    /// Processes, async mode: megabytes of pushed tensors one shard receives or queues at
    /// once (at least one push). Beyond them pushes are answered busy (`RESOURCE_EXHAUSTED`,
    /// `retry-after-ms`) and workers retry after the wait the server advises.
    pub max_pending_mb: f64,
    /// Processes: the largest gRPC message a parameter server takes (tensors travel in
    /// chunks of 256 KiB).
    pub max_message_bytes: usize,
    /// Processes: seconds a client may stop sending in the middle of a tensor before the
    /// server closes its connection.
    pub stall_seconds: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            topology: Topology::Embedded,
            workers: 1,
            mode: Mode::Sync,
            shards: 1,
            round_timeout: 10.0,
            max_staleness: None,
            overlap_push: false,
            push_every: 10,
            easgd_alpha: 0.1,
            worker_iterations: 4,
            checkpoint_every: 500,
            compression: Compression::None,
            retry_seconds: 60.0,
            max_connections: Limits::default().max_connections,
            max_pending_mb: (Limits::default().max_pending_bytes >> 20) as f64,
            max_message_bytes: Limits::default().max_message_bytes,
            stall_seconds: Limits::default().stall_timeout.as_secs_f64(),
        }
    }
}

impl ClusterConfig {
    /// A3C's cluster when a config gives none: two asynchronous workers.
    pub fn a3c_default() -> Self {
        ClusterConfig { workers: 2, mode: Mode::Async, ..ClusterConfig::default() }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_positive("cluster.workers", self.workers)?;
        check_positive("cluster.shards", self.shards)?;
        check_positive("cluster.worker_iterations", self.worker_iterations)?;
        check_range("cluster.round_timeout", self.round_timeout, 1e-3, 86_400.0)?;
        check_range("cluster.retry_seconds", self.retry_seconds, 0.0, 86_400.0)?;
        check_range("cluster.easgd_alpha", self.easgd_alpha, 0.0, 1.0)?;
        check_range("cluster.max_pending_mb", self.max_pending_mb, 1e-3, 1e6)?;
        check_range("cluster.stall_seconds", self.stall_seconds, 1e-3, 86_400.0)?;
        self.limits().validate().map_err(|e| config_err(e.to_string()))?;
        if self.push_every == 0 {
            return Err(config_err("cluster.push_every must be at least 1"));
        }
        if self.overlap_push && self.mode != Mode::Async {
            return Err(config_err(
                "cluster.overlap_push needs mode = \"async\": a sync or averaging round waits for every worker's push, so there is no reply to read later",
            ));
        }
        if self.mode == Mode::Allreduce && (self.shards > 1 || self.topology == Topology::Processes) {
            return Err(config_err(
                "cluster.mode = \"allreduce\" has no parameter server (no shards, no server processes): run it with `mpirun -np N shoal run CONFIG --out DIR`",
            ));
        }
        Ok(())
    }

    /// What each server process of the run takes on at once.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_pending_bytes: (self.max_pending_mb * (1 << 20) as f64) as usize,
            max_message_bytes: self.max_message_bytes,
            stall_timeout: Duration::from_secs_f64(self.stall_seconds),
            ..Limits::default()
        }
    }

    /// True when the config asks for more than one plain agent in this process (an
    /// all-reduce rank is one plain agent whose updater sums with its peers).
    pub fn is_distributed(&self) -> bool {
        self.mode != Mode::Allreduce
            && (self.workers > 1 || self.shards > 1 || self.topology == Topology::Processes || self.mode == Mode::Async)
    }

    /// The parameter server's update mode.
    pub fn update_mode(&self) -> UpdateMode {
        let timeout = Duration::from_secs_f64(self.round_timeout);
        let workers = self.workers;
        match self.mode {
            // A server for all-reduce's arithmetic (one mean gradient per step) is sync's.
            Mode::Sync | Mode::Allreduce => UpdateMode::Sync { workers, timeout },
            Mode::Async => UpdateMode::Async { max_staleness: self.max_staleness },
            Mode::Average => UpdateMode::Average { workers, timeout },
            Mode::Easgd => UpdateMode::Easgd { workers, alpha: self.easgd_alpha, timeout },
        }
    }

    /// Parameter pushes every this many steps (averaging modes), or gradients (`None`).
    pub(crate) fn push_params_every(&self) -> Option<u64> {
        matches!(self.mode, Mode::Average | Mode::Easgd).then_some(self.push_every)
    }
}
