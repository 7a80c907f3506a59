//! Model parallelism as the design documents define it — different parts of one model in
//! different processes, coordinated by message passing: an MLP cut by layers into pipeline
//! stages. The first stage runs in the caller; a later [`Stage`] is served by another process
//! ([`spawn_stage`], `proto/shoal_pipeline.proto`) and reached through a [`RemoteStage`]:
//! activations travel forward, the gradient of the stage's output travels back, and each
//! stage steps the optimizer of its own layers. Each process holds only its layers, their
//! optimizer state and their activations.
//!
//! A stage computes exactly what the same layers compute inside one network (the same
//! kernels in the same order), so with an elementwise optimizer a pipeline's parameters equal
//! one process's bit for bit (`tests/pipeline.rs`). It pays where a network's layers do not
//! fit one process's memory; for speed on one host it does not — a step waits for the
//! activations' round trip and the stages run one after the other (`shoal bench pipeline`).

use std::sync::{Arc, Mutex};

use shoal_nn::mlp::{Mlp, MlpWorkspace};
use shoal_nn::{Activation, Optimizer, ParamLayout};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::auth::Token;
use crate::client::{ClientOptions, Connection};
use crate::error::{check_len, DistError, Result};
use crate::proto::pipeline::stage_service_client::StageServiceClient;
use crate::proto::pipeline::stage_service_server::{StageService, StageServiceServer};
use crate::proto::pipeline::StageTensor;
use crate::proto::Encoding;
use crate::service::{spawn_service, Served, ServerHandle};
use crate::wire;

/// The largest activation batch either side accepts (rows × width × 4 bytes).
const MAX_STAGE_MESSAGE: usize = 256 << 20;

/// Parameters of the first `k` layers of an MLP of layer widths `sizes`: where the flat vector
/// of the whole network is cut between stage 0 (layers `..k`) and stage 1 (layers `k..`).
pub fn split_point(sizes: &[usize], k: usize) -> usize {
    sizes.windows(2).take(k).map(|w| w[0] * w[1] + w[1]).sum()
}

/// Consecutive layers of an MLP with their parameters, gradient and optimizer.
pub struct Stage {
    mlp: Mlp,
    params: Vec<f32>,
    grads: Vec<f32>,
    optimizer: Box<dyn Optimizer<f32>>,
    ws: MlpWorkspace<f32>,
    /// The inputs of the forward pass kept for the next backward pass, and their rows.
    kept: Vec<f32>,
    kept_rows: Option<usize>,
}

impl Stage {
    /// Layers `sizes[0] → … → sizes[last]`, activated after every layer (with
    /// `activate_output`, also after the last: a stage that feeds another), holding `params`
    /// in the order `Mlp::new` lays them out, stepped by `optimizer`.
    pub fn new(
        sizes: &[usize],
        activation: Activation,
        activate_output: bool,
        params: Vec<f32>,
        optimizer: Box<dyn Optimizer<f32>>,
    ) -> Result<Self> {
        let mut layout = ParamLayout::new();
        let mlp = Mlp::new(&mut layout, "stage", sizes, activation, activate_output);
        if sizes.len() < 2 || params.len() != layout.len() {
            return Err(DistError::Setup(format!(
                "a stage of layer widths {sizes:?} holds {} parameters, got {}",
                layout.len(),
                params.len()
            )));
        }
        let grads = vec![0.0; params.len()];
        Ok(Stage { mlp, params, grads, optimizer, ws: MlpWorkspace::default(), kept: Vec::new(), kept_rows: None })
    }

    pub fn in_dim(&self) -> usize {
        self.mlp.in_dim()
    }

    pub fn out_dim(&self) -> usize {
        self.mlp.out_dim()
    }

    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The stage's output for `rows` rows of `x`; with `keep`, remembers `x` for [`Stage::backward`].
    pub fn forward(&mut self, x: &[f32], rows: usize, keep: bool) -> Result<&[f32]> {
        check_len("stage input", x.len(), rows * self.in_dim())?;
        self.mlp.forward(&self.params, x, rows, &mut self.ws);
        self.kept_rows = None;
        if keep {
            self.kept.clear();
            self.kept.extend_from_slice(x);
            self.kept_rows = Some(rows);
        }
        Ok(self.ws.output())
    }

    /// Backpropagates `d_out` (the gradient of the kept forward's output), steps the
    /// optimizer on the layers' gradient with `lr`, and returns the gradient of the input.
    pub fn backward(&mut self, d_out: &[f32], lr: f32) -> Result<&[f32]> {
        let rows = self.kept_rows.take().ok_or_else(|| {
            DistError::Setup("a stage's backward pass needs a forward pass with keep = true first".into())
        })?;
        check_len("stage output gradient", d_out.len(), rows * self.out_dim())?;
        self.ws.output_grad(rows, self.out_dim()).copy_from_slice(d_out);
        self.grads.fill(0.0);
        self.mlp.backward(&self.params, &mut self.grads, &self.kept, rows, &mut self.ws, true);
        self.optimizer.step(&mut self.params, &self.grads, lr);
        Ok(self.ws.input_grad())
    }
}

fn to_bytes(values: &[f32]) -> bytes::Bytes {
    let mut out = Vec::new();
    wire::encode_into(values, Encoding::F32Le, &mut out);
    out.into()
}

fn from_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(wire::WireError::Ragged { bytes: bytes.len(), width: 4 }.into());
    }
    let mut values = vec![0.0; bytes.len() / 4];
    wire::decode_into(bytes, Encoding::F32Le, &mut values)?;
    Ok(values)
}

struct StageServer {
    stage: Mutex<Stage>,
    token: Token,
}

impl StageServer {
    /// Runs `f` on the stage with the request's values; the stage's answer as a message.
    fn with_stage(
        &self,
        request: Request<StageTensor>,
        f: impl FnOnce(&mut Stage, &StageTensor, &[f32]) -> Result<Vec<f32>>,
    ) -> Result<Response<StageTensor>, Status> {
        self.token.check(&request)?;
        let message = request.into_inner();
        let values = from_bytes(&message.data).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut stage = self.stage.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut stage, &message, &values).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(StageTensor { rows: message.rows, data: to_bytes(&out), ..StageTensor::default() }))
    }
}

#[tonic::async_trait]
impl StageService for StageServer {
    // The stage computes inline: it serves one upstream caller, which waits for the answer.
    async fn forward(&self, request: Request<StageTensor>) -> Result<Response<StageTensor>, Status> {
        self.with_stage(request, |stage, m, x| Ok(stage.forward(x, m.rows as usize, m.keep)?.to_vec()))
    }

    async fn backward(&self, request: Request<StageTensor>) -> Result<Response<StageTensor>, Status> {
        self.with_stage(request, |stage, m, d_out| Ok(stage.backward(d_out, m.lr)?.to_vec()))
    }

    async fn params(&self, request: Request<StageTensor>) -> Result<Response<StageTensor>, Status> {
        self.with_stage(request, |stage, _, _| Ok(stage.params().to_vec()))
    }
}

/// Serves `stage` on `listen` (e.g. `127.0.0.1:0`) to callers with `token`, from a background
/// thread (what a pipeline's later process runs).
pub fn spawn_stage(listen: &str, stage: Stage, token: Token) -> Result<ServerHandle> {
    let service = StageServiceServer::new(StageServer { stage: Mutex::new(stage), token })
        .max_decoding_message_size(MAX_STAGE_MESSAGE)
        .max_encoding_message_size(MAX_STAGE_MESSAGE);
    spawn_service(listen, "shoal-stage", Served::plain(None), move |server| server.add_service(service))
}

/// A stage served by another process, as the stage before it sees it.
pub struct RemoteStage {
    conn: Arc<Connection<StageServiceClient<Channel>>>,
}

impl RemoteStage {
    /// A client of the stage at `addr` (`host:port`); calls retry while it is unreachable.
    pub fn connect(addr: &str, options: ClientOptions) -> Result<Self> {
        let conn = Connection::new("pipeline stage", addr, options, |channel| {
            StageServiceClient::new(channel)
                .max_decoding_message_size(MAX_STAGE_MESSAGE)
                .max_encoding_message_size(MAX_STAGE_MESSAGE)
        })?;
        Ok(RemoteStage { conn: Arc::new(conn) })
    }

    fn send(&self, message: StageTensor, kind: Call) -> Result<Vec<f32>> {
        let reply = self.conn.call(|rt, mut client, token| {
            let mut request = Request::new(message.clone());
            token.attach(&mut request);
            let reply = match kind {
                Call::Forward => rt.block_on(client.forward(request)),
                Call::Backward => rt.block_on(client.backward(request)),
                Call::Params => rt.block_on(client.params(request)),
            };
            Ok(reply?.into_inner())
        })?;
        from_bytes(&reply.data)
    }

    /// The stage's output for `rows` rows of `x` (kept for a backward pass with `keep`).
    pub fn forward(&self, x: &[f32], rows: usize, keep: bool) -> Result<Vec<f32>> {
        self.send(StageTensor { rows: rows as u32, data: to_bytes(x), lr: 0.0, keep }, Call::Forward)
    }

    /// The gradient of the kept forward's input, after the stage stepped with `lr`.
    pub fn backward(&self, d_out: &[f32], rows: usize, lr: f32) -> Result<Vec<f32>> {
        self.send(StageTensor { rows: rows as u32, data: to_bytes(d_out), lr, keep: false }, Call::Backward)
    }

    /// The stage's parameters.
    pub fn params(&self) -> Result<Vec<f32>> {
        self.send(StageTensor::default(), Call::Params)
    }
}

#[derive(Clone, Copy)]
enum Call {
    Forward,
    Backward,
    Params,
}
