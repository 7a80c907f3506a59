//! One Python env behind Shoal's [`Env`] trait, stepped call by call (for `eval`, `make`).

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use super::{action_layout, helper, kwargs_dict, python_error, space_from_py, with_python};
use crate::env::{Env, Snapshot};
use crate::error::{EnvError, Result};
use crate::options::OptionValue;
use crate::space::{Action, Space};
use crate::StepResult;

/// A Python env: `reset` and `step` call into it, its observation is copied into the
/// caller's buffer as f32.
pub struct GymEnv {
    /// The id as given (`gymnasium:CartPole-v1`), for messages.
    id: String,
    env: Py<PyAny>,
    observation_space: Space,
    action_space: Space,
    /// NumPy dtype name and shape of one action.
    action_dtype: String,
    action_shape: Vec<usize>,
}

impl GymEnv {
    /// Builds the env for a `gymnasium:` or `python:` id with keyword arguments and an
    /// optional time limit.
    pub fn new(id: &str, kwargs: &[(String, OptionValue)], max_episode_steps: Option<u64>) -> Result<Self> {
        with_python(|py| {
            let env = helper(py)?.call_method1("make_env", (id, kwargs_dict(py, kwargs)?, max_episode_steps))?;
            let action = env.getattr("action_space")?;
            let (action_dtype, action_shape) = action_layout(&action)?;
            Ok(GymEnv {
                id: id.to_string(),
                observation_space: space_from_py(&env.getattr("observation_space")?, "observation")?,
                action_space: space_from_py(&action, "action")?,
                action_dtype,
                action_shape,
                env: env.unbind(),
            })
        })
        .map_err(|e| python_error(id, e))
    }

    /// Copies an observation into `obs` as f32.
    fn write_obs(&self, py: Python<'_>, value: &Bound<'_, PyAny>, obs: &mut [f32]) -> PyResult<()> {
        let flat = helper(py)?.call_method1("flat", (value, 1))?;
        let buffer = PyBuffer::<f32>::get(&flat)?;
        if buffer.item_count() != obs.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "observation has {} values, its observation space {} has {}",
                buffer.item_count(),
                self.observation_space,
                obs.len()
            )));
        }
        buffer.copy_to_slice(py, obs)
    }

    /// The Python value of a Shoal action: an int, or an array of the space's dtype and shape.
    fn action_to_py<'py>(&self, py: Python<'py>, action: Action<'_>) -> PyResult<Bound<'py, PyAny>> {
        let (raw, raw_dtype) = match action {
            Action::Discrete(a) => return Ok(a.into_pyobject(py)?.into_any()),
            Action::Continuous(values) => (PyBytes::new(py, bytemuck::cast_slice(values)), "float32"),
            Action::MultiDiscrete(values) => (PyBytes::new(py, bytemuck::cast_slice(values)), "int64"),
        };
        helper(py)?.call_method1("actions_from", (raw, raw_dtype, &self.action_dtype, self.action_shape.clone()))
    }
}

impl Env for GymEnv {
    fn name(&self) -> &str {
        &self.id
    }

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        with_python(|py| {
            let kw = PyDict::new(py);
            kw.set_item("seed", seed)?;
            let result = self.env.bind(py).call_method("reset", (), Some(&kw))?;
            self.write_obs(py, &result.get_item(0)?, obs)
        })
        .map_err(|e| python_error(&self.id, e))
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        self.action_space.check(action)?;
        with_python(|py| {
            let result = self.env.bind(py).call_method1("step", (self.action_to_py(py, action)?,))?;
            let result = result.cast::<PyTuple>()?;
            self.write_obs(py, &result.get_item(0)?, obs)?;
            Ok(StepResult {
                reward: result.get_item(1)?.extract()?,
                terminated: result.get_item(2)?.is_truthy()?,
                truncated: result.get_item(3)?.is_truthy()?,
            })
        })
        .map_err(|e| python_error(&self.id, e))
    }

    /// The env pickled (base64), so a checkpointed run resumes with the env where it was.
    fn snapshot(&self) -> Result<Snapshot> {
        with_python(|py| Ok(Snapshot::String(helper(py)?.call_method1("pickle_env", (self.env.bind(py),))?.extract()?)))
            .map_err(|e| EnvError::Python {
                env: self.id.clone(),
                message: format!("cannot be checkpointed: pickling it failed ({e}); make the env picklable"),
            })
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let text = snapshot
            .as_str()
            .ok_or_else(|| EnvError::SpaceMismatch(format!("{} snapshot is not a pickled env", self.id)))?;
        with_python(|py| {
            self.env = helper(py)?.call_method1("unpickle_env", (text,))?.unbind();
            Ok(())
        })
        .map_err(|e| python_error(&self.id, e))
    }
}

impl Drop for GymEnv {
    fn drop(&mut self) {
        Python::attach(|py| {
            let _ = self.env.bind(py).call_method0("close");
        });
    }
}
