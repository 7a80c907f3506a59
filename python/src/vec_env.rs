//! `shoal._shoal.VecEnv`: Shoal's vector env with its batch buffers shared with NumPy.

use numpy::ndarray::{ArrayView, IxDyn};
use numpy::{Element, PyArray, PyArrayDyn, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use shoal_env::{Actions, AutoresetMode, Batch, Space};

use crate::errors::env_error;
use crate::{options, spaces};

/// A vector of `num_envs` copies of one env, stepped on `num_threads` threads.
///
/// The observation, reward and flag buffers are NumPy views of the Rust batch (see the `obs`,
/// … getters): each `step` writes them in place, so the Python side copies only if asked.
///
/// `unsendable`: used from the thread that made it (as Python vector envs are), which lets
/// `step` release the GIL without a lock another thread could be waiting on.
#[pyclass(module = "shoal._shoal", unsendable)]
pub struct VecEnv {
    inner: Box<dyn shoal_env::VecEnv>,
    id: String,
    num_envs: usize,
    observation_space: Space,
    action_space: Space,
    /// Reused per step: actions copied out of the caller's array, so the GIL can be released
    /// while Rust steps without another Python thread changing them underneath.
    discrete_actions: Vec<i64>,
    continuous_actions: Vec<f32>,
}

impl VecEnv {
    /// A NumPy view of one batch buffer, shaped `shape`, kept alive by `slf`.
    fn view<'py, T: Element>(
        slf: &Bound<'py, Self>,
        pick: impl Fn(&Batch) -> &[T],
        shape: Vec<usize>,
    ) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
        let (ptr, len) = {
            let this = slf.borrow();
            let data = pick(this.inner.batch());
            (data.as_ptr(), data.len())
        };
        // SAFETY: a batch's buffers are allocated when the vector env is built and never
        // resized, moved or freed while it lives (this class offers no `restore`, the only
        // operation that replaces them); the array holds `slf`, which owns the vector env.
        let data = unsafe { std::slice::from_raw_parts(ptr, len) };
        let array = ArrayView::from_shape(IxDyn(&shape), data).map_err(|e| PyValueError::new_err(e.to_string()))?;
        // SAFETY: as above, `slf` keeps the memory alive and in place.
        Ok(unsafe { PyArray::borrow_from_array(&array, slf.clone().into_any()) })
    }
}

fn autoreset_mode(name: &str) -> PyResult<AutoresetMode> {
    match name {
        "next_step" | "NextStep" | "NEXT_STEP" => Ok(AutoresetMode::NextStep),
        "same_step" | "SameStep" | "SAME_STEP" => Ok(AutoresetMode::SameStep),
        other => Err(PyValueError::new_err(format!(
            "autoreset_mode `{other}` is not one of: next_step, same_step (Gymnasium's AutoresetMode; \
             disabled is not supported)"
        ))),
    }
}

#[pymethods]
impl VecEnv {
    #[new]
    #[pyo3(signature = (env_id, num_envs, num_threads = 1, autoreset_mode = "next_step", options = None))]
    fn new(
        py: Python<'_>,
        env_id: &str,
        num_envs: usize,
        num_threads: usize,
        autoreset_mode: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if num_envs == 0 {
            return Err(PyValueError::new_err("num_envs must be at least 1"));
        }
        if num_threads == 0 {
            return Err(PyValueError::new_err("num_threads must be at least 1"));
        }
        let mode = self::autoreset_mode(autoreset_mode)?;
        let options = options::from_dict(options)?;
        let spec = shoal_env::spec(env_id).map_err(env_error)?;
        let mut inner = py
            .detach(|| spec.make_vec(&options::borrowed(&options), num_envs, num_threads.min(num_envs)))
            .map_err(env_error)?;
        inner.set_autoreset_mode(mode).map_err(env_error)?;
        let per_env = inner.single_action_space().flat_dim();
        Ok(VecEnv {
            id: spec.id.clone(),
            num_envs,
            observation_space: inner.single_observation_space().clone(),
            action_space: inner.single_action_space().clone(),
            inner,
            discrete_actions: vec![0; num_envs * per_env],
            continuous_actions: vec![0.0; num_envs * per_env],
        })
    }

    #[getter]
    fn env_id(&self) -> &str {
        &self.id
    }

    #[getter]
    fn num_envs(&self) -> usize {
        self.num_envs
    }

    /// The observation space of one env, as a dict (`shoal.spaces` makes it a Gymnasium space).
    #[getter]
    fn observation_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        spaces::describe(py, &self.observation_space)
    }

    /// The action space of one env, as a dict.
    #[getter]
    fn action_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        spaces::describe(py, &self.action_space)
    }

    /// Resets every env; env `i` gets `seed + i` when a seed is given.
    #[pyo3(signature = (seed = None))]
    fn reset(&mut self, py: Python<'_>, seed: Option<u64>) -> PyResult<()> {
        let env = &mut self.inner;
        py.detach(|| env.reset(seed)).map_err(env_error)
    }

    /// Steps every env with a flat array of actions: `int64` for Discrete and MultiDiscrete
    /// spaces, `float32` for Box spaces. The GIL is released while the envs step.
    fn step(&mut self, py: Python<'_>, actions: &Bound<'_, PyAny>) -> PyResult<()> {
        let env = &mut self.inner;
        match self.action_space {
            Space::Box { .. } => {
                copy_actions::<f32>(actions, &mut self.continuous_actions, "float32")?;
                let actions = Actions::Continuous(&self.continuous_actions);
                py.detach(|| env.step(actions)).map_err(env_error)
            }
            Space::Discrete { .. } | Space::MultiDiscrete { .. } => {
                copy_actions::<i64>(actions, &mut self.discrete_actions, "int64")?;
                let actions = match self.action_space {
                    Space::Discrete { .. } => Actions::Discrete(&self.discrete_actions),
                    _ => Actions::MultiDiscrete(&self.discrete_actions),
                };
                py.detach(|| env.step(actions)).map_err(env_error)
            }
        }
    }

    /// Every env's state as JSON (what a Shoal checkpoint stores).
    fn snapshot(&mut self) -> PyResult<String> {
        let snapshot = self.inner.snapshot().map_err(env_error)?;
        Ok(snapshot.to_string())
    }

    /// `[num_envs, obs_dim]` float32: the observations the last reset/step wrote.
    #[getter]
    fn obs<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (n, d) = (slf.borrow().num_envs, slf.borrow().observation_space.flat_dim());
        Self::view(slf, |b| &b.obs, vec![n, d])
    }

    /// `[num_envs, obs_dim]` float32: the last observation of episodes that ended on the last
    /// step (rows of other envs are stale).
    #[getter]
    fn final_obs<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (n, d) = (slf.borrow().num_envs, slf.borrow().observation_space.flat_dim());
        Self::view(slf, |b| &b.final_obs, vec![n, d])
    }

    #[getter]
    fn rewards<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let n = slf.borrow().num_envs;
        Self::view(slf, |b| &b.rewards, vec![n])
    }

    #[getter]
    fn terminated<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
        let n = slf.borrow().num_envs;
        Self::view(slf, |b| &b.terminated, vec![n])
    }

    #[getter]
    fn truncated<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
        let n = slf.borrow().num_envs;
        Self::view(slf, |b| &b.truncated, vec![n])
    }

    /// Return of the episode that ended on the last step (valid where done).
    #[getter]
    fn finished_return<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        let n = slf.borrow().num_envs;
        Self::view(slf, |b| &b.finished_return, vec![n])
    }

    /// Length of the episode that ended on the last step (valid where done).
    #[getter]
    fn finished_length<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<u64>>> {
        let n = slf.borrow().num_envs;
        Self::view(slf, |b| &b.finished_length, vec![n])
    }

    fn __repr__(&self) -> String {
        format!(
            "shoal._shoal.VecEnv({:?}, num_envs={}, observation_space={}, action_space={})",
            self.id, self.num_envs, self.observation_space, self.action_space
        )
    }
}

/// Copies a 1-D array of `T` into `buffer` (whose length is the expected count).
fn copy_actions<T: Element + Copy>(actions: &Bound<'_, PyAny>, buffer: &mut [T], dtype: &str) -> PyResult<()> {
    let array: PyReadonlyArray1<'_, T> = actions.extract().map_err(|_| {
        PyTypeError::new_err(format!("actions must be a 1-D numpy array of {dtype}, got {}", describe(actions)))
    })?;
    let values = array.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?;
    if values.len() != buffer.len() {
        return Err(PyValueError::new_err(format!(
            "got {} action values, this vector env takes {} (one per env, times the action width)",
            values.len(),
            buffer.len()
        )));
    }
    buffer.copy_from_slice(values);
    Ok(())
}

/// The type (and NumPy dtype, if any) of a value, for error messages.
fn describe(value: &Bound<'_, PyAny>) -> String {
    let type_name = value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    match value.getattr("dtype") {
        Ok(dtype) => format!("{type_name} of {dtype}"),
        Err(_) => type_name,
    }
}
