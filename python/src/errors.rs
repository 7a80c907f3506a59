//! Shoal's errors as Python exceptions, keeping Shoal's message (which names the fix).
//!
//! Bad input — an unknown env id or option, an action outside the space, a config key that does
//! not exist — is a `ValueError`; a file that cannot be read an `OSError`; the rest (an env that
//! produced NaN, a worker thread that died) a `RuntimeError`.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;
use shoal_algo::AlgoError;
use shoal_env::EnvError;

/// True for env errors caused by what the caller passed.
fn is_bad_input(err: &EnvError) -> bool {
    matches!(
        err,
        EnvError::UnknownEnv { .. }
            | EnvError::AlreadyRegistered(_)
            | EnvError::UnknownOption { .. }
            | EnvError::BadOption { .. }
            | EnvError::InvalidAction { .. }
            | EnvError::ActionCount { .. }
            | EnvError::ObsBuffer { .. }
            | EnvError::SpaceMismatch(_)
    )
}

/// The exception for an env error.
pub fn env_error(err: EnvError) -> PyErr {
    if is_bad_input(&err) {
        PyValueError::new_err(err.to_string())
    } else {
        PyRuntimeError::new_err(err.to_string())
    }
}

/// The exception for an error with context (training, loading a run): classified by its root
/// cause, with the whole chain as the message.
pub fn any_error(err: anyhow::Error) -> PyErr {
    let message = format!("{err:#}");
    let algo = err.chain().find_map(|e| e.downcast_ref::<AlgoError>());
    let env = err.chain().find_map(|e| e.downcast_ref::<EnvError>());
    match (algo, env) {
        (Some(AlgoError::Config(_)), _) => PyValueError::new_err(message),
        (Some(AlgoError::Env(e)), _) | (_, Some(e)) if is_bad_input(e) => PyValueError::new_err(message),
        (Some(AlgoError::Io { .. }), _) => PyOSError::new_err(message),
        _ if err.chain().any(|e| e.downcast_ref::<std::io::Error>().is_some()) => PyOSError::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}
