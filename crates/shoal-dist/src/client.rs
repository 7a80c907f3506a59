//! [`GrpcStore`]: a [`ParamStore`] (and [`Coordinator`]) across the network — what `shoal
//! worker` trains against. Algorithms cannot tell it from the in-process server.
//!
//! The client owns a single-threaded tokio runtime and blocks on each call, because workers
//! are plain threads. Calls that fail because the server is unreachable (not started yet,
//! restarting after a crash) are retried with exponential backoff for `retry_for`; calls the
//! server answers busy (overloaded, see [`crate::Limits`]) are retried after the wait it
//! advises, with jitter so that refused workers do not come back together; every other
//! failure — a refused token, a layout mismatch, a malformed reply — is returned at once.
//! A gradient whose reply was lost with a crashing server may be applied twice after the
//! retry; asynchronous SGD tolerates that, as it tolerates staleness.

use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::auth::Token;
use crate::data_plane::{Answer, Call, CallError, DataPlaneClient, Introduction, Op};
use crate::error::{check_len, DistError, Result};
use crate::limits::Busy;
use crate::monitor::{Coordinator, RunStatus};
use crate::proto::param_service_client::ParamServiceClient;
use crate::proto::{
    Chunk, Encoding, HelloReply, HelloRequest, PullRequest, ReportRequest, StatisticsRequest, PROTOCOL_VERSION,
};
use crate::service::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::store::{ParamStore, PushOutcome};
use crate::wire::{self, Assembler, MAX_MESSAGE_BYTES};

/// How a client checks a TLS server: the certificate authority's PEM and the name the server's
/// certificate must carry (feature `tls`).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    pub domain: String,
}

/// How a worker talks to a server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Connect over TLS (plain HTTP/2 when `None`).
    pub tls: Option<ClientTls>,
    pub token: Token,
    /// Encoding of tensors on the wire (f16 halves the bytes, at ~3 significant digits).
    pub encoding: Encoding,
    /// How long to keep retrying an unreachable server before giving up.
    pub retry_for: Duration,
}

/// A remote parameter store (one shard of it when the run is sharded).
pub struct GrpcStore {
    conn: Connection<ParamServiceClient<Channel>>,
    /// What this client says at connect, and what the server answered.
    request: HelloRequest,
    hello: HelloReply,
    /// Int8 error feedback: what rounding took from the gradients pushed so far, added to the
    /// next one (so nothing is lost, only delayed).
    residual: Mutex<Vec<f32>>,
    /// Tensors go over the server's data plane when it offers one (`None`: over gRPC); the
    /// connection is opened at the first call and again after it breaks.
    data_plane: Option<Mutex<Option<DataPlaneClient>>>,
}

/// A gRPC client of service `C` with its own runtime, and the retry rule every call follows.
pub(crate) struct Connection<C> {
    runtime: Runtime,
    client: C,
    /// What the server is, for error messages (`parameter server (shoal ps)`).
    server: &'static str,
    pub(crate) addr: String,
    pub(crate) options: ClientOptions,
    /// Calls the server answered busy (each retried).
    refusals: AtomicU64,
}

/// The waits between attempts of one call, within the retry window.
struct Retry {
    deadline: Instant,
    /// The next wait for an unreachable server: doubling from 50 ms up to 2 s.
    delay: Duration,
}

impl Retry {
    fn new(window: Duration) -> Self {
        Retry { deadline: Instant::now() + window, delay: Duration::from_millis(50) }
    }

    /// Waits before the next attempt at an unreachable server; false when the window is over.
    fn after_unreachable(&mut self) -> bool {
        let waited = self.wait(self.delay);
        self.delay = (self.delay * 2).min(Duration::from_secs(2));
        waited
    }

    /// Waits the server's advice (or the current delay), scaled by a random factor in
    /// [0.5, 1.5); false when the window is over.
    fn after_busy(&mut self, advice: Option<Duration>) -> bool {
        let jitter =
            0.5 + (std::collections::hash_map::RandomState::new().hash_one(Instant::now()) % 1000) as f64 / 1000.0;
        self.wait(advice.unwrap_or(self.delay).mul_f64(jitter))
    }

    fn wait(&self, wait: Duration) -> bool {
        if Instant::now() + wait > self.deadline {
            return false;
        }
        std::thread::sleep(wait);
        true
    }
}

/// The error of one attempt: retried when the server is unreachable.
pub(crate) enum Attempt {
    Status(Status),
    Fatal(DistError),
}

impl From<Status> for Attempt {
    fn from(status: Status) -> Self {
        Attempt::Status(status)
    }
}

fn unreachable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Cancelled => true,
        // A connection cut mid-call surfaces as an unknown h2/transport error.
        Code::Unknown => {
            let message = status.message().to_ascii_lowercase();
            ["transport", "connection", "h2", "broken pipe", "reset"].iter().any(|s| message.contains(s))
        }
        _ => false,
    }
}

impl<C: Clone> Connection<C> {
    /// A lazily connecting channel to `addr` (`host:port`); `client` wraps it in a service
    /// client. Nothing is sent until the first call.
    pub(crate) fn new(
        server: &'static str,
        addr: &str,
        options: ClientOptions,
        client: impl FnOnce(Channel) -> C,
    ) -> Result<Self> {
        // One background thread drives the HTTP/2 connection between calls (window updates,
        // pings); a current-thread runtime would leave it idle until the next call.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| DistError::Setup(format!("cannot start the client runtime: {e}")))?;
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| DistError::Setup(format!("bad server address {addr:?}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME);
        let endpoint = with_tls(endpoint, options.tls.as_ref())?;
        let channel = {
            let _guard = runtime.enter();
            endpoint.connect_lazy()
        };
        let refusals = AtomicU64::new(0);
        Ok(Connection { runtime, client: client(channel), server, addr: addr.to_string(), options, refusals })
    }

    /// Runs one call, retrying with backoff while the server is unreachable or busy.
    pub(crate) fn call<T>(&self, mut attempt: impl FnMut(&Runtime, C, &Token) -> Result<T, Attempt>) -> Result<T> {
        let mut retry = Retry::new(self.options.retry_for);
        loop {
            match attempt(&self.runtime, self.client.clone(), &self.options.token) {
                Ok(value) => return Ok(value),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Status(status)) if unreachable(&status) => {
                    if !retry.after_unreachable() {
                        return Err(self.gave_up(status.message()));
                    }
                }
                Err(Attempt::Status(status)) if status.code() == Code::ResourceExhausted => {
                    self.refusals.fetch_add(1, Ordering::Relaxed);
                    if !retry.after_busy(Busy::retry_after(&status)) {
                        return Err(self.overloaded(status.message()));
                    }
                }
                Err(Attempt::Status(status)) => return Err(self.refusal(status)),
            }
        }
    }

    /// The error of a call whose server stayed unreachable through the retry window.
    fn gave_up(&self, detail: impl std::fmt::Display) -> DistError {
        let detail = format!("{detail} (gave up after {:?})", self.options.retry_for);
        DistError::Unreachable { server: self.server, addr: self.addr.clone(), detail }
    }

    /// The error of a call whose server stayed busy through the retry window.
    fn overloaded(&self, detail: &str) -> DistError {
        let detail = format!("{detail} (still refused after retrying for {:?})", self.options.retry_for);
        DistError::Busy { server: self.server, addr: self.addr.clone(), detail }
    }

    fn refusal(&self, status: Status) -> DistError {
        let (server, addr, detail) = (self.server, self.addr.clone(), status.message().to_string());
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => DistError::Refused { server, addr, detail },
            Code::FailedPrecondition if detail.contains("mismatch") => DistError::Refused { server, addr, detail },
            _ => DistError::Remote { server, addr, detail: format!("{:?}: {detail}", status.code()) },
        }
    }
}

impl GrpcStore {
    /// Connects to the server at `addr` (`host:port`) holding shard `shard` of `shards` of a
    /// model whose layout fingerprint is `layout_hash`, retrying while it is unreachable.
    pub fn connect(addr: &str, layout_hash: u64, shard: u32, shards: u32, options: ClientOptions) -> Result<Self> {
        let conn = Connection::new("parameter server (shoal ps)", addr, options, |channel| {
            ParamServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        })?;
        let request = HelloRequest {
            protocol_version: PROTOCOL_VERSION,
            layout_hash: format!("{layout_hash:016x}"),
            shard,
            shards,
            worker: 0,
        };
        let mut store =
            GrpcStore { conn, request, hello: HelloReply::default(), residual: Default::default(), data_plane: None };
        store.hello = store.say_hello()?;
        if store.hello.data_plane && store.conn.options.tls.is_none() {
            store.data_plane = Some(Mutex::new(None));
        }
        Ok(store)
    }

    /// Sends tensors over gRPC even when the server offers its data plane (what `shoal bench
    /// ps` compares the data plane with).
    pub fn without_data_plane(mut self) -> Self {
        self.data_plane = None;
        self
    }

    /// Whether tensors go over the data plane.
    pub fn uses_data_plane(&self) -> bool {
        self.data_plane.is_some()
    }

    /// Calls the server answered busy so far (each waited for and retried).
    pub fn refusals(&self) -> u64 {
        self.conn.refusals.load(Ordering::Relaxed)
    }

    /// One data-plane call, reconnecting with backoff while the server is unreachable, as
    /// gRPC calls retry.
    fn data_call(&self, request: Call, send: &[f32], receive: &mut [f32]) -> Result<Answer> {
        self.on_data_plane(|client| client.call(request, send, receive))
    }

    /// Sends a call whose reply [`GrpcStore::data_receive`] reads later, reconnecting as
    /// [`GrpcStore::data_call`] does.
    fn data_send(&self, request: Call, send: &[f32]) -> Result<()> {
        self.on_data_plane(|client| client.send(request, send))
    }

    /// The reply to what [`GrpcStore::data_send`] sent. Not retried: a connection lost with
    /// the reply lost the push's outcome too.
    fn data_receive(&self, receive: &mut [f32]) -> Result<Answer> {
        let mut slot = self.data_slot()?;
        let client = slot.as_mut().ok_or_else(|| DistError::Setup("no call is waiting for its reply".into()))?;
        let reply = client.receive(receive);
        match reply {
            // The stream is cut mid-reply: the next call connects afresh.
            Err(CallError::Io(_)) => *slot = None,
            Err(CallError::Busy(_)) => {
                self.conn.refusals.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        reply.map_err(|e| self.call_error(e))
    }

    fn data_slot(&self) -> Result<std::sync::MutexGuard<'_, Option<DataPlaneClient>>> {
        let slot = self.data_plane.as_ref().ok_or_else(|| DistError::Setup("no data plane".into()))?;
        Ok(slot.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `op` on the data-plane connection, connecting first when there is none,
    /// reconnecting with backoff while the server is unreachable, and trying again after the
    /// server's advice while it is busy.
    fn on_data_plane<T>(
        &self,
        mut op: impl FnMut(&mut DataPlaneClient) -> std::result::Result<T, CallError>,
    ) -> Result<T> {
        let addr = self.conn.addr.clone();
        let mut retry = Retry::new(self.conn.options.retry_for);
        let mut slot = self.data_slot()?;
        loop {
            let result = match slot.as_mut() {
                Some(client) => op(client),
                None => {
                    let who = Introduction {
                        token: &self.conn.options.token,
                        layout_hash: u64::from_str_radix(&self.request.layout_hash, 16).unwrap_or(0),
                        shard: self.request.shard,
                        shards: self.request.shards,
                    };
                    DataPlaneClient::connect(&addr, &who).map(|client| slot.insert(client)).and_then(&mut op)
                }
            };
            match result {
                Ok(value) => return Ok(value),
                Err(CallError::Io(e)) => {
                    *slot = None;
                    if !retry.after_unreachable() {
                        return Err(self.conn.gave_up(e));
                    }
                }
                Err(CallError::Busy(busy)) => {
                    self.conn.refusals.fetch_add(1, Ordering::Relaxed);
                    if !retry.after_busy(Some(busy.retry_after)) {
                        return Err(self.conn.overloaded(&busy.message));
                    }
                }
                Err(e) => return Err(self.call_error(e)),
            }
        }
    }

    /// A data-plane failure that retrying cannot mend, as the store's error.
    fn call_error(&self, error: CallError) -> DistError {
        let (server, addr) = (self.conn.server, self.conn.addr.clone());
        match error {
            CallError::Refused(detail) => DistError::Refused { server, addr, detail },
            CallError::Remote(detail) => DistError::Remote { server, addr, detail },
            CallError::Busy(busy) => DistError::Busy { server, addr, detail: busy.message },
            CallError::OutOfOrder(detail) => DistError::Setup(format!("data plane of {addr}: {detail}")),
            CallError::Io(e) => DistError::Unreachable { server, addr, detail: e.to_string() },
        }
    }

    /// Int8 error feedback around a push of `grad`: `push` gets the gradient plus what earlier
    /// roundings left out, and what this rounding leaves out is kept for the next push.
    fn compensated<T>(&self, grad: &[f32], push: impl FnOnce(&[f32]) -> Result<T>) -> Result<T> {
        let encoding = self.conn.options.encoding;
        if encoding != Encoding::Int8 {
            return push(grad);
        }
        let mut residual = self.residual.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        residual.resize(grad.len(), 0.0);
        let sent: Vec<f32> = grad.iter().zip(residual.iter()).map(|(g, r)| g + r).collect();
        let result = push(&sent)?;
        // The server read decoded(sent); the rest waits for the next push.
        wire::decoded(&sent, encoding, &mut residual);
        residual.iter_mut().zip(&sent).for_each(|(r, s)| *r = s - *r);
        Ok(result)
    }

    /// The handshake: the server checks the request and answers with its shard and version.
    fn say_hello(&self) -> Result<HelloReply> {
        self.conn.call(|rt, mut client, token| {
            let mut req = Request::new(self.request.clone());
            token.attach(&mut req);
            Ok(rt.block_on(client.hello(req))?.into_inner())
        })
    }

    /// The server's update mode, as configs spell it.
    pub fn mode(&self) -> &str {
        &self.hello.mode
    }

    /// The encoding of parameters (pulls and parameter pushes): int8 is for gradients only,
    /// where error feedback makes up for the rounding; parameters travel in f32 then.
    fn param_encoding(&self) -> Encoding {
        match self.conn.options.encoding {
            Encoding::Int8 => Encoding::F32Le,
            other => other,
        }
    }

    /// Streams `values` to the server through `call`, encoding them as they go: this thread
    /// encodes chunk i+1 while the runtime sends chunk i (on loopback a 10 MB push spent a
    /// tenth of its time encoding before the first byte left when everything was encoded first).
    fn send_tensor<T: Send + 'static, F>(
        &self,
        rt: &Runtime,
        token: &Token,
        (values, encoding, worker, version): (&[f32], Encoding, usize, u64),
        call: impl FnOnce(Request<ReceiverStream<Chunk>>) -> F,
    ) -> Result<T, Attempt>
    where
        F: Future<Output = Result<T, Attempt>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut request = Request::new(ReceiverStream::new(rx));
        token.attach(&mut request);
        let reply = rt.spawn(call(request));
        for chunk in wire::chunks(values, encoding, worker as u32, version) {
            if tx.blocking_send(chunk).is_err() {
                break; // The call ended early: its result says why.
            }
        }
        drop(tx);
        rt.block_on(reply).map_err(|e| Attempt::Fatal(DistError::Setup(format!("a push to the server failed: {e}"))))?
    }
}

/// Adds the TLS settings to an endpoint.
fn with_tls(endpoint: Endpoint, tls: Option<&ClientTls>) -> Result<Endpoint> {
    match tls {
        None => Ok(endpoint),
        #[cfg(feature = "tls")]
        Some(tls) => {
            let config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
                .domain_name(tls.domain.clone());
            endpoint.tls_config(config).map_err(|e| DistError::Setup(format!("bad TLS settings: {e}")))
        }
        #[cfg(not(feature = "tls"))]
        Some(_) => Err(DistError::Setup(crate::service::NO_TLS.into())),
    }
}

/// Reads a tensor stream into `out`; `None` when the server said the caller is current.
async fn read_tensor(stream: &mut tonic::Streaming<Chunk>, out: &mut [f32]) -> Result<Option<u64>, Attempt> {
    let mut assembler = Assembler::new(out);
    while let Some(chunk) = stream.message().await? {
        if chunk.unchanged {
            return Ok(None);
        }
        assembler.accept(&chunk).map_err(|e| Attempt::Fatal(e.into()))?;
    }
    let (_, version) = assembler.finish().map_err(|e| Attempt::Fatal(e.into()))?;
    Ok(Some(version))
}

impl ParamStore for GrpcStore {
    fn len(&self) -> usize {
        self.hello.len as usize
    }

    fn version(&self) -> u64 {
        // The cheapest way to ask: a Hello costs one small round trip. The trait's answer is
        // infallible, so an unreachable server reports the version seen at connect.
        self.say_hello().map_or(self.hello.version, |reply| reply.version)
    }

    fn pull(&self, have: Option<u64>, out: &mut [f32]) -> Result<Option<u64>> {
        check_len("pull buffer", out.len(), self.len())?;
        let encoding = self.param_encoding();
        if self.data_plane.is_some() {
            let request = Call { op: Op::Pull, encoding, worker: 0, base_version: 0, have };
            return Ok(self.data_call(request, &[], out)?.params);
        }
        self.conn.call(|rt, mut client, token| {
            let mut req = Request::new(PullRequest { have_version: have, encoding: encoding as i32 });
            token.attach(&mut req);
            rt.block_on(async {
                let mut stream = client.pull(req).await?.into_inner();
                read_tensor(&mut stream, out).await
            })
        })
    }

    fn push_gradient(&self, worker: usize, base_version: u64, grad: &[f32]) -> Result<PushOutcome> {
        check_len("gradient", grad.len(), self.len())?;
        let encoding = self.conn.options.encoding;
        self.compensated(grad, |sent| {
            if self.data_plane.is_some() {
                let request = Call { op: Op::PushGradient, encoding, worker: worker as u32, base_version, have: None };
                return pushed(self.data_call(request, sent, &mut [])?);
            }
            let reply = self.conn.call(|rt, mut client, token| {
                self.send_tensor(rt, token, (sent, encoding, worker, base_version), |request| async move {
                    Ok(client.push_gradient(request).await?.into_inner())
                })
            })?;
            let (version, staleness) = (reply.version, reply.staleness);
            Ok(if reply.applied {
                PushOutcome::Applied { version, staleness }
            } else {
                PushOutcome::Stale { version, staleness }
            })
        })
    }

    fn push_gradient_and_pull(
        &self,
        worker: usize,
        base_version: u64,
        grad: &[f32],
        have: Option<u64>,
        out: &mut [f32],
    ) -> Result<(PushOutcome, Option<u64>)> {
        let Some(request) = self.push_pull_call(worker, base_version, have) else {
            let outcome = self.push_gradient(worker, base_version, grad)?;
            return Ok((outcome, self.pull(have, out)?));
        };
        check_len("gradient", grad.len(), self.len())?;
        check_len("pull buffer", out.len(), self.len())?;
        self.compensated(grad, |sent| {
            let reply = self.data_call(request, sent, out)?;
            Ok((pushed(reply)?, reply.params))
        })
    }

    fn start_push_gradient_and_pull(
        &self,
        worker: usize,
        base_version: u64,
        grad: &[f32],
        have: Option<u64>,
    ) -> Result<bool> {
        let Some(request) = self.push_pull_call(worker, base_version, have) else {
            return Ok(false);
        };
        check_len("gradient", grad.len(), self.len())?;
        self.compensated(grad, |sent| self.data_send(request, sent))?;
        Ok(true)
    }

    fn finish_push_gradient_and_pull(&self, out: &mut [f32]) -> Result<(PushOutcome, Option<u64>)> {
        check_len("pull buffer", out.len(), self.len())?;
        match self.data_receive(out) {
            Ok(reply) => Ok((pushed(reply)?, reply.params)),
            // The connection went with the reply: whether the server applied the push is
            // unknown, so it counts as not applied, and the worker goes on from what the
            // server holds (pulled with the usual retries). A push answered busy is returned
            // as `DistError::Busy`: nothing was applied, and the caller may push again.
            Err(DistError::Unreachable { .. }) => {
                let pulled = self.pull(None, out)?;
                Ok((PushOutcome::Stale { version: pulled.unwrap_or(0), staleness: 0 }, pulled))
            }
            Err(e) => Err(e),
        }
    }

    fn push_params(&self, worker: usize, params: &mut [f32]) -> Result<PushOutcome> {
        check_len("parameters", params.len(), self.len())?;
        if self.data_plane.is_some() {
            let request = Call {
                op: Op::PushParams,
                encoding: self.param_encoding(),
                worker: worker as u32,
                base_version: 0,
                have: None,
            };
            let sent = params.to_vec();
            return pushed(self.data_call(request, &sent, params)?);
        }
        let len = params.len();
        let (version, back) = self.conn.call(|rt, mut client, token| {
            self.send_tensor(rt, token, (params, self.param_encoding(), worker, 0), |request| async move {
                let mut stream = client.push_params(request).await?.into_inner();
                let mut back = vec![0.0f32; len];
                Ok((read_tensor(&mut stream, &mut back).await?, back))
            })
        })?;
        params.copy_from_slice(&back);
        Ok(PushOutcome::Applied { version: version.unwrap_or(0), staleness: 0 })
    }
}

impl GrpcStore {
    /// The data-plane call that pushes a gradient and pulls in one round trip, where the
    /// gradient and the parameters coming back share an encoding (int8 is for gradients
    /// only); `None` when the push and the pull must be two calls.
    fn push_pull_call(&self, worker: usize, base_version: u64, have: Option<u64>) -> Option<Call> {
        let encoding = self.conn.options.encoding;
        (self.data_plane.is_some() && encoding == self.param_encoding()).then_some(Call {
            op: Op::PushGradientPull,
            encoding,
            worker: worker as u32,
            base_version,
            have,
        })
    }
}

/// The outcome a data-plane reply to a push carries.
fn pushed(reply: Answer) -> Result<PushOutcome> {
    reply.outcome.ok_or_else(|| DistError::Setup("the server answered a push without its outcome".into()))
}

impl GrpcStore {
    fn send_report(&self, request: ReportRequest) -> Result<RunStatus> {
        let reply = self.conn.call(|rt, mut client, token| {
            let mut req = Request::new(request.clone());
            token.attach(&mut req);
            Ok(rt.block_on(client.report(req))?.into_inner())
        })?;
        Ok(RunStatus {
            stop: reply.stop,
            total_env_steps: reply.total_env_steps,
            episodes: reply.episodes,
            return_mean: reply.return_mean,
        })
    }
}

impl Coordinator for GrpcStore {
    fn report(&self, worker: usize, env_steps: u64, episodes: &[(f64, u64)]) -> Result<RunStatus> {
        self.send_report(ReportRequest {
            worker: worker as u32,
            env_steps,
            episode_returns: episodes.iter().map(|e| e.0).collect(),
            episode_lengths: episodes.iter().map(|e| e.1).collect(),
            solved: false,
        })
    }

    fn solved(&self, worker: usize) -> Result<RunStatus> {
        self.send_report(ReportRequest { worker: worker as u32, solved: true, ..ReportRequest::default() })
    }

    fn share_statistics(&self, worker: usize, values: &[f64]) -> Result<Vec<Vec<f64>>> {
        let request = StatisticsRequest { worker: worker.min(u32::MAX as usize) as u32, values: values.to_vec() };
        let reply = self.conn.call(|rt, mut client, token| {
            let mut req = Request::new(request.clone());
            token.attach(&mut req);
            Ok(rt.block_on(client.share_statistics(req))?.into_inner())
        })?;
        Ok(reply.peers.into_iter().map(|p| p.values).collect())
    }
}

impl crate::sharded::ShardedStore<GrpcStore> {
    /// Connects to the servers of every shard, `addrs[i]` holding shard i, for a model of
    /// `len` parameters with layout fingerprint `layout_hash` (a worker's view of a run).
    pub fn connect(addrs: &[String], layout_hash: u64, len: usize, options: &ClientOptions) -> Result<Self> {
        let shards = addrs.len() as u32;
        let stores = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| GrpcStore::connect(addr, layout_hash, i as u32, shards, options.clone()))
            .collect::<Result<Vec<_>>>()?;
        Self::new(stores, len)
    }
}
