//! Messages and service stubs generated from `proto/` at build time.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("shoal.ps.v1");

/// The replay service's messages and stubs (`proto/shoal_replay.proto`).
pub mod replay {
    tonic::include_proto!("shoal.replay.v1");
}

/// The rendezvous service's messages and stubs (`proto/shoal_rendezvous.proto`).
pub mod rendezvous {
    tonic::include_proto!("shoal.rendezvous.v1");
}

/// The pipeline-stage service's messages and stubs (`proto/shoal_pipeline.proto`).
pub mod pipeline {
    tonic::include_proto!("shoal.pipeline.v1");
}

/// The job queue's messages and stubs (`proto/shoal_jobs.proto`).
pub mod jobs {
    tonic::include_proto!("shoal.jobs.v1");
}

/// Bumped whenever the protocol changes in a way an older peer would misread or lack (3: workers
/// share normalization statistics through `ShareStatistics`).
pub const PROTOCOL_VERSION: u32 = 3;
