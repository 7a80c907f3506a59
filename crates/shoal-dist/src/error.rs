use thiserror::Error;

use crate::wire::WireError;

/// What can go wrong between a worker and a parameter store.
#[derive(Debug, Error)]
pub enum DistError {
    /// A vector whose length differs from the store's parameter count.
    #[error(
        "{what} has {got} values, the parameter store holds {expected}; is the worker running another model layout?"
    )]
    Length { what: &'static str, got: usize, expected: usize },
    /// An operation the store's update mode does not take (e.g. a gradient in averaging mode).
    #[error("the parameter store runs in {mode} mode, which does not accept {operation}")]
    WrongMode { mode: &'static str, operation: &'static str },
    /// A worker index outside `0..workers`.
    #[error("worker {worker} is out of range: the store expects workers 0..{workers}")]
    Worker { worker: usize, workers: usize },
    /// The server could not be reached (within the retry window).
    #[error("cannot reach the {server} at {addr}: {detail} (is it running there?)")]
    Unreachable { server: &'static str, addr: String, detail: String },
    /// The server refused the client: wrong token, protocol version, model layout or shard.
    #[error("the {server} at {addr} refused this worker: {detail}")]
    Refused { server: &'static str, addr: String, detail: String },
    /// The server stayed overloaded through the retry window (it answered busy each time).
    #[error("the {server} at {addr} is overloaded: {detail}")]
    Busy { server: &'static str, addr: String, detail: String },
    /// The server answered a call with an error.
    #[error("the {server} at {addr} failed a call: {detail}")]
    Remote { server: &'static str, addr: String, detail: String },
    /// A malformed tensor stream.
    #[error("malformed tensor stream: {0}")]
    Wire(#[from] WireError),
    /// A replay refused a call: malformed transitions, bad priorities, an empty replay.
    #[error("replay: {0}")]
    Replay(String),
    /// A checkpoint file that cannot be written or read.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A bad token, address or certificate given to this process.
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Nn(#[from] shoal_nn::NnError),
}

pub type Result<T, E = DistError> = std::result::Result<T, E>;

/// A vector of `got` values where `expected` belong: [`DistError::Length`] naming `what`.
pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(DistError::Length { what, got, expected });
    }
    Ok(())
}
