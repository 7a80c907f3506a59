//! The replay over gRPC (`proto/shoal_replay.proto`): [`spawn_replay`] serves a
//! [`LocalReplay`] (what `shoal replay` runs), [`GrpcReplay`] is the [`ReplayStore`] actors and
//! learners of other processes call.
//!
//! Like the parameter server: the run's token on every call, a handshake comparing protocol
//! version and observation width, every message under [`MAX_MESSAGE_BYTES`] (the client splits
//! large inserts into several calls; a sample that would not fit is refused with the largest
//! size that would), and every received column checked before anything is stored. An insert
//! whose reply was lost with a crashing server may be stored twice after the client's retry;
//! replay sampling tolerates a duplicate row.

use std::sync::Arc;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::auth::Token;
use crate::client::{ClientOptions, Connection};
use crate::error::{DistError, Result};
use crate::limits::Limits;
use crate::proto::replay::replay_service_client::ReplayServiceClient;
use crate::proto::replay::replay_service_server::{ReplayService, ReplayServiceServer};
use crate::proto::replay::{
    Columns, InsertRequest, PriorityUpdate, ReplayHello, ReplayHelloReply, ReplayStatsReply, SampleReply,
    SampleRequest, StatsRequest,
};
use crate::proto::PROTOCOL_VERSION;
use crate::replay::{LocalReplay, ReplayStats, ReplayStore, Sample, Transitions};
use crate::service::{spawn_service, Served, ServerHandle, ServerTls};
use crate::wire::MAX_MESSAGE_BYTES;

/// Most rows of widths `obs_dim` and `act_dim` one message may carry: columns and weights as f32, a key as
/// up to 10 varint bytes, with 1 KiB left for framing.
pub fn max_rows_per_message(obs_dim: usize, act_dim: usize) -> usize {
    let row_bytes = (2 * obs_dim + act_dim + 4) * 4 + 10;
    ((MAX_MESSAGE_BYTES - 1024) / row_bytes).max(1)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian f32s of a field that must hold exactly `expected` values.
fn f32s(name: &str, bytes: &[u8], expected: usize) -> std::result::Result<Vec<f32>, String> {
    if bytes.len() != expected * 4 {
        return Err(format!("{name} has {} bytes, {expected} f32 values need {}", bytes.len(), expected * 4));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn encode_columns(t: &Transitions) -> Columns {
    Columns {
        rows: t.len() as u32,
        obs: f32_bytes(&t.obs),
        actions: f32_bytes(&t.actions),
        rewards: f32_bytes(&t.rewards),
        next_obs: f32_bytes(&t.next_obs),
        dones: f32_bytes(&t.dones),
        discounts: f32_bytes(&t.discounts),
    }
}

/// The transitions in `columns`, each column checked against `rows`, `obs_dim` and `act_dim`.
fn decode_columns(columns: &Columns, obs_dim: usize, act_dim: usize) -> std::result::Result<Transitions, String> {
    let n = columns.rows as usize;
    Ok(Transitions {
        obs_dim,
        act_dim,
        obs: f32s("obs", &columns.obs, n * obs_dim)?,
        actions: f32s("actions", &columns.actions, n * act_dim)?,
        rewards: f32s("rewards", &columns.rewards, n)?,
        next_obs: f32s("next_obs", &columns.next_obs, n * obs_dim)?,
        dones: f32s("dones", &columns.dones, n)?,
        discounts: f32s("discounts", &columns.discounts, n)?,
    })
}

fn stats_reply(s: ReplayStats) -> ReplayStatsReply {
    ReplayStatsReply {
        len: s.len,
        capacity: s.capacity,
        inserted: s.inserted,
        sampled: s.sampled,
        priority_updates: s.priority_updates,
        stale_updates: s.stale_updates,
        priority_mean: s.priority_mean,
    }
}

fn stats_of(r: ReplayStatsReply) -> ReplayStats {
    ReplayStats {
        len: r.len,
        capacity: r.capacity,
        inserted: r.inserted,
        sampled: r.sampled,
        priority_updates: r.priority_updates,
        stale_updates: r.stale_updates,
        priority_mean: r.priority_mean,
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

struct ReplayServer {
    replay: Arc<LocalReplay>,
    obs_dim: usize,
    act_dim: usize,
    capacity: u64,
    token: Token,
}

#[tonic::async_trait]
impl ReplayService for ReplayServer {
    async fn hello(&self, request: Request<ReplayHello>) -> Result<Response<ReplayHelloReply>, Status> {
        self.token.check(&request)?;
        let hello = request.into_inner();
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: the client speaks version {}, this replay version {PROTOCOL_VERSION}; run the same shoal release everywhere",
                hello.protocol_version
            )));
        }
        let act_dim = hello.act_dim.max(1) as usize;
        if hello.obs_dim as usize != self.obs_dim || act_dim != self.act_dim {
            return Err(Status::failed_precondition(format!(
                "transition width mismatch: the client's obs_dim and act_dim are {} and {act_dim}, the replay's {} and {}; start actors, learner and replay from the same config",
                hello.obs_dim, self.obs_dim, self.act_dim
            )));
        }
        Ok(Response::new(ReplayHelloReply {
            protocol_version: PROTOCOL_VERSION,
            obs_dim: self.obs_dim as u32,
            capacity: self.capacity,
            act_dim: self.act_dim as u32,
        }))
    }

    async fn insert(&self, request: Request<InsertRequest>) -> Result<Response<ReplayStatsReply>, Status> {
        self.token.check(&request)?;
        let insert = request.into_inner();
        let columns = insert.transitions.unwrap_or_default();
        let batch = decode_columns(&columns, self.obs_dim, self.act_dim).map_err(invalid)?;
        let priorities = match insert.priorities.is_empty() {
            true => None,
            false => Some(f32s("priorities", &insert.priorities, batch.len()).map_err(invalid)?),
        };
        self.replay.insert(&batch, priorities.as_deref()).map_err(invalid)?;
        Ok(Response::new(stats_reply(self.replay.stats().map_err(invalid)?)))
    }

    async fn sample(&self, request: Request<SampleRequest>) -> Result<Response<SampleReply>, Status> {
        self.token.check(&request)?;
        let req = request.into_inner();
        let most = max_rows_per_message(self.obs_dim, self.act_dim);
        if req.size as usize > most {
            return Err(Status::invalid_argument(format!(
                "a sample of {} rows of obs_dim {} exceeds the {MAX_MESSAGE_BYTES}-byte message limit; sample at most {most}",
                req.size, self.obs_dim
            )));
        }
        if !(0.0..=1.0).contains(&req.beta) {
            return Err(Status::invalid_argument(format!("beta must be in [0, 1], got {}", req.beta)));
        }
        let mut sample = Sample::default();
        self.replay
            .sample(req.size as usize, req.beta, &mut sample)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(SampleReply {
            transitions: Some(encode_columns(&sample.batch)),
            keys: sample.keys,
            weights: f32_bytes(&sample.weights),
        }))
    }

    async fn update_priorities(&self, request: Request<PriorityUpdate>) -> Result<Response<ReplayStatsReply>, Status> {
        self.token.check(&request)?;
        let update = request.into_inner();
        let priorities = f32s("priorities", &update.priorities, update.keys.len()).map_err(invalid)?;
        self.replay.update_priorities(&update.keys, &priorities).map_err(invalid)?;
        Ok(Response::new(stats_reply(self.replay.stats().map_err(invalid)?)))
    }

    async fn stats(&self, request: Request<StatsRequest>) -> Result<Response<ReplayStatsReply>, Status> {
        self.token.check(&request)?;
        Ok(Response::new(stats_reply(self.replay.stats().map_err(invalid)?)))
    }
}

/// Serves `replay` on `listen` (port 0 picks a free one) from a background thread; calls
/// must carry `token`; TLS when `tls` is given (feature `tls`). Of `limits`, the connection
/// and per-connection call bounds apply; messages keep the protocol's size, which clients cut
/// their batches to.
pub fn spawn_replay(
    listen: &str,
    replay: Arc<LocalReplay>,
    token: Token,
    tls: Option<&ServerTls>,
    limits: Limits,
) -> Result<ServerHandle> {
    let stats = replay.stats()?;
    let server =
        ReplayServer { obs_dim: replay.obs_dim(), act_dim: replay.act_dim(), capacity: stats.capacity, replay, token };
    let service = ReplayServiceServer::new(server)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let served = Served { limits: Limits { max_message_bytes: MAX_MESSAGE_BYTES, ..limits }, ..Served::plain(tls) };
    spawn_service(listen, "shoal-replay", served, move |builder| builder.add_service(service))
}

/// A remote replay: the [`ReplayStore`] of an actor or learner process.
pub struct GrpcReplay {
    conn: Connection<ReplayServiceClient<Channel>>,
    obs_dim: usize,
    act_dim: usize,
    capacity: u64,
}

impl GrpcReplay {
    /// Connects to `shoal replay` at `addr` for transitions of observation width `obs_dim` and
    /// one action value (a discrete index), retrying while it is unreachable (for
    /// `options.retry_for`).
    pub fn connect(addr: &str, obs_dim: usize, options: ClientOptions) -> Result<Self> {
        Self::connect_with_act_dim(addr, obs_dim, 1, options)
    }

    /// The same for actions of `act_dim` values (continuous control).
    pub fn connect_with_act_dim(addr: &str, obs_dim: usize, act_dim: usize, options: ClientOptions) -> Result<Self> {
        let conn = Connection::new("replay server (shoal replay)", addr, options, |channel| {
            ReplayServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        })?;
        let hello =
            ReplayHello { protocol_version: PROTOCOL_VERSION, obs_dim: obs_dim as u32, act_dim: act_dim as u32 };
        let reply = conn.call(|rt, mut client, token| {
            let mut req = Request::new(hello);
            token.attach(&mut req);
            Ok(rt.block_on(client.hello(req))?.into_inner())
        })?;
        Ok(GrpcReplay { conn, obs_dim, act_dim, capacity: reply.capacity })
    }

    /// The server's replay capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn insert_piece(&self, batch: &Transitions, priorities: Option<&[f32]>) -> Result<ReplayStats> {
        let request = InsertRequest {
            transitions: Some(encode_columns(batch)),
            priorities: priorities.map(f32_bytes).unwrap_or_default(),
        };
        self.conn
            .call(|rt, mut client, token| {
                let mut req = Request::new(request.clone());
                token.attach(&mut req);
                Ok(rt.block_on(client.insert(req))?.into_inner())
            })
            .map(stats_of)
    }
}

impl ReplayStore for GrpcReplay {
    fn insert(&self, batch: &Transitions, priorities: Option<&[f32]>) -> Result<ReplayStats> {
        batch.check().map_err(DistError::Replay)?;
        if batch.obs_dim != self.obs_dim || batch.act_dim != self.act_dim {
            return Err(DistError::Replay(format!(
                "transitions of obs_dim {} and act_dim {} for a replay of obs_dim {} and act_dim {}",
                batch.obs_dim, batch.act_dim, self.obs_dim, self.act_dim
            )));
        }
        if let Some(p) = priorities.filter(|p| p.len() != batch.len()) {
            return Err(DistError::Replay(format!("{} priorities for {} transitions", p.len(), batch.len())));
        }
        let rows = max_rows_per_message(self.obs_dim, self.act_dim);
        if batch.len() <= rows {
            return self.insert_piece(batch, priorities);
        }
        let mut piece = Transitions::with_act_dim(self.obs_dim, self.act_dim);
        let mut stats = ReplayStats::default();
        for start in (0..batch.len()).step_by(rows) {
            let end = (start + rows).min(batch.len());
            piece.clear();
            (start..end).for_each(|i| piece.push(batch.row(i)));
            stats = self.insert_piece(&piece, priorities.map(|p| &p[start..end]))?;
        }
        Ok(stats)
    }

    fn sample(&self, size: usize, beta: f64, out: &mut Sample) -> Result<()> {
        let request = SampleRequest { size: size as u32, beta };
        let reply = self.conn.call(|rt, mut client, token| {
            let mut req = Request::new(request);
            token.attach(&mut req);
            Ok(rt.block_on(client.sample(req))?.into_inner())
        })?;
        let malformed = |e: String| DistError::Replay(format!("malformed sample from the replay server: {e}"));
        let columns = reply.transitions.unwrap_or_default();
        if columns.rows as usize != size || reply.keys.len() != size {
            return Err(malformed(format!(
                "{} rows and {} keys for a sample of {size}",
                columns.rows,
                reply.keys.len()
            )));
        }
        out.batch = decode_columns(&columns, self.obs_dim, self.act_dim).map_err(malformed)?;
        out.weights = f32s("weights", &reply.weights, size).map_err(malformed)?;
        out.keys = reply.keys;
        Ok(())
    }

    fn update_priorities(&self, keys: &[u64], priorities: &[f32]) -> Result<()> {
        if keys.len() != priorities.len() {
            return Err(DistError::Replay(format!("{} keys but {} priorities", keys.len(), priorities.len())));
        }
        let request = PriorityUpdate { keys: keys.to_vec(), priorities: f32_bytes(priorities) };
        self.conn.call(|rt, mut client, token| {
            let mut req = Request::new(request.clone());
            token.attach(&mut req);
            Ok(rt.block_on(client.update_priorities(req))?.into_inner())
        })?;
        Ok(())
    }

    fn stats(&self) -> Result<ReplayStats> {
        let reply = self.conn.call(|rt, mut client, token| {
            let mut req = Request::new(StatsRequest {});
            token.attach(&mut req);
            Ok(rt.block_on(client.stats(req))?.into_inner())
        })?;
        Ok(stats_of(reply))
    }
}
