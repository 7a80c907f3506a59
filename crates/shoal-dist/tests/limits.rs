//! A server under more load than it takes: overloaded pushes are answered with the documented
//! status (gRPC `RESOURCE_EXHAUSTED` with `retry-after-ms`, the data plane's busy reply) and
//! the server keeps serving; a client stuck in the middle of a tensor is cut off after the
//! stall timeout and does not hold a synchronous round past the round's timeout; connection
//! and message-size limits refuse cleanly, and a closed connection frees its place.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_dist::proto::param_service_client::ParamServiceClient;
use shoal_dist::proto::{Chunk, PROTOCOL_VERSION};
use shoal_dist::{
    shard_range, spawn, ClientOptions, Coordinator, DistError, Encoding, GrpcStore, Limits, ParamServer, ParamStore,
    PushOutcome, RunMonitor, ServerHandle, ServiceConfig, ShardInfo, ShardedStore, StopRule, Token, UpdateMode,
};
use shoal_nn::Sgd;

const LAYOUT: u64 = 0x10ad;
const SECRET: &str = "load-test-token-0123456789";

fn serve(len: usize, mode: UpdateMode, limits: Limits) -> (Arc<ParamServer>, ServerHandle) {
    serve_shard(len, mode, limits, ShardInfo::WHOLE)
}

fn serve_shard(len: usize, mode: UpdateMode, limits: Limits, shard: ShardInfo) -> (Arc<ParamServer>, ServerHandle) {
    let store = Arc::new(ParamServer::new(vec![0.0; len], Box::new(Sgd::new(len, 0.0, false)), 1e-3, mode));
    let config = ServiceConfig { limits, ..ServiceConfig::new(Token::new(SECRET).unwrap(), LAYOUT, shard) };
    let monitor = Arc::new(RunMonitor::new(StopRule { env_steps: None, episode_return_mean: None, window: 100 }));
    let handle = spawn("127.0.0.1:0", Arc::clone(&store), Some(monitor), config).unwrap();
    (store, handle)
}

fn options(retry_seconds: u64) -> ClientOptions {
    let retry_for = Duration::from_secs(retry_seconds);
    ClientOptions { tls: None, token: Token::new(SECRET).unwrap(), encoding: Encoding::F32Le, retry_for }
}

fn client(handle: &ServerHandle, retry_for: Duration) -> GrpcStore {
    let options = ClientOptions { retry_for, ..options(0) };
    GrpcStore::connect(&handle.addr().to_string(), LAYOUT, 0, 1, options).unwrap()
}

const ASYNC: UpdateMode = UpdateMode::Async { max_staleness: None };

/// A raw data-plane connection that has sent a push's header and half its tensor, then
/// stops: it holds the push's place at the server until the stall timeout cuts it off.
fn stall_mid_push(handle: &ServerHandle, len: usize, worker: u32) -> TcpStream {
    let mut stream = TcpStream::connect(handle.addr()).unwrap();
    let mut hello = b"SHOALDP1".to_vec();
    hello.extend(PROTOCOL_VERSION.to_le_bytes());
    hello.extend(LAYOUT.to_le_bytes());
    hello.extend(0u32.to_le_bytes());
    hello.extend(1u32.to_le_bytes());
    hello.extend((SECRET.len() as u16).to_le_bytes());
    hello.extend(SECRET.as_bytes());
    stream.write_all(&hello).unwrap();
    let mut ok = [0u8; 5];
    stream.read_exact(&mut ok).unwrap();
    assert_eq!(ok, [0; 5], "handshake accepted");
    // PushGradient, f32, worker, base version 0, no pull, `len` values.
    let mut head = vec![1u8, 0, 0, 0];
    head.extend(worker.to_le_bytes());
    head.extend([0u8; 16]);
    head.extend((len as u64 * 4).to_le_bytes());
    head.extend([0u8; 8]);
    stream.write_all(&head).unwrap();
    stream.write_all(&vec![0u8; len * 2]).unwrap();
    stream
}

/// Waits until `done` holds, for at most `within`.
fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[test]
fn a_full_server_answers_busy_with_advice_on_both_planes_and_keeps_serving() {
    let len = 4096;
    let stall = Duration::from_millis(1500);
    let limits = Limits { max_pending_bytes: len * 4, stall_timeout: stall, ..Limits::default() };
    let (store, handle) = serve(len, ASYNC, limits);
    let grad = vec![1.0f32; len];
    // The only place for a push is taken by a client that stalls mid-tensor.
    let stuck = stall_mid_push(&handle, len, 0);
    let held_since = Instant::now();
    // The server reads the stalled push's header on a thread of its own: wait until it holds the place.
    assert!(eventually(Duration::from_secs(5), || handle.pushes_in_flight() == 1), "the stalled push took the place");

    // gRPC: RESOURCE_EXHAUSTED carrying retry-after-ms, before the tensor is read.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let mut raw = ParamServiceClient::connect(format!("http://{}", handle.addr())).await.unwrap();
        let chunks = shoal_dist::wire::chunks(&grad, Encoding::F32Le, 1, 0).collect::<Vec<Chunk>>();
        let mut request = tonic::Request::new(tokio_stream::iter(chunks));
        request.metadata_mut().insert("authorization", format!("Bearer {SECRET}").parse().unwrap());
        raw.push_gradient(request).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("pushes are already in flight"), "{}", status.message());
    let advice: u64 = status.metadata().get("retry-after-ms").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=2000).contains(&advice), "advice {advice} ms");

    // Clients that may not wait get the overload as an error that names the fix, on the data
    // plane and on gRPC.
    for impatient in [client(&handle, Duration::ZERO), client(&handle, Duration::ZERO).without_data_plane()] {
        match impatient.push_gradient(1, 0, &grad) {
            Err(DistError::Busy { detail, .. }) => assert!(detail.contains("cluster.shards"), "{detail}"),
            other => panic!("expected busy, got {other:?}"),
        }
        assert_eq!(impatient.refusals(), 1);
        // Pulls are not gated: the server keeps serving them.
        assert_eq!(impatient.pull(None, &mut vec![0.0; len]).unwrap(), Some(0));
    }
    assert_eq!(handle.refused_pushes(), 3);
    assert_eq!(store.version(), 0, "no refused push reached the parameters");

    // A patient client waits, retrying, until the stalled one is cut off and its place freed.
    let patient = client(&handle, Duration::from_secs(20));
    let outcome = patient.push_gradient(2, 0, &grad).unwrap();
    assert!(held_since.elapsed() >= stall, "the stalled push held its place until the stall timeout");
    assert!(matches!(outcome, PushOutcome::Applied { version: 1, .. }), "{outcome:?}");
    assert!(patient.refusals() >= 1);
    let mut rest = Vec::new();
    let mut stuck = stuck;
    stuck.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(stuck.read_to_end(&mut rest).unwrap_or(0), 0, "the stalled connection was closed");
}

#[test]
fn many_clients_against_one_place_per_shard_all_land_their_pushes() {
    let len = 1 << 16;
    let (clients, pushes) = (16, 20);
    for shards in [1u32, 2] {
        let servers: Vec<(Arc<ParamServer>, ServerHandle)> = (0..shards)
            .map(|index| {
                let part = shard_range(len, index as usize, shards as usize).len();
                let limits = Limits { max_pending_bytes: part * 4, ..Limits::default() };
                serve_shard(part, ASYNC, limits, ShardInfo { index, count: shards, offset: 0 })
            })
            .collect();
        let addrs: Vec<String> = servers.iter().map(|(_, handle)| handle.addr().to_string()).collect();
        let refusals: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..clients)
                .map(|w| {
                    let addrs = &addrs;
                    scope.spawn(move || {
                        let store = ShardedStore::<GrpcStore>::connect(addrs, LAYOUT, len, &options(30)).unwrap();
                        let grad = vec![1.0f32; len];
                        let mut params = vec![0.0f32; len];
                        for _ in 0..pushes {
                            let (outcome, _) = store.push_gradient_and_pull(w, 0, &grad, None, &mut params).unwrap();
                            assert!(matches!(outcome, PushOutcome::Applied { .. }), "{outcome:?}");
                        }
                        store.shards().iter().map(GrpcStore::refusals).sum::<u64>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        for (store, _) in &servers {
            assert_eq!(store.version(), (clients * pushes) as u64, "every push applied once on every shard");
        }
        let refused: u64 = servers.iter().map(|(_, handle)| handle.refused_pushes()).sum();
        assert_eq!(refusals, refused, "every refusal was retried ({shards} shards)");
        assert!(refusals > 0, "16 clients against one place per shard were refused at times ({shards} shards)");
    }
}

#[test]
fn a_client_stuck_mid_tensor_does_not_hold_a_sync_round_past_its_timeout() {
    let (len, active, rounds) = (1 << 14, 24, 4);
    let timeout = Duration::from_millis(800);
    let (store, handle) = serve(len, UpdateMode::Sync { workers: active + 1, timeout }, Limits::default());
    // Worker `active` connects, starts its push of round 0, and never finishes it.
    let _stuck = stall_mid_push(&handle, len, active as u32);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..active {
            let handle = &handle;
            scope.spawn(move || {
                let store = client(handle, Duration::from_secs(30));
                let grad = vec![1.0f32; len];
                for round in 0..rounds {
                    let outcome = store.push_gradient(w, round, &grad).unwrap();
                    assert!(matches!(outcome, PushOutcome::Applied { .. }), "{outcome:?}");
                }
            });
        }
    });
    let elapsed = start.elapsed();
    assert_eq!(store.version(), rounds);
    assert!(store.stats().dropped_workers >= 1, "the stuck worker was dropped from the rounds");
    // One timeout for the round it missed; later rounds do not wait for it.
    assert!(elapsed < timeout * 3, "{rounds} rounds took {elapsed:?} with a round timeout of {timeout:?}");
}

#[test]
fn connection_and_message_limits_refuse_cleanly_and_free_on_close() {
    let limits = Limits { max_connections: 3, max_message_bytes: Limits::MIN_MESSAGE_BYTES, ..Limits::default() };
    let (_store, handle) = serve(64, ASYNC, limits);
    let mut params = vec![0.0f32; 64];
    // A holds two connections (gRPC and data plane); B's gRPC connection is the third.
    let a = client(&handle, Duration::ZERO);
    a.pull(None, &mut params).unwrap();
    let b = client(&handle, Duration::ZERO);
    assert_eq!(handle.open_connections(), 3);
    match b.pull(None, &mut params) {
        Err(DistError::Busy { detail, .. }) => {
            assert!(detail.contains("3 connections at most") && detail.contains("cluster.max_connections"), "{detail}")
        }
        other => panic!("a fourth connection (B's data plane) should be refused, got {other:?}"),
    }
    match GrpcStore::connect(&handle.addr().to_string(), LAYOUT, 0, 1, options(0)) {
        Err(DistError::Busy { detail, .. }) => assert!(detail.contains("connections at most"), "{detail}"),
        Err(e) => panic!("a fourth gRPC connection should be answered busy, got {e}"),
        Ok(_) => panic!("a fourth gRPC connection should be answered busy"),
    }
    // Closing A frees its two places: B gets its data plane.
    drop(a);
    assert!(eventually(Duration::from_secs(5), || handle.open_connections() == 1), "A's connections were freed");
    assert_eq!(b.pull(None, &mut params).unwrap(), Some(0));

    // A message over the size limit is refused by name, and the server keeps serving.
    let episodes: Vec<(f64, u64)> = (0..40_000).map(|i| (i as f64, 1)).collect();
    let err = b.report(0, 1, &episodes).unwrap_err().to_string();
    assert!(err.contains("message length too large") && err.contains(&Limits::MIN_MESSAGE_BYTES.to_string()), "{err}");
    assert_eq!(b.report(0, 1, &episodes[..10]).unwrap().episodes, 10);
}
