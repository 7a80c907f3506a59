//! What a study shows: its trials ranked by the metric, as a table on the terminal, as
//! `trials.csv`, and the best trial's full config as `best.toml`, ready for `shoal train`.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{io_err, Result};
use crate::space::show;
use crate::store::{TrialRow, TrialState};
use crate::study::Study;

/// Trials with a result, best first (ties: the one with fewer env steps, then the lower id);
/// failed trials and those without a result last.
pub fn ranked(study: &Study, trials: &[TrialRow]) -> Vec<TrialRow> {
    let mut ranked = trials.to_vec();
    let key = |t: &TrialRow| t.value.filter(|_| t.state != TrialState::Failed).map(|v| study.mode.score(v));
    ranked.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.steps.cmp(&b.steps)).then(a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    ranked
}

/// The ranked trials as a table.
pub fn table(study: &Study, trials: &[TrialRow]) -> String {
    let w = study.metric.len().max(10);
    let mut out = format!("{:>5}  {:<9} {:>10}  {:>w$}  parameters\n", "trial", "state", "env steps", study.metric);
    for t in ranked(study, trials) {
        let value = t.value.map_or("-".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(out, "{:>5}  {:<9} {:>10}  {value:>w$}  {}", t.id, t.state.name(), t.steps, show(&t.params));
        if let Some(error) = &t.error {
            let _ = writeln!(out, "       error: {error}");
        }
    }
    out
}

/// Writes `trials.csv` (one row per trial: id, state, env steps, the metric, each parameter,
/// the error) and `best.toml` (the best trial's resolved train config) into `dir`. Returns the
/// best trial.
pub fn write_outputs(study: &Study, dir: &Path, trials: &[TrialRow]) -> Result<Option<TrialRow>> {
    let keys: Vec<&str> = study.space.keys.iter().map(|(k, _)| k.as_str()).collect();
    let mut csv = format!("trial,state,env_steps,{},{},error\n", study.metric, keys.join(","));
    for t in trials {
        let params: Vec<String> =
            keys.iter().map(|k| t.params.get(*k).map_or(String::new(), |v| csv_field(&v.to_string()))).collect();
        let value = t.value.map_or(String::new(), |v| v.to_string());
        let error = t.error.as_deref().map(csv_field).unwrap_or_default();
        let _ = writeln!(csv, "{},{},{},{value},{},{error}", t.id, t.state.name(), t.steps, params.join(","));
    }
    let path = dir.join("trials.csv");
    std::fs::write(&path, csv).map_err(io_err(&path))?;
    let best = ranked(study, trials).into_iter().next().filter(|t| t.value.is_some() && t.state != TrialState::Failed);
    if let Some(best) = &best {
        let config = study.trial_config(best.id, &best.params)?;
        let text = format!(
            "# The best trial ({}) of the study in {}: {} = {}\n{}",
            best.id,
            dir.display(),
            study.metric,
            best.value.unwrap_or(f64::NAN),
            config.to_toml()
        );
        let path = dir.join("best.toml");
        std::fs::write(&path, text).map_err(io_err(&path))?;
    }
    Ok(best)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
