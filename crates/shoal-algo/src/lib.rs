//! # shoal-algo
//!
//! Reinforcement learning algorithms over `shoal-env` environments and `shoal-nn` models, one
//! file each, readable top to bottom like CleanRL: [`q_learning`], [`dqn`], [`apex`], [`a2c`], [`ppo`],
//! [`sac`], [`td3`].
//! They share one shape ([`Agent`]: `train_iteration`, `predict`, `save`, `load`) and one
//! training loop ([`learn`]) with stop criteria and callbacks, configured by a TOML file
//! ([`TrainConfig`]).
//!
//! The modules form three layers, and imports only point down (`scripts/check_module_cycles.py`
//! enforces it in CI):
//! - **top** — [`registry`], the one module that names every algorithm: [`Algo`], the
//!   [`TrainConfig`] that aggregates their sections, and the factory ([`build_agent`]);
//! - **algorithms** — one file each ([`ppo`], [`a2c`], [`dqn`], [`apex`], [`q_learning`], [`sac`], [`td3`]), each
//!   with its config section and a `new(common, section)`; beside them [`cluster`], which runs
//!   any of them as workers around parameter servers without knowing which;
//! - **shared vocabulary** — [`agent`] (the `Agent` trait and the training loop), [`config`]
//!   (the keys every algorithm reads), [`cluster_config`], [`metrics`], [`updater`],
//!   [`episodes`], [`eval`], [`checkpoint`], [`error`], and the private parts several
//!   algorithms share (exploration, on-policy rollouts, the replay buffer).

pub mod a2c;
pub mod actor_learner;
mod actor_threads;
pub mod agent;
pub mod apex;
pub mod checkpoint;
mod checks;
pub mod cluster;
pub mod cluster_config;
pub mod compiled_agent;
pub mod config;
pub mod data_parallel;
pub mod distill;
pub mod dqn;
pub mod episodes;
pub mod error;
pub mod eval;
mod explore;
pub mod impala;
pub mod metrics;
pub mod normalize;
mod off_policy;
mod on_policy;
pub mod policy_net;
pub mod ppo;
pub mod pruning;
pub mod q_learning;
pub mod registry;
mod replay;
pub mod sac;
mod squashed_policy;
pub mod td3;
mod twin_critic;
pub mod updater;
pub mod vtrace;

pub use agent::{build_vec_env, fine_tune, learn, Agent, Callback, Control, LoopState, Progress, StopReason, Summary};
pub use config::CommonConfig;
pub use episodes::EpisodeTracker;
pub use error::{AlgoError, Result};
pub use metrics::Metrics;
pub use off_policy::{ContinuousLearner, UpdateStats};
pub use registry::{build_agent, Algo, TrainConfig};
