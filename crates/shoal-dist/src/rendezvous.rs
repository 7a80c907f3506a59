//! How the tasks of a multi-host run find each other without hand-written address lists:
//! rank 0 serves a small directory ([`spawn_rendezvous`]), each server task (parameter-server
//! shard, replay) registers the address it listens on, and every task waits until the
//! directory holds every role the run expects ([`RendezvousClient::wait_complete`]).
//!
//! A registering task may leave its host empty: rank 0 then records the address the call came
//! from, which is the one the other tasks reach it at on an ordinary cluster network. Every
//! call carries the run's token and says the task's protocol version, world size and config
//! fingerprint; rank 0 refuses a task that differs in any of them, naming both values.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::auth::Token;
use crate::client::{ClientOptions, Connection};
use crate::error::{DistError, Result};
use crate::proto::rendezvous::rendezvous_client::RendezvousClient as RpcClient;
use crate::proto::rendezvous::rendezvous_server::{Rendezvous, RendezvousServer};
use crate::proto::rendezvous::{Directory, LookupRequest, RegisterRequest, Task};
use crate::proto::PROTOCOL_VERSION;
use crate::service::{spawn_service, Served, ServerHandle, ServerTls};

/// What every task of a run must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunIdentity {
    pub world: usize,
    /// A fingerprint of the resolved config.
    pub config_hash: u64,
}

/// Rank 0's directory: the roles the run expects and the addresses registered so far.
pub struct RendezvousState {
    run: RunIdentity,
    token: Token,
    expected: Vec<String>,
    addrs: Mutex<BTreeMap<String, String>>,
}

impl RendezvousState {
    pub fn new(run: RunIdentity, token: Token, expected: Vec<String>) -> Arc<Self> {
        Arc::new(RendezvousState { run, token, expected, addrs: Mutex::new(BTreeMap::new()) })
    }

    /// Records `role` at `addr` (rank 0's own servers register here, without a call).
    pub fn register(&self, role: &str, addr: String) -> std::result::Result<(), Status> {
        if !self.expected.iter().any(|r| r == role) {
            return Err(Status::invalid_argument(format!(
                "unknown role {role:?}: this run expects {}",
                self.expected.join(", ")
            )));
        }
        self.lock().insert(role.to_string(), addr);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.addrs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn directory(&self) -> Directory {
        let addrs = self.lock().clone();
        let complete = self.expected.iter().all(|role| addrs.contains_key(role));
        Directory { addrs: addrs.into_iter().collect(), expected: self.expected.clone(), complete }
    }

    /// Refuses a task that disagrees with rank 0 on the protocol, the world or the config.
    fn check(&self, task: Option<&Task>) -> std::result::Result<(), Status> {
        let task = task.ok_or_else(|| Status::invalid_argument("the request names no task"))?;
        if task.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: task {} speaks version {}, rank 0 version {PROTOCOL_VERSION}; run the same shoal release everywhere",
                task.rank, task.protocol_version
            )));
        }
        if task.world as usize != self.run.world {
            return Err(Status::failed_precondition(format!(
                "world size mismatch: task {} was started as one of {} tasks, rank 0 as one of {}; start every task of the run with the same task count",
                task.rank, task.world, self.run.world
            )));
        }
        if task.config_hash != self.run.config_hash {
            return Err(Status::failed_precondition(format!(
                "config mismatch: task {} runs config {:016x}, rank 0 config {:016x}; give every task the same config file and --set overrides",
                task.rank, task.config_hash, self.run.config_hash
            )));
        }
        Ok(())
    }
}

struct Service(Arc<RendezvousState>);

#[tonic::async_trait]
impl Rendezvous for Service {
    async fn register(&self, request: Request<RegisterRequest>) -> std::result::Result<Response<Directory>, Status> {
        self.0.token.check(&request)?;
        let seen_from = crate::connections::remote_addr(&request).map(|addr| addr.ip());
        let req = request.into_inner();
        self.0.check(req.task.as_ref())?;
        let host = match (req.host.is_empty(), seen_from) {
            (false, _) => req.host,
            (true, Some(ip)) if ip.is_ipv6() => format!("[{ip}]"),
            (true, Some(ip)) => ip.to_string(),
            (true, None) => return Err(Status::invalid_argument("no host given and the caller's address is unknown")),
        };
        let port = u16::try_from(req.port).map_err(|_| Status::invalid_argument(format!("bad port {}", req.port)))?;
        self.0.register(&req.role, format!("{host}:{port}"))?;
        Ok(Response::new(self.0.directory()))
    }

    async fn lookup(&self, request: Request<LookupRequest>) -> std::result::Result<Response<Directory>, Status> {
        self.0.token.check(&request)?;
        self.0.check(request.get_ref().task.as_ref())?;
        Ok(Response::new(self.0.directory()))
    }
}

/// Serves `state` on `listen` (rank 0), over TLS when `tls` is given.
pub fn spawn_rendezvous(listen: &str, state: Arc<RendezvousState>, tls: Option<&ServerTls>) -> Result<ServerHandle> {
    let service = RendezvousServer::new(Service(state));
    spawn_service(listen, "shoal-rendezvous", Served::plain(tls), move |builder| builder.add_service(service))
}

/// A task's client of rank 0's rendezvous.
pub struct RendezvousClient {
    conn: Connection<RpcClient<Channel>>,
    task: Task,
}

impl RendezvousClient {
    /// A client of the rendezvous at `coordinator` for task `rank` of `run`. Calls retry while
    /// rank 0 is unreachable (not started yet), for `options.retry_for`.
    pub fn new(coordinator: &str, rank: usize, run: RunIdentity, options: ClientOptions) -> Result<Self> {
        let conn = Connection::new("rendezvous (rank 0 of shoal run)", coordinator, options, RpcClient::new)?;
        let task = Task {
            protocol_version: PROTOCOL_VERSION,
            rank: rank as u32,
            world: run.world as u32,
            config_hash: run.config_hash,
        };
        Ok(RendezvousClient { conn, task })
    }

    /// Registers `role` listening on `port` at `host` (`None`: the address rank 0 sees).
    pub fn register(&self, role: &str, host: Option<&str>, port: u16) -> Result<()> {
        let request = RegisterRequest {
            task: Some(self.task),
            role: role.to_string(),
            host: host.unwrap_or_default().to_string(),
            port: u32::from(port),
        };
        self.conn.call(|rt, mut client, token: &Token| {
            let mut req = Request::new(request.clone());
            token.attach(&mut req);
            Ok(rt.block_on(client.register(req))?.into_inner())
        })?;
        Ok(())
    }

    /// Waits until every expected role has registered and returns role → `host:port`.
    pub fn wait_complete(&self, timeout: Duration) -> Result<BTreeMap<String, String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let directory = self.conn.call(|rt, mut client, token: &Token| {
                let mut req = Request::new(LookupRequest { task: Some(self.task) });
                token.attach(&mut req);
                Ok(rt.block_on(client.lookup(req))?.into_inner())
            })?;
            if directory.complete {
                return Ok(directory.addrs.into_iter().collect());
            }
            if Instant::now() >= deadline {
                let missing: Vec<&str> = directory
                    .expected
                    .iter()
                    .filter(|role| !directory.addrs.contains_key(*role))
                    .map(String::as_str)
                    .collect();
                return Err(DistError::Setup(format!(
                    "the run's servers did not all register within {timeout:?}: still missing {} (did every task start?)",
                    missing.join(", ")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Encoding;

    fn token(secret: &str) -> Token {
        Token::new(secret).unwrap()
    }

    fn options(secret: &str) -> ClientOptions {
        ClientOptions { tls: None, token: token(secret), encoding: Encoding::F32Le, retry_for: Duration::from_secs(5) }
    }

    #[test]
    fn tasks_register_and_see_a_complete_directory() {
        let run = RunIdentity { world: 3, config_hash: 42 };
        let state = RendezvousState::new(run, token("0123456789abcdef"), vec!["ps0".into(), "replay".into()]);
        let handle = spawn_rendezvous("127.0.0.1:0", Arc::clone(&state), None).unwrap();
        let addr = handle.addr().to_string();
        state.register("ps0", "10.77.0.1:5000".into()).unwrap();
        let client = RendezvousClient::new(&addr, 1, run, options("0123456789abcdef")).unwrap();
        let err = client.wait_complete(Duration::from_millis(300)).unwrap_err().to_string();
        assert!(err.contains("still missing replay"), "{err}");
        client.register("replay", None, 6000).unwrap();
        let addrs = client.wait_complete(Duration::from_secs(1)).unwrap();
        assert_eq!(addrs["ps0"], "10.77.0.1:5000");
        assert_eq!(addrs["replay"], "127.0.0.1:6000", "the host rank 0 saw the call come from");
        let err = client.register("learner", Some("h"), 1).unwrap_err().to_string();
        assert!(err.contains("unknown role \"learner\""), "{err}");
    }

    #[test]
    fn a_task_with_another_world_config_or_token_is_refused() {
        let run = RunIdentity { world: 3, config_hash: 42 };
        let state = RendezvousState::new(run, token("0123456789abcdef"), vec!["ps0".into()]);
        let handle = spawn_rendezvous("127.0.0.1:0", state, None).unwrap();
        let addr = handle.addr().to_string();
        let other_world = RendezvousClient::new(&addr, 1, RunIdentity { world: 4, ..run }, options("0123456789abcdef"));
        let err = other_world.unwrap().wait_complete(Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("one of 4 tasks, rank 0 as one of 3"), "{err}");
        let other_config =
            RendezvousClient::new(&addr, 1, RunIdentity { config_hash: 7, ..run }, options("0123456789abcdef"));
        let err = other_config.unwrap().wait_complete(Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("config mismatch"), "{err}");
        let wrong_token = RendezvousClient::new(&addr, 1, run, options("fedcba9876543210")).unwrap();
        let err = wrong_token.register("ps0", None, 1).unwrap_err().to_string();
        assert!(err.contains("wrong token"), "{err}");
    }
}
