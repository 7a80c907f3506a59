//! `shoal.train(...)`: `shoal train` in this process, into the same run directory layout, with a
//! Python callback after every iteration.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use shoal::run::RunDir;
use shoal::training::train_into;
use shoal_algo::cluster::{Mode, Topology};
use shoal_algo::{Agent, Callback, Control, Progress, TrainConfig};

use crate::errors::any_error;
use crate::json;

/// Calls the user's callback with each iteration's progress; stops training when it returns
/// `False`, raises, or Ctrl-C arrives (the exception is raised after the final checkpoint).
struct PythonCallback {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl PythonCallback {
    fn call(&mut self, py: Python<'_>, p: &Progress<'_>) -> PyResult<Control> {
        py.check_signals()?;
        let Some(callback) = &self.callback else { return Ok(Control::Continue) };
        let d = PyDict::new(py);
        d.set_item("iteration", p.iteration)?;
        d.set_item("env_steps", p.env_steps)?;
        d.set_item("wall_seconds", p.wall_seconds)?;
        d.set_item("episode_return_mean", p.episode_return_mean)?;
        d.set_item("episode_len_mean", p.episode_len_mean)?;
        d.set_item("episodes", p.episodes)?;
        for (name, value) in p.metrics.iter() {
            d.set_item(name, value)?;
        }
        let answer = callback.call1(py, (d,))?;
        let stop = answer.bind(py).is_instance_of::<pyo3::types::PyBool>() && !answer.extract::<bool>(py)?;
        Ok(if stop { Control::Stop } else { Control::Continue })
    }
}

impl Callback for PythonCallback {
    fn on_iteration(&mut self, _: &mut dyn Agent, p: &Progress<'_>) -> shoal_algo::Result<Control> {
        Python::attach(|py| match self.call(py, p) {
            Ok(control) => Ok(control),
            Err(err) => {
                self.error = Some(err);
                Ok(Control::Stop)
            }
        })
    }
}

/// Trains from a config file (`config_path`) or a config given as JSON (`config_json`, what
/// the Python side makes of a dict), returning the run directory and `summary.json`'s content.
#[pyfunction]
#[pyo3(signature = (config_path = None, config_json = None, overrides = Vec::new(), seed = None, out = None, callback = None))]
pub fn train(
    py: Python<'_>,
    config_path: Option<PathBuf>,
    config_json: Option<String>,
    overrides: Vec<String>,
    seed: Option<u64>,
    out: Option<PathBuf>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(PathBuf, Py<PyAny>)> {
    let mut overrides = overrides;
    if let Some(seed) = seed {
        overrides.push(format!("seed={seed}"));
    }
    let (config, stem) = match (&config_path, &config_json) {
        (Some(path), None) => {
            let config = TrainConfig::load(path, &overrides).map_err(|e| any_error(e.into()))?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
            (config, stem)
        }
        (None, Some(text)) => {
            let config = config_from_json(text, &overrides)?;
            let stem = format!("{}-{}", config.common.env.id.to_lowercase(), config.algo.name());
            (config, stem)
        }
        _ => return Err(PyValueError::new_err("give exactly one of config_path and config_json")),
    };
    if let Some(cluster) = config.cluster() {
        if cluster.topology == Topology::Processes || cluster.mode == Mode::Allreduce {
            return Err(PyValueError::new_err(
                "cluster.topology = \"processes\" and cluster.mode = \"allreduce\" start `shoal` processes: run \
                 `shoal train CONFIG` (or mpirun … shoal run) from a shell, or use cluster.topology = \"embedded\" \
                 from Python",
            ));
        }
    }
    let run_dir = RunDir::create(out.as_deref(), &format!("{stem}-s{}", config.common.seed)).map_err(any_error)?;
    let mut callback = PythonCallback { callback, error: None };
    let interrupted = Arc::new(AtomicBool::new(false));
    let summary = py.detach(|| train_into(&config, &run_dir, false, &interrupted, &mut callback));
    if let Some(err) = callback.error {
        return Err(err);
    }
    let summary = summary.map_err(any_error)?;
    Ok((run_dir.root.clone(), json::serialize(py, &summary)?))
}

/// A config given as JSON (from a Python dict), with the same checks as a TOML file.
fn config_from_json(text: &str, overrides: &[String]) -> PyResult<TrainConfig> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PyValueError::new_err(format!("config dict: {e}")))?;
    let toml = toml::to_string(&value).map_err(|e| {
        PyValueError::new_err(format!(
            "config dict cannot be written as TOML ({e}); use tables, numbers, strings, lists"
        ))
    })?;
    TrainConfig::parse(&toml, overrides).map_err(|e| any_error(e.into()))
}
