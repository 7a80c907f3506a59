//! Env options from Python keyword arguments (`shoal.make("FrozenLake-v1", is_slippery=False)`).

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use shoal_env::OptionValue;

/// Converts a dict of options; values must be bool, int, float, str or a list of str.
pub fn from_dict(options: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, OptionValue)>> {
    let Some(options) = options else { return Ok(Vec::new()) };
    options
        .iter()
        .map(|(key, value)| {
            let key: String = key.extract().map_err(|_| PyTypeError::new_err("env option names must be strings"))?;
            let value = option_value(&key, &value)?;
            Ok((key, value))
        })
        .collect()
}

fn option_value(key: &str, value: &Bound<'_, PyAny>) -> PyResult<OptionValue> {
    // bool before int: Python's bool is an int.
    if value.is_instance_of::<PyBool>() {
        return Ok(OptionValue::Bool(value.extract()?));
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(OptionValue::Int(value.extract()?));
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(OptionValue::Float(value.extract()?));
    }
    if value.is_instance_of::<PyString>() {
        return Ok(OptionValue::Str(value.extract()?));
    }
    if let Ok(list) = value.extract::<Vec<String>>() {
        return Ok(OptionValue::List(list));
    }
    Err(PyTypeError::new_err(format!(
        "env option `{key}` is a {}; options are bool, int, float, str or a list of str",
        value.get_type().name()?
    )))
}

/// Borrowed `(key, value)` pairs, as shoal-env's builders take them.
pub fn borrowed(options: &[(String, OptionValue)]) -> Vec<(&str, OptionValue)> {
    options.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}
