//! What a run's cluster looks like right now, as the processes that see it write it down for
//! `shoal dashboard`: each server shard, worker, learner and replay, whether it was heard
//! from lately, how fast it acts and how stale its pushes are.
//!
//! A parameter-server shard sees every worker that reports to it or pushes to it, so it writes
//! the status of the whole run it serves (`shoal ps --out`); an embedded run's trainer writes
//! the same for its threads. Files are replaced atomically, so a reader never sees half of one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{DistError, Result};
use crate::monitor::WorkerProgress;
use crate::server::ServerStats;

/// The cluster as one writer saw it at `written_unix`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Seconds since the Unix epoch when this was written: a reader compares it with its
    /// own clock to tell a live run from one that stopped writing.
    pub written_unix: f64,
    pub members: Vec<Member>,
}

/// One process or thread of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// `server`, `worker`, `actor`, `learner` or `replay`.
    pub role: String,
    /// Which one, e.g. `shard 0`, `worker 3`.
    pub name: String,
    /// Where it runs: a host name, or the address its calls came from.
    pub host: String,
    /// When it was last heard from (seconds since the Unix epoch).
    pub last_seen_unix: f64,
    /// Env steps it has taken (servers: the run's total).
    pub env_steps: u64,
    /// Env steps per second over the last second or more.
    pub env_steps_per_s: f64,
    /// Its last push of a gradient or of parameters.
    pub last_push_unix: Option<f64>,
    /// Parameter versions its last push was behind (async), or a server's mean.
    pub staleness: Option<f64>,
    /// A server's parameter version; a learner's updates.
    pub version: Option<u64>,
    /// What else it reports, as text (a replay's fill, a learner's updates/s).
    #[serde(default)]
    pub detail: Option<String>,
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl ClusterStatus {
    /// A status written now.
    pub fn now(members: Vec<Member>) -> Self {
        ClusterStatus { written_unix: unix_seconds(SystemTime::now()), members }
    }

    /// Writes `path` atomically (a temporary file beside it, then a rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |e: String| DistError::Io { path: path.display().to_string(), message: e };
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| io(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| io(e.to_string()))
    }
}

/// What a parameter-server shard knows of its run: itself (`server`: its parameter version,
/// mean staleness and the run's env steps and rate) and every worker that reported progress
/// or pushed to it. `default_host` names workers whose calls did not come over the network.
pub fn shard_members(
    server: Member,
    stats: &ServerStats,
    progress: &BTreeMap<usize, WorkerProgress>,
    default_host: &str,
) -> Vec<Member> {
    let mut ranks: Vec<usize> = stats.workers.keys().chain(progress.keys()).copied().collect();
    ranks.sort_unstable();
    ranks.dedup();
    let workers = ranks.into_iter().map(|rank| {
        let pushes = stats.workers.get(&rank);
        let reports = progress.get(&rank);
        let seen = pushes.map(|p| p.last).into_iter().chain(reports.map(|r| r.last_report)).max();
        Member {
            role: "worker".into(),
            name: format!("worker {rank}"),
            host: reports.and_then(|r| r.host.clone()).unwrap_or_else(|| default_host.to_string()),
            last_seen_unix: seen.map_or(0.0, unix_seconds),
            env_steps: reports.map_or(0, |r| r.env_steps),
            env_steps_per_s: reports.map_or(0.0, |r| r.rate.rate()),
            last_push_unix: pushes.map(|p| unix_seconds(p.last)),
            staleness: pushes.map(|p| p.staleness as f64),
            version: None,
            detail: None,
        }
    });
    std::iter::once(server).chain(workers).collect()
}

/// This machine's name, for members that run here.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_survives_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let status = ClusterStatus::now(vec![Member {
            role: "worker".into(),
            name: "worker 1".into(),
            host: "10.77.0.2:41234".into(),
            env_steps: 1024,
            env_steps_per_s: 5000.5,
            last_push_unix: Some(12.5),
            staleness: Some(2.0),
            ..Member::default()
        }]);
        status.write(&path).unwrap();
        let read: ClusterStatus = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read, status);
        assert!(!path.with_extension("json.tmp").exists());
    }
}
