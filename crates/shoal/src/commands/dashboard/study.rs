//! Reading a tuning study for the dashboard, from its `study.db` as the tuner writes it (WAL:
//! readers never block the tuner): the trials, their curves, each tuned key's axis and the
//! best trial's full config.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use shoal_tune::summary::ranked;
use shoal_tune::{store_path, Domain, StudyStore, TrialState};

use crate::commands::tune::stored_study;

/// One line of the studies table.
#[derive(Debug, Serialize)]
pub struct StudyRow {
    pub id: String,
    pub name: String,
    pub metric: String,
    /// `max` or `min`.
    pub mode: String,
    pub trials: usize,
    pub running: usize,
    pub best_value: Option<f64>,
    pub error: Option<String>,
}

/// A tuned key: how the page places its values on an axis.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub name: String,
    /// `log` (loguniform: positions are log10), `linear`, or `categorical` (positions index
    /// `labels`).
    pub scale: &'static str,
    pub labels: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TrialView {
    pub id: usize,
    pub state: &'static str,
    pub steps: u64,
    pub value: Option<f64>,
    /// Each key's value as text, and its position on the key's axis.
    pub params: BTreeMap<String, String>,
    pub positions: BTreeMap<String, f64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BestView {
    pub trial: usize,
    pub value: f64,
    /// The best trial's resolved train config, ready for `shoal train`.
    pub config: String,
}

#[derive(Debug, Serialize)]
pub struct StudyView {
    pub row: StudyRow,
    pub keys: Vec<KeyView>,
    pub trials: Vec<TrialView>,
    /// Each trial's intermediate (env steps, metric) results.
    pub curves: BTreeMap<usize, Vec<(u64, f64)>>,
    pub best: Option<BestView>,
}

fn empty_row(dir: &Path) -> StudyRow {
    StudyRow {
        id: dir.to_string_lossy().into_owned(),
        name: dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned()),
        metric: String::new(),
        mode: String::new(),
        trials: 0,
        running: 0,
        best_value: None,
        error: None,
    }
}

/// The study in `dir`, or what is wrong with it (shown on its row and its page).
pub fn read_study(dir: &Path) -> StudyView {
    match try_read(dir) {
        Ok(view) => view,
        Err(e) => StudyView {
            row: StudyRow { error: Some(format!("{e:#}")), ..empty_row(dir) },
            keys: Vec::new(),
            trials: Vec::new(),
            curves: BTreeMap::new(),
            best: None,
        },
    }
}

fn try_read(dir: &Path) -> Result<StudyView> {
    // SQLite would make an empty file a new database: the dashboard writes nothing.
    let db = store_path(dir);
    anyhow::ensure!(
        std::fs::metadata(&db)?.len() > 0,
        "{} is empty: not a study (`shoal tune --out` writes one)",
        db.display()
    );
    let study = stored_study(dir)?;
    let store = StudyStore::open(&db)?;
    let rows = store.trials()?;
    let mut curves = BTreeMap::new();
    for trial in &rows {
        curves.insert(trial.id, store.results(trial.id)?);
    }
    let best = ranked(&study, &rows).into_iter().next().filter(|t| t.value.is_some() && t.state != TrialState::Failed);
    let best = match best {
        Some(t) => Some(BestView {
            trial: t.id,
            value: t.value.unwrap_or(f64::NAN),
            config: study.trial_config(t.id, &t.params)?.to_toml(),
        }),
        None => None,
    };
    let keys = study
        .space
        .keys
        .iter()
        .map(|(name, domain)| KeyView {
            name: name.clone(),
            scale: match (domain, domain.values()) {
                (_, Some(_)) => "categorical",
                (Domain::LogUniform { .. }, None) => "log",
                _ => "linear",
            },
            labels: domain.values().map(|v| v.iter().map(|x| x.to_string()).collect()).unwrap_or_default(),
        })
        .collect();
    let trials = rows
        .iter()
        .map(|t| TrialView {
            id: t.id,
            state: t.state.name(),
            steps: t.steps,
            value: t.value,
            params: t.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            positions: study
                .space
                .keys
                .iter()
                .filter_map(|(k, domain)| Some((k.clone(), domain.axis_position(t.params.get(k)?)?)))
                .collect(),
            error: t.error.clone(),
        })
        .collect();
    let row = StudyRow {
        metric: study.metric.clone(),
        mode: format!("{:?}", study.mode).to_lowercase(),
        trials: rows.len(),
        running: rows.iter().filter(|t| t.state == TrialState::Running).count(),
        best_value: best.as_ref().map(|b| b.value),
        ..empty_row(dir)
    };
    Ok(StudyView { row, keys, trials, curves, best })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_study_is_an_error_on_its_row_and_stays_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = store_path(dir.path());
        std::fs::write(&db, "").unwrap();
        let view = read_study(dir.path());
        assert!(view.row.error.as_deref().is_some_and(|e| e.contains("is empty")), "{:?}", view.row.error);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "nothing written");
        std::fs::write(&db, "not a database at all, but long enough to be read as a header........").unwrap();
        let view = read_study(dir.path());
        assert!(view.row.error.is_some(), "garbage is an error");
    }
}
