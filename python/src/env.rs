//! `shoal._shoal.Env`: one Shoal env, for `shoal.make` (a `gymnasium.Env`).

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use shoal_env::{Action, Space};

use crate::errors::env_error;
use crate::{options, spaces};

/// One env of a registered id, with its time limit. Observations come back as new arrays, as
/// Gymnasium's single envs return them.
#[pyclass(module = "shoal._shoal", unsendable)]
pub struct Env {
    inner: Box<dyn shoal_env::Env>,
    id: String,
    obs: Vec<f32>,
}

#[pymethods]
impl Env {
    #[new]
    #[pyo3(signature = (env_id, options = None))]
    fn new(env_id: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let options = options::from_dict(options)?;
        let inner = shoal_env::make_with(env_id, &options::borrowed(&options)).map_err(env_error)?;
        let obs = vec![0.0; inner.observation_space().flat_dim()];
        Ok(Env { inner, id: env_id.to_string(), obs })
    }

    #[getter]
    fn env_id(&self) -> &str {
        &self.id
    }

    #[getter]
    fn observation_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        spaces::describe(py, self.inner.observation_space())
    }

    #[getter]
    fn action_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        spaces::describe(py, self.inner.action_space())
    }

    /// Starts an episode (reseeded when `seed` is given); returns the first observation.
    #[pyo3(signature = (seed = None))]
    fn reset<'py>(&mut self, py: Python<'py>, seed: Option<u64>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        self.inner.reset(seed, &mut self.obs).map_err(env_error)?;
        Ok(PyArray1::from_slice(py, &self.obs))
    }

    /// One step: `(observation, reward, terminated, truncated)`.
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        action: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, f64, bool, bool)> {
        let result = match self.inner.action_space() {
            Space::Discrete { .. } => {
                let a: i64 = action.extract().map_err(|_| wrong_action(action, "an int"))?;
                self.inner.step(Action::Discrete(a), &mut self.obs)
            }
            Space::Box { .. } => {
                let a = values::<f32>(action).map_err(|_| wrong_action(action, "a float32 array"))?;
                self.inner.step(Action::Continuous(&a), &mut self.obs)
            }
            Space::MultiDiscrete { .. } => {
                let a = values::<i64>(action).map_err(|_| wrong_action(action, "an int64 array"))?;
                self.inner.step(Action::MultiDiscrete(&a), &mut self.obs)
            }
        }
        .map_err(env_error)?;
        Ok((PyArray1::from_slice(py, &self.obs), result.reward, result.terminated, result.truncated))
    }

    /// Starts an episode from the env's own state variables (e.g. CartPole's
    /// `[x, x_dot, theta, theta_dot]`); returns the observation.
    fn reset_to_state<'py>(&mut self, py: Python<'py>, state: Vec<f64>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        self.inner.reset_to_state(&state, &mut self.obs).map_err(env_error)?;
        Ok(PyArray1::from_slice(py, &self.obs))
    }

    /// The env's state as JSON (what a Shoal checkpoint stores).
    fn snapshot(&self) -> PyResult<String> {
        Ok(self.inner.snapshot().map_err(env_error)?.to_string())
    }

    fn __repr__(&self) -> String {
        format!("shoal._shoal.Env({:?})", self.id)
    }
}

/// A 1-D array's values, from a NumPy array of exactly `T` or any sequence of numbers.
fn values<T: numpy::Element + Copy + for<'a, 'py> FromPyObject<'a, 'py>>(value: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    if let Ok(array) = value.extract::<PyReadonlyArray1<'_, T>>() {
        return Ok(array.as_array().to_vec());
    }
    value.extract::<Vec<T>>()
}

fn wrong_action(action: &Bound<'_, PyAny>, expected: &str) -> PyErr {
    let got = action.get_type().name().map(|n| n.to_string()).unwrap_or_default();
    PyTypeError::new_err(format!("this env's action is {expected}, got {got}"))
}

/// Every registered env id, built-ins first.
#[pyfunction]
pub fn env_ids() -> Vec<String> {
    shoal_env::specs().into_iter().map(|spec| spec.id).collect()
}

/// What the registry knows of an id: `{"id", "max_episode_steps", "reward_threshold"}`.
#[pyfunction]
pub fn env_spec<'py>(py: Python<'py>, env_id: &str) -> PyResult<Bound<'py, PyDict>> {
    let spec = shoal_env::spec(env_id).map_err(env_error)?;
    let d = PyDict::new(py);
    d.set_item("id", &spec.id)?;
    d.set_item("max_episode_steps", spec.max_episode_steps)?;
    d.set_item("reward_threshold", spec.reward_threshold)?;
    Ok(d)
}
