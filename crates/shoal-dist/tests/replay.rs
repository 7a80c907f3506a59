//! Prioritized replay: sampling frequencies follow priorities (chi-square), importance weights
//! equal the formula, priority updates after wrap-around never touch the new occupant, a
//! checkpoint restores the same replay, and bad input is refused.

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use shoal_dist::replay::{PrioritizedReplay, Row, Sample, Transitions, MIN_PRIORITY};

/// `n` one-dimensional transitions whose observation is their index.
fn rows(range: std::ops::Range<usize>) -> Transitions {
    let mut t = Transitions::new(1);
    for i in range {
        let x = i as f32;
        t.push(Row { obs: &[x], action: &[0.0], reward: x, next_obs: &[x + 1.0], done: 0.0, discount: 0.99 });
    }
    t
}

#[test]
fn sampling_frequencies_match_priorities() {
    let alpha = 0.6;
    let priorities: Vec<f32> = (1..=20).map(|i| i as f32 * 0.5).collect();
    let mut replay = PrioritizedReplay::new(32, 1, alpha).unwrap();
    replay.insert(&rows(0..20), Some(&priorities)).unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(7);
    let mut sample = Sample::default();
    let mut counts = [0u64; 20];
    let draws = 2000;
    for _ in 0..draws {
        replay.sample(64, 0.4, &mut rng, &mut sample).unwrap();
        for &obs in &sample.batch.obs {
            counts[obs as usize] += 1;
        }
    }
    let total = (draws * 64) as f64;
    let scaled: Vec<f64> = priorities.iter().map(|&p| (p as f64 + MIN_PRIORITY).powf(alpha)).collect();
    let mass: f64 = scaled.iter().sum();
    let chi2: f64 = counts
        .iter()
        .zip(&scaled)
        .map(|(&c, &s)| {
            let expected = total * s / mass;
            (c as f64 - expected).powi(2) / expected
        })
        .sum();
    // 19 degrees of freedom: the 99.9th percentile of χ² is 43.82.
    assert!(chi2 < 43.82, "chi-square {chi2:.2} over 19 dof: counts {counts:?}");
    // And a wrong hypothesis (uniform) is rejected by the same test: the test can fail.
    let uniform: f64 = counts.iter().map(|&c| (c as f64 - total / 20.0).powi(2) / (total / 20.0)).sum();
    assert!(uniform > 1000.0, "uniform chi-square {uniform:.1}");
}

#[test]
fn importance_weights_equal_the_formula() {
    let (alpha, beta) = (0.7, 0.5);
    let priorities = [0.1f32, 2.0, 0.5, 4.0, 1.0];
    let mut replay = PrioritizedReplay::new(8, 1, alpha).unwrap();
    replay.insert(&rows(0..5), Some(&priorities)).unwrap();
    let mut sample = Sample::default();
    replay.sample(256, beta, &mut Pcg64Mcg::seed_from_u64(3), &mut sample).unwrap();
    let n = priorities.len() as f64;
    let p: Vec<f64> = priorities.iter().map(|&x| (x as f64 + MIN_PRIORITY).powf(alpha)).collect();
    let total: f64 = p.iter().sum();
    // w_i = (N·P(i))^−β / max_j (N·P(j))^−β
    let raw: Vec<f64> = p.iter().map(|&pi| (n * pi / total).powf(-beta)).collect();
    let max = raw.iter().cloned().fold(f64::MIN, f64::max);
    for (&obs, &w) in sample.batch.obs.iter().zip(&sample.weights) {
        let expected = raw[obs as usize] / max;
        assert!((w as f64 - expected).abs() < 1e-6, "row {obs}: weight {w}, formula {expected}");
    }
    // Every row was drawn, and the rarest one has weight 1.
    assert!((0..5).all(|i| sample.batch.obs.contains(&(i as f32))));
    let smallest = sample.batch.obs.iter().zip(&sample.weights).find(|(&o, _)| o == 0.0).map(|(_, &w)| w);
    assert_eq!(smallest, Some(1.0));
}

#[test]
fn updates_after_wrap_around_never_touch_the_new_occupant() {
    let mut replay = PrioritizedReplay::new(4, 1, 1.0).unwrap();
    replay.insert(&rows(0..4), Some(&[1.0; 4])).unwrap();
    let mut sample = Sample::default();
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    replay.sample(4, 1.0, &mut rng, &mut sample).unwrap();
    let mut keys = sample.keys.clone();
    keys.sort();
    keys.dedup();
    assert_eq!(keys, [0, 1, 2, 3]);
    // Rows 4 and 5 overwrite the slots of rows 0 and 1 while the learner computes.
    replay.insert(&rows(4..6), Some(&[1.0; 2])).unwrap();
    replay.update_priorities(&[0, 1, 2, 3], &[100.0; 4]).unwrap();
    let stats = replay.stats();
    assert_eq!((stats.priority_updates, stats.stale_updates), (2, 2));
    // Slots: rows 4, 5 (priority 1, untouched) and 2, 3 (now 100).
    let expected_mean = (2.0 * (1.0 + MIN_PRIORITY) + 2.0 * (100.0 + MIN_PRIORITY)) / 4.0;
    assert!((stats.priority_mean - expected_mean).abs() < 1e-9, "{} vs {expected_mean}", stats.priority_mean);
    // The newcomers are drawn at their own priority: ~1% each.
    let mut newcomers = 0;
    for _ in 0..1000 {
        replay.sample(4, 1.0, &mut rng, &mut sample).unwrap();
        newcomers += sample.batch.obs.iter().filter(|&&o| o >= 4.0).count();
    }
    let share = newcomers as f64 / 4000.0;
    assert!((share - 2.0 / 202.0).abs() < 0.005, "newcomers drawn {share:.4} of the time");
}

#[test]
fn a_checkpoint_restores_rows_priorities_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.safetensors");
    let mut replay = PrioritizedReplay::new(6, 1, 0.6).unwrap();
    replay.insert(&rows(0..9), Some(&[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5])).unwrap();
    replay.update_priorities(&[7, 0], &[9.0, 9.0]).unwrap();
    replay.save(&path).unwrap();
    let mut restored = PrioritizedReplay::new(6, 1, 0.6).unwrap();
    restored.load(&path).unwrap();
    assert_eq!(restored.stats(), replay.stats());
    let (mut a, mut b) = (Sample::default(), Sample::default());
    replay.sample(32, 0.4, &mut Pcg64Mcg::seed_from_u64(5), &mut a).unwrap();
    restored.sample(32, 0.4, &mut Pcg64Mcg::seed_from_u64(5), &mut b).unwrap();
    assert_eq!(a, b);
    // Inserting continues the key sequence: key 9 goes to slot 3.
    restored.insert(&rows(9..10), None).unwrap();
    restored.update_priorities(&[3], &[1.0]).unwrap();
    assert_eq!(restored.stats().stale_updates, replay.stats().stale_updates + 1);
    let err = PrioritizedReplay::new(8, 1, 0.6).unwrap().load(&path).unwrap_err().to_string();
    assert!(err.contains("capacity 6") && err.contains("8"), "{err}");
}

/// Continuous actions (SAC, TD3) keep their width through insert, sample and a checkpoint, and
/// a replay of another action width refuses them.
#[test]
fn continuous_actions_round_trip_with_their_width() {
    let mut wide = Transitions::with_act_dim(1, 2);
    for i in 0..5 {
        let x = i as f32;
        wide.push(Row { obs: &[x], action: &[x, -x], reward: x, next_obs: &[x + 1.0], done: 0.0, discount: 0.99 });
    }
    let mut replay = PrioritizedReplay::with_act_dim(8, 1, 2, 0.0).unwrap();
    replay.insert(&wide, None).unwrap();
    let mut batch = Transitions::default();
    replay.sample_uniform(16, &mut Pcg64Mcg::seed_from_u64(1), &mut batch);
    assert_eq!((batch.act_dim, batch.actions.len()), (2, 32));
    for i in 0..batch.len() {
        let row = batch.row(i);
        assert_eq!(row.action, &[row.obs[0], -row.obs[0]][..]);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.safetensors");
    replay.save(&path).unwrap();
    let mut restored = PrioritizedReplay::with_act_dim(8, 1, 2, 0.0).unwrap();
    restored.load(&path).unwrap();
    let (mut a, mut b) = (Sample::default(), Sample::default());
    replay.sample(8, 0.4, &mut Pcg64Mcg::seed_from_u64(2), &mut a).unwrap();
    restored.sample(8, 0.4, &mut Pcg64Mcg::seed_from_u64(2), &mut b).unwrap();
    assert_eq!(a, b);
    let err = PrioritizedReplay::new(8, 1, 0.0).unwrap().insert(&wide, None).unwrap_err().to_string();
    assert!(err.contains("act_dim 2") && err.contains("act_dim 1"), "{err}");
}

#[test]
fn bad_input_is_refused_and_leaves_the_replay_unchanged() {
    let mut replay = PrioritizedReplay::new(8, 1, 0.6).unwrap();
    let err = replay.insert(&rows(0..2), Some(&[1.0, f32::NAN])).unwrap_err().to_string();
    assert!(err.contains("NaN") && err.contains("diverged"), "{err}");
    let err = replay.insert(&rows(0..2), Some(&[1.0])).unwrap_err().to_string();
    assert!(err.contains("1 priorities for 2 transitions"), "{err}");
    let mut wide = Transitions::new(2);
    wide.push(Row { obs: &[0.0, 0.0], action: &[0.0], reward: 0.0, next_obs: &[0.0, 0.0], done: 0.0, discount: 1.0 });
    let err = replay.insert(&wide, None).unwrap_err().to_string();
    assert!(err.contains("obs_dim 2") && err.contains("obs_dim 1"), "{err}");
    let mut ragged = rows(0..2);
    ragged.next_obs.pop();
    assert!(replay.insert(&ragged, None).unwrap_err().to_string().contains("next_obs"));
    assert_eq!(replay.len(), 0);
    let err = replay.sample(4, 0.4, &mut Pcg64Mcg::seed_from_u64(0), &mut Sample::default()).unwrap_err();
    assert!(err.to_string().contains("empty replay"), "{err}");
    assert!(PrioritizedReplay::new(0, 1, 0.6).is_err());
    assert!(PrioritizedReplay::new(4, 1, 1.5).is_err());
}
