//! A Python vector env behind Shoal's [`VecEnv`] trait: one call into Python per batch step.

use pyo3::buffer::{Element, PyBuffer};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use super::{action_layout, helper, kwargs_dict, python_error, space_from_py, with_python};
use crate::env::Snapshot;
use crate::error::{EnvError, Result};
use crate::options::OptionValue;
use crate::space::Space;
use crate::vector::{check_action_count, pack_snapshot, unpack_snapshot, Actions, AutoresetMode, Batch, VecEnv};

/// `num_envs` Python envs as one same-step vector env (see the module docs for which Python
/// vector env runs them).
pub struct GymVecEnv {
    id: String,
    vec: Py<PyAny>,
    batch: Batch,
    observation_space: Space,
    action_space: Space,
    /// NumPy dtype name of an action, and the shape of the whole action batch.
    action_dtype: String,
    actions_shape: Vec<usize>,
    /// Reused per step for the flags, which come back as bytes.
    flags: Vec<u8>,
    /// Reused per step for the rewards, which come back as float64.
    rewards: Vec<f64>,
}

impl GymVecEnv {
    /// Builds `num_envs` envs of a `gymnasium:` or `python:` id with keyword arguments and an
    /// optional time limit, stepped on `threads` threads (ale-py) or processes (others).
    pub fn new(
        id: &str,
        kwargs: &[(String, OptionValue)],
        max_episode_steps: Option<u64>,
        num_envs: usize,
        threads: usize,
    ) -> Result<Self> {
        with_python(|py| {
            let vec = helper(py)?
                .call_method1("make_vector", (id, num_envs, threads, kwargs_dict(py, kwargs)?, max_episode_steps))?;
            let action = vec.getattr("single_action_space")?;
            let (action_dtype, single_shape) = action_layout(&action)?;
            let observation_space = space_from_py(&vec.getattr("single_observation_space")?, "observation")?;
            Ok(GymVecEnv {
                id: id.to_string(),
                batch: Batch::new(num_envs, observation_space.flat_dim()),
                observation_space,
                action_space: space_from_py(&action, "action")?,
                action_dtype,
                actions_shape: std::iter::once(num_envs).chain(single_shape).collect(),
                flags: vec![0; num_envs],
                rewards: vec![0.0; num_envs],
                vec: vec.unbind(),
            })
        })
        .map_err(|e| python_error(id, e))
    }

    /// One batch step in Python; its arrays copied into the batch buffers.
    fn step_python(&mut self, py: Python<'_>, raw: Bound<'_, PyBytes>, raw_dtype: &str) -> PyResult<()> {
        let result = helper(py)?.call_method1(
            "step",
            (self.vec.bind(py), raw, raw_dtype, &self.action_dtype, self.actions_shape.clone()),
        )?;
        let result = result.cast::<PyTuple>()?;
        copy(py, &result.get_item(0)?, &mut self.batch.obs)?;
        copy(py, &result.get_item(1)?, &mut self.rewards)?;
        copy(py, &result.get_item(2)?, &mut self.flags)?;
        self.batch.terminated.iter_mut().zip(&self.flags).for_each(|(t, &f)| *t = f != 0);
        copy(py, &result.get_item(3)?, &mut self.flags)?;
        self.batch.truncated.iter_mut().zip(&self.flags).for_each(|(t, &f)| *t = f != 0);
        let final_obs = result.get_item(4)?;
        if !final_obs.is_none() {
            copy(py, &final_obs, &mut self.batch.final_obs)?;
        }
        Ok(())
    }

    /// Rewards into the batch, episode counters, and NaN checks (as Shoal's own vector envs do).
    fn account(&mut self) -> Result<()> {
        let b = &mut self.batch;
        for i in 0..b.num_envs {
            let reward = self.rewards[i];
            let bad = |what, value: f64| EnvError::NonFinite { env: self.id.clone(), what, value, index: i };
            if !reward.is_finite() {
                return Err(bad("reward", reward));
            }
            if let Some(&x) = b.obs_row(i).iter().find(|x| !x.is_finite()) {
                return Err(bad("observation", x as f64));
            }
            b.rewards[i] = reward as f32;
            b.episode_return[i] += reward;
            b.episode_length[i] += 1;
            if b.done(i) {
                b.finished_return[i] = b.episode_return[i];
                b.finished_length[i] = b.episode_length[i];
                b.episode_return[i] = 0.0;
                b.episode_length[i] = 0;
            }
        }
        Ok(())
    }
}

/// Copies a contiguous NumPy array into `out`, checking the lengths agree.
fn copy<T: Element + Copy>(py: Python<'_>, array: &Bound<'_, PyAny>, out: &mut [T]) -> PyResult<()> {
    let buffer = PyBuffer::<T>::get(array)?;
    if buffer.item_count() != out.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "the vector env returned {} values where Shoal's batch holds {}",
            buffer.item_count(),
            out.len()
        )));
    }
    buffer.copy_to_slice(py, out)
}

impl VecEnv for GymVecEnv {
    fn num_envs(&self) -> usize {
        self.batch.num_envs
    }

    fn single_observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn single_action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<()> {
        let (vec, obs) = (&self.vec, &mut self.batch.obs);
        with_python(|py| copy(py, &helper(py)?.call_method1("reset", (vec.bind(py), seed))?, obs))
            .map_err(|e| python_error(&self.id, e))?;
        let b = &mut self.batch;
        b.rewards.fill(0.0);
        b.terminated.fill(false);
        b.truncated.fill(false);
        b.episode_return.fill(0.0);
        b.episode_length.fill(0);
        Ok(())
    }

    fn step(&mut self, actions: Actions<'_>) -> Result<()> {
        let per_env = check_action_count(&actions, self.batch.num_envs, &self.action_space)?;
        for i in 0..self.batch.num_envs {
            self.action_space.check(actions.get(i, per_env))?;
        }
        with_python(|py| {
            let (raw, raw_dtype) = match actions {
                Actions::Discrete(values) | Actions::MultiDiscrete(values) => {
                    (PyBytes::new(py, bytemuck::cast_slice(values)), "int64")
                }
                Actions::Continuous(values) => (PyBytes::new(py, bytemuck::cast_slice(values)), "float32"),
            };
            self.step_python(py, raw, raw_dtype)
        })
        .map_err(|e| python_error(&self.id, e))?;
        self.account()
    }

    fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Each env pickled when the bridge's own loop holds them, or
    /// `null`s when it keeps them out of reach (ale-py's C++ vector, subprocesses).
    fn snapshot(&mut self) -> Result<Snapshot> {
        let pickled: Option<Vec<String>> = with_python(|py| {
            helper(py)?.call_method1("snapshot", (self.vec.bind(py),))?.extract()
        })
        .map_err(|e| EnvError::Python {
            env: self.id.clone(),
            message: format!("cannot be checkpointed: pickling its envs failed ({e}); make the env picklable"),
        })?;
        let envs = match pickled {
            Some(texts) => texts.into_iter().map(Snapshot::String).collect(),
            None => vec![Snapshot::Null; self.batch.num_envs],
        };
        pack_snapshot(envs, &self.batch)
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let (envs, batch) = unpack_snapshot(snapshot, self.batch.num_envs)?;
        let pickled: Option<Vec<&str>> = envs.iter().map(Snapshot::as_str).collect();
        match pickled {
            Some(texts) => {
                with_python(|py| helper(py)?.call_method1("restore", (self.vec.bind(py), texts)).map(drop))
                    .map_err(|e| python_error(&self.id, e))?;
                self.batch = batch;
            }
            None => {
                eprintln!(
                    "warning: {}: its vector env cannot save its envs' state (ale-py's C++ vector env or \
                     subprocesses), so they start new episodes on resume; model, optimizer and replay resume exactly",
                    self.id
                );
                self.batch = batch;
                self.reset(None)?;
            }
        }
        Ok(())
    }

    fn set_autoreset_mode(&mut self, mode: AutoresetMode) -> Result<()> {
        match mode {
            AutoresetMode::SameStep => Ok(()),
            AutoresetMode::NextStep => {
                Err(EnvError::Unsupported { env: self.id.clone(), operation: "next-step autoreset" })
            }
        }
    }
}
