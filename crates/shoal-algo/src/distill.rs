//! Policy distillation (Rusu et al., 2016) with DAgger's data collection (Ross et al., 2011):
//! a small student learns to act like a trained teacher on the states *it* visits.
//!
//! Each round runs episodes in the config's env — the teacher acts in the first round, the
//! student in the later ones — and adds every visited state with the teacher's outputs to
//! the data set; the student then trains on all of it. The loss matches the head:
//! - discrete policies and Q-values: `KL(softmax(t/τ) ‖ softmax(s/τ))`, Rusu's best loss
//!   (τ = 0.01 sharpens a DQN's Q-values into its greedy choice; τ = 1 keeps a policy's
//!   logits as they are);
//! - Gaussian means: `½·‖s − t‖²`.
//!
//! Observations are normalized with the teacher's saved statistics, and the student keeps
//! them (`shoal optimize` writes the teacher's normalizer beside the student).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use shoal_nn::loss::distill_kl;
use shoal_nn::{Adam, Optimizer};

use crate::config::CommonConfig;
use crate::error::Result;
use crate::eval::{env_action, make_env};
use crate::policy_net::{ActionHead, PolicyNet};

/// Hyperparameters of [`distill`].
#[derive(Debug, Clone)]
pub struct DistillSettings {
    /// Collection rounds (the first with the teacher acting).
    pub rounds: usize,
    /// Env steps collected per round.
    pub steps_per_round: usize,
    /// Passes over the whole data set after each round.
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// τ of the KL loss (discrete heads).
    pub temperature: f64,
    pub seed: u64,
}

/// What the last round ended with.
#[derive(Debug, Clone, Copy)]
pub struct DistillStats {
    /// States in the data set.
    pub states: usize,
    /// Mean loss of the last epoch.
    pub loss: f64,
    /// Fraction of the data set's states where the student's action equals the teacher's.
    pub agreement: f64,
}

/// Trains `student`'s chain to act like `teacher`.
pub fn distill(
    teacher: &mut PolicyNet,
    student: &mut PolicyNet,
    common: &CommonConfig,
    settings: &DistillSettings,
) -> Result<DistillStats> {
    let mut env = make_env(common)?;
    let discrete = matches!(teacher.head(), ActionHead::Argmax);
    let obs_dim = teacher.obs_dim();
    let out_dim = teacher.chain().last().map_or(0, |m| m.out_dim());
    let action_dim = teacher.head().action_dim();
    let mut rng = Pcg64Mcg::seed_from_u64(settings.seed);
    let mut adam = Adam::new(student.params().len(), 0.9, 0.999, 1e-8);

    let (mut states, mut labels) = (Vec::<f32>::new(), Vec::<f32>::new());
    let (mut raw, mut x) = (vec![0.0f32; obs_dim], Vec::new());
    let mut action = vec![0.0f32; action_dim];
    let mut episode_seed = settings.seed.wrapping_mul(1_000_003);
    let mut stats = DistillStats { states: 0, loss: f64::NAN, agreement: 0.0 };
    for round in 0..settings.rounds {
        env.reset(Some(episode_seed), &mut raw)?;
        for _ in 0..settings.steps_per_round {
            teacher.normalize(&raw, &mut x);
            states.extend_from_slice(&x);
            labels.extend_from_slice(teacher.outputs_normalized(&x, 1));
            let actor: &mut PolicyNet = if round == 0 { teacher } else { student };
            actor.predict_normalized(&x, 1, &mut action);
            if env.step(env_action(discrete, &action), &mut raw)?.done() {
                episode_seed = episode_seed.wrapping_add(1);
                env.reset(Some(episode_seed), &mut raw)?;
            }
        }
        stats.loss = train_epochs(student, &mut adam, &states, &labels, obs_dim, out_dim, discrete, settings, &mut rng);
    }
    stats.states = states.len() / obs_dim.max(1);
    stats.agreement = agreement(teacher, student, &states, &labels, obs_dim, out_dim);
    Ok(stats)
}

/// `settings.epochs` passes of shuffled minibatches over the data set; the last pass's mean
/// loss.
#[allow(clippy::too_many_arguments)]
fn train_epochs(
    student: &mut PolicyNet,
    adam: &mut Adam<f32>,
    states: &[f32],
    labels: &[f32],
    obs_dim: usize,
    out_dim: usize,
    discrete: bool,
    settings: &DistillSettings,
    rng: &mut Pcg64Mcg,
) -> f64 {
    let count = states.len() / obs_dim;
    let mut order: Vec<usize> = (0..count).collect();
    let (mut x, mut t, mut d_out) = (Vec::new(), Vec::new(), Vec::new());
    let mut grads = vec![0.0f32; student.params().len()];
    let mut last = 0.0;
    for _ in 0..settings.epochs {
        order.shuffle(rng);
        let (mut total, mut batches) = (0.0, 0usize);
        for batch in order.chunks(settings.batch_size) {
            let rows = batch.len();
            x.clear();
            t.clear();
            for &i in batch {
                x.extend_from_slice(&states[i * obs_dim..(i + 1) * obs_dim]);
                t.extend_from_slice(&labels[i * out_dim..(i + 1) * out_dim]);
            }
            d_out.resize(rows * out_dim, 0.0);
            let s = student.outputs_normalized(&x, rows);
            let loss = if discrete {
                distill_kl(s, &t, out_dim, settings.temperature, &mut d_out)
            } else {
                mean_squared(s, &t, rows, &mut d_out)
            };
            grads.fill(0.0);
            student.backward_normalized(&x, rows, &d_out, &mut grads);
            adam.step(student.params_mut(), &grads, settings.learning_rate as f32);
            total += loss;
            batches += 1;
        }
        last = total / batches.max(1) as f64;
    }
    last
}

/// `mean over rows of ½·‖s − t‖²`, with its gradient into `d`.
fn mean_squared(s: &[f32], t: &[f32], rows: usize, d: &mut [f32]) -> f64 {
    let mut total = 0.0;
    for ((d, &s), &t) in d.iter_mut().zip(s).zip(t) {
        let diff = s - t;
        total += 0.5 * (diff as f64).powi(2);
        *d = diff / rows as f32;
    }
    total / rows as f64
}

/// Fraction of `states` where the student's deterministic action equals the teacher's
/// (within 0.05 of the action range per dimension, for continuous actions).
fn agreement(
    teacher: &PolicyNet,
    student: &mut PolicyNet,
    states: &[f32],
    labels: &[f32],
    obs_dim: usize,
    out_dim: usize,
) -> f64 {
    let count = states.len() / obs_dim.max(1);
    if count == 0 {
        return 0.0;
    }
    let head = teacher.head().clone();
    let dim = head.action_dim();
    let (mut a_t, mut a_s) = (vec![0.0f32; count * dim], vec![0.0f32; count * dim]);
    head.act(labels, count, &mut a_t);
    let out = student.outputs_normalized(states, count);
    debug_assert_eq!(out.len(), count * out_dim);
    head.act(out, count, &mut a_s);
    let same = a_t
        .chunks_exact(dim)
        .zip(a_s.chunks_exact(dim))
        .filter(|(t, s)| match &head {
            ActionHead::Argmax => t == s,
            ActionHead::Clip { low, high } => t
                .iter()
                .zip(s.iter())
                .zip(low.iter().zip(high))
                .all(|((a, b), (lo, hi))| (a - b).abs() <= 0.05 * (hi - lo)),
        })
        .count();
    same as f64 / count as f64
}
