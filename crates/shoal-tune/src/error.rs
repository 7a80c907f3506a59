//! The tuner's errors: a study file that cannot work (named key, named fix), a study store
//! that cannot be read or written, and a trial's own failure.

/// What went wrong in a study.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// The study file asks for something that cannot work; the message names the key.
    #[error("{0}")]
    Spec(String),
    /// The study's database.
    #[error("study store {path}: {message}")]
    Store { path: String, message: String },
    /// Reading or writing a study's files.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

pub type Result<T> = std::result::Result<T, TuneError>;

pub(crate) fn spec_err(message: impl Into<String>) -> TuneError {
    TuneError::Spec(message.into())
}

pub(crate) fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> TuneError + '_ {
    move |e| TuneError::Io { path: path.display().to_string(), message: e.to_string() }
}
