//! The Gymnasium bridge (feature `python`): any Python Gymnasium env as a Shoal [`Env`].
//!
//! Ids with a prefix reach it through [`crate::spec`]:
//! - `gymnasium:ALE/Breakout-v5`, `gymnasium:MinAtar/Breakout-v1`, `gymnasium:HalfCheetah-v5`:
//!   `gymnasium.make(id, **options)`, after importing the module that registers the id's
//!   namespace (`ale_py` for `ALE/`, `minatar` for `MinAtar/`);
//! - `python:my_pkg.my_module:MyEnv`: the class (or factory) called with the options as
//!   keyword arguments.
//!
//! The interpreter is CPython embedded in this process (one per process: each worker process
//! owns its own). When `VIRTUAL_ENV` is set, that venv's packages are importable, as they would
//! be for `python` run from it. Spaces translate as Discrete, Box (any dtype, as f32) and
//! MultiDiscrete; others are an error naming the space and a Gymnasium wrapper that flattens
//! it. Observations are copied once, from the env's array into the caller's row. Checkpoints
//! hold the env pickled (`pickle.dumps`), so a run over a picklable env resumes exactly.
//!
//! Time limits are Gymnasium's own (`gymnasium.make` adds its `TimeLimit`); the spec registers
//! none on Shoal's side.

use std::sync::Once;

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::env::{Env, Snapshot};
use crate::error::{EnvError, Result};
use crate::options::{EnvOptions, OptionValue};
use crate::space::{Action, Space};

/// How the packages of Gymnasium namespaces register their ids: a module whose import does it,
/// and for some a function to call once (MinAtar's).
const NAMESPACE_MODULES: &[(&str, &str, Option<&str>)] =
    &[("ALE/", "ale_py", None), ("MinAtar/", "minatar.gym", Some("register_envs"))];

/// A Python env behind Shoal's [`Env`] trait.
pub struct GymEnv {
    /// The id as given (`gymnasium:CartPole-v1`), for messages.
    id: String,
    env: Py<PyAny>,
    observation_space: Space,
    action_space: Space,
    /// The action space's shape and NumPy dtype, to build the array the env expects.
    action_shape: Py<PyAny>,
    action_dtype: Py<PyAny>,
    numpy: Py<PyModule>,
}

impl GymEnv {
    /// Builds the env for a prefixed id (`gymnasium:…` or `python:module:Name`), consuming the
    /// options it passes on as keyword arguments.
    pub fn new(id: &str, options: &mut EnvOptions) -> Result<Self> {
        ensure_interpreter();
        let kwargs = options.take_all();
        Python::attach(|py| Self::build(py, id, &kwargs)).map_err(|e| python_error(id, e))
    }

    fn build(py: Python<'_>, id: &str, kwargs: &[(String, OptionValue)]) -> PyResult<Self> {
        let kw = PyDict::new(py);
        for (key, value) in kwargs {
            kw.set_item(key, option_to_py(py, value)?)?;
        }
        let env = if let Some(gym_id) = id.strip_prefix("gymnasium:") {
            let gymnasium = py.import("gymnasium")?;
            for (namespace, module, register) in NAMESPACE_MODULES {
                if gym_id.starts_with(namespace) {
                    let module = py.import(*module)?;
                    let registered = gymnasium.getattr("registry")?.contains(gym_id)?;
                    if let (Some(register), false) = (register, registered) {
                        module.call_method0(*register)?;
                    }
                }
            }
            gymnasium.getattr("make")?.call((gym_id,), Some(&kw))?
        } else if let Some(target) = id.strip_prefix("python:") {
            let (module, name) = target
                .rsplit_once(':')
                .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("write python:package.module:ClassName"))?;
            py.import(module)?.getattr(name)?.call((), Some(&kw))?
        } else {
            return Err(pyo3::exceptions::PyValueError::new_err("ids of Python envs start with gymnasium: or python:"));
        };
        let observation_space = space_from_py(&env.getattr("observation_space")?, "observation")?;
        let action = env.getattr("action_space")?;
        let action_space = space_from_py(&action, "action")?;
        Ok(GymEnv {
            id: id.to_string(),
            action_shape: action.getattr("shape")?.unbind(),
            action_dtype: action.getattr("dtype")?.unbind(),
            observation_space,
            action_space,
            numpy: py.import("numpy")?.unbind(),
            env: env.unbind(),
        })
    }

    /// Copies an observation (any array-like of the space's size) into `obs` as f32.
    fn write_obs(&self, py: Python<'_>, value: &Bound<'_, PyAny>, obs: &mut [f32]) -> PyResult<()> {
        let flat = self
            .numpy
            .bind(py)
            .call_method1("ascontiguousarray", (value, "float32"))?
            .call_method1("reshape", (-1,))?;
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

    /// The Python value of a Shoal action: an int, or an array of the space's shape and dtype.
    fn action_to_py<'py>(&self, py: Python<'py>, action: Action<'_>) -> PyResult<Bound<'py, PyAny>> {
        let np = self.numpy.bind(py);
        let array = match action {
            Action::Discrete(a) => return Ok(a.into_pyobject(py)?.into_any()),
            Action::Continuous(values) => {
                np.call_method1("array", (PyList::new(py, values)?, self.action_dtype.bind(py)))?
            }
            Action::MultiDiscrete(values) => {
                np.call_method1("array", (PyList::new(py, values)?, self.action_dtype.bind(py)))?
            }
        };
        array.call_method1("reshape", (self.action_shape.bind(py),))
    }

    fn fail(&self, err: PyErr) -> EnvError {
        python_error(&self.id, err)
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
        Python::attach(|py| {
            let kw = PyDict::new(py);
            kw.set_item("seed", seed)?;
            let result = self.env.bind(py).call_method("reset", (), Some(&kw))?;
            self.write_obs(py, &result.get_item(0)?, obs)
        })
        .map_err(|e| self.fail(e))
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<crate::StepResult> {
        self.action_space.check(action)?;
        Python::attach(|py| {
            let result = self.env.bind(py).call_method1("step", (self.action_to_py(py, action)?,))?;
            let result = result.cast::<PyTuple>()?;
            self.write_obs(py, &result.get_item(0)?, obs)?;
            Ok(crate::StepResult {
                reward: result.get_item(1)?.extract()?,
                terminated: result.get_item(2)?.is_truthy()?,
                truncated: result.get_item(3)?.is_truthy()?,
            })
        })
        .map_err(|e| self.fail(e))
    }

    /// The env pickled (base64), so a checkpointed run resumes with the env where it was.
    fn snapshot(&self) -> Result<Snapshot> {
        Python::attach(|py| {
            let pickled = py.import("pickle")?.call_method1("dumps", (self.env.bind(py),))?;
            let text: String = py.import("base64")?.call_method1("b64encode", (pickled,))?.call_method0("decode")?.extract()?;
            Ok(Snapshot::String(text))
        })
        .map_err(|e: PyErr| {
            EnvError::Python { env: self.id.clone(), message: format!("cannot be checkpointed: pickling it failed ({e}); make the env picklable or train without checkpoints (run.checkpoint_every = 0)") }
        })
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let text = snapshot
            .as_str()
            .ok_or_else(|| EnvError::SpaceMismatch(format!("{} snapshot is not a pickled env", self.id)))?;
        Python::attach(|py| {
            let bytes = py.import("base64")?.call_method1("b64decode", (text,))?;
            self.env = py.import("pickle")?.call_method1("loads", (bytes,))?.unbind();
            Ok(())
        })
        .map_err(|e| self.fail(e))
    }
}

impl Drop for GymEnv {
    fn drop(&mut self) {
        Python::attach(|py| {
            let _ = self.env.bind(py).call_method0("close");
        });
    }
}

/// Starts the embedded interpreter once, with the active venv's packages importable.
fn ensure_interpreter() {
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
}

/// A Gymnasium space as a Shoal space.
fn space_from_py(space: &Bound<'_, PyAny>, what: &str) -> PyResult<Space> {
    let kind = space.get_type().name()?.to_string();
    match kind.as_str() {
        "Discrete" => {
            Ok(Space::Discrete { n: space.getattr("n")?.extract()?, start: space.getattr("start")?.extract()? })
        }
        "Box" => {
            let shape: Vec<usize> = space.getattr("shape")?.extract()?;
            let bound = |name: &str| -> PyResult<Vec<f32>> {
                space
                    .getattr(name)?
                    .call_method1("astype", ("float32",))?
                    .call_method0("ravel")?
                    .call_method0("tolist")?
                    .extract()
            };
            Ok(Space::Box { low: bound("low")?, high: bound("high")?, shape })
        }
        "MultiDiscrete" => {
            let nvec: Vec<i64> = space.getattr("nvec")?.call_method0("ravel")?.call_method0("tolist")?.extract()?;
            Ok(Space::MultiDiscrete { nvec })
        }
        other => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "its {what} space is a {other}; Shoal takes Discrete, Box and MultiDiscrete spaces (wrap the env with \
             gymnasium.wrappers.FlattenObservation, or write a python: env that flattens it)"
        ))),
    }
}

fn option_to_py<'py>(py: Python<'py>, value: &OptionValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        OptionValue::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        OptionValue::Int(i) => i.into_pyobject(py)?.into_any(),
        OptionValue::Float(f) => f.into_pyobject(py)?.into_any(),
        OptionValue::Str(s) => s.into_pyobject(py)?.into_any(),
        OptionValue::List(items) => PyList::new(py, items)?.into_any(),
    })
}

/// The Python exception as an env error, with its type and message (and the import to fix when
/// a module is missing).
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
