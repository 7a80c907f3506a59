//! Messages and service stubs generated from `proto/shoal_ps.proto` at build time.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("shoal.ps.v1");

/// Bumped whenever the protocol changes in a way an older peer would misread.
pub const PROTOCOL_VERSION: u32 = 1;
