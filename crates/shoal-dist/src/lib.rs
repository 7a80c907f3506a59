//! # shoal-dist
//!
//! Where parameters live when several workers train one model. Algorithms talk to a
//! [`ParamStore`] — pull the newest parameters, push a gradient or local parameters — and do
//! not know whether the store is a struct in the same process (this crate's
//! [`ParamServer`], the embedded default) or a server across the network (a gRPC client
//! implementing the same trait, in a later step).
//!
//! Update modes ([`UpdateMode`]): synchronous gradient averaging with a barrier per step (a
//! straggler is dropped from the round after a timeout), asynchronous application on arrival
//! with recorded and optionally bounded staleness (A3C / Downpour), parameter averaging, and
//! elastic averaging (EASGD). Sharding and the gRPC transport come next (issue 5).

mod error;
mod server;
mod store;

pub use error::{DistError, Result};
pub use server::{CheckpointPolicy, ParamServer, ServerStats};
pub use store::{ParamStore, PushOutcome, UpdateMode};
