//! The gRPC face of a [`ParamServer`]: `shoal ps` runs one per shard.
//!
//! Every call is checked for the run's token before its handler runs; `Hello` compares the
//! client's protocol version, model layout and shard with the server's and refuses a mismatch
//! naming both sides; tensor streams are validated chunk by chunk ([`crate::wire`]), and
//! messages above [`Limits::max_message_bytes`] are refused by the transport. A blocking
//! operation (a synchronous round waiting for the other workers) runs on tokio's blocking
//! pool, so it never stalls other calls. What a server takes on at once is bounded
//! ([`crate::limits`]): connections, calls per connection, async pushes in flight (beyond
//! them: `RESOURCE_EXHAUSTED` with `retry-after-ms`), and the chunks of a reply queued for a
//! slow reader.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::InterceptorLayer;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status, Streaming};
use tower::layer::util::{Identity, Stack};

use crate::connections::{admit_call, Connections, CountedStream};
use crate::data_plane::{DataPlaneServer, MAGIC};
use crate::error::{DistError, Result};
use crate::limits::{Admission, BufferPool, Limits};
use crate::monitor::{Coordinator, RunMonitor};
use crate::peer::check_peer;
pub use crate::peer::{ServerTls, ServiceConfig, ShardInfo};
use crate::proto::param_service_server::{ParamService, ParamServiceServer};
use crate::proto::{
    Chunk, Encoding, HelloReply, HelloRequest, PullRequest, PushReply, ReportReply, ReportRequest, StatisticsReply,
    StatisticsRequest, WorkerStatistics, PROTOCOL_VERSION,
};
use crate::server::ParamServer;
use crate::store::{ParamStore, PushOutcome, UpdateMode};
use crate::wire::{self, Assembler};

/// HTTP/2 flow-control windows: large, so a 10 MB tensor is not throttled by round trips.
pub(crate) const STREAM_WINDOW: u32 = 16 << 20;
pub(crate) const CONNECTION_WINDOW: u32 = 32 << 20;
/// HTTP/2 frames of up to 1 MiB (the default 16 KiB cuts a tensor into 64 frames per MiB).
pub(crate) const MAX_FRAME: u32 = 1 << 20;

struct PsService {
    store: Arc<ParamServer>,
    /// Tensors received by pushes, reused by later pushes.
    buffers: Arc<BufferPool>,
    /// The async-mode gate on pushes (`None`: round modes, bounded by their workers).
    admission: Option<Arc<Admission>>,
    /// Counts the run's progress (workers report to every shard); `None` refuses reports.
    monitor: Option<Arc<RunMonitor>>,
    cfg: ServiceConfig,
}

fn status(e: DistError) -> Status {
    match e {
        DistError::Length { .. } | DistError::Worker { .. } | DistError::Wire(_) => {
            Status::invalid_argument(e.to_string())
        }
        DistError::WrongMode { .. } => Status::failed_precondition(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

fn encoding(code: i32) -> Result<Encoding, Status> {
    Encoding::try_from(code).map_err(|_| Status::invalid_argument(format!("unknown tensor encoding {code}")))
}

/// Reads one tensor from a client stream into `values` (the store's length); a client that
/// stops sending mid-tensor for `stall` is cut off.
async fn receive(
    stream: &mut Streaming<Chunk>,
    values: &mut [f32],
    stall: std::time::Duration,
) -> Result<(u32, u64, i32), Status> {
    let mut assembler = Assembler::new(values);
    let mut encoding = 0;
    loop {
        let next = tokio::time::timeout(stall, stream.message()).await.map_err(|_| {
            Status::deadline_exceeded(format!(
                "the client sent nothing for {stall:?} in the middle of a tensor (cluster.stall_seconds)"
            ))
        })?;
        let Some(chunk) = next? else { break };
        encoding = chunk.encoding;
        assembler.accept(&chunk).map_err(|e| status(e.into()))?;
    }
    let (worker, version) = assembler.finish().map_err(|e| status(e.into()))?;
    Ok((worker, version, encoding))
}

/// Chunks of a reply queued for a client (1 MiB): a slow reader holds no more of the server's
/// memory than that, and the encoder waits for it.
const QUEUED_CHUNKS: usize = 4;

/// A tensor on its way to a client: chunks leave as soon as they are encoded.
type ChunkStream = ReceiverStream<Result<Chunk, Status>>;
type ChunkSender = mpsc::Sender<Result<Chunk, Status>>;

fn chunk_channel() -> (ChunkSender, Response<ChunkStream>) {
    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
    (tx, Response::new(ReceiverStream::new(rx)))
}

/// Encodes `values` into `tx` chunk by chunk from a blocking thread (stopping if the client
/// went away).
fn send_chunks(tx: &ChunkSender, values: &[f32], enc: Encoding, worker: u32, version: u64) {
    for chunk in wire::chunks(values, enc, worker, version) {
        if tx.blocking_send(Ok(chunk)).is_err() {
            break;
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("handler failed: {e}")))?.map_err(status)
}

fn push_reply(outcome: PushOutcome) -> PushReply {
    match outcome {
        PushOutcome::Applied { version, staleness } => PushReply { applied: true, version, staleness },
        PushOutcome::Stale { version, staleness } => PushReply { applied: false, version, staleness },
    }
}

impl PsService {
    /// Receives a pushed tensor into a vector of the pool (given back if the stream fails);
    /// the vector and the stream's worker, version and encoding.
    async fn receive_pooled(&self, request: Request<Streaming<Chunk>>) -> Result<(Vec<f32>, (u32, u64, i32)), Status> {
        let mut values = self.buffers.take();
        match receive(&mut request.into_inner(), &mut values, self.cfg.limits.stall_timeout).await {
            Ok(header) => Ok((values, header)),
            Err(e) => {
                self.buffers.give(values);
                Err(e)
            }
        }
    }
}

#[tonic::async_trait]
impl ParamService for PsService {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        self.cfg.token.check(&request)?;
        let hello = request.into_inner();
        let (cfg, shard) = (&self.cfg, self.cfg.shard);
        check_peer(cfg, hello.protocol_version, &hello.layout_hash, hello.shard, hello.shards)
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            layout_hash: format!("{:016x}", cfg.layout_hash),
            shard: shard.index,
            shards: shard.count,
            len: self.store.len() as u64,
            offset: shard.offset,
            mode: self.store.mode().name().to_string(),
            version: self.store.version(),
            data_plane: cfg.tls.is_none(),
        }))
    }

    type PullStream = ChunkStream;

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<ChunkStream>, Status> {
        self.cfg.token.check(&request)?;
        let pull = request.into_inner();
        let (enc, have) = (encoding(pull.encoding)?, pull.have_version);
        let (tx, response) = chunk_channel();
        let unchanged = Chunk { unchanged: true, version: have.unwrap_or(0), ..Chunk::default() };
        // A tensor of one chunk fits the empty queue at once; one of several is encoded on
        // the blocking pool, so the first chunks leave while the rest are copied (on loopback
        // this took a tenth off a 10 MB pull).
        if self.store.len() <= wire::CHUNK_VALUES {
            let sent = self.store.read_if_newer(have, |params, version| {
                wire::chunks(params, enc, 0, version).for_each(|chunk| drop(tx.try_send(Ok(chunk))))
            });
            if sent.is_none() {
                let _ = tx.try_send(Ok(unchanged));
            }
        } else {
            let store = Arc::clone(&self.store);
            tokio::task::spawn_blocking(move || {
                if store.read_if_newer(have, |params, version| send_chunks(&tx, params, enc, 0, version)).is_none() {
                    let _ = tx.blocking_send(Ok(unchanged));
                }
            });
        }
        Ok(response)
    }

    async fn push_gradient(&self, request: Request<Streaming<Chunk>>) -> Result<Response<PushReply>, Status> {
        self.cfg.token.check(&request)?;
        let permit = self.admission.as_ref().map(|gate| gate.try_admit()).transpose().map_err(|busy| busy.status())?;
        let (grad, (worker, base_version, _)) = self.receive_pooled(request).await?;
        let (store, buffers) = (Arc::clone(&self.store), Arc::clone(&self.buffers));
        let outcome = blocking(move || {
            let outcome = store.push_gradient(worker as usize, base_version, &grad);
            buffers.give(grad);
            drop(permit);
            outcome
        })
        .await?;
        Ok(Response::new(push_reply(outcome)))
    }

    type PushParamsStream = ChunkStream;

    async fn push_params(&self, request: Request<Streaming<Chunk>>) -> Result<Response<ChunkStream>, Status> {
        self.cfg.token.check(&request)?;
        let (mut params, (worker, _, enc)) = self.receive_pooled(request).await?;
        let enc = encoding(enc)?;
        let (store, buffers) = (Arc::clone(&self.store), Arc::clone(&self.buffers));
        let (tx, response) = chunk_channel();
        blocking(move || {
            let outcome = store.push_params(worker as usize, &mut params);
            let version = match outcome? {
                PushOutcome::Applied { version, .. } | PushOutcome::Stale { version, .. } => version,
            };
            send_chunks(&tx, &params, enc, worker, version);
            buffers.give(params);
            Ok(())
        })
        .await?;
        Ok(response)
    }

    async fn report(&self, request: Request<ReportRequest>) -> Result<Response<ReportReply>, Status> {
        self.cfg.token.check(&request)?;
        let monitor = self.monitor.as_ref().ok_or_else(|| {
            Status::failed_precondition(format!("shard {} was started without progress counting", self.cfg.shard.index))
        })?;
        let peer = crate::connections::remote_addr(&request);
        let report = request.into_inner();
        if let Some(peer) = peer {
            monitor.note_host(report.worker as usize, peer.to_string());
        }
        if report.episode_returns.len() != report.episode_lengths.len() {
            return Err(Status::invalid_argument("episode_returns and episode_lengths differ in length"));
        }
        let episodes: Vec<(f64, u64)> =
            report.episode_returns.iter().copied().zip(report.episode_lengths.iter().copied()).collect();
        let worker = report.worker as usize;
        let status = if report.solved {
            self.store.freeze_current();
            monitor.report(worker, report.env_steps, &episodes).map_err(status)?;
            monitor.solved(worker).map_err(status)?
        } else {
            monitor.report(worker, report.env_steps, &episodes).map_err(status)?
        };
        Ok(Response::new(ReportReply {
            stop: status.stop,
            total_env_steps: status.total_env_steps,
            episodes: status.episodes,
            return_mean: status.return_mean,
        }))
    }

    async fn share_statistics(&self, request: Request<StatisticsRequest>) -> Result<Response<StatisticsReply>, Status> {
        self.cfg.token.check(&request)?;
        let monitor = self.monitor.as_ref().ok_or_else(|| {
            Status::failed_precondition(format!("shard {} was started without progress counting", self.cfg.shard.index))
        })?;
        let request = request.into_inner();
        let worker = if request.worker == u32::MAX { usize::MAX } else { request.worker as usize };
        let peers = monitor.share_statistics(worker, &request.values).map_err(status)?;
        // Worker indices are not needed by the merge, only the order (the monitor's).
        let peers = peers.into_iter().map(|values| WorkerStatistics { worker: 0, values }).collect();
        Ok(Response::new(StatisticsReply { peers }))
    }
}

/// A running gRPC server: its address, and how to stop it.
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
    /// The data plane beside gRPC (parameter servers without TLS), closed with the server.
    data_plane: Option<Arc<DataPlaneServer>>,
    connections: Arc<Connections>,
    /// The async-mode gate on pushes, for its count of refusals.
    admission: Option<Arc<Admission>>,
}

impl ServerHandle {
    /// The address it listens on (with the port the OS chose for `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now (gRPC and data plane), what [`Limits::max_connections`] bounds.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }

    /// Async pushes being received or applied now (what `max_pending_bytes` bounds).
    pub fn pushes_in_flight(&self) -> usize {
        self.admission.as_ref().map_or(0, |gate| gate.in_flight())
    }

    /// Pushes answered busy so far (async mode's [`Limits::max_pending_bytes`]).
    pub fn refused_pushes(&self) -> u64 {
        self.admission.as_ref().map_or(0, |gate| gate.refused())
    }

    /// Stops accepting calls, lets running ones finish, and waits for the server thread.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(data_plane) = &self.data_plane {
            data_plane.close_all();
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| DistError::Setup("the gRPC server thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The transport's server builder, with TLS when an identity is given.
fn server_builder(tls: Option<&ServerTls>) -> Result<tonic::transport::Server> {
    let builder = tonic::transport::Server::builder();
    match tls {
        None => Ok(builder),
        #[cfg(feature = "tls")]
        Some(tls) => {
            let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
            builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(|e| DistError::Setup(format!("bad TLS certificate or key: {e}")))
        }
        #[cfg(not(feature = "tls"))]
        Some(_) => Err(DistError::Setup(NO_TLS.into())),
    }
}

#[cfg(not(feature = "tls"))]
pub(crate) const NO_TLS: &str =
    "this shoal was built without TLS support: rebuild with `--features tls` to use certificates";

/// Serves `store` on `listen` (e.g. `127.0.0.1:0`) from a background thread with its own
/// tokio runtime; `monitor` answers progress reports.
pub fn spawn(
    listen: &str,
    store: Arc<ParamServer>,
    monitor: Option<Arc<RunMonitor>>,
    cfg: ServiceConfig,
) -> Result<ServerHandle> {
    let (tls, limits) = (cfg.tls.clone(), cfg.limits);
    let buffers = BufferPool::new(store.len());
    let admission = matches!(store.mode(), UpdateMode::Async { .. })
        .then(|| Admission::new(limits.max_pending_bytes, store.len() * 4));
    let data_plane = DataPlaneServer::new(Arc::clone(&store), &cfg, admission.clone(), Arc::clone(&buffers));
    let service = ParamServiceServer::new(PsService { store, buffers, admission: admission.clone(), monitor, cfg })
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let served = Served { tls: tls.as_ref(), limits, data_plane, admission };
    spawn_service(listen, "shoal-ps", served, move |server| server.add_service(service))
}

/// What a gRPC service is served with.
pub(crate) struct Served<'a> {
    pub tls: Option<&'a ServerTls>,
    pub limits: Limits,
    /// The parameter server's data plane, sharing the port.
    pub data_plane: Option<Arc<DataPlaneServer>>,
    pub admission: Option<Arc<Admission>>,
}

impl<'a> Served<'a> {
    /// A service with default limits and no data plane.
    pub(crate) fn plain(tls: Option<&'a ServerTls>) -> Self {
        Served { tls, limits: Limits::default(), data_plane: None, admission: None }
    }
}

/// Accepted connections waiting for the gRPC server to take them: beyond this, accepting waits.
const QUEUED_CONNECTIONS: usize = 64;

/// The connections `listener` accepts, for gRPC, each with its slot in `connections`; with a
/// data plane, a connection whose first byte is the data plane's goes to it instead (on a
/// blocking thread of its own).
fn incoming(
    listener: tokio::net::TcpListener,
    data_plane: Option<Arc<DataPlaneServer>>,
    connections: Arc<Connections>,
) -> ReceiverStream<std::io::Result<CountedStream>> {
    let (tx, rx) = mpsc::channel(QUEUED_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(_) => {
                    // Out of file descriptors or a connection reset before accept: the
                    // listener itself is fine, so wait a moment and go on.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without this, Nagle and delayed ACKs add ~40 ms to small calls.
            let _ = conn.set_nodelay(true);
            let slot = connections.slot();
            let Some(data_plane) = &data_plane else {
                if tx.send(Ok(CountedStream::new(conn, slot))).await.is_err() {
                    return;
                }
                continue;
            };
            let (data_plane, tx) = (Arc::clone(data_plane), tx.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                let peeked = tokio::time::timeout(std::time::Duration::from_secs(10), conn.peek(&mut first)).await;
                match peeked {
                    Ok(Ok(1)) if first[0] == MAGIC[0] => {
                        let conn = conn.into_std().and_then(|c| c.set_nonblocking(false).map(|()| c));
                        if let Ok(conn) = conn {
                            data_plane.accept(conn, slot);
                        }
                    }
                    // HTTP/2 (or TLS, or a peer that closed at once): gRPC's.
                    Ok(Ok(_)) => {
                        let _ = tx.send(Ok(CountedStream::new(conn, slot))).await;
                    }
                    // Silent for 10 s, or failed: dropped.
                    _ => {}
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The server builder every service is added to: calls pass the connection bound first.
pub(crate) type Builder = tonic::transport::Server<Stack<InterceptorLayer<AdmitCall>, Identity>>;
type AdmitCall = fn(Request<()>) -> Result<Request<()>, Status>;

/// Serves what `route` adds to a configured server on `listen`, from a background thread
/// named `name` with its own tokio runtime.
pub(crate) fn spawn_service(
    listen: &str,
    name: &str,
    served: Served<'_>,
    route: impl FnOnce(&mut Builder) -> Router<Stack<InterceptorLayer<AdmitCall>, Identity>> + Send + 'static,
) -> Result<ServerHandle> {
    let Served { tls, limits, data_plane, admission } = served;
    limits.validate()?;
    let listener =
        std::net::TcpListener::bind(listen).map_err(|e| DistError::Setup(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| DistError::Setup(format!("cannot read the bound address: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| DistError::Setup(format!("cannot configure the socket: {e}")))?;
    let (tx, rx) = oneshot::channel::<()>();
    let closer = data_plane.clone();
    let mut builder = server_builder(tls)?
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .concurrency_limit_per_connection(limits.max_calls_per_connection)
        .layer(InterceptorLayer::new(admit_call as AdmitCall));
    let connections = Connections::new(limits.max_connections);
    let counted = Arc::clone(&connections);
    let thread = std::thread::Builder::new()
        .name(format!("{name}-{addr}"))
        .spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| DistError::Setup(format!("cannot start the server runtime: {e}")))?;
            let served = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| DistError::Setup(format!("cannot register the socket: {e}")))?;
                let serve = route(&mut builder).serve_with_incoming(incoming(listener, data_plane, counted));
                // Stopping drops every connection at once (clients keep idle HTTP/2
                // connections open, so a graceful drain could wait forever); clients see the
                // server as unreachable and retry.
                tokio::select! {
                    result = serve => result.map_err(|e| DistError::Setup(format!("the gRPC server on {addr} failed: {e}"))),
                    _ = rx => Ok(()),
                }
            });
            // Handlers blocked in a synchronous round are abandoned, not awaited.
            runtime.shutdown_background();
            served
        })
        .map_err(|e| DistError::Setup(format!("cannot start the server thread: {e}")))?;
    Ok(ServerHandle { addr, shutdown: Some(tx), thread: Some(thread), data_plane: closer, connections, admission })
}
