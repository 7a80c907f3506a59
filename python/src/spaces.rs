//! Spaces described as plain dicts, which `shoal/spaces.py` turns into Gymnasium spaces (so the
//! extension needs no Gymnasium at build time).

use pyo3::prelude::*;
use pyo3::types::PyDict;
use shoal_env::Space;

/// `{"type": "discrete", "n", "start"}`, `{"type": "box", "low", "high", "shape"}` or
/// `{"type": "multi_discrete", "nvec"}`.
pub fn describe<'py>(py: Python<'py>, space: &Space) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match space {
        Space::Discrete { n, start } => {
            d.set_item("type", "discrete")?;
            d.set_item("n", n)?;
            d.set_item("start", start)?;
        }
        Space::Box { low, high, shape } => {
            d.set_item("type", "box")?;
            d.set_item("low", low)?;
            d.set_item("high", high)?;
            d.set_item("shape", shape)?;
        }
        Space::MultiDiscrete { nvec } => {
            d.set_item("type", "multi_discrete")?;
            d.set_item("nvec", nvec)?;
        }
    }
    Ok(d)
}
