//! What a parameter server checks a client against — its token, model layout, shard and
//! protocol version — shared by the gRPC service and the data plane, which both refuse a
//! mismatch naming both sides.

use crate::auth::Token;
use crate::limits::Limits;
use crate::proto::PROTOCOL_VERSION;

/// Which part of the whole parameter vector a server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
    /// Index of this shard's first parameter in the whole vector.
    pub offset: u64,
}

impl ShardInfo {
    /// The only shard of an unsharded store.
    pub const WHOLE: ShardInfo = ShardInfo { index: 0, count: 1, offset: 0 };
}

/// A server's TLS identity: PEM certificate chain and private key (feature `tls`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// What a served store is checked against.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Serve over TLS with this identity (plain HTTP/2 when `None`).
    pub tls: Option<ServerTls>,
    pub token: Token,
    /// [`shoal_nn::ParamLayout::fingerprint`] of the whole model.
    pub layout_hash: u64,
    pub shard: ShardInfo,
    /// What the server takes on at once.
    pub limits: Limits,
}

impl ServiceConfig {
    /// A plain-TCP server (no TLS) with the default [`Limits`]: what benchmarks and in-process
    /// servers start with; set `tls` or `limits` on the result for more.
    pub fn new(token: Token, layout_hash: u64, shard: ShardInfo) -> Self {
        ServiceConfig { tls: None, token, layout_hash, shard, limits: Limits::default() }
    }
}

/// The checks of a client's introduction (gRPC `Hello` and the data plane's handshake): the
/// same protocol version, model layout and shard as this server, or a message naming both sides.
pub(crate) fn check_peer(
    cfg: &ServiceConfig,
    protocol_version: u32,
    layout_hash: &str,
    shard: u32,
    shards: u32,
) -> std::result::Result<(), String> {
    if protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version mismatch: the worker speaks version {protocol_version}, this server version {PROTOCOL_VERSION}; run the same shoal release everywhere"
        ));
    }
    let server_hash = format!("{:016x}", cfg.layout_hash);
    if layout_hash != server_hash {
        return Err(format!(
            "model layout mismatch: the worker's layout hash is {layout_hash}, the server's {server_hash}; start both from the same config (env and net sections)"
        ));
    }
    if (shard, shards) != (cfg.shard.index, cfg.shard.count) {
        return Err(format!(
            "shard mismatch: the worker expects shard {shard} of {shards}, this server is shard {} of {}",
            cfg.shard.index, cfg.shard.count
        ));
    }
    Ok(())
}
