//! # shoal-algo
//!
//! Reinforcement learning algorithms over `shoal-env` environments and `shoal-nn` models, one
//! file each, readable top to bottom like CleanRL: [`q_learning`], [`dqn`], [`apex`], [`a2c`], [`ppo`].
//! They share one shape ([`Agent`]: `train_iteration`, `predict`, `save`, `load`) and one
//! training loop ([`learn`]) with stop criteria and callbacks, configured by a TOML file
//! ([`TrainConfig`]).

pub mod a2c;
pub mod agent;
pub mod apex;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod dqn;
pub mod episodes;
pub mod error;
pub mod eval;
mod explore;
mod on_policy;
pub mod ppo;
pub mod q_learning;
mod replay;
pub mod updater;

pub use agent::{
    build_agent, build_vec_env, learn, Agent, Callback, Control, LoopState, Metrics, Progress, StopReason, Summary,
};
pub use config::{Algo, TrainConfig};
pub use episodes::EpisodeTracker;
pub use error::{AlgoError, Result};
