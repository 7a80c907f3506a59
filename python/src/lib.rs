//! `shoal._shoal`: the compiled half of the `shoal` Python package.
//!
//! Thin bindings over the Rust crates; the Gymnasium-shaped classes users touch
//! (`shoal.make_vec`, `shoal.make`, `shoal.sb3.VecEnv`) are written in Python on top of these,
//! in `shoal/`, so the Gymnasium API lives in the language it is specified in.
//!
//! - [`vec_env::VecEnv`]: Shoal's threaded vector env; its batch buffers are handed to NumPy as
//!   views (no copy), and stepping releases the GIL.
//! - [`env::Env`]: one env, for `gymnasium.Env`.
//! - [`policy::Policy`]: a trained run loaded for `predict` and `evaluate`.
//! - [`train::train`]: `shoal train` in this process, with a Python progress callback.

mod env;
mod errors;
mod json;
mod options;
mod policy;
mod spaces;
mod train;
mod vec_env;

use pyo3::prelude::*;

#[pymodule]
fn _shoal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<vec_env::VecEnv>()?;
    m.add_class::<env::Env>()?;
    m.add_class::<policy::Policy>()?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add_function(wrap_pyfunction!(env::env_ids, m)?)?;
    m.add_function(wrap_pyfunction!(env::env_spec, m)?)?;
    Ok(())
}
