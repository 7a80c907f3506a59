//! The Gymnasium bridge (feature `python`): any Python Gymnasium env as a Shoal env.
//!
//! Ids with a prefix reach it through [`crate::spec`]:
//! - `gymnasium:ALE/Breakout-v5`, `gymnasium:MinAtar/Breakout-v1`, `gymnasium:HalfCheetah-v5`:
//!   `gymnasium.make(id, **options)`, after importing the package that registers the id's
//!   namespace (`ale_py` for `ALE/`, `minatar` for `MinAtar/`);
//! - `python:my_pkg.my_module:MyEnv`: the class (or factory) called with the options as
//!   keyword arguments.
//!
//! One env ([`GymEnv`], for `eval` and `make`) is stepped call by call. A vector of them
//! ([`GymVecEnv`], what training builds) is one Python vector env stepped in one call per
//! batch: ale-py's own `AtariVectorEnv` for Atari ids (its C++ threads step the games and do
//! the Atari preprocessing), Gymnasium's `AsyncVectorEnv` (subprocesses) with more than one
//! thread, a loop over the envs (Gymnasium's `SyncVectorEnv`, cut down) otherwise. Observations come back as one float32 array that
//! Rust copies into its batch buffer once.
//!
//! The interpreter is CPython embedded in this process (each worker process owns its own).
//! When `VIRTUAL_ENV` is set, that venv's packages are importable, as they would be for
//! `python` run from it. Spaces translate as Discrete, Box (any dtype, as f32) and
//! MultiDiscrete; others are an error naming the space and a wrapper that flattens it.
//! Checkpoints hold the envs pickled with their state (see `bridge.py` for EzPickle envs), so a
//! run resumes exactly; envs out of reach (ale-py's C++ vector, subprocesses) start new
//! episodes on resume, with a warning.
//! Time limits are Gymnasium's own (`max_episode_steps` is passed to `gymnasium.make`).

mod env;
mod vector;

use std::ffi::CString;
use std::sync::{Arc, Once};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};

pub use env::GymEnv;
pub use vector::GymVecEnv;

use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::options::{EnvOptions, OptionValue};
use crate::space::Space;
use crate::spec::{Builder, EnvSpec};
use crate::vector::VecEnv;

/// The spec of a `gymnasium:` or `python:` id: no time limit or threshold on Shoal's side
/// (Gymnasium's registration has them), options passed on as keyword arguments.
pub(crate) fn spec(id: &str) -> EnvSpec {
    EnvSpec::with_builder(id, Arc::new(PythonBuilder { id: id.to_string() }))
}

struct PythonBuilder {
    id: String,
}

/// Every option becomes a keyword argument; the option `max_episode_steps` a time limit
/// applied by Gymnasium (see `bridge.py`).
impl Builder for PythonBuilder {
    fn one(&self, options: &mut EnvOptions, max_episode_steps: Option<u64>) -> Result<Box<dyn Env>> {
        Ok(Box::new(GymEnv::new(&self.id, &options.take_all(), max_episode_steps)?))
    }

    fn vector(
        &self,
        options: &EnvOptions,
        max_episode_steps: Option<u64>,
        num_envs: usize,
        threads: usize,
    ) -> Result<Box<dyn VecEnv>> {
        let kwargs = options.clone().take_all();
        Ok(Box::new(GymVecEnv::new(&self.id, &kwargs, max_episode_steps, num_envs, threads)?))
    }
}

/// `bridge.py`, loaded once into the interpreter (which starts on first use).
fn helper(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            let code = CString::new(include_str!("bridge.py"))
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
            Ok::<_, PyErr>(PyModule::from_code(py, &code, c"shoal_bridge.py", c"shoal_bridge")?.unbind())
        })
        .map(|module| module.bind(py))
}

/// Runs `f` with the interpreter, started once with the active venv's packages importable.
fn with_python<T>(f: impl for<'py> FnOnce(Python<'py>) -> PyResult<T>) -> PyResult<T> {
    static START: Once = Once::new();
    START.call_once(|| {
        Python::initialize();
        if let Ok(venv) = std::env::var("VIRTUAL_ENV") {
            Python::attach(|py| {
                let code = c"import site, sys, os\nsite.addsitedir(os.path.join(venv, 'lib', f'python{sys.version_info[0]}.{sys.version_info[1]}', 'site-packages'))";
                let locals = PyDict::new(py);
                let _ = locals.set_item("venv", &venv);
                let _ = py.run(code, None, Some(&locals));
            });
        }
    });
    Python::attach(f)
}

/// Keyword arguments as a Python dict.
fn kwargs_dict<'py>(py: Python<'py>, kwargs: &[(String, OptionValue)]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in kwargs {
        let value = match value {
            OptionValue::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
            OptionValue::Int(i) => i.into_pyobject(py)?.into_any(),
            OptionValue::Float(f) => f.into_pyobject(py)?.into_any(),
            OptionValue::Str(s) => s.into_pyobject(py)?.into_any(),
            OptionValue::List(items) => PyList::new(py, items)?.into_any(),
        };
        dict.set_item(key, value)?;
    }
    Ok(dict)
}

/// A Gymnasium space as a Shoal space.
fn space_from_py(space: &Bound<'_, PyAny>, what: &str) -> PyResult<Space> {
    let kind = space.get_type().name()?.to_string();
    match kind.as_str() {
        "Discrete" => {
            Ok(Space::Discrete { n: space.getattr("n")?.extract()?, start: space.getattr("start")?.extract()? })
        }
        "Box" => Ok(Space::Box {
            low: flat_list(space, "low", "float32")?.extract()?,
            high: flat_list(space, "high", "float32")?.extract()?,
            shape: space.getattr("shape")?.extract()?,
        }),
        "MultiDiscrete" => Ok(Space::MultiDiscrete { nvec: flat_list(space, "nvec", "int64")?.extract()? }),
        other => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "its {what} space is a {other}; Shoal takes Discrete, Box and MultiDiscrete spaces (wrap the env with \
             gymnasium.wrappers.FlattenObservation, or write a python: env that flattens it)"
        ))),
    }
}

/// An array attribute of a space as a flat list of `dtype` values.
fn flat_list<'py>(space: &Bound<'py, PyAny>, attribute: &str, dtype: &str) -> PyResult<Bound<'py, PyAny>> {
    space.getattr(attribute)?.call_method1("astype", (dtype,))?.call_method0("ravel")?.call_method0("tolist")
}

/// The NumPy dtype name and shape of one action of `space`, as the Python env expects it.
fn action_layout(space: &Bound<'_, PyAny>) -> PyResult<(String, Vec<usize>)> {
    Ok((space.getattr("dtype")?.getattr("name")?.extract()?, space.getattr("shape")?.extract()?))
}

/// The Python exception as an env error, with its type and message (and the fix when a
/// module is missing).
fn python_error(id: &str, err: PyErr) -> EnvError {
    let message = Python::attach(|py| {
        let text = err.to_string();
        if err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py) {
            format!("{text}; install it in the Python environment Shoal uses (activate its venv: VIRTUAL_ENV)")
        } else {
            text
        }
    });
    EnvError::Python { env: id.to_string(), message }
}
