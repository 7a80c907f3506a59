//! Reading a run directory for the dashboard: what the runs table shows of it, its curves
//! (`metrics.csv`, or a multi-process run's `ps/metrics.csv`) and its cluster's status files.
//! Files may be written while they are read: a half-written last line of a CSV is left for
//! the next look, and a status file is always whole (it is replaced by a rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use shoal_dist::status::unix_seconds;
use shoal_dist::ClusterStatus;

use shoal::run::CLUSTER_STATUS;

/// A run that wrote nothing for this long, and has no `summary.json`, is taken for stopped.
const RUNNING_WITHIN_S: f64 = 30.0;

/// A cluster member not heard from for this long is shown as gone.
const ALIVE_WITHIN_S: f64 = 10.0;

/// One line of the runs table.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub name: String,
    pub algo: String,
    pub env: String,
    pub seed: Option<i64>,
    pub env_steps: Option<f64>,
    /// The last `episode_return_mean` logged (what `summary.json` calls final).
    pub return_mean: Option<f64>,
    pub wall_seconds: Option<f64>,
    /// `running`, `finished` or `stopped` (interrupted, or killed).
    pub state: &'static str,
    /// The cluster topology (`embedded`, `processes`) of a distributed run.
    pub cluster: Option<String>,
    /// Why the run cannot be shown in full (a corrupted metrics.csv, an unreadable config).
    pub error: Option<String>,
}

/// A run's logged metrics: one column per metric, `None` where a row left it empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<f64>>>,
}

impl Metrics {
    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The last value logged in column `name`.
    pub fn last(&self, name: &str) -> Option<f64> {
        let i = self.column(name)?;
        self.rows.iter().rev().find_map(|row| row[i])
    }
}

/// Parses a metrics CSV; only lines ended by a newline count (a writer may be mid-line).
pub fn parse_metrics(text: &str) -> Result<Metrics, String> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return Ok(Metrics::default()),
    };
    let mut lines = complete.lines();
    let Some(header) = lines.next() else { return Ok(Metrics::default()) };
    let columns: Vec<String> = header.split(',').map(str::to_string).collect();
    if columns.iter().any(|c| c.is_empty() || c.parse::<f64>().is_ok()) {
        return Err(format!("line 1 is not a header of metric names: {header:?}"));
    }
    let mut rows = Vec::new();
    for (number, line) in lines.enumerate().map(|(i, l)| (i + 2, l)) {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != columns.len() {
            return Err(format!("line {number} has {} cells, the header {}", cells.len(), columns.len()));
        }
        let row = cells
            .iter()
            .zip(&columns)
            .map(|(cell, column)| match cell.trim() {
                "" => Ok(None),
                text => text
                    .parse::<f64>()
                    .map(|v| v.is_finite().then_some(v))
                    .map_err(|_| format!("line {number}: {text:?} in column {column} is not a number")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
    }
    Ok(Metrics { columns, rows })
}

/// Where a run's curve is: its own metrics.csv, or its servers' for a multi-process run.
fn metrics_path(dir: &Path) -> PathBuf {
    let own = dir.join("metrics.csv");
    let server = dir.join("ps").join("metrics.csv");
    if !own.exists() && server.exists() {
        server
    } else {
        own
    }
}

/// Parsed metrics files by path, parsed again only when a file's size or time changes: every
/// page polls once a second, and a long run's metrics.csv holds megabytes.
#[derive(Default)]
pub struct MetricsCache {
    entries: Mutex<HashMap<PathBuf, Cached>>,
}

/// A metrics file's parse, the error the page shows when it is corrupted.
pub type Parsed = Arc<Result<Metrics, String>>;

/// A parse, and the file's time and size when it was read.
struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    parsed: Parsed,
}

impl MetricsCache {
    /// `dir`'s metrics, or the error the page shows when they are corrupted.
    pub fn get(&self, dir: &Path) -> Parsed {
        let path = metrics_path(dir);
        let meta = std::fs::metadata(&path).ok();
        let modified = meta.as_ref().and_then(|m| m.modified().ok());
        let len = meta.as_ref().map_or(0, |m| m.len());
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) =
            entries.get(&path).filter(|c| modified.is_some() && (c.modified, c.len) == (modified, len))
        {
            return Arc::clone(&cached.parsed);
        }
        let parsed = Arc::new(read_metrics(&path));
        entries.insert(path, Cached { modified, len, parsed: Arc::clone(&parsed) });
        parsed
    }
}

/// Reads the metrics file `path`, with the error the page shows when it is corrupted.
fn read_metrics(path: &Path) -> Result<Metrics, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
            parse_metrics(&text).map_err(|e| {
                format!("{}: {e} (the file is corrupted; the run's checkpoint is not affected)", path.display())
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metrics::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn modified_unix(path: &Path) -> Option<f64> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok().map(unix_seconds)
}

/// The runs-table line of `dir`, and its metrics (or why they could not be read).
pub fn read_run(dir: &Path, cache: &MetricsCache) -> (RunRow, Parsed) {
    let mut row = RunRow {
        id: dir.to_string_lossy().into_owned(),
        name: dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned()),
        algo: String::new(),
        env: String::new(),
        seed: None,
        env_steps: None,
        return_mean: None,
        wall_seconds: None,
        state: "stopped",
        cluster: None,
        error: None,
    };
    match std::fs::read_to_string(dir.join("config.toml"))
        .map_err(|e| e.to_string())
        .and_then(|text| text.parse::<toml::Table>().map_err(|e| format!("config.toml: {}", e.message())))
    {
        Ok(config) => {
            let text = |value: Option<&toml::Value>| value.and_then(toml::Value::as_str).unwrap_or("").to_string();
            row.algo = text(config.get("algo"));
            row.env = text(config.get("env").and_then(|e| e.get("id")));
            row.seed = config.get("seed").and_then(toml::Value::as_integer);
            row.cluster = config
                .get("cluster")
                .map(|c| c.get("topology").and_then(toml::Value::as_str).unwrap_or("embedded").to_string());
        }
        Err(e) => row.error = Some(format!("{}: {e}", dir.join("config.toml").display())),
    }
    let parsed = cache.get(dir);
    match parsed.as_ref() {
        Ok(metrics) => {
            row.env_steps = metrics.last("env_steps");
            row.return_mean = metrics.last("episode_return_mean");
            row.wall_seconds = metrics.last("wall_seconds");
        }
        Err(e) => row.error = Some(e.clone()),
    }
    let now = unix_seconds(SystemTime::now());
    let touched = [metrics_path(dir), dir.join(CLUSTER_STATUS)]
        .iter()
        .chain(status_files(dir).iter())
        .filter_map(|p| modified_unix(p))
        .fold(f64::NEG_INFINITY, f64::max);
    row.state = if dir.join("summary.json").exists() {
        "finished"
    } else if now - touched < RUNNING_WITHIN_S {
        "running"
    } else {
        "stopped"
    };
    (row, parsed)
}

/// The status files of a run's cluster: an embedded run's, or each server shard's and the
/// replay server's of a multi-process run.
fn status_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join(CLUSTER_STATUS)];
    for servers in ["ps", "replay"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(servers)) {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".status.json")))
                .collect();
            found.sort();
            files.extend(found);
        }
    }
    files.retain(|p| p.exists());
    files
}

/// A member of the cluster as the page shows it.
#[derive(Debug, Serialize)]
pub struct MemberView {
    #[serde(flatten)]
    pub member: shoal_dist::Member,
    pub alive: bool,
    pub seen_ago_s: f64,
    pub push_ago_s: Option<f64>,
}

/// A run's cluster now: every member the status files name (workers seen by several shards
/// once, as the shard that heard from them last saw them).
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub members: Vec<MemberView>,
    /// The whole run's env steps per second (the first server's view).
    pub env_steps_per_s: f64,
    pub problems: Vec<String>,
}

pub fn read_cluster(dir: &Path) -> ClusterView {
    let now = unix_seconds(SystemTime::now());
    let mut members: Vec<shoal_dist::Member> = Vec::new();
    let mut problems = Vec::new();
    for path in status_files(dir) {
        let status: ClusterStatus = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        {
            Ok(status) => status,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for member in status.members {
            match members.iter_mut().find(|m| m.role == member.role && m.name == member.name) {
                Some(known) if known.last_seen_unix < member.last_seen_unix => *known = member,
                Some(_) => {}
                None => members.push(member),
            }
        }
    }
    // Servers first, then the learner and the replay, then workers (or actors) by rank.
    let order = |m: &shoal_dist::Member| {
        let role = ["server", "learner", "replay"].iter().position(|r| *r == m.role).unwrap_or(3);
        let rank: u64 = m.name.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (role, m.role.clone(), rank)
    };
    members.sort_by_key(order);
    let env_steps_per_s = members.iter().find(|m| m.role == "server").map_or(0.0, |m| m.env_steps_per_s);
    let members = members
        .into_iter()
        .map(|member| MemberView {
            alive: now - member.last_seen_unix < ALIVE_WITHIN_S,
            seen_ago_s: (now - member.last_seen_unix).max(0.0),
            push_ago_s: member.last_push_unix.map(|t| (now - t).max(0.0)),
            member,
        })
        .collect();
    ClusterView { members, env_steps_per_s, problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_with_empty_cells_and_a_half_written_line() {
        let text = "env_steps,episode_return_mean\n100,\n200,12.5\n300,1";
        let metrics = parse_metrics(text).unwrap();
        assert_eq!(metrics.rows, vec![vec![Some(100.0), None], vec![Some(200.0), Some(12.5)]]);
        assert_eq!(metrics.last("episode_return_mean"), Some(12.5));
        assert_eq!(metrics.last("env_steps"), Some(200.0));
        assert_eq!(parse_metrics("").unwrap(), Metrics::default());
    }

    #[test]
    fn the_cache_parses_a_file_again_once_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(&path, "env_steps\n1\n").unwrap();
        let cache = MetricsCache::default();
        let first = cache.get(dir.path());
        assert!(Arc::ptr_eq(&first, &cache.get(dir.path())), "unchanged: the same parse");
        std::fs::write(&path, "env_steps\n1\n2\n").unwrap();
        assert_eq!(cache.get(dir.path()).as_ref().as_ref().unwrap().last("env_steps"), Some(2.0));
    }

    #[test]
    fn corrupted_metrics_name_the_line_and_column() {
        let err = parse_metrics("env_steps,loss\n100,0.5\n200,zz\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("loss"), "{err}");
        let err = parse_metrics("env_steps,loss\n100\n").unwrap_err();
        assert!(err.contains("line 2 has 1 cells"), "{err}");
        let err = parse_metrics("\u{0}\u{1}garbage,12\n").unwrap_err();
        assert!(err.contains("not a header"), "{err}");
    }
}
