use thiserror::Error;

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
    #[error(transparent)]
    Nn(#[from] shoal_nn::NnError),
}

pub type Result<T, E = DistError> = std::result::Result<T, E>;
