//! Errors of the network engine, each naming the mismatch and how to fix it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NnError {
    /// An input buffer whose length does not match `batch × width`.
    #[error("{what} has {got} values, expected {expected} ({detail})")]
    Shape { what: &'static str, got: usize, expected: usize, detail: String },

    /// A parameter vector or checkpoint whose layout differs from the model's.
    #[error("parameter layout mismatch at tensor `{tensor}`: {problem}")]
    Layout { tensor: String, problem: String },

    /// A loss the model cannot compute (e.g. a TD loss on an actor-critic).
    #[error("model `{model}` does not support the {loss} loss")]
    UnsupportedLoss { model: &'static str, loss: &'static str },

    /// A configuration value out of its valid range.
    #[error("invalid network configuration: {0}")]
    Config(String),

    /// Reading or writing a checkpoint file.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },

    /// A checkpoint file that is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {problem}")]
    Format { path: String, problem: String },
}

pub type Result<T, E = NnError> = std::result::Result<T, E>;

/// Checks a flat buffer holds `batch` rows of `width` values.
pub(crate) fn check_len(what: &'static str, got: usize, batch: usize, width: usize) -> Result<()> {
    if got != batch * width {
        return Err(NnError::Shape { what, got, expected: batch * width, detail: format!("{batch} rows × {width}") });
    }
    Ok(())
}
