//! The `ParamStore` contract every topology implements.

use std::time::Duration;

use crate::error::{DistError, Result};

/// How a store turns what workers push into new parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpdateMode {
    /// K workers push one gradient each per step; the store averages them, applies the
    /// optimizer once and publishes. A worker that has not pushed `timeout` after the round's
    /// first push is dropped from that round (training never waits forever).
    Sync { workers: usize, timeout: Duration },
    /// Each gradient is applied on arrival (A3C / Downpour SGD). Staleness — store version
    /// minus the version the gradient was computed at — is recorded; with `max_staleness`,
    /// older gradients are rejected.
    Async { max_staleness: Option<u64> },
    /// Workers train locally and push their parameters every K steps; the round's result is
    /// their mean, `θ ← mean θᵢ`.
    Average { workers: usize, timeout: Duration },
    /// Elastic averaging SGD (Zhang et al., 2015): each pushing worker gets
    /// `θᵢ ← θᵢ − α(θᵢ − θ̃)` back, and the round moves the center `θ̃ ← θ̃ + α Σᵢ(θᵢ − θ̃)`.
    Easgd { workers: usize, alpha: f64, timeout: Duration },
}

impl UpdateMode {
    /// The mode's name as configs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            UpdateMode::Sync { .. } => "sync",
            UpdateMode::Async { .. } => "async",
            UpdateMode::Average { .. } => "average",
            UpdateMode::Easgd { .. } => "easgd",
        }
    }
}

/// What became of a pushed gradient or parameter vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Applied; the store is now at `version`. `staleness` is how many versions the push was
    /// behind when it arrived (0 in the round-based modes).
    Applied { version: u64, staleness: u64 },
    /// Rejected as too old: pull the current parameters and compute again.
    Stale { version: u64, staleness: u64 },
}

/// Shared parameters with a version, as workers see them.
pub trait ParamStore: Send + Sync {
    /// Number of parameters.
    fn len(&self) -> usize;

    /// True for an empty parameter vector.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current version (incremented by every update).
    fn version(&self) -> u64;

    /// Copies the parameters into `out` if the store is newer than `have`; returns the
    /// version copied, or `None` when `have` is current.
    fn pull(&self, have: Option<u64>, out: &mut [f32]) -> Result<Option<u64>>;

    /// Pushes worker `worker`'s gradient, computed at `base_version` (sync and async modes).
    /// In sync mode this blocks until the round completes.
    fn push_gradient(&self, worker: usize, base_version: u64, grad: &[f32]) -> Result<PushOutcome>;

    /// Pushes a gradient (as [`ParamStore::push_gradient`]) and then pulls into `out` what the
    /// store holds if newer than `have` (as [`ParamStore::pull`]) — what an A3C or sync worker
    /// does after every rollout. A remote store does both in one round trip.
    fn push_gradient_and_pull(
        &self,
        worker: usize,
        base_version: u64,
        grad: &[f32],
        have: Option<u64>,
        out: &mut [f32],
    ) -> Result<(PushOutcome, Option<u64>)> {
        let outcome = self.push_gradient(worker, base_version, grad)?;
        Ok((outcome, self.pull(have, out)?))
    }

    /// Starts a [`ParamStore::push_gradient_and_pull`] without waiting for the reply, which
    /// [`ParamStore::finish_push_gradient_and_pull`] reads: a store across a network lets the
    /// worker act while the round trip runs. `Ok(false)` when this store cannot (in memory,
    /// where there is no round trip to hide; over several shards): nothing was sent.
    fn start_push_gradient_and_pull(
        &self,
        _worker: usize,
        _base_version: u64,
        _grad: &[f32],
        _have: Option<u64>,
    ) -> Result<bool> {
        Ok(false)
    }

    /// The reply to the push [`ParamStore::start_push_gradient_and_pull`] sent: its outcome,
    /// and in `out` the store's parameters if newer than the `have` it was sent with.
    /// [`DistError::Busy`] when an overloaded server refused the push: nothing was applied.
    fn finish_push_gradient_and_pull(&self, _out: &mut [f32]) -> Result<(PushOutcome, Option<u64>)> {
        Err(DistError::Setup("this store sent no push whose reply could be read".into()))
    }

    /// Pushes worker `worker`'s parameters (averaging and EASGD) and blocks until the round
    /// completes; `params` is overwritten with what the worker continues from.
    fn push_params(&self, worker: usize, params: &mut [f32]) -> Result<PushOutcome>;
}

/// A shared store is a store: workers of an embedded cluster hold `Arc`s of one server.
impl<T: ParamStore + ?Sized> ParamStore for std::sync::Arc<T> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn version(&self) -> u64 {
        (**self).version()
    }
    fn pull(&self, have: Option<u64>, out: &mut [f32]) -> Result<Option<u64>> {
        (**self).pull(have, out)
    }
    fn push_gradient(&self, worker: usize, base_version: u64, grad: &[f32]) -> Result<PushOutcome> {
        (**self).push_gradient(worker, base_version, grad)
    }
    fn push_gradient_and_pull(
        &self,
        worker: usize,
        base_version: u64,
        grad: &[f32],
        have: Option<u64>,
        out: &mut [f32],
    ) -> Result<(PushOutcome, Option<u64>)> {
        (**self).push_gradient_and_pull(worker, base_version, grad, have, out)
    }
    fn start_push_gradient_and_pull(
        &self,
        worker: usize,
        base_version: u64,
        grad: &[f32],
        have: Option<u64>,
    ) -> Result<bool> {
        (**self).start_push_gradient_and_pull(worker, base_version, grad, have)
    }
    fn finish_push_gradient_and_pull(&self, out: &mut [f32]) -> Result<(PushOutcome, Option<u64>)> {
        (**self).finish_push_gradient_and_pull(out)
    }
    fn push_params(&self, worker: usize, params: &mut [f32]) -> Result<PushOutcome> {
        (**self).push_params(worker, params)
    }
}
