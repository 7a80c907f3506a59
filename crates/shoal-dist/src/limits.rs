//! What one server takes on at once, so that load from many workers shows up as a clear
//! "busy, retry after …" answer instead of as queues, memory and latency without bound.
//!
//! - [`Limits`]: the bounds a server is configured with (connections, message size, bytes of
//!   pushes in flight, how long a client may stall mid-tensor).
//! - [`Admission`]: the async-mode gate on pushes. A push holds a [`Permit`] from before its
//!   tensor is read until the store has applied it; when the permits are gone the server
//!   answers at once with the documented overload status (gRPC `RESOURCE_EXHAUSTED` with a
//!   `retry-after-ms` header; the data plane's `BUSY` reply), and the client waits that long
//!   (with jitter) before trying again. Round-based modes need no gate: each worker has at
//!   most one push in a round, so their pushes are bounded by the number of workers.
//! - [`BufferPool`]: received tensors' vectors, reused, and bounded by the permits.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::error::{DistError, Result};
use crate::wire::{CHUNK_VALUES, MAX_MESSAGE_BYTES};

/// Bounds one server puts on what its clients may make it hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Open connections, gRPC and data plane together (a worker holds one of each per
    /// shard); a call on a connection beyond them is answered busy.
    pub max_connections: usize,
    /// The largest gRPC message taken or sent. Tensors travel in chunks of 256 KiB, so it is
    /// at least [`Limits::MIN_MESSAGE_BYTES`]; replay batches are cut to fit the default.
    pub max_message_bytes: usize,
    /// Async mode: bytes of pushed tensors being received or waiting for the store (at least
    /// one push is always taken). Bounds the server's memory and its queue's latency.
    pub max_pending_bytes: usize,
    /// Calls one gRPC connection may have in flight (more wait in HTTP/2 flow control).
    pub max_calls_per_connection: usize,
    /// How long a client may stop sending in the middle of a tensor before its connection is
    /// closed (and what it held freed).
    pub stall_timeout: Duration,
}

impl Limits {
    /// One tensor chunk and its header.
    pub const MIN_MESSAGE_BYTES: usize = CHUNK_VALUES * 4 + 4096;

    /// Checks the bounds, naming the config key (`cluster.…`) of a bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DistError::Setup(m));
        if self.max_connections == 0 {
            return bad("cluster.max_connections must be at least 1".into());
        }
        if self.max_message_bytes < Self::MIN_MESSAGE_BYTES || self.max_message_bytes > 64 << 20 {
            return bad(format!(
                "cluster.max_message_bytes = {} is out of range: tensors travel in chunks of {} bytes, so {} ..= {}",
                self.max_message_bytes,
                CHUNK_VALUES * 4,
                Self::MIN_MESSAGE_BYTES,
                64 << 20
            ));
        }
        if self.max_calls_per_connection == 0 {
            return bad("cluster.max_calls_per_connection must be at least 1".into());
        }
        if self.stall_timeout.is_zero() {
            return bad("cluster.stall_seconds must be positive".into());
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_pending_bytes: 256 << 20,
            max_calls_per_connection: 32,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// The gRPC metadata key of an overload answer's advice, in milliseconds.
pub(crate) const RETRY_AFTER_KEY: &str = "retry-after-ms";

/// An overload answer: why, and how long to wait before trying again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Busy {
    pub retry_after: Duration,
    pub message: String,
}

impl Busy {
    /// The gRPC status of an overload: `RESOURCE_EXHAUSTED` with `retry-after-ms`.
    pub(crate) fn status(&self) -> Status {
        let mut status = Status::resource_exhausted(self.message.clone());
        if let Ok(value) = self.retry_after.as_millis().to_string().parse() {
            status.metadata_mut().insert(RETRY_AFTER_KEY, value);
        }
        status
    }

    /// The advice an overload status carries (`None` when it carries none).
    pub(crate) fn retry_after(status: &Status) -> Option<Duration> {
        let millis = status.metadata().get(RETRY_AFTER_KEY)?.to_str().ok()?.parse().ok()?;
        Some(Duration::from_millis(millis))
    }
}

/// The async-mode gate on pushes (see the module doc).
pub(crate) struct Admission {
    max_pushes: usize,
    pending: AtomicUsize,
    /// Moving average of how long a permit is held, in nanoseconds: a refused client is told
    /// to come back after about that long, when the pushes ahead of it have turned over.
    hold_ns: AtomicU64,
    refused: AtomicU64,
}

/// The shortest and longest wait an overload answer advises.
const MIN_RETRY: Duration = Duration::from_millis(1);
const MAX_RETRY: Duration = Duration::from_secs(2);

impl Admission {
    /// A gate letting `limit_bytes` of pushes of `push_bytes` each in (at least one).
    pub(crate) fn new(limit_bytes: usize, push_bytes: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_pushes: (limit_bytes / push_bytes.max(1)).max(1),
            pending: AtomicUsize::new(0),
            hold_ns: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// A permit for one push, or the overload answer.
    pub(crate) fn try_admit(self: &Arc<Self>) -> std::result::Result<Permit, Busy> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_pushes {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            let retry_after = Duration::from_nanos(self.hold_ns.load(Ordering::Relaxed)).clamp(MIN_RETRY, MAX_RETRY);
            return Err(Busy {
                retry_after,
                message: format!(
                    "overloaded: {} pushes are already in flight (cluster.max_pending_mb); retry after {} ms, or add shards (cluster.shards)",
                    self.max_pushes,
                    retry_after.as_millis()
                ),
            });
        }
        Ok(Permit { admission: Arc::clone(self), since: Instant::now() })
    }

    /// Pushes holding a permit now.
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Pushes refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One admitted push; dropping it lets the next one in.
pub(crate) struct Permit {
    admission: Arc<Admission>,
    since: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let held = self.since.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        let average = self.admission.hold_ns.load(Ordering::Relaxed);
        // An average over the last ~16 pushes; a lost race between two drops loses one sample.
        let updated = if average == 0 { held } else { average - average / 16 + held / 16 };
        self.admission.hold_ns.store(updated, Ordering::Relaxed);
        self.admission.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Vectors of the store's length kept between pushes: a fresh 10 MB vector costs a memset and
/// thousands of page faults on every push (a fifth of a loopback push's time, measured).
/// Every value of a reused vector is overwritten before use (a received tensor must fill it).
/// It keeps at most [`KEPT_BUFFERS`] idle vectors: more are in use only during a burst (which
/// the [`Admission`] or the number of workers bounds), and keeping them all would hold the
/// burst's memory for good — a soak's shard RSS stepped up after each burst.
/// Idle receive vectors a server keeps (pushes in flight at once in steady work, with room).
const KEPT_BUFFERS: usize = 8;

pub(crate) struct BufferPool {
    len: usize,
    free: Mutex<Vec<Vec<f32>>>,
}

impl BufferPool {
    pub(crate) fn new(len: usize) -> Arc<Self> {
        Arc::new(BufferPool { len, free: Mutex::default() })
    }

    pub(crate) fn take(&self) -> Vec<f32> {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| vec![0.0; self.len])
    }

    pub(crate) fn give(&self, buffer: Vec<f32>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < KEPT_BUFFERS {
            free.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_its_bytes_in_and_answers_busy_beyond() {
        let gate = Admission::new(3 * 100, 100);
        let permits: Vec<Permit> = (0..3).map(|_| gate.try_admit().ok().unwrap()).collect();
        let busy = gate.try_admit().err().unwrap();
        assert!(busy.message.contains("3 pushes are already in flight"), "{}", busy.message);
        assert!(busy.retry_after >= MIN_RETRY && busy.retry_after <= MAX_RETRY);
        assert_eq!(gate.refused(), 1);
        drop(permits);
        assert!(gate.try_admit().is_ok());
        // A limit below one push still takes one at a time.
        let tiny = Admission::new(10, 100);
        let one = tiny.try_admit().ok().unwrap();
        assert!(tiny.try_admit().is_err());
        drop(one);
        assert!(tiny.try_admit().is_ok());
    }

    #[test]
    fn busy_statuses_carry_their_advice() {
        let busy = Busy { retry_after: Duration::from_millis(37), message: "overloaded".into() };
        let status = busy.status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(Busy::retry_after(&status), Some(Duration::from_millis(37)));
        assert_eq!(Busy::retry_after(&Status::unavailable("down")), None);
    }

    #[test]
    fn bad_limits_name_their_key() {
        let cases = [
            (Limits { max_connections: 0, ..Limits::default() }, "cluster.max_connections"),
            (Limits { max_message_bytes: 1000, ..Limits::default() }, "cluster.max_message_bytes"),
            (Limits { max_calls_per_connection: 0, ..Limits::default() }, "cluster.max_calls_per_connection"),
            (Limits { stall_timeout: Duration::ZERO, ..Limits::default() }, "cluster.stall_seconds"),
        ];
        for (limits, key) in cases {
            assert!(limits.validate().unwrap_err().to_string().contains(key));
        }
        Limits::default().validate().unwrap();
    }
}
