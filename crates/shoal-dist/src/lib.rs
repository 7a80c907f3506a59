//! # shoal-dist
//!
//! Where parameters live when several workers train one model. Algorithms talk to a
//! [`ParamStore`] — pull the newest parameters, push a gradient or local parameters — and do
//! not know whether the store is a struct in the same process ([`ParamServer`], the embedded
//! default), a server across the network ([`GrpcStore`], the client of `shoal ps`), or several
//! shards of either ([`ShardedStore`]).
//!
//! Update modes ([`UpdateMode`]): synchronous gradient averaging with a barrier per step (a
//! straggler is dropped from the round after a timeout and rejoins when it pushes again),
//! asynchronous application on arrival with recorded and optionally bounded staleness (A3C /
//! Downpour), parameter averaging, and elastic averaging (EASGD).
//!
//! The wire protocol is `proto/shoal_ps.proto` (tonic + prost, compiled by protox at build
//! time — no system `protoc`): a shared token on every call, a version and layout handshake,
//! tensors as raw little-endian `f32` (or f16) bytes in chunks under the message limit.

pub mod allreduce;
mod auth;
mod client;
mod connections;
mod data_plane;
pub mod engine;
mod error;
pub mod jobs;
mod limits;
mod monitor;
mod peer;
pub mod pipeline;
pub mod proto;
mod rate;
pub mod rendezvous;
pub mod replay;
mod server;
mod service;
mod sharded;
pub mod status;
mod store;
pub mod wire;

pub use allreduce::{AllReduce, LocalGroup};
pub use auth::{Token, TOKEN_ENV};
pub use client::{ClientOptions, ClientTls, GrpcStore};
pub use data_plane::PolledReads;
pub use engine::{IdentityFlags, TaskIdentity};
pub use error::{DistError, Result};
pub use limits::Limits;
pub use monitor::{Coordinator, RunMonitor, RunStatus, RunTotals, StopRule, WorkerProgress};
pub use proto::Encoding;
pub use rate::RateMeter;
pub use rendezvous::{spawn_rendezvous, RendezvousClient, RendezvousState, RunIdentity};
pub use replay::{
    spawn_replay, GrpcReplay, LocalReplay, PrioritizedReplay, ReplayStats, ReplayStore, Sample, TrajectoryQueue,
    Transitions,
};
pub use server::{CheckpointPolicy, ParamServer, PushRecord, ServerStats};
pub use service::{spawn, ServerHandle, ServerTls, ServiceConfig, ShardInfo};
pub use sharded::{shard_range, ShardedStore};
pub use status::{ClusterStatus, Member};
pub use store::{ParamStore, PushOutcome, UpdateMode};
