//! The data plane: tensors between a worker and a parameter server on a plain TCP connection,
//! beside gRPC's control plane (handshake, progress reports, the replay, the rendezvous).
//!
//! Why: on loopback a gRPC push+pull of 10 KB took ~8× a TCP round trip of the same bytes and
//! a 1 MB one ~3× (HTTP/2 framing, protobuf copies, and a wake-up of an executor thread on
//! each side per message). Small tensors are what A3C and async workers send after every
//! rollout, so that latency bounded them. Here a push and the pull that follows it are one
//! request and one reply, written from and read into the caller's `f32` buffers with no
//! intermediate copy (on little-endian machines `f32` bytes are the wire bytes), by a blocking
//! thread per connection on the server that calls the store directly.
//!
//! The data plane shares the gRPC port: the server looks at a new connection's first byte —
//! [`MAGIC`]'s `S`, where HTTP/2 starts with `P` and TLS with `0x16` — and hands it to one or
//! the other. A client uses it when the server's `Hello` offers it (a server with TLS does not:
//! the data plane has no encryption, so tensors then stay on gRPC over TLS).
//!
//! Framing (little-endian): the client opens with [`MAGIC`], its protocol version, the model's
//! layout hash, its shard and shard count and the run's token, and the server answers with a
//! status byte and a message (empty, or why it refuses — the same checks as `Hello`). Then each
//! call is a [`REQUEST_BYTES`] header and an optional tensor, answered by a [`REPLY_BYTES`]
//! header and an optional tensor (or an error message). Tensors are encoded as
//! [`wire::encode_into`] encodes them. Everything a peer sends is checked before use.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::Token;
use crate::connections::Slot;
use crate::error::Result;
use crate::limits::{Admission, BufferPool, Busy};
use crate::peer::{check_peer, ServiceConfig};
use crate::proto::{Encoding, PROTOCOL_VERSION};
use crate::server::ParamServer;
use crate::store::{ParamStore, PushOutcome};
use crate::wire;

/// What a data-plane connection starts with.
pub(crate) const MAGIC: [u8; 8] = *b"SHOALDP1";
/// Bytes of a call's header.
const REQUEST_BYTES: usize = 40;
/// Bytes of a reply's header.
const REPLY_BYTES: usize = 40;
/// The longest token or error message either side reads.
const MAX_TEXT: usize = 4096;
/// How long a client polls for a reply, and a server for the next call, before sleeping in
/// the kernel. Waking a sleeping thread cost ~25–35 µs on the 2-core VMs here — more than a
/// whole small call — so a loopback round trip of 40 bytes took ~72 µs with blocking reads on
/// both sides, 21 µs with either side polling and 6 µs with both (a 40 KB one: 80 and 19 µs).
/// A reply is usually there within the client's budget; the server's covers the time a worker
/// computes between two A3C pushes (one worker process stepped 164k env steps/s with 100 µs,
/// 221k with 300 µs). Past the budget both sleep, so an idle run costs nothing; 0 turns
/// polling off (`SHOAL_DATA_CLIENT_SPIN_US`, `SHOAL_DATA_SERVER_SPIN_US`).
fn spin_budget(server: bool) -> Duration {
    let (var, default) = if server { ("SHOAL_DATA_SERVER_SPIN_US", 300) } else { ("SHOAL_DATA_CLIENT_SPIN_US", 200) };
    Duration::from_micros(std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

/// How long a client waits for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a call asks the server to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    PushGradient = 1,
    Pull = 2,
    PushGradientPull = 3,
    PushParams = 4,
}

impl Op {
    fn parse(code: u8) -> Option<Op> {
        [Op::PushGradient, Op::Pull, Op::PushGradientPull, Op::PushParams].into_iter().find(|op| *op as u8 == code)
    }

    /// Whether the call carries a tensor to the server.
    fn sends(self) -> bool {
        self != Op::Pull
    }
}

/// A call's header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Call {
    pub op: Op,
    pub encoding: Encoding,
    pub worker: u32,
    /// The version a pushed gradient was computed at.
    pub base_version: u64,
    /// The version the caller holds (pulls send parameters only when the store is newer).
    pub have: Option<u64>,
}

impl Call {
    fn to_bytes(self, payload: usize) -> [u8; REQUEST_BYTES] {
        let mut b = [0u8; REQUEST_BYTES];
        b[0] = self.op as u8;
        b[1] = self.encoding as u8;
        b[2] = u8::from(self.have.is_some());
        b[4..8].copy_from_slice(&self.worker.to_le_bytes());
        b[8..16].copy_from_slice(&self.base_version.to_le_bytes());
        b[16..24].copy_from_slice(&self.have.unwrap_or(0).to_le_bytes());
        b[24..32].copy_from_slice(&(payload as u64).to_le_bytes());
        b
    }

    /// The header and the byte count of the tensor that follows it.
    fn parse(b: &[u8; REQUEST_BYTES]) -> std::result::Result<(Call, u64), String> {
        let op = Op::parse(b[0]).ok_or_else(|| format!("unknown data-plane call {}", b[0]))?;
        let encoding = Encoding::try_from(i32::from(b[1])).map_err(|_| format!("unknown tensor encoding {}", b[1]))?;
        let have = (b[2] != 0).then(|| u64_at(b, 16));
        let request = Call { op, encoding, worker: u32_at(b, 4), base_version: u64_at(b, 8), have };
        Ok((request, u64_at(b, 24)))
    }
}

/// A reply's header.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Answer {
    /// What became of a pushed tensor (`None` for a pull).
    pub outcome: Option<PushOutcome>,
    /// The version of the parameters that follow (`None`: the caller's are current).
    pub params: Option<u64>,
}

/// A reply's first byte: done; failed (a message follows); overloaded (a wait in
/// milliseconds as a `u32`, then a message, follow — see [`crate::limits`]).
const OK: u8 = 0;
const ERROR: u8 = 1;
const BUSY: u8 = 2;

impl Answer {
    fn to_bytes(self, payload: usize) -> [u8; REPLY_BYTES] {
        let mut b = [0u8; REPLY_BYTES];
        b[0] = OK;
        let (kind, version, staleness) = match self.outcome {
            None => (0, 0, 0),
            Some(PushOutcome::Applied { version, staleness }) => (1, version, staleness),
            Some(PushOutcome::Stale { version, staleness }) => (2, version, staleness),
        };
        b[1] = kind;
        b[2] = u8::from(self.params.is_some());
        b[8..16].copy_from_slice(&version.to_le_bytes());
        b[16..24].copy_from_slice(&staleness.to_le_bytes());
        b[24..32].copy_from_slice(&self.params.unwrap_or(0).to_le_bytes());
        b[32..40].copy_from_slice(&(payload as u64).to_le_bytes());
        b
    }

    fn parse(b: &[u8; REPLY_BYTES]) -> std::result::Result<(Answer, u64), String> {
        let (version, staleness) = (u64_at(b, 8), u64_at(b, 16));
        let outcome = match b[1] {
            0 => None,
            1 => Some(PushOutcome::Applied { version, staleness }),
            2 => Some(PushOutcome::Stale { version, staleness }),
            other => return Err(format!("unknown push outcome {other} in a data-plane reply")),
        };
        let params = (b[2] != 0).then(|| u64_at(b, 24));
        Ok((Answer { outcome, params }, u64_at(b, 32)))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Writes `head` then `body` with as few system calls as the kernel allows.
fn write_both(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut written = 0;
    let total = head.len() + body.len();
    while written < total {
        let n = if written < head.len() {
            stream.write_vectored(&[IoSlice::new(&head[written..]), IoSlice::new(body)])?
        } else {
            stream.write(&body[written - head.len()..])?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    Ok(())
}

/// Writes a status byte and a length-prefixed text (a token or an error message), cut at
/// [`MAX_TEXT`] bytes.
fn write_text(stream: &mut TcpStream, status: u8, text: &str) -> io::Result<()> {
    stream.write_all(&[status])?;
    write_text_body(stream, text)
}

fn write_text_body(stream: &mut TcpStream, text: &str) -> io::Result<()> {
    let text = &text.as_bytes()[..text.len().min(MAX_TEXT)];
    write_both(stream, &(text.len() as u32).to_le_bytes(), text)
}

/// Reads that poll a nonblocking socket (yielding the core to any thread that wants it) for
/// up to a budget before a blocking read takes the rest (see `spin_budget` for why), and stop
/// polling for a while where it does not pay: on a machine with more runnable threads than
/// cores a yielding poller waits behind them for whole time slices, while a sleeping reader is
/// woken ahead of them — with two busy loops on the two cores here, A3C with 2 worker processes
/// stepped 17–23k env steps/s polling every read and 182k blocking. Public so that `shoal bench
/// ps` can give its plain TCP reference the same reads.
#[derive(Debug, Clone)]
pub struct PolledReads {
    budget: Duration,
    /// Reads left that block at once, after a poll that did not pay.
    resting: u32,
    /// Polling is on (see [`PolledReads::set_polling`]).
    polling: bool,
}

/// Blocking reads after a poll that did not pay, before polling is tried again.
const REST_READS: u32 = 16;

impl PolledReads {
    /// Polls up to `budget` per read (zero: plain blocking reads).
    pub fn new(budget: Duration) -> Self {
        PolledReads { budget, resting: 0, polling: true }
    }

    /// Turns polling off (every read blocks) or back on.
    pub fn set_polling(&mut self, on: bool) {
        self.polling = on;
    }

    /// Reads exactly `buf.len()` bytes from `stream` (a blocking socket, left blocking).
    pub fn read_exact(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
        if !self.polling || self.budget.is_zero() || self.resting > 0 {
            self.resting = self.resting.saturating_sub(1);
            return stream.read_exact(buf);
        }
        let start = Instant::now();
        let got = poll(stream, buf, self.budget)?;
        if got < buf.len() || start.elapsed() > self.budget {
            self.resting = REST_READS;
        }
        stream.read_exact(&mut buf[got..])
    }
}

/// Reads what arrives within `budget` without sleeping; returns the bytes read.
fn poll(stream: &mut TcpStream, buf: &mut [u8], budget: Duration) -> io::Result<usize> {
    let mut got = 0;
    stream.set_nonblocking(true)?;
    let start = Instant::now();
    let polled = loop {
        if got == buf.len() {
            break Ok(got);
        }
        match stream.read(&mut buf[got..]) {
            Ok(0) => break Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() >= budget {
                    break Ok(got);
                }
                std::thread::yield_now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    polled
}

/// Answers busy: the wait the client should take, then why.
fn write_busy(stream: &mut TcpStream, busy: &Busy) -> io::Result<()> {
    let millis = busy.retry_after.as_millis().min(u128::from(u32::MAX)) as u32;
    stream.write_all(&[BUSY])?;
    stream.write_all(&millis.to_le_bytes())?;
    write_text_body(stream, &busy.message)
}

/// A status byte's message (and, for [`BUSY`], its wait first).
fn read_answer(stream: &mut TcpStream, status: u8) -> io::Result<CallError> {
    let mut word = [0u8; 4];
    let retry_after = if status == BUSY {
        stream.read_exact(&mut word)?;
        Some(Duration::from_millis(u64::from(u32::from_le_bytes(word))))
    } else {
        None
    };
    stream.read_exact(&mut word)?;
    let message = read_text(stream, u64::from(u32::from_le_bytes(word)))?;
    Ok(match retry_after {
        Some(retry_after) => CallError::Busy(Busy { retry_after, message }),
        None => CallError::Remote(message),
    })
}

/// Reads and drops `bytes` bytes: the tensor of a call answered busy, so that the stream stays
/// in step.
fn skip(stream: &mut TcpStream, bytes: u64) -> io::Result<()> {
    let copied = io::copy(&mut Read::by_ref(stream).take(bytes), &mut io::sink())?;
    if copied < bytes {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn read_text(stream: &mut TcpStream, len: u64) -> io::Result<String> {
    if len > MAX_TEXT as u64 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a text of {len} bytes (at most {MAX_TEXT})")));
    }
    let mut text = vec![0u8; len as usize];
    stream.read_exact(&mut text)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// The bytes of `values` as they go on the wire: the values themselves for f32 on a
/// little-endian machine, else their encoding in `scratch`.
fn wire_bytes<'a>(values: &'a [f32], encoding: Encoding, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if encoding == Encoding::F32Le && cfg!(target_endian = "little") {
        bytemuck::cast_slice(values)
    } else {
        wire::encode_into(values, encoding, scratch);
        scratch
    }
}

/// Reads a tensor of `bytes` bytes into `out`: straight into it for f32 on a little-endian
/// machine, else through `scratch`. The caller has checked `bytes` against `out`'s length.
fn read_tensor(
    stream: &mut TcpStream,
    encoding: Encoding,
    bytes: u64,
    out: &mut [f32],
    scratch: &mut Vec<u8>,
) -> io::Result<std::result::Result<(), wire::WireError>> {
    if encoding == Encoding::F32Le && cfg!(target_endian = "little") {
        stream.read_exact(bytemuck::cast_slice_mut(out))?;
        return Ok(Ok(()));
    }
    scratch.resize(bytes as usize, 0);
    stream.read_exact(scratch)?;
    Ok(wire::decode_into(scratch, encoding, out))
}

/// The server side: accepts data-plane connections for one [`ParamServer`].
pub(crate) struct DataPlaneServer {
    store: Arc<ParamServer>,
    cfg: ServiceConfig,
    /// The async-mode gate on pushes, shared with the gRPC service (`None`: round modes).
    admission: Option<Arc<Admission>>,
    /// Received tensors' vectors, shared with the gRPC service.
    buffers: Arc<BufferPool>,
    /// Open connections (a clone of each socket), shut down when the server stops.
    open: Mutex<HashMap<u64, TcpStream>>,
    /// How many connections are being served, read before each call without a lock: server
    /// threads poll for calls only while there are no more connections than cores. Beyond
    /// that a poller takes a core a call needs: with 256 connections of 100 calls/s each,
    /// polling every connection took the p99 latency of a 10 KB push+pull from ~0.5 ms to
    /// tens of ms here (`shoal bench load`).
    serving: AtomicUsize,
    next_id: AtomicU64,
}

impl DataPlaneServer {
    /// The data plane of `store`, or `None` when the server uses TLS (the data plane has no
    /// encryption, so tensors then go over gRPC).
    pub(crate) fn new(
        store: Arc<ParamServer>,
        cfg: &ServiceConfig,
        admission: Option<Arc<Admission>>,
        buffers: Arc<BufferPool>,
    ) -> Option<Arc<Self>> {
        cfg.tls.is_none().then(|| {
            Arc::new(DataPlaneServer {
                store,
                cfg: cfg.clone(),
                admission,
                buffers,
                open: Mutex::default(),
                serving: AtomicUsize::new(0),
                next_id: AtomicU64::new(0),
            })
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `stream` (whose first byte was [`MAGIC`]'s) on a thread of its own; `slot` is
    /// its place in the server's connection count.
    pub(crate) fn accept(self: &Arc<Self>, stream: TcpStream, slot: Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            self.open().insert(id, clone);
        }
        let server = Arc::clone(self);
        self.serving.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new().name(format!("shoal-ps-data-{id}")).spawn(move || {
            let mut stream = stream;
            let _ = server.serve(&mut stream, &slot);
            server.open().remove(&id);
            server.serving.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            self.open().remove(&id);
            self.serving.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Shuts every open connection down (their threads see the end of the stream and exit).
    pub(crate) fn close_all(&self) {
        for (_, stream) in self.open().drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// The handshake: magic, protocol, layout, shard and token, checked as `Hello` checks them,
    /// then room for the connection (answered busy when the server holds all it may).
    fn handshake(&self, stream: &mut TcpStream, slot: &Slot) -> io::Result<bool> {
        let mut head = [0u8; 30];
        stream.read_exact(&mut head)?;
        let token = read_text(stream, u64::from(u16::from_le_bytes([head[28], head[29]])))?;
        let refusal = if head[..8] != MAGIC {
            Some("not a shoal data-plane client".to_string())
        } else if !self.cfg.token.matches(token.as_bytes()) {
            Some(format!("wrong token: set {} to the run's token", crate::auth::TOKEN_ENV))
        } else {
            let layout = format!("{:016x}", u64_at(&head, 12));
            check_peer(&self.cfg, u32_at(&head, 8), &layout, u32_at(&head, 20), u32_at(&head, 24)).err()
        };
        if let Some(refusal) = refusal {
            write_text(stream, ERROR, &refusal)?;
            return Ok(false);
        }
        if !slot.admit() {
            write_busy(stream, &slot.busy())?;
            return Ok(false);
        }
        write_text(stream, OK, "")?;
        Ok(true)
    }

    fn serve(&self, stream: &mut TcpStream, slot: &Slot) -> io::Result<()> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        if !self.handshake(stream, slot)? {
            return Ok(());
        }
        // Between calls a worker may think (roll out, compute) for as long as it likes.
        stream.set_read_timeout(None)?;
        let len = self.store.len();
        let mut scratch = Vec::new();
        let mut reads = PolledReads::new(spin_budget(true));
        loop {
            reads.set_polling(self.serving.load(Ordering::Relaxed) <= cores());
            let mut head = [0u8; REQUEST_BYTES];
            match reads.read_exact(stream, &mut head) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                other => other?,
            }
            let (request, bytes) = match Call::parse(&head) {
                Ok(parsed) => parsed,
                Err(message) => return write_text(stream, ERROR, &message),
            };
            let expected = if request.op.sends() { wire::encoded_len(len, request.encoding) as u64 } else { 0 };
            if bytes != expected {
                // The stream cannot be resynchronized: answer, and close.
                let message = format!(
                    "a tensor of {bytes} bytes where this shard ({len} parameters, {:?}) takes {expected}; is the worker running another model layout?",
                    request.encoding
                );
                return write_text(stream, ERROR, &message);
            }
            if !request.op.sends() {
                self.answer(stream, request, &mut [], &mut scratch)?;
                continue;
            }
            let permit = match self.admission.as_ref().map(|gate| gate.try_admit()).transpose() {
                Ok(permit) => permit,
                Err(busy) => {
                    skip(stream, bytes)?;
                    write_busy(stream, &busy)?;
                    continue;
                }
            };
            // A client may not stall in the middle of a tensor while it holds a permit.
            stream.set_read_timeout(Some(self.cfg.limits.stall_timeout))?;
            let mut received = self.buffers.take();
            let read = read_tensor(stream, request.encoding, bytes, &mut received, &mut scratch);
            stream.set_read_timeout(None)?;
            let answered = match read? {
                Err(e) => return write_text(stream, ERROR, &format!("malformed tensor: {e}")),
                Ok(()) => self.answer(stream, request, &mut received, &mut scratch),
            };
            self.buffers.give(received);
            drop(permit);
            answered?;
        }
    }

    /// Runs a call on the store and writes the answer.
    fn answer(
        &self,
        stream: &mut TcpStream,
        request: Call,
        received: &mut [f32],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        match self.call(request, received) {
            Ok((answer, tensor)) => {
                let values = match &tensor {
                    Tensor::None => None,
                    Tensor::Received => Some(&received[..]),
                    Tensor::Snapshot(params) => Some(&params[..]),
                };
                match values {
                    Some(values) => {
                        let body = wire_bytes(values, request.encoding, scratch);
                        write_both(stream, &answer.to_bytes(body.len()), body)
                    }
                    None => stream.write_all(&answer.to_bytes(0)),
                }
            }
            Err(e) => write_text(stream, ERROR, &e.to_string()),
        }
    }

    /// Runs one call on the store; the answer, and the tensor that follows it.
    fn call(&self, call: Call, received: &mut [f32]) -> Result<(Answer, Tensor)> {
        let worker = call.worker as usize;
        let pull = || match self.store.snapshot_if_newer(call.have) {
            Some((params, version)) => (Some(version), Tensor::Snapshot(params)),
            None => (None, Tensor::None),
        };
        Ok(match call.op {
            Op::PushGradient => {
                let outcome = self.store.push_gradient(worker, call.base_version, received)?;
                (Answer { outcome: Some(outcome), params: None }, Tensor::None)
            }
            Op::Pull => {
                let (params, tensor) = pull();
                (Answer { outcome: None, params }, tensor)
            }
            Op::PushGradientPull => {
                let outcome = self.store.push_gradient(worker, call.base_version, received)?;
                let (params, tensor) = pull();
                (Answer { outcome: Some(outcome), params }, tensor)
            }
            Op::PushParams => {
                let outcome = self.store.push_params(worker, received)?;
                let version = match outcome {
                    PushOutcome::Applied { version, .. } | PushOutcome::Stale { version, .. } => version,
                };
                (Answer { outcome: Some(outcome), params: Some(version) }, Tensor::Received)
            }
        })
    }
}

/// The tensor a reply carries.
enum Tensor {
    None,
    /// What the caller pushed, as the store left it (a parameter push's result).
    Received,
    /// The store's parameters, shared until its next update.
    Snapshot(Arc<Vec<f32>>),
}

/// Why a data-plane call failed: the connection (retried on a new one), or the server's answer.
pub(crate) enum CallError {
    Io(io::Error),
    /// The server refused the handshake.
    Refused(String),
    /// The server answered the call with an error.
    Remote(String),
    /// The server is overloaded (too many pushes in flight, or no room for the connection):
    /// try again after the wait it advises. The connection stays in step.
    Busy(Busy),
    /// The caller broke the call order (a send while a reply is unread, a receive with none
    /// sent); the connection is untouched.
    OutOfOrder(&'static str),
}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> Self {
        CallError::Io(e)
    }
}

/// Data-plane clients open in this process. A client polls for its replies only while there
/// are no more of them than cores (one worker process holds one per shard); a process of
/// many clients — `shoal bench load`'s simulated workers — would spin its cores away.
static CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// The client side: one connection to a server's data plane.
pub(crate) struct DataPlaneClient {
    stream: TcpStream,
    scratch: Vec<u8>,
    reads: PolledReads,
    /// A call sent whose reply is not read yet (at most one: a second request could not be
    /// written while the server blocks writing a large reply nobody reads).
    pending: Option<Call>,
}

impl Drop for DataPlaneClient {
    fn drop(&mut self) {
        CLIENTS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// This machine's cores (what polling may take).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Who a client says it is in the handshake.
pub(crate) struct Introduction<'a> {
    pub token: &'a Token,
    pub layout_hash: u64,
    pub shard: u32,
    pub shards: u32,
}

impl DataPlaneClient {
    /// Connects to `addr` and introduces the client; the server's refusal is
    /// [`CallError::Refused`].
    pub(crate) fn connect(addr: &str, who: &Introduction<'_>) -> std::result::Result<Self, CallError> {
        // A bounded connect, as gRPC's (an unplugged host would otherwise hold it for minutes
        // of SYN retries, past the retry window's own backoff).
        let target =
            addr.to_socket_addrs()?.next().ok_or_else(|| io::Error::other(format!("{addr} has no address")))?;
        let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        let secret = who.token.secret().as_bytes();
        let mut head = [0u8; 30];
        head[..8].copy_from_slice(&MAGIC);
        head[8..12].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        head[12..20].copy_from_slice(&who.layout_hash.to_le_bytes());
        head[20..24].copy_from_slice(&who.shard.to_le_bytes());
        head[24..28].copy_from_slice(&who.shards.to_le_bytes());
        head[28..30].copy_from_slice(&(secret.len().min(MAX_TEXT) as u16).to_le_bytes());
        write_both(&mut stream, &head, &secret[..secret.len().min(MAX_TEXT)])?;
        let mut status = [0u8];
        stream.read_exact(&mut status)?;
        match read_answer(&mut stream, status[0])? {
            CallError::Remote(message) if status[0] != OK => return Err(CallError::Refused(message)),
            CallError::Busy(busy) => return Err(CallError::Busy(busy)),
            _ => {}
        }
        CLIENTS.fetch_add(1, Ordering::Relaxed);
        Ok(DataPlaneClient { stream, scratch: Vec::new(), reads: PolledReads::new(spin_budget(false)), pending: None })
    }

    /// One call: the header, `send` when the call carries a tensor, and the reply, whose
    /// parameters (if the server sent any) land in `receive`.
    pub(crate) fn call(
        &mut self,
        request: Call,
        send: &[f32],
        receive: &mut [f32],
    ) -> std::result::Result<Answer, CallError> {
        self.send(request, send)?;
        self.receive(receive)
    }

    /// The first half of a call: the header and `send` (when the call carries a tensor). The
    /// reply waits in the socket for [`DataPlaneClient::receive`].
    pub(crate) fn send(&mut self, request: Call, send: &[f32]) -> std::result::Result<(), CallError> {
        if self.pending.is_some() {
            return Err(CallError::OutOfOrder("a call was sent while the reply to the previous one was unread"));
        }
        let body = if request.op.sends() { wire_bytes(send, request.encoding, &mut self.scratch) } else { &[] };
        write_both(&mut self.stream, &request.to_bytes(body.len()), body)?;
        self.pending = Some(request);
        Ok(())
    }

    /// The second half of a call: the reply to what [`DataPlaneClient::send`] sent, its
    /// parameters (if the server sent any) into `receive`.
    pub(crate) fn receive(&mut self, receive: &mut [f32]) -> std::result::Result<Answer, CallError> {
        let Some(request) = self.pending.take() else {
            return Err(CallError::OutOfOrder("a reply was read with no call sent"));
        };
        let mut head = [0u8; REPLY_BYTES];
        self.reads.set_polling(CLIENTS.load(Ordering::Relaxed) <= cores());
        self.reads.read_exact(&mut self.stream, &mut head[..1])?;
        if head[0] != OK {
            return Err(read_answer(&mut self.stream, head[0])?);
        }
        self.stream.read_exact(&mut head[1..])?;
        let invalid = |m: String| CallError::Io(io::Error::new(io::ErrorKind::InvalidData, m));
        let (reply, bytes) = Answer::parse(&head).map_err(invalid)?;
        if reply.params.is_some() {
            let expected = wire::encoded_len(receive.len(), request.encoding) as u64;
            if bytes != expected {
                return Err(invalid(format!("the server sent {bytes} bytes of parameters, expected {expected}")));
            }
            read_tensor(&mut self.stream, request.encoding, bytes, receive, &mut self.scratch)?
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_survive_the_wire() {
        for op in [Op::PushGradient, Op::Pull, Op::PushGradientPull, Op::PushParams] {
            for have in [None, Some(0), Some(u64::MAX)] {
                let request = Call { op, encoding: Encoding::Int8, worker: 7, base_version: 1 << 40, have };
                assert_eq!(Call::parse(&request.to_bytes(123)), Ok((request, 123)));
            }
        }
        let outcomes = [
            None,
            Some(PushOutcome::Applied { version: 5, staleness: 2 }),
            Some(PushOutcome::Stale { version: 9, staleness: 4 }),
        ];
        for outcome in outcomes {
            for params in [None, Some(3)] {
                let reply = Answer { outcome, params };
                assert_eq!(Answer::parse(&reply.to_bytes(77)), Ok((reply, 77)));
            }
        }
        let mut bad =
            Call { op: Op::Pull, encoding: Encoding::F32Le, worker: 0, base_version: 0, have: None }.to_bytes(0);
        bad[0] = 9;
        assert_eq!(Call::parse(&bad).unwrap_err(), "unknown data-plane call 9");
        bad[0] = 2;
        bad[1] = 5;
        assert_eq!(Call::parse(&bad).unwrap_err(), "unknown tensor encoding 5");
    }
}
