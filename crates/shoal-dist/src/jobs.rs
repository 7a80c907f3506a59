//! A work queue over gRPC (`proto/shoal_jobs.proto`): a coordinator process serves jobs whose
//! content this module never reads (the tuner's trials), worker processes on any host take
//! them, report progress — each report answered with whether to go on — and the end. The
//! coordinator's side is a [`JobSource`]; its calls may block (they wait for the tuner), so
//! they run on tokio's blocking pool, never on the runtime's workers.

use std::sync::Arc;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::auth::Token;
use crate::client::{ClientOptions, Connection};
use crate::error::Result;
use crate::proto::jobs::job_queue_client::JobQueueClient as RpcClient;
use crate::proto::jobs::job_queue_server::{JobQueue, JobQueueServer};
use crate::proto::jobs::{FinishReply, FinishRequest, ProgressReply, ProgressRequest, TakeReply, TakeRequest};
use crate::proto::PROTOCOL_VERSION;
use crate::service::{spawn_service, Served, ServerHandle, ServerTls};

/// What a worker gets when it asks for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Job `id`, described by `payload`.
    Job { id: u64, payload: Vec<u8> },
    /// Nothing now: ask again shortly.
    Wait,
    /// Nothing ever: the worker may exit.
    Done,
}

/// How a job ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEnd {
    /// `Err`: the job failed with this message.
    pub outcome: std::result::Result<(), String>,
    pub steps: u64,
    /// The coordinator's `stop` ended it.
    pub stopped: bool,
}

/// The coordinator's side of the queue. `Err` answers are sent to the worker as errors (a
/// job that is no longer its own, say).
pub trait JobSource: Send + Sync + 'static {
    fn take(&self, worker: &str) -> Take;
    /// Progress of job `id`; `Ok(true)`: stop it.
    fn progress(&self, id: u64, step: u64, metrics: Vec<(String, f64)>) -> std::result::Result<bool, String>;
    fn finish(&self, id: u64, end: JobEnd) -> std::result::Result<(), String>;
}

struct Service {
    source: Arc<dyn JobSource>,
    token: Token,
}

/// Runs a (possibly blocking) call of the source on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::result::Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("the coordinator failed: {e}")))
}

#[tonic::async_trait]
impl JobQueue for Service {
    async fn take(&self, request: Request<TakeRequest>) -> std::result::Result<Response<TakeReply>, Status> {
        self.token.check(&request)?;
        let req = request.into_inner();
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: worker {} speaks version {}, the coordinator version {PROTOCOL_VERSION}; run the same shoal release everywhere",
                req.worker, req.protocol_version
            )));
        }
        let source = Arc::clone(&self.source);
        let reply = match blocking(move || source.take(&req.worker)).await? {
            Take::Job { id, payload } => TakeReply { job: id, payload, done: false },
            Take::Wait => TakeReply::default(),
            Take::Done => TakeReply { done: true, ..TakeReply::default() },
        };
        Ok(Response::new(reply))
    }

    async fn progress(
        &self,
        request: Request<ProgressRequest>,
    ) -> std::result::Result<Response<ProgressReply>, Status> {
        self.token.check(&request)?;
        let req = request.into_inner();
        let source = Arc::clone(&self.source);
        let metrics = req.metrics.into_iter().collect();
        let stop = blocking(move || source.progress(req.job, req.step, metrics)).await?;
        Ok(Response::new(ProgressReply { stop: stop.map_err(Status::failed_precondition)? }))
    }

    async fn finish(&self, request: Request<FinishRequest>) -> std::result::Result<Response<FinishReply>, Status> {
        self.token.check(&request)?;
        let req = request.into_inner();
        let end = JobEnd {
            outcome: if req.error.is_empty() { Ok(()) } else { Err(req.error) },
            steps: req.steps,
            stopped: req.stopped,
        };
        let source = Arc::clone(&self.source);
        blocking(move || source.finish(req.job, end)).await?.map_err(Status::failed_precondition)?;
        Ok(Response::new(FinishReply {}))
    }
}

/// Serves `source` on `listen`, over TLS when `tls` is given; every call must carry `token`.
pub fn spawn_job_queue(
    listen: &str,
    source: Arc<dyn JobSource>,
    token: Token,
    tls: Option<&ServerTls>,
) -> Result<ServerHandle> {
    let service = JobQueueServer::new(Service { source, token });
    spawn_service(listen, "shoal-jobs", Served::plain(tls), move |builder| builder.add_service(service))
}

/// A worker's client of the queue. Calls retry while the coordinator is unreachable.
pub struct JobClient {
    conn: Connection<RpcClient<Channel>>,
    worker: String,
}

impl JobClient {
    pub fn new(addr: &str, worker: &str, options: ClientOptions) -> Result<Self> {
        let conn = Connection::new("job queue (shoal tune --serve)", addr, options, RpcClient::new)?;
        Ok(JobClient { conn, worker: worker.to_string() })
    }

    pub fn take(&self) -> Result<Take> {
        let request = TakeRequest { protocol_version: PROTOCOL_VERSION, worker: self.worker.clone() };
        let reply = self.conn.call(|rt, mut client, token: &Token| {
            let mut req = Request::new(request.clone());
            token.attach(&mut req);
            Ok(rt.block_on(client.take(req))?.into_inner())
        })?;
        Ok(match (reply.job, reply.done) {
            (_, true) => Take::Done,
            (0, false) => Take::Wait,
            (id, false) => Take::Job { id, payload: reply.payload },
        })
    }

    /// Reports job `id`'s progress; `true`: stop it.
    pub fn progress(&self, id: u64, step: u64, metrics: &[(&str, f64)]) -> Result<bool> {
        let request =
            ProgressRequest { job: id, step, metrics: metrics.iter().map(|&(k, v)| (k.to_string(), v)).collect() };
        let reply = self.conn.call(|rt, mut client, token: &Token| {
            let mut req = Request::new(request.clone());
            token.attach(&mut req);
            Ok(rt.block_on(client.progress(req))?.into_inner())
        })?;
        Ok(reply.stop)
    }

    pub fn finish(&self, id: u64, end: &JobEnd) -> Result<()> {
        let request = FinishRequest {
            job: id,
            error: end.outcome.clone().err().unwrap_or_default(),
            steps: end.steps,
            stopped: end.stopped,
        };
        self.conn.call(|rt, mut client, token: &Token| {
            let mut req = Request::new(request.clone());
            token.attach(&mut req);
            Ok(rt.block_on(client.finish(req))?.into_inner())
        })?;
        Ok(())
    }
}
