//! # shoal-env
//!
//! Gymnasium-compatible reinforcement learning environments for Shoal, usable on their own.
//!
//! - [`Env`]: Gymnasium 1.x's `reset`/`step` with `terminated`/`truncated`, writing
//!   observations into caller-owned `f32` buffers so stepping allocates nothing.
//! - [`Space`]: `Discrete`, `Box`, `MultiDiscrete`, with `contains` and `sample`.
//! - [`make`]: build an env by id (`"CartPole-v1"`), with options and the registered time
//!   limit; [`register`] adds your own.
//! - Built-in envs matching Gymnasium 1.4 step for step: CartPole-v1, MountainCar-v0,
//!   MountainCarContinuous-v0, Pendulum-v1, Acrobot-v1, FrozenLake-v1, FrozenLake8x8-v1,
//!   CliffWalking-v1, CliffWalkingSlippery-v1, Taxi-v4.
//! - [`wrappers`]: TimeLimit, RecordEpisodeStatistics, ClipAction, NormalizeObservation,
//!   NormalizeReward, TransformObservation, TransformReward.
//! - [`vector`]: [`SyncVectorEnv`] and [`ThreadedVectorEnv`] over contiguous batch buffers,
//!   with same-step auto-reset and final observations for bootstrapping; they step any
//!   [`vector::EnvSlice`] — a `Vec` of envs, or CartPole's structure of arrays
//!   ([`envs::CartPoleLanes`], what `make_vec("CartPole-v1", …)` builds).
//!
//! ```
//! use shoal_env::{make, Action};
//! let mut env = make("CartPole-v1").unwrap();
//! let mut obs = [0.0f32; 4];
//! env.reset(Some(42), &mut obs).unwrap();
//! let step = env.step(Action::Discrete(1), &mut obs).unwrap();
//! assert_eq!(step.reward, 1.0);
//! ```

pub mod env;
pub mod envs;
pub mod error;
#[cfg(feature = "python")]
pub mod gymnasium;
pub mod options;
pub mod registry;
pub mod space;
mod spec;
pub mod vector;
pub mod wrappers;

pub use env::{Env, EnvRng, Snapshot, StepResult};
pub use error::{EnvError, Result};
pub use options::{EnvOptions, OptionValue};
pub use registry::{make, make_with, register, spec, specs, EnvSpec};
pub use space::{Action, OwnedAction, Space};
pub use vector::{Actions, AutoresetMode, Batch, SyncVectorEnv, ThreadedVectorEnv, VecEnv};

/// Builds `num_envs` copies of a registered env as one vector env on `threads` threads
/// (1 = synchronous on the calling thread).
pub fn make_vec(id: &str, options: &[(&str, OptionValue)], num_envs: usize, threads: usize) -> Result<Box<dyn VecEnv>> {
    registry::spec(id)?.make_vec(options, num_envs, threads)
}
