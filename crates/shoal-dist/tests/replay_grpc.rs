//! The replay service on loopback: a remote replay answers exactly like the in-process one
//! (same seed, same calls, same samples), large inserts are split under the message limit,
//! and callers with another token or observation width, oversized samples and malformed
//! columns are refused while the server keeps serving.

use std::sync::Arc;
use std::time::Duration;

use shoal_dist::proto::replay::replay_service_client::ReplayServiceClient;
use shoal_dist::proto::replay::{Columns, InsertRequest};
use shoal_dist::replay::{max_rows_per_message, Row};
use shoal_dist::{
    spawn_replay, ClientOptions, DistError, Encoding, GrpcReplay, Limits, LocalReplay, PrioritizedReplay, ReplayStore,
    Sample, Token, TrajectoryQueue, Transitions,
};

const OBS_DIM: usize = 3;

fn token() -> Token {
    Token::new("replay-token-0123456789").unwrap()
}

fn options(token: Token) -> ClientOptions {
    ClientOptions { tls: None, token, encoding: Encoding::F32Le, retry_for: Duration::from_secs(5) }
}

fn replay(capacity: usize) -> LocalReplay {
    LocalReplay::new(PrioritizedReplay::new(capacity, OBS_DIM, 0.6).unwrap(), 42)
}

fn rows(range: std::ops::Range<usize>) -> (Transitions, Vec<f32>) {
    let mut t = Transitions::new(OBS_DIM);
    let mut priorities = Vec::new();
    for i in range {
        let x = i as f32;
        let obs = [x, -x, 0.5 * x];
        t.push(Row { obs: &obs, action: &[(i % 2) as f32], reward: 1.0, next_obs: &obs, done: 0.0, discount: 0.97 });
        priorities.push(1.0 + (i % 7) as f32);
    }
    (t, priorities)
}

#[test]
fn remote_replay_matches_the_in_process_one() {
    let local = replay(100_000);
    let server = spawn_replay("127.0.0.1:0", Arc::new(replay(100_000)), token(), None, Limits::default()).unwrap();
    let remote = GrpcReplay::connect(&server.addr().to_string(), OBS_DIM, options(token())).unwrap();
    assert_eq!(remote.capacity(), 100_000);
    // More rows than one message carries: the client splits the insert.
    let big = max_rows_per_message(OBS_DIM, 1) + 1000;
    let (batch, priorities) = rows(0..big);
    for store in [&local as &dyn ReplayStore, &remote] {
        store.insert(&batch, Some(&priorities)).unwrap();
        store.insert(&rows(big..big + 10).0, None).unwrap();
    }
    assert_eq!(remote.stats().unwrap(), local.stats().unwrap());
    let (mut a, mut b) = (Sample::default(), Sample::default());
    for round in 0..5 {
        local.sample(256, 0.4 + 0.1 * round as f64, &mut a).unwrap();
        remote.sample(256, 0.4 + 0.1 * round as f64, &mut b).unwrap();
        assert_eq!(a, b, "round {round}");
        let new: Vec<f32> = a.weights.iter().map(|w| w * 3.0).collect();
        local.update_priorities(&a.keys, &new).unwrap();
        remote.update_priorities(&b.keys, &new).unwrap();
    }
    assert_eq!(remote.stats().unwrap(), local.stats().unwrap());
}

#[test]
fn refusals_and_malformed_input_leave_the_server_serving() {
    let server = spawn_replay("127.0.0.1:0", Arc::new(replay(1000)), token(), None, Limits::default()).unwrap();
    let addr = server.addr().to_string();
    let other = Token::new("another-token-0123456789").unwrap();
    let err = GrpcReplay::connect(&addr, OBS_DIM, options(other)).err().unwrap();
    assert!(matches!(err, DistError::Refused { .. }) && err.to_string().contains("wrong token"), "{err}");
    let err = GrpcReplay::connect(&addr, OBS_DIM + 1, options(token())).err().unwrap();
    let message = err.to_string();
    assert!(
        message.contains("obs_dim and act_dim are 4 and 1, the replay's 3 and 1") && message.contains("replay server"),
        "{message}"
    );

    let remote = GrpcReplay::connect(&addr, OBS_DIM, options(token())).unwrap();
    let err = remote.sample(4, 0.4, &mut Sample::default()).unwrap_err().to_string();
    assert!(err.contains("empty replay"), "{err}");
    remote.insert(&rows(0..10).0, None).unwrap();
    let too_many = max_rows_per_message(OBS_DIM, 1) + 1;
    let err = remote.sample(too_many, 0.4, &mut Sample::default()).unwrap_err().to_string();
    assert!(err.contains("message limit") && err.contains(&format!("at most {}", too_many - 1)), "{err}");
    let err = remote.update_priorities(&[0, 1], &[f32::NAN, 1.0]).unwrap_err().to_string();
    assert!(err.contains("NaN"), "{err}");

    // A hand-made request whose columns disagree with its row count.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let mut client = ReplayServiceClient::connect(format!("http://{addr}")).await.unwrap();
        let columns = Columns { rows: 2, obs: vec![0; 5], ..Columns::default() };
        let mut req = tonic::Request::new(InsertRequest { transitions: Some(columns), priorities: vec![] });
        req.metadata_mut().insert("authorization", format!("Bearer {}", token().secret()).parse().unwrap());
        client.insert(req).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("obs has 5 bytes"), "{}", status.message());
    assert_eq!(remote.stats().unwrap().len, 10, "nothing of the malformed insert was stored");
}

/// A replay of continuous actions serves clients of the same action width, rows intact, and
/// refuses a client of another width by name.
#[test]
fn continuous_actions_cross_the_wire_with_their_width() {
    let wide = LocalReplay::new(PrioritizedReplay::with_act_dim(64, OBS_DIM, 2, 0.0).unwrap(), 7);
    let server = spawn_replay("127.0.0.1:0", Arc::new(wide), token(), None, Limits::default()).unwrap();
    let addr = server.addr().to_string();
    let remote = GrpcReplay::connect_with_act_dim(&addr, OBS_DIM, 2, options(token())).unwrap();
    let mut batch = Transitions::with_act_dim(OBS_DIM, 2);
    for i in 0..10 {
        let x = i as f32;
        batch.push(Row {
            obs: &[x, x, x],
            action: &[x, 0.5 * x],
            reward: x,
            next_obs: &[x; 3],
            done: 0.0,
            discount: 1.0,
        });
    }
    remote.insert(&batch, None).unwrap();
    let mut sample = Sample::default();
    remote.sample(20, 0.4, &mut sample).unwrap();
    assert_eq!(sample.batch.act_dim, 2);
    for i in 0..sample.batch.len() {
        let row = sample.batch.row(i);
        assert_eq!(row.action, &[row.obs[0], 0.5 * row.obs[0]][..]);
    }
    let err = GrpcReplay::connect(&addr, OBS_DIM, options(token())).err().unwrap().to_string();
    assert!(err.contains("act_dim") && err.contains("1") && err.contains("2"), "{err}");
}

/// IMPALA's trajectory queue behind `shoal replay`: rows come out once, in the order they
/// went in, whatever the client; a full queue drops its oldest rows; it has no priorities
/// and no checkpoint, and says so.
#[test]
fn a_served_trajectory_queue_hands_rows_out_once_in_order() {
    let queue = || LocalReplay::queue(TrajectoryQueue::new(40, OBS_DIM, 1).unwrap());
    let server = spawn_replay("127.0.0.1:0", Arc::new(queue()), token(), None, Limits::default()).unwrap();
    let remote = GrpcReplay::connect(&server.addr().to_string(), OBS_DIM, options(token())).unwrap();
    let local = queue();
    for store in [&local as &dyn ReplayStore, &remote] {
        store.insert(&rows(0..20).0, None).unwrap();
        store.insert(&rows(20..40).0, None).unwrap();
        let mut first = Sample::default();
        store.sample(30, 1.0, &mut first).unwrap();
        assert_eq!(first.batch, rows(0..30).0);
        assert_eq!(first.keys, (0..30).collect::<Vec<u64>>());
        store.insert(&rows(40..70).0, None).unwrap(); // 10 queued + 30 fit exactly.
        store.insert(&rows(70..80).0, None).unwrap(); // Drops rows 30..40.
        let stats = store.stats().unwrap();
        assert_eq!((stats.len, stats.inserted, stats.sampled), (40, 80, 30));
        let mut rest = Sample::default();
        store.sample(40, 1.0, &mut rest).unwrap();
        assert_eq!(rest.batch, rows(40..80).0);
        let err = store.sample(1, 1.0, &mut rest).unwrap_err().to_string();
        assert!(err.contains("cannot take 1 rows: the queue holds 0"), "{err}");
        let err = store.update_priorities(&[45], &[1.0]).unwrap_err().to_string();
        assert!(err.contains("a trajectory queue has no priorities"), "{err}");
    }
    let err = local.save(&std::env::temp_dir().join("never-written.safetensors")).unwrap_err().to_string();
    assert!(err.contains("a trajectory queue has no checkpoint"), "{err}");
}
