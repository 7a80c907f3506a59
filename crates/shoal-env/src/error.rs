//! The one error type of the environment layer.
//!
//! Every variant names what went wrong *and* what to do about it, because the person reading it
//! is usually debugging a config or a custom env, not the library.

use thiserror::Error;

/// Everything that can go wrong when building or stepping an environment.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EnvError {
    /// `make` was called with an id nobody registered.
    #[error("unknown environment id `{id}`{}; run `shoal envs` to list every registered id", suggestion_text(.suggestions))]
    UnknownEnv { id: String, suggestions: Vec<String> },

    /// `register` was called with an id that is taken.
    #[error("environment id `{0}` is already registered; pick another id or version suffix")]
    AlreadyRegistered(String),

    /// An option key the environment does not accept.
    #[error("environment `{env}` has no option `{key}`; accepted options: {}", list_or_none(.accepted))]
    UnknownOption { env: String, key: String, accepted: Vec<String> },

    /// An option with a value of the wrong kind or out of range.
    #[error("option `{key}` of environment `{env}`: {problem}")]
    BadOption { env: String, key: String, problem: String },

    /// An action that is not an element of the action space.
    #[error("action {action} is outside the action space {space}; {hint}")]
    InvalidAction { action: String, space: String, hint: String },

    /// A vector env got a different number of actions than it has envs (times the action size).
    #[error("got {got} action values for {num_envs} envs, expected {expected} ({per_env} per env)")]
    ActionCount { got: usize, expected: usize, num_envs: usize, per_env: usize },

    /// A caller-provided observation buffer of the wrong length.
    #[error("observation buffer has {got} values, the observation space needs {expected}")]
    ObsBuffer { got: usize, expected: usize },

    /// A Python env (through the Gymnasium bridge, feature `python`) raised, or could not be built.
    #[error("Python env `{env}`: {message}")]
    Python { env: String, message: String },

    /// `step` was called before the first `reset`, or after an episode ended without a reset.
    #[error("`step` called on `{env}` {when}; call `reset` first")]
    NeedsReset { env: String, when: &'static str },

    /// The environment produced a NaN or infinite value: a bug in the env or a diverged simulation.
    #[error("environment `{env}` returned a non-finite {what} ({value}) at env index {index}; check the env's dynamics or the actions fed to it")]
    NonFinite { env: String, what: &'static str, value: f64, index: usize },

    /// A wrapper or vector env was combined with a space it cannot handle.
    #[error("{0}")]
    SpaceMismatch(String),

    /// The env does not support the requested operation (for example restoring a raw state).
    #[error("environment `{env}` does not support {operation}")]
    Unsupported { env: String, operation: &'static str },

    /// A worker thread of a threaded vector env died; the vector env is unusable afterwards.
    #[error("vector env worker thread failed: {0}; rebuild the vector env")]
    WorkerFailed(String),
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", suggestions.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "))
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Result alias used throughout the environment layer.
pub type Result<T, E = EnvError> = std::result::Result<T, E>;
