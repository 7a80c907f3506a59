//! `shoal.load(run_dir)`: a trained agent for `predict` and `evaluate`, without training code
//! in the caller's program (what RLlib users ask for in ray #8583 and #14429).

use std::path::PathBuf;

use anyhow::Context;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use shoal_algo::checkpoint::load_checkpoint;
use shoal_algo::eval::evaluate;
use shoal_algo::{build_agent, Agent, TrainConfig};
use shoal_env::Space;

use crate::errors::any_error;
use crate::{json, spaces};

/// A run's latest checkpoint, loaded.
#[pyclass(module = "shoal._shoal", unsendable)]
pub struct Policy {
    agent: Box<dyn Agent>,
    config: TrainConfig,
    checkpoint: PathBuf,
    observation_space: Space,
    action_space: Space,
    /// Reused output buffer of `predict`.
    actions: Vec<f32>,
}

#[pymethods]
impl Policy {
    /// Loads a run directory (or one of its checkpoint directories).
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        if !path.exists() {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: no such run directory (pass the directory `shoal train` or shoal.train() created)",
                path.display()
            )));
        }
        let checkpoint = shoal::training::checkpoint_dir(&path);
        let config = shoal::run::find_config(&checkpoint).map_err(|e| PyValueError::new_err(format!("{e:#}")))?;
        py.detach(|| Self::load(checkpoint, &config)).map_err(any_error)
    }

    /// The checkpoint directory this policy was loaded from.
    #[getter]
    fn checkpoint(&self) -> PathBuf {
        self.checkpoint.clone()
    }

    #[getter]
    fn env_id(&self) -> &str {
        &self.config.common.env.id
    }

    #[getter]
    fn algo(&self) -> &'static str {
        self.config.algo.name()
    }

    #[getter]
    fn observation_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        spaces::describe(py, &self.observation_space)
    }

    #[getter]
    fn action_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        spaces::describe(py, &self.action_space)
    }

    /// Actions for a batch of observations `[rows, obs_dim]` (or one observation `[obs_dim]`):
    /// int64 indices for a Discrete action space, float32 `[rows, action_dim]` otherwise.
    #[pyo3(signature = (obs, deterministic = true))]
    fn predict<'py>(
        &mut self,
        py: Python<'py>,
        obs: PyReadonlyArrayDyn<'py, f32>,
        deterministic: bool,
    ) -> PyResult<Py<PyAny>> {
        let obs_dim = self.agent.obs_dim();
        let shape = obs.shape().to_vec();
        let single = shape.iter().product::<usize>() == obs_dim && shape.len() <= 1;
        let rows = if single { 1 } else { shape.first().copied().unwrap_or(0) };
        if rows * obs_dim != obs.len() || rows == 0 {
            return Err(PyValueError::new_err(format!(
                "observations of shape {shape:?} do not fit this policy: it takes [rows, {obs_dim}] or [{obs_dim}] \
                 ({} observations of {})",
                self.observation_space, self.config.common.env.id
            )));
        }
        let values = obs.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?;
        let action_dim = self.agent.action_dim();
        self.actions.resize(rows * action_dim, 0.0);
        let (agent, actions) = (&mut self.agent, &mut self.actions);
        py.detach(|| agent.predict(values, rows, deterministic, actions)).map_err(|e| any_error(e.into()))?;
        if matches!(self.action_space, Space::Discrete { .. }) {
            let indices: Vec<i64> = self.actions.iter().map(|&a| a as i64).collect();
            return if single {
                indices[0].into_py_any(py)
            } else {
                Ok(PyArray1::from_vec(py, indices).into_any().unbind())
            };
        }
        if single {
            return Ok(PyArray1::from_slice(py, &self.actions).into_any().unbind());
        }
        let flat = PyArray1::from_slice(py, &self.actions);
        Ok(flat.reshape([rows, action_dim])?.into_any().unbind())
    }

    /// Runs whole episodes of the run's env (seeded `seed`, `seed + 1`, …) and reports the
    /// return, length and success rate, as `shoal eval --json` does.
    #[pyo3(signature = (episodes = 10, deterministic = true, seed = 1_000_000))]
    fn evaluate(&mut self, py: Python<'_>, episodes: usize, deterministic: bool, seed: u64) -> PyResult<Py<PyAny>> {
        if episodes == 0 {
            return Err(PyValueError::new_err("episodes must be at least 1"));
        }
        let (agent, common) = (&mut self.agent, &self.config.common);
        let report = py
            .detach(|| evaluate(agent.as_mut(), common, episodes, deterministic, seed))
            .map_err(|e| any_error(e.into()))?;
        json::serialize(py, &report)
    }

    fn __repr__(&self) -> String {
        format!("shoal._shoal.Policy({} on {}, from {})", self.algo(), self.env_id(), self.checkpoint.display())
    }
}

impl Policy {
    fn load(checkpoint: PathBuf, config: &std::path::Path) -> anyhow::Result<Self> {
        let config = TrainConfig::load(config, &[])?;
        let mut agent = build_agent(&config)?;
        load_checkpoint(agent.as_mut(), &checkpoint).with_context(|| format!("loading {}", checkpoint.display()))?;
        let options = config.common.env.options()?;
        let options: Vec<(&str, shoal_env::OptionValue)> =
            options.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let env = shoal_env::make_with(&config.common.env.id, &options)?;
        Ok(Policy {
            observation_space: env.observation_space().clone(),
            action_space: env.action_space().clone(),
            agent,
            config,
            checkpoint,
            actions: Vec::new(),
        })
    }
}
