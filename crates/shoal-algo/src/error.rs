//! Errors of the learning layer: bad configs (naming the key), env and network errors, I/O.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum AlgoError {
    /// A config value that is missing, of the wrong type, or out of range.
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Env(#[from] shoal_env::EnvError),
    #[error(transparent)]
    Nn(#[from] shoal_nn::NnError),
    /// A parameter store or cluster problem (unreachable server, refused worker, …).
    #[error(transparent)]
    Dist(#[from] shoal_dist::DistError),
    /// Training produced non-finite numbers; the message names the hyperparameters to change.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Reading or writing a checkpoint or run file.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

pub type Result<T, E = AlgoError> = std::result::Result<T, E>;

/// Shorthand for a config error.
pub(crate) fn config_err(message: impl Into<String>) -> AlgoError {
    AlgoError::Config(message.into())
}

/// Maps an I/O-ish error at `path` into [`AlgoError::Io`].
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AlgoError + '_ {
    move |e| AlgoError::Io { path: path.display().to_string(), message: e.to_string() }
}
