//! The `Env` trait: Gymnasium's `reset`/`step` contract, shaped for zero-allocation stepping.
//!
//! Differences from Gymnasium's Python API, each for speed:
//! - observations are written into a caller-owned `&mut [f32]` (the env's row of a batch buffer)
//!   instead of being returned as fresh arrays;
//! - there is no `info` dict; what learners need from it (final observations, episode
//!   statistics) is provided by the vector envs and wrappers as typed fields.

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{EnvError, Result};
use crate::space::{Action, Space};

/// What one `step` returns besides the observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepResult {
    pub reward: f64,
    /// The episode reached a terminal state of the MDP: do not bootstrap past it.
    pub terminated: bool,
    /// The episode was cut short (time limit): bootstrap from the final observation.
    pub truncated: bool,
}

impl StepResult {
    /// True when the episode is over for either reason.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A reinforcement learning environment with Gymnasium 1.x semantics.
///
/// `Send` so that vector envs can move envs onto worker threads.
pub trait Env: Send {
    /// A short name used in error messages (e.g. `CartPole`).
    fn name(&self) -> &str;

    fn observation_space(&self) -> &Space;

    fn action_space(&self) -> &Space;

    /// Starts a new episode and writes its first observation into `obs`.
    ///
    /// `Some(seed)` reseeds the env's RNG, so the same seed gives the same episode; `None`
    /// continues the current RNG stream (Gymnasium's `reset(seed=None)`).
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()>;

    /// Advances one step and writes the next observation into `obs`.
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult>;

    /// Starts a new episode from an exact internal state (the env's own state variables, not the
    /// observation). Used to replay recorded episodes and to debug; envs that cannot do this
    /// keep the default, which reports the operation as unsupported.
    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        let _ = (state, obs);
        Err(EnvError::Unsupported { env: self.name().to_string(), operation: "reset_to_state" })
    }

    /// The env's complete dynamic state (simulation state, RNG, counters of wrappers), so a
    /// checkpointed run resumes bit for bit. Envs that cannot keep the default, which reports
    /// the operation as unsupported.
    fn snapshot(&self) -> Result<Snapshot> {
        Err(EnvError::Unsupported { env: self.name().to_string(), operation: "snapshot" })
    }

    /// Restores a [`Env::snapshot`] taken from an env built with the same id and options.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let _ = snapshot;
        Err(EnvError::Unsupported { env: self.name().to_string(), operation: "restore" })
    }
}

/// A serialized env state, as JSON so it can sit in a checkpoint's manifest.
pub type Snapshot = serde_json::Value;

/// Serializes `fields` as an env snapshot.
pub(crate) fn to_snapshot<S: Serialize>(env: &str, fields: &S) -> Result<Snapshot> {
    serde_json::to_value(fields).map_err(|e| snapshot_error(env, e))
}

/// Reads `snapshot` back into the fields it was made from.
pub(crate) fn from_snapshot<S: DeserializeOwned>(env: &str, snapshot: &Snapshot) -> Result<S> {
    S::deserialize(snapshot).map_err(|e| snapshot_error(env, e))
}

fn snapshot_error(env: &str, e: serde_json::Error) -> EnvError {
    EnvError::SpaceMismatch(format!(
        "{env} snapshot does not match this env ({e}); was it taken from another env id or version?"
    ))
}

/// Implements `snapshot`/`restore` for an env whose dynamic state is the listed fields (all
/// `Serialize + Deserialize`); with `inner;` first, for a wrapper, the inner env's too.
macro_rules! snapshot_fields {
    (inner; $($field:ident),*) => {
        fn snapshot(&self) -> crate::error::Result<crate::env::Snapshot> {
            let inner = self.inner.snapshot()?;
            crate::env::to_snapshot(self.name(), &(inner, $(&self.$field,)*))
        }
        fn restore(&mut self, snapshot: &crate::env::Snapshot) -> crate::error::Result<()> {
            let (inner, $($field,)*): (crate::env::Snapshot, $(crate::env::snapshot_fields!(@infer $field),)*) =
                crate::env::from_snapshot(self.name(), snapshot)?;
            self.inner.restore(&inner)?;
            $(self.$field = $field;)*
            Ok(())
        }
    };
    (@infer $field:ident) => { _ };
    ($($field:ident),+) => {
        fn snapshot(&self) -> crate::error::Result<crate::env::Snapshot> {
            crate::env::to_snapshot(self.name(), &($(&self.$field,)+))
        }
        fn restore(&mut self, snapshot: &crate::env::Snapshot) -> crate::error::Result<()> {
            let ($($field,)+) = crate::env::from_snapshot(self.name(), snapshot)?;
            $(self.$field = $field;)+
            Ok(())
        }
    };
}
pub(crate) use snapshot_fields;

/// Implements `name`, `observation_space` and `action_space` for an env that keeps its
/// spaces in fields of those names.
macro_rules! space_fields {
    ($name:expr) => {
        fn name(&self) -> &str {
            $name
        }
        fn observation_space(&self) -> &crate::space::Space {
            &self.observation_space
        }
        fn action_space(&self) -> &crate::space::Space {
            &self.action_space
        }
    };
}
pub(crate) use space_fields;

impl<E: Env + ?Sized> Env for Box<E> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn observation_space(&self) -> &Space {
        (**self).observation_space()
    }
    fn action_space(&self) -> &Space {
        (**self).action_space()
    }
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        (**self).reset(seed, obs)
    }
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        (**self).step(action, obs)
    }
    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        (**self).reset_to_state(state, obs)
    }
    fn snapshot(&self) -> Result<Snapshot> {
        (**self).snapshot()
    }
    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        (**self).restore(snapshot)
    }
}

/// The per-env random number generator.
///
/// PCG-64 (MCG variant): small, fast, and its stream is fixed by the algorithm, so a seed means
/// the same episode on every platform and every version of Shoal.
#[derive(Debug, Clone)]
pub struct EnvRng(Pcg64Mcg);

impl EnvRng {
    /// An RNG seeded from the OS, as an unseeded Gymnasium env is.
    pub fn from_entropy() -> Self {
        EnvRng(Pcg64Mcg::from_os_rng())
    }

    /// Applies `reset(seed)` semantics: reseed when a seed is given, otherwise keep the stream.
    pub fn reseed(&mut self, seed: Option<u64>) -> &mut Pcg64Mcg {
        if let Some(seed) = seed {
            self.0 = Pcg64Mcg::seed_from_u64(seed);
        }
        &mut self.0
    }

    /// The underlying generator, for drawing within a step.
    pub fn get(&mut self) -> &mut Pcg64Mcg {
        &mut self.0
    }
}

/// The generator's 128-bit state goes through a string: JSON numbers (and `serde_json::Value`)
/// stop at 64 bits.
impl Serialize for EnvRng {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for EnvRng {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map(EnvRng).map_err(serde::de::Error::custom)
    }
}

/// Views a caller's observation buffer as a fixed-size array, with a clear error when the
/// buffer has the wrong length (instead of an index panic).
pub(crate) fn obs_array<const N: usize>(obs: &mut [f32]) -> Result<&mut [f32; N]> {
    let got = obs.len();
    obs.try_into().map_err(|_| EnvError::ObsBuffer { got, expected: N })
}

/// Checks a raw state passed to `reset_to_state` has the expected length.
pub(crate) fn state_array<const N: usize>(env: &str, state: &[f64]) -> Result<[f64; N]> {
    state.try_into().map_err(|_| EnvError::SpaceMismatch(format!("{env} state has {N} values, got {}", state.len())))
}

/// The error for `step` before the first `reset`.
pub(crate) fn needs_reset(env: &str) -> EnvError {
    EnvError::NeedsReset { env: env.to_string(), when: "before the first reset" }
}

impl std::fmt::Debug for dyn Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}(observation_space={}, action_space={})",
            self.name(),
            self.observation_space(),
            self.action_space()
        )
    }
}
