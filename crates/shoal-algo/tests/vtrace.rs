//! V-trace against a direct transcription of the paper's definition (Espeholt et al., 2018,
//! eq. 1: the sum, not the recursion the implementation uses), on random trajectories with
//! clipping active and episode boundaries inside; and equal to n-step returns on-policy.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_algo::vtrace::{vtrace, Clips, Trajectory};

struct Data {
    log_rhos: Vec<f32>,
    rewards: Vec<f32>,
    discounts: Vec<f32>,
    ends: Vec<f32>,
    values: Vec<f32>,
    next_values: Vec<f32>,
}

impl Data {
    /// `len` steps; each ends an episode with probability `p_end` (half of those by
    /// termination, with discount 0); the next-state value is the next row's value inside an
    /// episode, an unrelated one (the final observation's) where it ended or the data ends.
    fn random(len: usize, p_end: f64, gamma: f32, seed: u64) -> Data {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let values: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
        let ends: Vec<f32> = (0..len).map(|_| if rng.random_bool(p_end) { 1.0 } else { 0.0 }).collect();
        let discounts = ends.iter().map(|&e| if e == 1.0 && rng.random_bool(0.5) { 0.0 } else { gamma }).collect();
        let next_values = (0..len)
            .map(|t| if ends[t] == 0.0 && t + 1 < len { values[t + 1] } else { rng.random_range(-2.0..2.0) })
            .collect();
        Data {
            log_rhos: (0..len).map(|_| rng.random_range(-1.5..1.5)).collect(),
            rewards: (0..len).map(|_| rng.random_range(-1.0..1.0)).collect(),
            discounts,
            ends,
            values,
            next_values,
        }
    }

    fn trajectory(&self) -> Trajectory<'_> {
        Trajectory {
            log_rhos: &self.log_rhos,
            rewards: &self.rewards,
            discounts: &self.discounts,
            ends: &self.ends,
            values: &self.values,
            next_values: &self.next_values,
        }
    }

    fn run(&self, clips: Clips) -> (Vec<f32>, Vec<f32>) {
        let n = self.rewards.len();
        let (mut targets, mut advantages) = (vec![0.0; n], vec![0.0; n]);
        vtrace(self.trajectory(), clips, &mut targets, &mut advantages);
        (targets, advantages)
    }
}

/// `v_s = V(x_s) + Σ_{t=s}^{end} (Π_{i=s}^{t−1} γ_i·λ·c_i) δ_t`, summed term by term up to the
/// end of `s`'s episode (or of the data), in f64.
fn direct_target(d: &Data, clips: Clips, s: usize) -> f64 {
    let ratio = |t: usize| (d.log_rhos[t] as f64).exp();
    let mut sum = d.values[s] as f64;
    for t in s..d.rewards.len() {
        let mut product = 1.0;
        for i in s..t {
            product *= d.discounts[i] as f64 * clips.lambda * ratio(i).min(clips.c);
        }
        let td = d.rewards[t] as f64 + d.discounts[t] as f64 * d.next_values[t] as f64 - d.values[t] as f64;
        sum += product * ratio(t).min(clips.rho) * td;
        if d.ends[t] == 1.0 {
            break;
        }
    }
    sum
}

/// `min(ρ̄_pg, π/μ)·(r_s + γ_s·v_{s+1} − V(x_s))`, with `v_{s+1} = V(x'_s)` where the episode
/// or the data ends at s.
fn direct_advantage(d: &Data, clips: Clips, s: usize) -> f64 {
    let next = if d.ends[s] == 1.0 || s + 1 == d.rewards.len() {
        d.next_values[s] as f64
    } else {
        direct_target(d, clips, s + 1)
    };
    let ratio = (d.log_rhos[s] as f64).exp().min(clips.pg_rho);
    ratio * (d.rewards[s] as f64 + d.discounts[s] as f64 * next - d.values[s] as f64)
}

fn assert_close(what: &str, s: usize, got: f32, want: f64) {
    assert!(
        (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
        "{what}[{s}] = {got}, the paper's sum gives {want}"
    );
}

#[test]
fn vtrace_matches_the_papers_sum_on_random_trajectories() {
    let clip_sets = [
        Clips { rho: 1.0, c: 1.0, pg_rho: 1.0, lambda: 1.0 },
        Clips { rho: 0.8, c: 0.5, pg_rho: 1.5, lambda: 1.0 },
        Clips { rho: 2.0, c: 1.0, pg_rho: 0.9, lambda: 0.9 },
    ];
    for seed in 0..20 {
        let p_end = [0.0, 0.1, 0.3][seed as usize % 3];
        let data = Data::random(40, p_end, 0.97, seed);
        for clips in clip_sets {
            let (targets, advantages) = data.run(clips);
            for s in 0..40 {
                assert_close("v", s, targets[s], direct_target(&data, clips, s));
                assert_close("advantage", s, advantages[s], direct_advantage(&data, clips, s));
            }
        }
    }
}

#[test]
fn the_test_data_exercises_clipping_and_boundaries() {
    // Guards the test above against passing vacuously: ratios on both sides of the clips,
    // terminations and truncations present.
    let data = Data::random(40, 0.3, 0.97, 2);
    assert!(data.log_rhos.iter().any(|&l| l.exp() > 2.0) && data.log_rhos.iter().any(|&l| l.exp() < 0.5));
    assert!(data.ends.iter().zip(&data.discounts).any(|(&e, &g)| e == 1.0 && g == 0.0));
    assert!(data.ends.iter().zip(&data.discounts).any(|(&e, &g)| e == 1.0 && g > 0.0));
    let clipped = data.run(Clips { rho: 0.8, c: 0.5, pg_rho: 1.0, lambda: 1.0 }).0;
    let unclipped = data.run(Clips { rho: 100.0, c: 100.0, pg_rho: 100.0, lambda: 1.0 }).0;
    assert!(clipped.iter().zip(&unclipped).any(|(a, b)| (a - b).abs() > 1e-2));
}

#[test]
fn on_policy_vtrace_is_the_n_step_return() {
    let gamma = 0.99f64;
    for seed in 0..5 {
        let mut data = Data::random(25, 0.0, gamma as f32, 100 + seed);
        data.log_rhos.iter_mut().for_each(|l| *l = 0.0);
        let bootstrap = *data.next_values.last().unwrap() as f64;
        let (targets, advantages) = data.run(Clips { rho: 1.0, c: 1.0, pg_rho: 1.0, lambda: 1.0 });
        let n = data.rewards.len();
        for s in 0..n {
            let rewards: f64 = (s..n).map(|t| gamma.powi((t - s) as i32) * data.rewards[t] as f64).sum();
            let n_step = rewards + gamma.powi((n - s) as i32) * bootstrap;
            assert_close("v", s, targets[s], n_step);
            // The advantage is the one-step-ahead n-step return minus the value.
            let next = if s + 1 < n { targets[s + 1] as f64 } else { bootstrap };
            assert_close("advantage", s, advantages[s], data.rewards[s] as f64 + gamma * next - data.values[s] as f64);
        }
    }
}

#[test]
fn a_terminated_step_does_not_bootstrap_and_cuts_the_trace() {
    // Two steps, the first terminates: its target is its reward alone (on-policy), whatever
    // the values after it.
    let data = Data {
        log_rhos: vec![0.0, 0.0],
        rewards: vec![1.0, 2.0],
        discounts: vec![0.0, 0.9],
        ends: vec![1.0, 0.0],
        values: vec![0.5, 0.25],
        next_values: vec![100.0, 4.0],
    };
    let (targets, _) = data.run(Clips { rho: 1.0, c: 1.0, pg_rho: 1.0, lambda: 1.0 });
    assert_eq!(targets, [1.0, 2.0 + 0.9 * 4.0]);
}

#[test]
fn on_policy_vtrace_with_lambda_is_the_lambda_return() {
    // GAE's target: v_s = V(x_s) + Σ_t (γλ)^{t−s} δ_t with on-policy TD errors.
    let (gamma, lambda) = (0.98f64, 0.9f64);
    let data = Data::random(30, 0.1, gamma as f32, 7);
    let mut on_policy = data;
    on_policy.log_rhos.iter_mut().for_each(|l| *l = 0.0);
    let clips = Clips { rho: 1.0, c: 1.0, pg_rho: 1.0, lambda };
    let (targets, _) = on_policy.run(clips);
    let d = &on_policy;
    let mut gae = 0.0f64;
    for s in (0..30).rev() {
        let delta = d.rewards[s] as f64 + d.discounts[s] as f64 * d.next_values[s] as f64 - d.values[s] as f64;
        gae = delta + d.discounts[s] as f64 * lambda * (1.0 - d.ends[s] as f64) * gae;
        assert_close("v", s, targets[s], d.values[s] as f64 + gae);
    }
}
