//! The gRPC transport on loopback: the remote store behaves like the in-process one (with its
//! tensors on the data plane, as workers send them, and in gRPC messages), refuses callers
//! without the token or with another layout, survives malformed input, and a client rides out
//! a server restart.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_dist::proto::param_service_client::ParamServiceClient;
use shoal_dist::proto::Chunk;
use shoal_dist::{
    spawn, ClientOptions, Coordinator, DistError, Encoding, GrpcStore, ParamServer, ParamStore, PushOutcome,
    RunMonitor, ServiceConfig, ShardInfo, ShardedStore, StopRule, Token, UpdateMode,
};
use shoal_nn::{Adam, Sgd};

const LAYOUT: u64 = 0xfeed_beef;

fn token() -> Token {
    Token::new("test-token-0123456789").unwrap()
}

fn options() -> ClientOptions {
    ClientOptions { tls: None, token: token(), encoding: Encoding::F32Le, retry_for: Duration::from_secs(10) }
}

fn config(shard: ShardInfo) -> ServiceConfig {
    ServiceConfig::new(token(), LAYOUT, shard)
}

/// A client of the server at `addr` sending its tensors on the data plane or in gRPC messages.
fn connect(addr: &str, options: ClientOptions, data_plane: bool) -> GrpcStore {
    let store = GrpcStore::connect(addr, LAYOUT, 0, 1, options).unwrap();
    assert!(store.uses_data_plane(), "a server without TLS offers its data plane");
    if data_plane {
        store
    } else {
        store.without_data_plane()
    }
}

fn async_server(params: Vec<f32>) -> Arc<ParamServer> {
    let len = params.len();
    Arc::new(ParamServer::new(
        params,
        Box::new(Adam::new(len, 0.9, 0.999, 1e-8)),
        1e-2,
        UpdateMode::Async { max_staleness: None },
    ))
}

#[test]
fn remote_store_matches_the_in_process_one() {
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    // 3M values = 12 MB: many chunks each way.
    let init: Vec<f32> = (0..3_000_000).map(|_| rng.random_range(-1.0..1.0)).collect();
    let grad: Vec<f32> = (0..init.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
    for data_plane in [true, false] {
        let local = async_server(init.clone());
        let server = spawn("127.0.0.1:0", async_server(init.clone()), None, config(ShardInfo::WHOLE)).unwrap();
        let remote = connect(&server.addr().to_string(), options(), data_plane);
        assert_eq!((remote.len(), remote.mode()), (init.len(), "async"));

        let mut got = vec![0.0; init.len()];
        assert_eq!(remote.pull(None, &mut got).unwrap(), Some(0));
        assert_eq!(got, init);
        assert_eq!(remote.pull(Some(0), &mut got).unwrap(), None, "current version: nothing sent");

        let applied = PushOutcome::Applied { version: 1, staleness: 0 };
        assert_eq!(remote.push_gradient(0, 0, &grad).unwrap(), applied);
        assert_eq!(local.push_gradient(0, 0, &grad).unwrap(), applied);
        assert_eq!(remote.pull(Some(0), &mut got).unwrap(), Some(1));
        assert_eq!(got, local.params(), "the same Adam step, bit for bit");
        // The server reuses the first push's receive buffer: nothing of it may leak into this one.
        let half: Vec<f32> = grad.iter().map(|g| g * 0.5).collect();
        let (outcome, pulled) = remote.push_gradient_and_pull(0, 1, &half, Some(1), &mut got).unwrap();
        local.push_gradient(0, 1, &half).unwrap();
        assert_eq!((outcome, pulled), (PushOutcome::Applied { version: 2, staleness: 0 }, Some(2)));
        assert_eq!(got, local.params(), "a push and pull in one call through a reused buffer, bit for bit");
        // A stale push: applied (no bound), staleness reported, parameters sent.
        let (outcome, pulled) = remote.push_gradient_and_pull(0, 0, &half, Some(2), &mut got).unwrap();
        local.push_gradient(0, 0, &half).unwrap();
        assert_eq!((outcome, pulled), (PushOutcome::Applied { version: 3, staleness: 2 }, Some(3)));
        assert_eq!(got, local.params());
        assert_eq!(remote.version(), 3);
        assert!(matches!(remote.push_gradient(0, 0, &grad[..5]), Err(DistError::Length { got: 5, .. })));
        let mut params = local.params();
        let err = remote.push_params(0, &mut params).unwrap_err();
        assert!(err.to_string().contains("does not accept"), "the server's refusal, by name: {err}");
        assert_eq!(remote.pull(Some(3), &mut got).unwrap(), None, "the connection survives a refused call");
    }
}

#[test]
fn f16_compression_halves_precision_not_correctness() {
    let init: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.1).sin()).collect();
    let server = spawn("127.0.0.1:0", async_server(init.clone()), None, config(ShardInfo::WHOLE)).unwrap();
    for data_plane in [true, false] {
        let f16 = ClientOptions { encoding: Encoding::F16Le, ..options() };
        let remote = connect(&server.addr().to_string(), f16, data_plane);
        let mut got = vec![0.0; init.len()];
        remote.pull(None, &mut got).unwrap();
        let worst = got.iter().zip(&init).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst > 0.0 && worst < 1e-3, "f16 error {worst}");
    }
}

/// Int8 gradients with error feedback: a gradient whose small entries round to zero on their
/// own (one entry 1000× the others) still reaches the server in full over repeated pushes —
/// what rounding takes from one push is added to the next — while parameters are pulled in
/// f32, exactly.
#[test]
fn int8_gradients_lose_nothing_over_pushes_with_error_feedback() {
    let len = 1000;
    let init: Vec<f32> = (0..len).map(|i| (i as f32 * 0.1).sin()).collect();
    // Plain SGD with lr 1: the server's parameters are init − Σ received gradients.
    let sgd = ParamServer::new(
        init.clone(),
        Box::new(Sgd::new(len, 0.0, false)),
        1.0,
        UpdateMode::Async { max_staleness: None },
    );
    let server = spawn("127.0.0.1:0", Arc::new(sgd), None, config(ShardInfo::WHOLE)).unwrap();
    // Half the pushes on the data plane (alone, and with the pull that follows), half in
    // gRPC messages: one residual carries across both.
    let addr = server.addr().to_string();
    let int8 = ClientOptions { encoding: Encoding::Int8, ..options() };
    let (data_plane, grpc) = (connect(&addr, int8.clone(), true), connect(&addr, int8, false));
    let mut grad: Vec<f32> = (0..len).map(|i| 1e-3 * (1.0 + (i % 5) as f32 * 0.1)).collect();
    grad[0] = 1.0; // scale = 1/127: every other entry rounds to 0 in a single push
    let pushes = 200;
    let mut got = vec![0.0; len];
    for i in 0..pushes / 2 {
        if i % 2 == 0 {
            data_plane.push_gradient(0, 0, &grad).unwrap();
        } else {
            data_plane.push_gradient_and_pull(0, 0, &grad, None, &mut got).unwrap();
        }
    }
    for _ in 0..pushes / 2 {
        grpc.push_gradient(0, 0, &grad).unwrap();
    }
    // Each client carries its own residual: at most half a step each is still on its way.
    grpc.pull(None, &mut got).unwrap();
    let step = 1.0 / 127.0;
    for i in 0..len {
        let received = init[i] - got[i];
        let sent = grad[i] * pushes as f32;
        // Everything sent arrived, but for each client's last residual (half a step each).
        assert!((received - sent).abs() <= step + 1e-3, "entry {i}: received {received}, sent {sent}");
    }
    assert!((init[1] - got[1]) > 0.1, "small entries arrived (they would be 0 without feedback)");
}

#[test]
fn sync_rounds_and_reports_work_across_processes_boundaries() {
    let server = Arc::new(ParamServer::new(
        vec![1.0, 2.0],
        Box::new(Sgd::new(2, 0.0, false)),
        1.0,
        UpdateMode::Sync { workers: 2, timeout: Duration::from_secs(10) },
    ));
    let monitor = Arc::new(RunMonitor::new(StopRule { env_steps: Some(100), episode_return_mean: None, window: 10 }));
    let handle = spawn("127.0.0.1:0", server, Some(monitor), config(ShardInfo::WHOLE)).unwrap();
    let addr = handle.addr().to_string();
    let outcomes: Vec<_> = [[2.0f32, 0.0], [0.0, 4.0]]
        .into_iter()
        .enumerate()
        .map(|(w, g)| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let store = GrpcStore::connect(&addr, LAYOUT, 0, 1, options()).unwrap();
                let outcome = store.push_gradient(w, 0, &g).unwrap();
                let status = store.report(w, 60, &[(10.0, 10)]).unwrap();
                (outcome, status.total_env_steps)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for (outcome, _) in &outcomes {
        assert_eq!(*outcome, PushOutcome::Applied { version: 1, staleness: 0 });
    }
    let store = GrpcStore::connect(&addr, LAYOUT, 0, 1, options()).unwrap();
    let mut p = vec![0.0; 2];
    store.pull(None, &mut p).unwrap();
    assert_eq!(p, [0.0, 0.0], "θ − mean(g) = [1 − 1, 2 − 2]");
    let status = store.report(0, 0, &[]).unwrap();
    assert!(status.stop && status.total_env_steps == 120, "{status:?}");
}

#[test]
fn two_shards_give_the_unsharded_update() {
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let len = 1001;
    let init: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
    let grads: Vec<Vec<f32>> = (0..3).map(|_| (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let whole = async_server(init.clone());
    let servers: Vec<_> = (0..2)
        .map(|i| {
            let range = shoal_dist::shard_range(len, i, 2);
            let shard = ShardInfo { index: i as u32, count: 2, offset: range.start as u64 };
            spawn("127.0.0.1:0", async_server(init[range].to_vec()), None, config(shard)).unwrap()
        })
        .collect();
    let shards = servers
        .iter()
        .enumerate()
        .map(|(i, s)| GrpcStore::connect(&s.addr().to_string(), LAYOUT, i as u32, 2, options()).unwrap())
        .collect();
    let sharded = ShardedStore::new(shards, len).unwrap();
    let mut got = vec![0.0; len];
    let mut version = sharded.pull(None, &mut got).unwrap();
    for (i, g) in grads.iter().enumerate() {
        whole.push_gradient(0, whole.version(), g).unwrap();
        // Separately, and as one call per shard.
        let outcome = if i % 2 == 0 {
            let outcome = sharded.push_gradient(0, version.unwrap(), g).unwrap();
            version = sharded.pull(version, &mut got).unwrap().or(version);
            outcome
        } else {
            let (outcome, pulled) = sharded.push_gradient_and_pull(0, version.unwrap(), g, version, &mut got).unwrap();
            version = pulled.or(version);
            outcome
        };
        assert!(matches!(outcome, PushOutcome::Applied { .. }));
        assert_eq!(got, whole.params(), "step {i}");
    }
    assert_eq!(version, Some(6), "two shards at version 3 each");
    // A client that expects another shard count is refused by name.
    let err = GrpcStore::connect(&servers[0].addr().to_string(), LAYOUT, 0, 3, options()).err().unwrap();
    assert!(err.to_string().contains("shard mismatch"), "{err}");
}

/// Overlapped pushes, as an overlapping worker makes them: the reply to gradient k is read
/// after gradient k + 1 is computed (at the parameters before that reply), so from the second
/// push on every gradient arrives one update stale — and the parameters are bit for bit what
/// an in-process store gives for the same gradients at the same bases.
#[test]
fn overlapped_pushes_are_one_update_staler_and_otherwise_the_same() {
    let mut rng = Pcg64Mcg::seed_from_u64(9);
    let len = 777;
    let init: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
    let noise: Vec<Vec<f32>> = (0..6).map(|_| (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    for count in [1, 2] {
        let servers: Vec<_> = (0..count)
            .map(|i| {
                let range = shoal_dist::shard_range(len, i, count);
                let shard = ShardInfo { index: i as u32, count: count as u32, offset: range.start as u64 };
                spawn("127.0.0.1:0", async_server(init[range].to_vec()), None, config(shard)).unwrap()
            })
            .collect();
        let shards = servers
            .iter()
            .enumerate()
            .map(|(i, s)| GrpcStore::connect(&s.addr().to_string(), LAYOUT, i as u32, count as u32, options()).unwrap())
            .collect();
        let store = ShardedStore::new(shards, len).unwrap();
        let local = async_server(init.clone());
        let mut params = vec![0.0; len];
        let mut version = store.pull(None, &mut params).unwrap();
        let mut local_base = 0;
        for (k, noise) in noise.iter().enumerate() {
            // A gradient that depends on the parameters it is computed at.
            let grad: Vec<f32> = params.iter().zip(noise).map(|(p, n)| 0.5 * p + n).collect();
            let computed_at = local_base;
            if k > 0 {
                let (outcome, pulled) = store.finish_push_gradient_and_pull(&mut params).unwrap();
                let staleness = u64::from(k > 1);
                assert_eq!(outcome, PushOutcome::Applied { version: count as u64 * k as u64, staleness }, "push {k}");
                assert_eq!(params, local.params(), "{count} shard(s), after push {}", k - 1);
                version = pulled.or(version);
                local_base = local.version();
            }
            assert!(store.start_push_gradient_and_pull(0, 0, &grad, version).unwrap(), "a remote store overlaps");
            local.push_gradient(0, computed_at, &grad).unwrap();
        }
        store.finish_push_gradient_and_pull(&mut params).unwrap();
        assert_eq!(params, local.params(), "{count} shard(s), after the last push");
        // Calls out of order are refused by name, and the connection goes on.
        let err = store.finish_push_gradient_and_pull(&mut params).unwrap_err();
        assert!(err.to_string().contains("no call sent"), "{err}");
        assert!(store.start_push_gradient_and_pull(0, 0, &noise[0], version).unwrap());
        let err = store.pull(None, &mut params).unwrap_err();
        assert!(err.to_string().contains("reply to the previous one was unread"), "{err}");
        store.finish_push_gradient_and_pull(&mut params).unwrap();
        assert_eq!(store.pull(None, &mut params).unwrap(), Some(count as u64 * 7));
    }
    // In memory there is no round trip to hide: the store says so and sends nothing.
    let local = async_server(init.clone());
    assert!(!local.start_push_gradient_and_pull(0, 0, &init, None).unwrap());
    assert_eq!(local.version(), 0);
}

#[test]
fn callers_without_the_token_or_with_another_layout_are_refused() {
    let server = spawn("127.0.0.1:0", async_server(vec![0.0; 4]), None, config(ShardInfo::WHOLE)).unwrap();
    let addr = server.addr().to_string();
    let wrong = ClientOptions { token: Token::new("another-token-987654321").unwrap(), ..options() };
    let err = GrpcStore::connect(&addr, LAYOUT, 0, 1, wrong).err().unwrap();
    assert!(matches!(err, DistError::Refused { .. }) && err.to_string().contains("wrong token"), "{err}");

    let err = GrpcStore::connect(&addr, 0x1234, 0, 1, options()).err().unwrap();
    let message = err.to_string();
    assert!(matches!(err, DistError::Refused { .. }), "{message}");
    assert!(message.contains("0000000000001234") && message.contains("00000000feedbeef"), "{message}");

    // A raw client with no token at all.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime
        .block_on(async {
            let mut client = ParamServiceClient::connect(format!("http://{addr}")).await.unwrap();
            client.pull(shoal_dist::proto::PullRequest::default()).await
        })
        .err()
        .unwrap();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("no token"), "{}", status.message());
}

#[test]
fn malformed_streams_are_rejected_and_the_server_keeps_serving() {
    let server = spawn("127.0.0.1:0", async_server(vec![0.5; 8]), None, config(ShardInfo::WHOLE)).unwrap();
    let addr = server.addr().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let good = shoal_dist::wire::encode(&[1.0; 8], Encoding::F32Le, 0, 0).remove(0);
    let bad_streams = vec![
        vec![Chunk { offset: 3, ..good.clone() }],
        vec![Chunk { data: good.data.slice(..13), ..good.clone() }],
        vec![Chunk { data: good.data.slice(..16), ..good.clone() }],
        vec![Chunk { total_len: u64::MAX, ..good.clone() }],
        vec![Chunk { encoding: 99, ..good.clone() }],
        vec![good.clone(), good.clone()],
        vec![],
    ];
    for chunks in bad_streams {
        let status = runtime
            .block_on(async {
                let mut client = ParamServiceClient::connect(format!("http://{addr}")).await.unwrap();
                let mut req = tonic::Request::new(tokio_stream::iter(chunks));
                req.metadata_mut().insert("authorization", format!("Bearer {}", token().secret()).parse().unwrap());
                client.push_gradient(req).await
            })
            .expect_err("a malformed stream must be refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{}", status.message());
    }
    // Still serving, still unchanged.
    let store = GrpcStore::connect(&addr, LAYOUT, 0, 1, options()).unwrap();
    let mut got = vec![0.0; 8];
    assert_eq!(store.pull(None, &mut got).unwrap(), Some(0));
    assert_eq!(got, [0.5; 8]);
}

/// The decoding path under random and truncated input: protobuf decoding then chunk
/// validation never panics, and whatever is accepted stays inside the buffer.
#[test]
fn decoding_random_and_truncated_bytes_never_panics() {
    let mut rng = Pcg64Mcg::seed_from_u64(11);
    let valid: Vec<Vec<u8>> = shoal_dist::wire::encode(&[0.25; 300], Encoding::F16Le, 2, 7)
        .into_iter()
        .chain(shoal_dist::wire::encode(&[1.5; 300], Encoding::F32Le, 1, 3))
        .map(|c| c.encode_to_vec())
        .collect();
    let mut accepted = 0;
    for case in 0..20_000 {
        let bytes: Vec<u8> = match case % 3 {
            0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            1 => {
                let v = &valid[rng.random_range(0..valid.len())];
                v[..rng.random_range(0..=v.len())].to_vec()
            }
            _ => {
                let mut v = valid[rng.random_range(0..valid.len())].clone();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..v.len());
                    v[i] = rng.random();
                }
                v
            }
        };
        if let Ok(chunk) = Chunk::decode(bytes.as_slice()) {
            let mut out = vec![0.0f32; 300];
            let mut assembler = shoal_dist::wire::Assembler::new(&mut out);
            if assembler.accept(&chunk).is_ok() && assembler.finish().is_ok() {
                accepted += 1;
            }
        }
    }
    assert!(accepted > 0, "untouched prefixes of valid chunks must still decode");
}

#[test]
fn an_unreachable_server_is_a_clear_error_after_the_retry_window() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = GrpcStore::connect(
        &format!("127.0.0.1:{port}"),
        LAYOUT,
        0,
        1,
        ClientOptions { retry_for: Duration::from_millis(400), ..options() },
    )
    .err()
    .unwrap();
    assert!(matches!(err, DistError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("shoal ps"), "{err}");
}

#[test]
fn a_client_rides_out_a_server_restart_on_the_same_address() {
    for data_plane in [true, false] {
        let server = spawn("127.0.0.1:0", async_server(vec![1.0; 4]), None, config(ShardInfo::WHOLE)).unwrap();
        let addr = server.addr().to_string();
        let store = connect(&addr, options(), data_plane);
        store.push_gradient(0, 0, &[1.0; 4]).unwrap();
        server.shutdown().unwrap();
        let restarted = {
            let addr = addr.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                spawn(&addr, async_server(vec![7.0; 4]), None, config(ShardInfo::WHOLE)).unwrap()
            })
        };
        let mut got = vec![0.0; 4];
        assert_eq!(store.pull(Some(1), &mut got).unwrap(), Some(0), "the restarted server's version");
        assert_eq!(got, [7.0; 4]);
        drop(restarted.join().unwrap());
    }
}

#[test]
fn a_server_without_a_monitor_refuses_reports() {
    let shard = ShardInfo { index: 1, count: 2, offset: 2 };
    let server = spawn("127.0.0.1:0", async_server(vec![0.0; 2]), None, config(shard)).unwrap();
    let store = GrpcStore::connect(&server.addr().to_string(), LAYOUT, 1, 2, options()).unwrap();
    let err = store.report(0, 1, &[]).err().unwrap();
    assert!(err.to_string().contains("without progress counting"), "{err}");
}

/// Without the `tls` feature, certificates are a clear error, never a silent plain-text server.
#[cfg(not(feature = "tls"))]
#[test]
fn certificates_without_the_tls_feature_are_a_clear_error() {
    let tls = Some(shoal_dist::ServerTls { cert_pem: b"cert".to_vec(), key_pem: b"key".to_vec() });
    let err = spawn("127.0.0.1:0", async_server(vec![0.0; 2]), None, ServiceConfig { tls, ..config(ShardInfo::WHOLE) })
        .err()
        .unwrap();
    assert!(err.to_string().contains("--features tls"), "{err}");
    let client_tls = Some(shoal_dist::ClientTls { ca_pem: b"ca".to_vec(), domain: "localhost".into() });
    let err =
        GrpcStore::connect("127.0.0.1:1", LAYOUT, 0, 1, ClientOptions { tls: client_tls, ..options() }).err().unwrap();
    assert!(err.to_string().contains("--features tls"), "{err}");
}
