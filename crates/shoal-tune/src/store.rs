//! The study store: one SQLite file (`study.db`) holding the study's own text, every trial's
//! parameters and state, every intermediate result and every job, written as they happen —
//! so a killed tuner loses nothing and `--resume` rebuilds the searcher and the scheduler
//! from it. WAL journaling: a commit survives the process being killed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Result, TuneError};
use crate::space::Params;

/// Where a trial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    /// A job of it is running (or was, when the tuner was killed).
    Running,
    /// Its last job ended below the budget; a scheduler may continue it from its checkpoint.
    Paused,
    /// It ran its whole budget, or met the base config's own stop rule.
    Finished,
    /// A scheduler stopped it early.
    Stopped,
    /// It failed with an error.
    Failed,
}

impl TrialState {
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Paused => "paused",
            TrialState::Finished => "finished",
            TrialState::Stopped => "stopped",
            TrialState::Failed => "failed",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [TrialState::Running, TrialState::Paused, TrialState::Finished, TrialState::Stopped, TrialState::Failed]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// A trial as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRow {
    pub id: usize,
    pub params: Params,
    pub state: TrialState,
    /// Env steps reached.
    pub steps: u64,
    /// The metric's last value (`None` before the first result).
    pub value: Option<f64>,
    pub error: Option<String>,
}

/// A job as stored: trial `trial` was to run until `until` env steps; `value` is what it
/// ended with (`ended` false: it was still running).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub trial: usize,
    pub until: u64,
    pub ended: bool,
    pub value: Option<f64>,
}

/// An open study store.
pub struct StudyStore {
    conn: Connection,
    path: PathBuf,
    /// Intermediate results not written yet: they go with the job's end, or once a second
    /// (a killed tuner may lose the last second of a curve, never a trial or a job's end).
    pending: Vec<(usize, u64, f64)>,
    flushed: Instant,
}

/// The longest an intermediate result waits for its write.
const RESULT_DELAY: Duration = Duration::from_secs(1);

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY, params TEXT NOT NULL, state TEXT NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0, value REAL, error TEXT);
CREATE TABLE IF NOT EXISTS results (trial INTEGER NOT NULL, step INTEGER NOT NULL, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, trial INTEGER NOT NULL, until INTEGER NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0, value REAL,
    started_at REAL NOT NULL DEFAULT (unixepoch('subsec')), ended_at REAL);
";

impl StudyStore {
    /// Creates the store of a new study; an existing one is an error (resume it instead).
    pub fn create(path: &Path, meta: &[(&str, &str)]) -> Result<Self> {
        if path.exists() {
            return Err(TuneError::Spec(format!(
                "{} already holds a study: continue it with `shoal tune --resume {}`, or choose another --out",
                path.display(),
                path.parent().unwrap_or(Path::new(".")).display()
            )));
        }
        let store = Self::connect(path)?;
        for (key, value) in meta {
            store.exec("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
        }
        Ok(store)
    }

    /// Opens an existing study's store.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(TuneError::Spec(format!("{}: no study here (no study.db)", path.display())));
        }
        Self::connect(path)
    }

    fn connect(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| store_err(path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| store_err(path, e))?;
        Ok(StudyStore { conn, path: path.to_path_buf(), pending: Vec::new(), flushed: Instant::now() })
    }

    fn exec(&self, sql: &str, args: impl rusqlite::Params) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| store_err(&self.path, e))?;
        stmt.execute(args).map(|_| ()).map_err(|e| store_err(&self.path, e))
    }

    /// Runs `f`'s statements as one transaction: one commit for an event that writes
    /// several rows, all of them or none.
    fn atomically(&self, f: impl FnOnce() -> Result<()>) -> Result<()> {
        self.conn.execute_batch("BEGIN").map_err(|e| store_err(&self.path, e))?;
        match f() {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(|e| store_err(&self.path, e)),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// A value the study stored at creation.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(|e| store_err(&self.path, e))
    }

    /// Records trial `id` with its parameters, running its first job until `until`.
    pub fn add_trial(&self, id: usize, params: &Params, until: u64) -> Result<()> {
        let text = toml::to_string(params).map_err(|e| TuneError::Spec(format!("trial {id}'s parameters: {e}")))?;
        self.atomically(|| {
            self.exec("INSERT INTO trials (id, params, state) VALUES (?1, ?2, 'running')", params![id as i64, text])?;
            self.exec("INSERT INTO jobs (trial, until) VALUES (?1, ?2)", params![id as i64, until as i64])
        })
    }

    /// Records a job of trial `id` running until `until` env steps.
    pub fn start_job(&self, id: usize, until: u64) -> Result<()> {
        self.atomically(|| {
            self.exec("UPDATE trials SET state = 'running' WHERE id = ?1", params![id as i64])?;
            self.exec("INSERT INTO jobs (trial, until) VALUES (?1, ?2)", params![id as i64, until as i64])
        })
    }

    /// Trial `id` goes on with `params` (population-based training's exploration).
    pub fn set_params(&self, id: usize, params: &Params) -> Result<()> {
        let text = toml::to_string(params).map_err(|e| TuneError::Spec(format!("trial {id}'s parameters: {e}")))?;
        self.exec("UPDATE trials SET params = ?2 WHERE id = ?1", params![id as i64, text])
    }

    /// An intermediate result of trial `id`.
    pub fn add_result(&mut self, id: usize, step: u64, value: f64) -> Result<()> {
        self.pending.push((id, step, value));
        if self.flushed.elapsed() < RESULT_DELAY {
            return Ok(());
        }
        self.atomically(|| self.write_results())?;
        self.pending.clear();
        self.flushed = Instant::now();
        Ok(())
    }

    /// Writes the pending results (inside the caller's transaction).
    fn write_results(&self) -> Result<()> {
        for &(id, step, value) in &self.pending {
            self.exec(
                "INSERT INTO results (trial, step, value) VALUES (?1, ?2, ?3)",
                params![id as i64, step as i64, value],
            )?;
        }
        Ok(())
    }

    /// The end of trial `id`'s running job: where it got, with what, and the trial's state.
    pub fn end_job(
        &mut self,
        id: usize,
        steps: u64,
        value: Option<f64>,
        state: TrialState,
        error: Option<&str>,
    ) -> Result<()> {
        self.atomically(|| {
            self.write_results()?;
            self.exec(
                "UPDATE jobs SET ended = 1, value = ?2, ended_at = unixepoch('subsec') WHERE trial = ?1 AND ended = 0",
                params![id as i64, value],
            )?;
            self.exec(
                "UPDATE trials SET state = ?2, steps = ?3, value = ?4, error = ?5 WHERE id = ?1",
                params![id as i64, state.name(), steps as i64, value, error],
            )
        })?;
        self.pending.clear();
        self.flushed = Instant::now();
        Ok(())
    }

    /// Every trial, by id.
    pub fn trials(&self) -> Result<Vec<TrialRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, params, state, steps, value, error FROM trials ORDER BY id")
            .map_err(|e| store_err(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(|e| store_err(&self.path, e))?;
        let mut trials = Vec::new();
        for row in rows {
            let (id, params, state, steps, value, error) = row.map_err(|e| store_err(&self.path, e))?;
            let corrupt = |what: &str| store_err(&self.path, format!("trial {id}: unreadable {what}"));
            trials.push(TrialRow {
                id: id as usize,
                params: toml::from_str(&params).map_err(|_| corrupt("parameters"))?,
                state: TrialState::parse(&state).ok_or_else(|| corrupt("state"))?,
                steps: steps as u64,
                value,
                error,
            });
        }
        Ok(trials)
    }

    /// Every job, in the order they started.
    pub fn jobs(&self) -> Result<Vec<JobRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT trial, until, ended, value FROM jobs ORDER BY seq")
            .map_err(|e| store_err(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JobRow {
                    trial: r.get::<_, i64>(0)? as usize,
                    until: r.get::<_, i64>(1)? as u64,
                    ended: r.get::<_, i64>(2)? != 0,
                    value: r.get(3)?,
                })
            })
            .map_err(|e| store_err(&self.path, e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| store_err(&self.path, e))
    }

    /// Trial `id`'s intermediate results, in order.
    pub fn results(&self, id: usize) -> Result<Vec<(u64, f64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT step, value FROM results WHERE trial = ?1 ORDER BY rowid")
            .map_err(|e| store_err(&self.path, e))?;
        let rows = stmt
            .query_map(params![id as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, f64>(1)?)))
            .map_err(|e| store_err(&self.path, e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| store_err(&self.path, e))
    }
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> TuneError {
    TuneError::Store { path: path.display().to_string(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.db");
        let params: Params = [("ppo.learning_rate".to_string(), toml::Value::Float(1e-3))].into_iter().collect();
        {
            let mut store = StudyStore::create(&path, &[("study", "num_samples = 1")]).unwrap();
            store.add_trial(0, &params, 100).unwrap();
            store.add_result(0, 50, 12.5).unwrap();
            store.add_result(0, 100, 20.0).unwrap();
            store.end_job(0, 100, Some(20.0), TrialState::Paused, None).unwrap();
            store.start_job(0, 300).unwrap();
        }
        let err = StudyStore::create(&path, &[]).err().unwrap().to_string();
        assert!(err.contains("--resume"), "{err}");
        let store = StudyStore::open(&path).unwrap();
        assert_eq!(store.meta("study").unwrap().as_deref(), Some("num_samples = 1"));
        let trials = store.trials().unwrap();
        assert_eq!(trials.len(), 1);
        assert_eq!((trials[0].params.clone(), trials[0].state, trials[0].steps), (params, TrialState::Running, 100));
        assert_eq!(store.results(0).unwrap(), vec![(50, 12.5), (100, 20.0)]);
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs[0], JobRow { trial: 0, until: 100, ended: true, value: Some(20.0) });
        assert_eq!(jobs[1], JobRow { trial: 0, until: 300, ended: false, value: None });
    }
}
