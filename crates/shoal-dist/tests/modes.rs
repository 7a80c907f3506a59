//! The update modes against their definitions: sync equals one process on the concatenated
//! batch, averaging and EASGD follow their formulas, async records and bounds staleness, and a
//! missing worker does not stall a synchronous round.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use shoal_dist::{DistError, LocalGroup, ParamServer, ParamStore, PushOutcome, UpdateMode};
use shoal_nn::{Adam, Model, Sgd};

const WAIT: Duration = Duration::from_secs(10);

mod common;

use common::{batch, gradient, one_step_on_the_concatenated_batch, q_network};

#[test]
fn sync_mode_equals_one_process_on_the_concatenated_batch() {
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let model = q_network();
    let (a, b) = (batch(&mut rng, 32), batch(&mut rng, 32));
    let len = model.layout().len();
    let expected = one_step_on_the_concatenated_batch(&model, &a, &b);

    // Two workers, each on its half, through a synchronous server.
    let server = Arc::new(ParamServer::new(
        model.params().to_vec(),
        Box::new(Adam::new(len, 0.9, 0.999, 1e-8)),
        1e-2,
        UpdateMode::Sync { workers: 2, timeout: WAIT },
    ));
    let handles: Vec<_> = [a, b]
        .into_iter()
        .enumerate()
        .map(|(worker, half)| {
            let server = Arc::clone(&server);
            let mut local = model.clone();
            thread::spawn(move || {
                let grad = gradient(&mut local, &half);
                server.push_gradient(worker, 0, &grad).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), PushOutcome::Applied { version: 1, staleness: 0 });
    }
    let got = server.params();
    let worst = got.iter().zip(&expected).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "max difference {worst}");
}

/// All-reduce: each member sums its half's gradient with the other's, scales by 1/2 and takes
/// its own Adam step — the same parameters as one process on the concatenated batch, on every
/// member.
#[test]
fn allreduce_equals_one_process_on_the_concatenated_batch() {
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let model = q_network();
    let halves = [batch(&mut rng, 32), batch(&mut rng, 32)];
    let expected = one_step_on_the_concatenated_batch(&model, &halves[0], &halves[1]);
    let handles: Vec<_> = LocalGroup::new(2)
        .into_iter()
        .zip(halves)
        .map(|(member, half)| {
            let mut local = model.clone();
            thread::spawn(move || common::allreduce_step(&member, &mut local, &half))
        })
        .collect();
    for handle in handles {
        let got = handle.join().unwrap();
        let worst = got.iter().zip(&expected).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "max difference {worst}");
    }
}

/// Pushes each local parameter vector from its own worker thread; returns what each got back.
fn push_all(server: &Arc<ParamServer>, locals: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let handles: Vec<_> = locals
        .iter()
        .cloned()
        .enumerate()
        .map(|(w, mut p)| {
            let server = Arc::clone(server);
            thread::spawn(move || {
                server.push_params(w, &mut p).unwrap();
                p
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn averaging_sets_every_worker_to_the_mean() {
    let server = Arc::new(ParamServer::new(
        vec![0.0; 3],
        Box::new(Sgd::new(3, 0.0, false)),
        0.1,
        UpdateMode::Average { workers: 3, timeout: WAIT },
    ));
    let locals = [vec![1.0f32, 2.0, 3.0], vec![4.0, 5.0, 6.0], vec![-2.0, 0.5, 9.0]];
    let mean = [1.0f32, 2.5, 6.0];
    for got in push_all(&server, &locals) {
        assert_eq!(got, mean);
    }
    assert_eq!((server.params(), server.version()), (mean.to_vec(), 1));
}

#[test]
fn easgd_moves_workers_and_center_by_the_elastic_force() {
    let alpha = 0.25;
    let center = vec![1.0f32, -1.0];
    let server = Arc::new(ParamServer::new(
        center.clone(),
        Box::new(Sgd::new(2, 0.0, false)),
        0.1,
        UpdateMode::Easgd { workers: 2, alpha, timeout: WAIT },
    ));
    let locals = [vec![3.0f32, 1.0], vec![-1.0, -5.0]];
    let moved = push_all(&server, &locals);
    for (local, got) in locals.iter().zip(&moved) {
        // θᵢ ← θᵢ − α(θᵢ − θ̃)
        let want: Vec<f32> = local.iter().zip(&center).map(|(t, c)| t - alpha as f32 * (t - c)).collect();
        assert_eq!(got, &want);
    }
    // θ̃ ← θ̃ + α Σᵢ(θᵢ − θ̃)
    let want: Vec<f32> =
        (0..2).map(|k| center[k] + alpha as f32 * locals.iter().map(|l| l[k] - center[k]).sum::<f32>()).collect();
    assert_eq!(server.params(), want);
}

#[test]
fn async_mode_applies_on_arrival_and_bounds_staleness() {
    let server = ParamServer::new(
        vec![1.0; 4],
        Box::new(Sgd::new(4, 0.0, false)),
        0.5,
        UpdateMode::Async { max_staleness: Some(2) },
    );
    let grad = [1.0f32; 4];
    for step in 0..3 {
        assert_eq!(
            server.push_gradient(0, 0, &grad).unwrap(),
            PushOutcome::Applied { version: step + 1, staleness: step }
        );
    }
    assert_eq!(server.params(), vec![-0.5; 4]);
    // Computed at version 0, arriving at version 3: 3 > 2 → rejected, nothing applied.
    assert_eq!(server.push_gradient(1, 0, &grad).unwrap(), PushOutcome::Stale { version: 3, staleness: 3 });
    let stats = server.stats();
    assert_eq!((stats.updates, stats.rejected_stale, stats.max_staleness, stats.staleness_sum), (3, 1, 2, 3));
    let mut out = vec![0.0; 4];
    assert_eq!(server.pull(None, &mut out).unwrap(), Some(3));
    assert_eq!(server.pull(Some(3), &mut out).unwrap(), None, "nothing new to pull");
}

#[test]
fn a_missing_worker_is_dropped_after_the_timeout_and_rejoins_later() {
    let server = ParamServer::new(
        vec![0.0; 2],
        Box::new(Sgd::new(2, 0.0, false)),
        1.0,
        UpdateMode::Sync { workers: 2, timeout: Duration::from_millis(100) },
    );
    // Only worker 0 pushes: the round closes on timeout with its gradient alone.
    assert_eq!(server.push_gradient(0, 0, &[1.0, 2.0]).unwrap(), PushOutcome::Applied { version: 1, staleness: 0 });
    assert_eq!(server.params(), vec![-1.0, -2.0]);
    assert_eq!(server.stats().dropped_workers, 1);
    // The straggler's gradient was computed at version 0: rejected, so it pulls and rejoins.
    assert!(matches!(server.push_gradient(1, 0, &[5.0, 5.0]).unwrap(), PushOutcome::Stale { version: 1, .. }));
    let mut params = vec![0.0; 2];
    let version = server.pull(None, &mut params).unwrap().unwrap();
    let server = Arc::new(server);
    let other = Arc::clone(&server);
    let h = thread::spawn(move || other.push_gradient(0, version, &[1.0, 1.0]).unwrap());
    assert_eq!(
        server.push_gradient(1, version, &[3.0, 3.0]).unwrap(),
        PushOutcome::Applied { version: 2, staleness: 0 }
    );
    h.join().unwrap();
    assert_eq!(server.params(), vec![-3.0, -4.0], "mean of the two gradients applied once");
}

#[test]
fn mismatched_lengths_and_modes_are_errors() {
    let server = ParamServer::new(
        vec![0.0; 3],
        Box::new(Sgd::new(3, 0.0, false)),
        1.0,
        UpdateMode::Async { max_staleness: None },
    );
    let err = server.push_gradient(0, 0, &[1.0; 4]).unwrap_err();
    assert!(matches!(err, DistError::Length { got: 4, expected: 3, .. }), "{err}");
    assert!(err.to_string().contains("another model layout"), "{err}");
    let err = server.push_params(0, &mut [0.0; 3]).unwrap_err().to_string();
    assert_eq!(err, "the parameter store runs in async mode, which does not accept parameter pushes");
    let sync = ParamServer::new(
        vec![0.0; 3],
        Box::new(Sgd::new(3, 0.0, false)),
        1.0,
        UpdateMode::Sync { workers: 2, timeout: WAIT },
    );
    assert!(matches!(sync.push_gradient(2, 0, &[0.0; 3]), Err(DistError::Worker { worker: 2, workers: 2 })));
}

#[test]
fn a_restarted_server_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut layout = shoal_nn::ParamLayout::new();
    layout.push("w", &[2, 2]);
    layout.push("b", &[2]);
    let policy = shoal_dist::CheckpointPolicy { path: dir.path().join("ps.safetensors"), layout, every: 2 };
    let grads: Vec<Vec<f32>> = (0..5).map(|k| (0..6).map(|i| ((k * 7 + i * 3) % 5) as f32 - 2.0).collect()).collect();
    let make = || {
        ParamServer::new(
            vec![0.5; 6],
            Box::new(Adam::new(6, 0.9, 0.999, 1e-8)),
            0.1,
            UpdateMode::Async { max_staleness: None },
        )
        .with_checkpoints(policy.clone())
    };
    let first = make();
    for (k, g) in grads.iter().enumerate().take(4) {
        first.push_gradient(0, k as u64, g).unwrap();
    }
    let at_four = first.params();
    first.push_gradient(0, 4, &grads[4]).unwrap();
    let at_five = first.params();
    drop(first); // "kill" the server; its last checkpoint is at version 4

    let restarted = make();
    assert_eq!(restarted.resume().unwrap(), 4);
    assert_eq!(restarted.params(), at_four);
    // The optimizer's moments came back too: the same fifth gradient gives the same result.
    assert_eq!(restarted.push_gradient(0, 4, &grads[4]).unwrap(), PushOutcome::Applied { version: 5, staleness: 0 });
    assert_eq!(restarted.params(), at_five);
}

#[test]
fn a_frozen_server_keeps_its_parameters_whatever_is_pushed() {
    let server = ParamServer::new(
        vec![0.0; 3],
        Box::new(Sgd::new(3, 0.0, false)),
        1.0,
        UpdateMode::Average { workers: 1, timeout: Duration::from_secs(1) },
    );
    server.freeze(&[1.0, 2.0, 3.0]).unwrap();
    let mut pushed = [9.0, 9.0, 9.0];
    server.push_params(0, &mut pushed).unwrap();
    assert_eq!((pushed, server.params()), ([1.0, 2.0, 3.0], vec![1.0, 2.0, 3.0]));
    assert!(server.freeze(&[1.0]).is_err(), "a vector of the wrong length is refused");
}
