//! Experience replay as a service, for Ape-X: actors insert n-step transitions with initial
//! priorities, a learner samples prioritized batches and sends back new priorities. The
//! [`ReplayStore`] trait is what both sides call; [`LocalReplay`] serves threads of one process,
//! [`GrpcReplay`] a `shoal replay` process over gRPC. The same service carries IMPALA's
//! trajectories: a [`LocalReplay`] over a [`TrajectoryQueue`] hands each row out once, oldest
//! first.
//!
//! The pieces, bottom up: [`Transitions`] (contiguous columns) and [`TransitionRing`] (the
//! ring they live in), [`NStepAssembler`] (per-env n-step windows, on the actor side),
//! [`SumTree`] / [`MinTree`] and [`PrioritizedReplay`] (proportional sampling with importance
//! weights and stale-key protection).

mod nstep;
mod prioritized;
mod queue;
mod remote;
mod transitions;
mod tree;

use std::path::Path;
use std::sync::Mutex;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

pub use nstep::{NStepAssembler, PendingStep, Step};
pub use prioritized::{PrioritizedReplay, MIN_PRIORITY};
pub use queue::TrajectoryQueue;
pub use remote::{max_rows_per_message, spawn_replay, GrpcReplay};
pub use transitions::{Row, TransitionRing, Transitions};
pub use tree::{MinTree, SumTree};

use crate::error::{DistError, Result};

/// A sampled batch: the rows, the key of each (for priority updates) and its importance weight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub batch: Transitions,
    pub keys: Vec<u64>,
    pub weights: Vec<f32>,
}

/// A replay's size and counters since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplayStats {
    pub len: u64,
    pub capacity: u64,
    /// Rows inserted, rows sampled, priorities set, and priority updates skipped because the
    /// row had been overwritten.
    pub inserted: u64,
    pub sampled: u64,
    pub priority_updates: u64,
    pub stale_updates: u64,
    /// Mean of the stored `p^α` (what sampling is proportional to).
    pub priority_mean: f64,
}

/// A prioritized replay shared by actors and a learner.
pub trait ReplayStore: Send + Sync {
    /// Appends `batch` with initial priorities `|δ|` per row (the largest priority seen so far
    /// when `None`); returns the replay's statistics after the insert (for rate limiting).
    fn insert(&self, batch: &Transitions, priorities: Option<&[f32]>) -> Result<ReplayStats>;

    /// Samples `size` rows proportionally to priority, with importance weights for `beta`.
    fn sample(&self, size: usize, beta: f64, out: &mut Sample) -> Result<()>;

    /// New priorities `|δ|` for sampled rows, named by their keys.
    fn update_priorities(&self, keys: &[u64], priorities: &[f32]) -> Result<()>;

    fn stats(&self) -> Result<ReplayStats>;
}

impl<T: ReplayStore + ?Sized> ReplayStore for std::sync::Arc<T> {
    fn insert(&self, batch: &Transitions, priorities: Option<&[f32]>) -> Result<ReplayStats> {
        (**self).insert(batch, priorities)
    }
    fn sample(&self, size: usize, beta: f64, out: &mut Sample) -> Result<()> {
        (**self).sample(size, beta, out)
    }
    fn update_priorities(&self, keys: &[u64], priorities: &[f32]) -> Result<()> {
        (**self).update_priorities(keys, priorities)
    }
    fn stats(&self) -> Result<ReplayStats> {
        (**self).stats()
    }
}

/// What a [`LocalReplay`] stores.
#[derive(Debug)]
enum Buffer {
    /// Ape-X: rows sampled by priority, as often as they are drawn.
    Prioritized(PrioritizedReplay),
    /// IMPALA: rows handed out once, oldest first ("sampling" takes them).
    Queue(TrajectoryQueue),
}

/// A [`PrioritizedReplay`] (or a [`TrajectoryQueue`]) behind a mutex, with its own sampling
/// RNG: the replay of an embedded run, and what `shoal replay` serves.
#[derive(Debug)]
pub struct LocalReplay {
    inner: Mutex<(Buffer, Pcg64Mcg)>,
}

fn queue_has_no(what: &str) -> DistError {
    DistError::Replay(format!("a trajectory queue has no {what}: it hands each row out once, oldest first"))
}

impl LocalReplay {
    pub fn new(replay: PrioritizedReplay, seed: u64) -> Self {
        LocalReplay { inner: Mutex::new((Buffer::Prioritized(replay), Pcg64Mcg::seed_from_u64(seed))) }
    }

    /// A queue served like a replay: `sample(size, …)` takes the oldest `size` rows (with
    /// weights 1, whatever β), `update_priorities` is refused.
    pub fn queue(queue: TrajectoryQueue) -> Self {
        LocalReplay { inner: Mutex::new((Buffer::Queue(queue), Pcg64Mcg::seed_from_u64(0))) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Buffer, &mut Pcg64Mcg) -> Result<T>) -> Result<T> {
        // A panic while holding the lock cannot leave the trees half-updated in a way later
        // calls trip over (every write is one leaf walk), so a poisoned lock is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (buffer, rng) = &mut *guard;
        f(buffer, rng)
    }

    /// The prioritized replay, for what only a replay does.
    fn with_replay<T>(&self, what: &str, f: impl FnOnce(&mut PrioritizedReplay) -> Result<T>) -> Result<T> {
        self.with(|buffer, _| match buffer {
            Buffer::Prioritized(r) => f(r),
            Buffer::Queue(_) => Err(queue_has_no(what)),
        })
    }

    pub fn obs_dim(&self) -> usize {
        self.with(|b, _| {
            Ok(match b {
                Buffer::Prioritized(r) => r.obs_dim(),
                Buffer::Queue(q) => q.obs_dim(),
            })
        })
        .unwrap_or(0)
    }

    pub fn act_dim(&self) -> usize {
        self.with(|b, _| {
            Ok(match b {
                Buffer::Prioritized(r) => r.act_dim(),
                Buffer::Queue(q) => q.act_dim(),
            })
        })
        .unwrap_or(1)
    }

    /// Saves the replay atomically to `path` (see [`PrioritizedReplay::save`]); a queue's
    /// rows are not checkpointed (they are the few newest trajectories, stale after a restart).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.with_replay("checkpoint", |r| r.save(path))
    }

    /// Restores a replay saved by [`LocalReplay::save`].
    pub fn load(&self, path: &Path) -> Result<()> {
        self.with_replay("checkpoint", |r| r.load(path))
    }
}

impl ReplayStore for LocalReplay {
    fn insert(&self, batch: &Transitions, priorities: Option<&[f32]>) -> Result<ReplayStats> {
        self.with(|b, _| match b {
            Buffer::Prioritized(r) => {
                r.insert(batch, priorities)?;
                Ok(r.stats())
            }
            Buffer::Queue(q) => {
                q.insert(batch)?;
                Ok(q.stats())
            }
        })
    }
    fn sample(&self, size: usize, beta: f64, out: &mut Sample) -> Result<()> {
        self.with(|b, rng| match b {
            Buffer::Prioritized(r) => r.sample(size, beta, rng, out),
            Buffer::Queue(q) => q.take(size, out),
        })
    }
    fn update_priorities(&self, keys: &[u64], priorities: &[f32]) -> Result<()> {
        self.with_replay("priorities", |r| r.update_priorities(keys, priorities))
    }
    fn stats(&self) -> Result<ReplayStats> {
        self.with(|b, _| {
            Ok(match b {
                Buffer::Prioritized(r) => r.stats(),
                Buffer::Queue(q) => q.stats(),
            })
        })
    }
}

/// Asks the CPU to start loading `value`'s cache line. A batched search or gather knows the
/// addresses it will read many steps ahead; without the hint each miss waits its turn in the
/// out-of-order window. It is only a hint: it cannot fault and changes no state.
#[inline(always)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only reads the pointer's cache line into the cache (and never
    // faults); the pointer comes from a live reference.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
