//! Finite-difference checks of every hand-derived gradient, in `f64`.
//!
//! The engine is generic over the float type, so the very code that trains in `f32` runs here
//! in `f64` (with the exact `tanh`). Central differences with h = 1e-6 have truncation error
//! ~h²·f''' ≈ 1e-12 and rounding error ~ε·|L|/h ≈ 1e-10, so agreement within
//! 1e-7 + 1e-6·|g| means the analytic gradient is right, not approximately right.
//! Inputs are random, so piecewise losses (clipping, Huber, relu) are checked on both sides of
//! their kinks; a test fails if a case never exercised the branch it exists for.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_nn::conv::{ConvSpec, EncoderConfig};
use shoal_nn::{
    Activation, ActorCritic, ActorCriticConfig, DistillBatch, Loss, Model, PolicyGradientBatch, PolicyHead,
    PolicyObjective, QNetwork, QNetworkConfig, TdBatch, TdLoss,
};

const H: f64 = 1e-6;

fn random(rng: &mut Pcg64Mcg, len: usize, scale: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Compares `model`'s gradient of `loss` with central differences over every parameter.
fn check<M: Model<f64> + Clone>(mut model: M, loss: Loss<'_, f64>) -> f64 {
    let stats = model.loss_and_grad(loss).unwrap();
    let analytic = model.grads().to_vec();
    let base = model.params().to_vec();
    for i in 0..base.len() {
        let eval = |delta: f64| {
            let mut m = model.clone();
            m.params_mut()[i] = base[i] + delta;
            m.loss_and_grad(loss).unwrap().total
        };
        let numeric = (eval(H) - eval(-H)) / (2.0 * H);
        let err = (numeric - analytic[i]).abs();
        let tensor = model.layout().tensors().iter().find(|t| t.range().contains(&i)).unwrap().name.clone();
        assert!(
            err <= 1e-7 + 1e-6 * analytic[i].abs(),
            "param {i} ({tensor}): analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
    assert!(analytic.iter().any(|g| g.abs() > 1e-4), "gradient is trivially zero");
    stats.total
}

fn actor_critic(head: PolicyHead, activation: Activation, shared_trunk: bool) -> ActorCritic<f64> {
    ActorCritic::new(ActorCriticConfig {
        obs_dim: 3,
        head,
        hidden: vec![6, 5],
        activation,
        shared_trunk,
        init_log_std: -0.3,
        encoder: None,
        seed: 11,
    })
    .unwrap()
}

/// A PPO/A2C batch whose old log-probabilities put some ratios outside the clip range.
struct PgData {
    obs: Vec<f64>,
    actions: Vec<f64>,
    old_log_probs: Vec<f64>,
    advantages: Vec<f64>,
    returns: Vec<f64>,
    old_values: Vec<f64>,
}

const ROWS: usize = 24;

fn pg_data(model: &mut ActorCritic<f64>, rng: &mut Pcg64Mcg) -> PgData {
    let head = *model.head();
    let obs = random(rng, ROWS * 3, 1.5);
    let actions: Vec<f64> = match head {
        PolicyHead::Categorical { n } => (0..ROWS).map(|_| rng.random_range(0..n) as f64).collect(),
        PolicyHead::Gaussian { dim } => random(rng, ROWS * dim, 1.0),
    };
    let outputs = model.forward_policy(&obs, ROWS).unwrap().to_vec();
    let log_std = model.log_std().to_vec();
    let width = head.out_dim();
    let old_log_probs = (0..ROWS)
        .map(|i| {
            let logp = head.log_prob(
                &outputs[i * width..(i + 1) * width],
                &log_std,
                &actions[i * head.action_dim()..(i + 1) * head.action_dim()],
            );
            logp + rng.random_range(-0.5..0.5)
        })
        .collect();
    let values = model.forward(&obs, ROWS).unwrap().value.unwrap().to_vec();
    PgData {
        advantages: random(rng, ROWS, 2.0),
        returns: random(rng, ROWS, 2.0),
        old_values: values.iter().map(|v| v + rng.random_range(-0.4..0.4)).collect(),
        obs,
        actions,
        old_log_probs,
    }
}

fn pg_loss(d: &PgData, objective: PolicyObjective, value_clip: Option<f64>) -> Loss<'_, f64> {
    Loss::PolicyGradient(pg_batch(d, objective, value_clip))
}

fn pg_batch(d: &PgData, objective: PolicyObjective, value_clip: Option<f64>) -> PolicyGradientBatch<'_, f64> {
    PolicyGradientBatch {
        obs: &d.obs,
        rows: ROWS,
        actions: &d.actions,
        old_log_probs: &d.old_log_probs,
        advantages: &d.advantages,
        returns: &d.returns,
        old_values: &d.old_values,
        objective,
        value_clip,
        ent_coef: 0.05,
        vf_coef: 0.7,
    }
}

#[test]
fn ppo_loss_gradients_categorical_and_gaussian_separate_and_shared() {
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    // 20 actions: more than the categorical backward keeps probabilities for.
    for head in [PolicyHead::Categorical { n: 4 }, PolicyHead::Categorical { n: 20 }, PolicyHead::Gaussian { dim: 2 }] {
        for shared in [false, true] {
            for activation in [Activation::Tanh, Activation::Relu] {
                let mut model = actor_critic(head, activation, shared);
                let data = pg_data(&mut model, &mut rng);
                let objective = PolicyObjective::Clipped { clip: 0.2 };
                let stats = model.clone().loss_and_grad(pg_loss(&data, objective, Some(0.2))).unwrap();
                assert!(
                    stats.clip_fraction > 0.1 && stats.clip_fraction < 0.9,
                    "both clip branches exercised: {stats:?}"
                );
                check(model, pg_loss(&data, objective, Some(0.2)));
            }
        }
    }
}

/// A model on one thread, its clone set to two, and a batch for them.
fn one_and_two_threads(
    head: PolicyHead,
    shared: bool,
    rng: &mut Pcg64Mcg,
) -> (ActorCritic<f64>, ActorCritic<f64>, PgData) {
    let mut one = actor_critic(head, Activation::Tanh, shared);
    let data = pg_data(&mut one, rng);
    let mut two = one.clone();
    two.set_threads(2);
    assert_eq!((one.threads(), two.threads()), (1, 2));
    (one, two, data)
}

/// Actor and critic side by side on two threads do exactly what one thread does: the same
/// loss and the same gradient, bit for bit (so the gradient checks above cover them too).
#[test]
fn two_threads_give_bit_identical_losses_and_gradients() {
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    for head in [PolicyHead::Categorical { n: 4 }, PolicyHead::Gaussian { dim: 2 }] {
        let (mut one, mut two, data) = one_and_two_threads(head, false, &mut rng);
        for round in 0..3 {
            let loss = pg_loss(&data, PolicyObjective::Clipped { clip: 0.2 }, Some(0.2));
            let (a, b) = (one.loss_and_grad(loss).unwrap(), two.loss_and_grad(loss).unwrap());
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{head:?} round {round}");
            assert_eq!(one.grads(), two.grads(), "{head:?} round {round}");
            let (fa, fb) = (one.forward(&data.obs, ROWS).unwrap(), two.forward(&data.obs, ROWS).unwrap());
            assert_eq!((fa.policy, fa.value), (fb.policy, fb.value));
            // Move the parameters so the next round is a different point.
            let step: Vec<f64> = one.grads().iter().map(|g| -0.1 * g).collect();
            for m in [&mut one, &mut two] {
                m.params_mut().iter_mut().zip(&step).for_each(|(p, s)| *p += s);
            }
        }
    }
}

/// A shared trunk on two threads splits the minibatch: each half's gradient is exact (the
/// finite-difference check passes), their weighted mean equals one thread's gradient up to
/// rounding — also for an odd number of rows — and two 2-thread models agree bit for bit.
#[test]
fn a_shared_trunk_on_two_threads_averages_the_halves_of_the_minibatch() {
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    for head in [PolicyHead::Categorical { n: 4 }, PolicyHead::Gaussian { dim: 2 }] {
        let (mut one, mut two, data) = one_and_two_threads(head, true, &mut rng);
        for rows in [ROWS, ROWS - 1] {
            let (batch, _) = pg_batch(&data, PolicyObjective::Clipped { clip: 0.2 }, Some(0.2)).split_at(rows);
            let (a, b) = (
                one.loss_and_grad(Loss::PolicyGradient(batch)).unwrap(),
                two.loss_and_grad(Loss::PolicyGradient(batch)).unwrap(),
            );
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * (1.0 + x.abs());
            assert!(close(a.total, b.total) && close(a.approx_kl, b.approx_kl), "{head:?} {rows} rows: {a:?} vs {b:?}");
            assert!(close(a.clip_fraction, b.clip_fraction) && close(a.entropy, b.entropy), "{a:?} vs {b:?}");
            for (i, (x, y)) in one.grads().iter().zip(two.grads()).enumerate() {
                assert!(close(*x, *y), "{head:?} {rows} rows, gradient {i}: {x} vs {y}");
            }
            let mut again = two.clone();
            again.loss_and_grad(Loss::PolicyGradient(batch)).unwrap();
            assert_eq!(again.grads(), two.grads(), "a 2-thread step is the same every time");
            check(two.clone(), Loss::PolicyGradient(batch));
        }
    }
}

#[test]
fn a2c_loss_gradients() {
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    for head in [PolicyHead::Categorical { n: 3 }, PolicyHead::Gaussian { dim: 3 }] {
        let mut model = actor_critic(head, Activation::Tanh, false);
        let data = pg_data(&mut model, &mut rng);
        check(model, pg_loss(&data, PolicyObjective::Vanilla, None));
    }
}

#[test]
fn td_loss_gradients_mse_and_huber_plain_and_dueling() {
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    for dueling in [false, true] {
        for activation in [Activation::Relu, Activation::Tanh] {
            let model: QNetwork<f64> = QNetwork::new(QNetworkConfig {
                obs_dim: 3,
                n_actions: 4,
                hidden: vec![7, 6],
                activation,
                dueling,
                encoder: None,
                seed: 5,
            })
            .unwrap();
            let obs = random(&mut rng, ROWS * 3, 1.5);
            let actions: Vec<f64> = (0..ROWS).map(|_| rng.random_range(0..4) as f64).collect();
            let targets = random(&mut rng, ROWS, 2.0);
            let weights: Vec<f64> = (0..ROWS).map(|_| rng.random_range(0.1..1.0)).collect();
            for kind in [TdLoss::Mse, TdLoss::Huber { delta: 1.0 }] {
                for w in [None, Some(&weights[..])] {
                    let loss = Loss::Td(TdBatch {
                        obs: &obs,
                        rows: ROWS,
                        actions: &actions,
                        targets: &targets,
                        weights: w,
                        kind,
                    });
                    check(model.clone(), loss);
                }
            }
            // Huber's linear branch must have been exercised.
            let mut m = model.clone();
            let loss = Loss::Td(TdBatch {
                obs: &obs,
                rows: ROWS,
                actions: &actions,
                targets: &targets,
                weights: None,
                kind: TdLoss::Mse,
            });
            m.loss_and_grad(loss).unwrap();
            assert!(m.td_errors().iter().any(|e| e.abs() > 1.0) && m.td_errors().iter().any(|e| e.abs() < 1.0));
        }
    }
}

/// A Q-network over a two-layer convolutional encoder (stride, padding, an input scale,
/// channels-first images), plain and dueling: every filter's and every later weight's gradient against central
/// differences.
#[test]
fn td_loss_gradients_through_a_conv_encoder() {
    let mut rng = Pcg64Mcg::seed_from_u64(8);
    let conv = |channels, kernel, stride, padding| ConvSpec { channels, kernel, stride, padding };
    let image = EncoderConfig {
        height: 6,
        width: 5,
        channels: 2,
        layers: vec![conv(3, 3, 1, 1), conv(4, 2, 2, 0)],
        input_scale: 0.5,
        channels_first: true,
    };
    let rows = 5;
    for dueling in [false, true] {
        let model: QNetwork<f64> = QNetwork::new(QNetworkConfig {
            obs_dim: image.in_len(),
            n_actions: 3,
            hidden: vec![6],
            activation: Activation::Tanh,
            dueling,
            encoder: Some(image.clone()),
            seed: 9,
        })
        .unwrap();
        let obs = random(&mut rng, rows * image.in_len(), 2.0);
        let actions: Vec<f64> = (0..rows).map(|_| rng.random_range(0..3) as f64).collect();
        let targets = random(&mut rng, rows, 2.0);
        let loss = Loss::Td(TdBatch {
            obs: &obs,
            rows,
            actions: &actions,
            targets: &targets,
            weights: None,
            kind: TdLoss::Mse,
        });
        check(model, loss);
    }
    // An encoder whose image is not the observation is refused, naming both.
    let err = QNetwork::<f64>::new(QNetworkConfig {
        obs_dim: 4,
        n_actions: 2,
        hidden: vec![4],
        activation: Activation::Relu,
        dueling: false,
        encoder: Some(image),
        seed: 0,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("6×5×2 images (60 values) but observations have 4"), "{err}");
}

/// An actor-critic over a convolutional encoder both heads share, with separate and shared
/// bodies: the PPO loss (categorical and Gaussian) and the distillation KL against central
/// differences, the encoder's filters included.
#[test]
fn actor_critic_gradients_through_a_conv_encoder() {
    let mut rng = Pcg64Mcg::seed_from_u64(12);
    let image = EncoderConfig {
        height: 5,
        width: 5,
        channels: 2,
        layers: vec![
            ConvSpec { channels: 3, kernel: 3, stride: 1, padding: 1 },
            ConvSpec { channels: 2, kernel: 2, stride: 2, padding: 0 },
        ],
        input_scale: 0.5,
        channels_first: false,
    };
    for (head, shared) in [
        (PolicyHead::Categorical { n: 3 }, false),
        (PolicyHead::Categorical { n: 3 }, true),
        (PolicyHead::Gaussian { dim: 2 }, false),
    ] {
        let model: ActorCritic<f64> = ActorCritic::new(ActorCriticConfig {
            obs_dim: image.in_len(),
            head,
            hidden: vec![5],
            activation: Activation::Tanh,
            shared_trunk: shared,
            init_log_std: -0.3,
            encoder: Some(image.clone()),
            seed: 13,
        })
        .unwrap();
        let rows = 6;
        let obs = random(&mut rng, rows * image.in_len(), 1.5);
        let actions: Vec<f64> = match head {
            PolicyHead::Categorical { n } => (0..rows).map(|_| rng.random_range(0..n) as f64).collect(),
            PolicyHead::Gaussian { dim } => random(&mut rng, rows * dim, 1.0),
        };
        let old_log_probs = random(&mut rng, rows, 1.0).iter().map(|x| x - 1.5).collect::<Vec<_>>();
        let (advantages, returns, old_values) =
            (random(&mut rng, rows, 1.0), random(&mut rng, rows, 1.0), random(&mut rng, rows, 1.0));
        // A shared trunk on two threads also splits the rows through the encoder.
        let mut split = model.clone();
        split.set_threads(2);
        let models = if shared { vec![model.clone(), split] } else { vec![model.clone()] };
        for model in models {
            check(
                model,
                Loss::PolicyGradient(PolicyGradientBatch {
                    obs: &obs,
                    rows,
                    actions: &actions,
                    old_log_probs: &old_log_probs,
                    advantages: &advantages,
                    returns: &returns,
                    old_values: &old_values,
                    objective: PolicyObjective::Vanilla,
                    ent_coef: 0.01,
                    vf_coef: 0.5,
                    value_clip: None,
                }),
            );
        }
        if let PolicyHead::Categorical { n } = head {
            let teacher = random(&mut rng, rows * n, 3.0);
            check(model, Loss::Distill(DistillBatch { obs: &obs, rows, teacher_logits: &teacher, temperature: 1.0 }));
        }
    }
}

#[test]
fn distillation_kl_gradients() {
    let mut rng = Pcg64Mcg::seed_from_u64(4);
    for shared in [false, true] {
        let model = actor_critic(PolicyHead::Categorical { n: 5 }, Activation::Tanh, shared);
        let obs = random(&mut rng, ROWS * 3, 1.5);
        let teacher = random(&mut rng, ROWS * 5, 3.0);
        for temperature in [1.0, 2.5] {
            let kl = check(
                model.clone(),
                Loss::Distill(DistillBatch { obs: &obs, rows: ROWS, teacher_logits: &teacher, temperature }),
            );
            assert!(kl > 0.0);
        }
    }
}

#[test]
fn losses_a_model_cannot_compute_are_errors() {
    let mut q: QNetwork<f64> = QNetwork::new(QNetworkConfig {
        obs_dim: 2,
        n_actions: 2,
        hidden: vec![4],
        activation: Activation::Relu,
        dueling: false,
        encoder: None,
        seed: 0,
    })
    .unwrap();
    let obs = [0.0; 2];
    let err = q
        .loss_and_grad(Loss::Distill(DistillBatch {
            obs: &obs,
            rows: 1,
            teacher_logits: &[0.0, 0.0],
            temperature: 1.0,
        }))
        .unwrap_err();
    assert_eq!(err.to_string(), "model `Q-network` does not support the distillation loss");
    let err = q.forward(&[0.0; 3], 2).unwrap_err().to_string();
    assert!(err.contains("observations has 3 values, expected 4 (2 rows × 2)"), "{err}");
}

/// Checks `d_mean` and `d_log_std`, the analytic gradients of `loss(mean, log_std)`, against
/// central differences in every element of both (`label` names the case in a failure).
fn check_mean_and_log_std(
    label: &str,
    loss: impl Fn(&[f64], &[f64]) -> f64,
    (mean, log_std): (&[f64], &[f64]),
    (d_mean, d_log_std): (&[f64], &[f64]),
) {
    for (which, analytic) in [("mean", d_mean), ("log_std", d_log_std)] {
        for i in 0..analytic.len() {
            let eval = |delta: f64| {
                let (mut m, mut s) = (mean.to_vec(), log_std.to_vec());
                if which == "mean" {
                    m[i] += delta
                } else {
                    s[i] += delta
                }
                loss(&m, &s)
            };
            let numeric = (eval(H) - eval(-H)) / (2.0 * H);
            let err = (numeric - analytic[i]).abs();
            assert!(
                err <= 1e-7 + 1e-6 * analytic[i].abs(),
                "{label}{which}[{i}]: analytic {} vs numeric {numeric}",
                analytic[i]
            );
        }
    }
}

/// SAC's squashed Gaussian: the gradients of `L = Σ w·a + Σ v·log π` in the mean and log-std
/// (ε fixed) against central differences, with rows inside and outside the log-std clamp and
/// actions near saturation; and the temperature loss's derivative.
#[test]
fn squashed_gaussian_and_temperature_gradients() {
    use shoal_nn::squashed::{squashed_backward, squashed_sample, temperature_loss, LOG_STD_MAX};
    let (rows, dim) = (6, 3);
    let mut rng = Pcg64Mcg::seed_from_u64(21);
    let mut mean = random(&mut rng, rows * dim, 2.0);
    let mut log_std = random(&mut rng, rows * dim, 1.5);
    log_std[4] = LOG_STD_MAX + 0.7; // clamped: no gradient
    mean[7] = 4.0; // tanh near saturation
    let eps = random(&mut rng, rows * dim, 1.5);
    let w = random(&mut rng, rows * dim, 1.0);
    let v = random(&mut rng, rows, 1.0);
    let loss = |mean: &[f64], log_std: &[f64]| {
        let (mut a, mut lp) = (vec![0.0; rows * dim], vec![0.0; rows]);
        squashed_sample(mean, log_std, &eps, dim, &mut a, &mut lp);
        a.iter().zip(&w).map(|(a, w)| a * w).sum::<f64>() + lp.iter().zip(&v).map(|(l, v)| l * v).sum::<f64>()
    };
    let (mut actions, mut log_probs) = (vec![0.0; rows * dim], vec![0.0; rows]);
    squashed_sample(&mean, &log_std, &eps, dim, &mut actions, &mut log_probs);
    let (mut d_mean, mut d_log_std) = (vec![0.0; rows * dim], vec![0.0; rows * dim]);
    squashed_backward(&log_std, &eps, &actions, &w, &v, dim, &mut d_mean, &mut d_log_std);
    check_mean_and_log_std("", loss, (&mean, &log_std), (&d_mean, &d_log_std));
    assert_eq!(d_log_std[4], 0.0);
    assert!(actions[7].abs() > 0.99, "the saturated case was not exercised");
    // The log-probability of a plain Gaussian plus the tanh correction, written out for one row.
    let (m, s, e) = (mean[0], log_std[0].exp(), eps[0]);
    let u = m + s * e;
    let direct: f64 =
        -0.5 * e * e - log_std[0] - 0.5 * (2.0 * std::f64::consts::PI).ln() - (1.0 - u.tanh().powi(2) + 1e-6).ln();
    let mut row = [0.0; 1];
    squashed_sample(&mean[..1], &log_std[..1], &eps[..1], 1, &mut [0.0], &mut row);
    assert!((row[0] - direct).abs() < 1e-12);

    let target = -(dim as f64);
    let (_, analytic) = temperature_loss(0.3, &log_probs, target);
    let numeric =
        (temperature_loss(0.3 + H, &log_probs, target).0 - temperature_loss(0.3 - H, &log_probs, target).0) / (2.0 * H);
    assert!((numeric - analytic).abs() < 1e-8, "temperature: analytic {analytic} vs numeric {numeric}");
}

/// gSDE's squashed Gaussian: the gradients of `L = Σ w·a + Σ v·log π` in the mean and the
/// log-std matrix (features and exploration matrices fixed) against central differences, with
/// one matrix for the batch and one per row, and the log-probability against a plain Gaussian
/// of the same variance written out.
#[test]
fn gsde_gradients() {
    use shoal_nn::gsde::{Gsde, GsdeSamples};
    let gsde = Gsde { latent: 4, dim: 2 };
    let rows = 5;
    let mut rng = Pcg64Mcg::seed_from_u64(22);
    let mut mean = random(&mut rng, rows * gsde.dim, 1.5);
    mean[3] = 3.5; // tanh near saturation
    let features = random(&mut rng, rows * gsde.latent, 1.0);
    let log_std = random(&mut rng, gsde.matrix_len(), 1.0);
    let w = random(&mut rng, rows * gsde.dim, 1.0);
    let v = random(&mut rng, rows, 1.0);
    for matrices in [1, rows] {
        let z = random(&mut rng, matrices * gsde.matrix_len(), 2.0);
        let loss = |mean: &[f64], log_std: &[f64]| {
            let mut s = GsdeSamples::default();
            gsde.sample(mean, &features, log_std, &z, &mut s);
            s.actions.iter().zip(&w).map(|(a, w)| a * w).sum::<f64>()
                + s.log_probs.iter().zip(&v).map(|(l, v)| l * v).sum::<f64>()
        };
        let mut samples = GsdeSamples::default();
        gsde.sample(&mean, &features, &log_std, &z, &mut samples);
        let (mut d_mean, mut d_log_std) = (vec![0.0; rows * gsde.dim], vec![0.0; gsde.matrix_len()]);
        gsde.backward(&features, &log_std, &z, &samples, &w, &v, &mut d_mean, &mut d_log_std);
        let label = format!("{matrices} matrices, ");
        check_mean_and_log_std(&label, loss, (&mean, &log_std), (&d_mean, &d_log_std));
        assert!(samples.actions[3].abs() > 0.99, "the saturated case was not exercised");
        // Row 1 written out: u_k = μ_k + Σ_j h_j σ_jk Z_jk ~ N(μ_k, Σ_j h_j² σ_jk² + 1e-6), a = tanh(u).
        let (r, d) = (1, gsde.dim);
        let zr = if matrices == 1 { &z[..] } else { &z[r * gsde.matrix_len()..] };
        let h = &features[r * gsde.latent..(r + 1) * gsde.latent];
        let row_direct: f64 = (0..d)
            .map(|k| {
                let sigma = |j: usize| log_std[j * d + k].exp();
                let noise: f64 = (0..gsde.latent).map(|j| h[j] * sigma(j) * zr[j * d + k]).sum();
                let var = (0..gsde.latent).map(|j| (h[j] * sigma(j)).powi(2)).sum::<f64>() + 1e-6;
                let a = (mean[r * d + k] + noise).tanh();
                assert!((samples.actions[r * d + k] - a).abs() < 1e-12);
                -0.5 * noise * noise / var - 0.5 * (2.0 * std::f64::consts::PI * var).ln() - (1.0 - a * a + 1e-6).ln()
            })
            .sum();
        assert!((samples.log_probs[r] - row_direct).abs() < 1e-10);
    }
}

/// An MLP's gradient in its input (what a critic hands an actor's loss): `backward_input`
/// against central differences of `L = Σ w·f(x)`, equal to what `backward` leaves with
/// `input_grad`, and without touching parameter gradients.
#[test]
fn mlp_input_gradient() {
    use shoal_nn::mlp::{Mlp, MlpWorkspace};
    use shoal_nn::ParamLayout;
    let (rows, input) = (4, 5);
    for activation in [Activation::Tanh, Activation::Relu] {
        let mut layout = ParamLayout::new();
        let mlp = Mlp::new(&mut layout, "q", &[input, 7, 6, 2], activation, false);
        let mut rng = Pcg64Mcg::seed_from_u64(23);
        let mut params = vec![0.0f64; layout.len()];
        mlp.init(&mut params, 1.0, 1.0, &mut rng);
        params.iter_mut().for_each(|p| *p += rng.random_range(-0.1..0.1)); // non-zero biases
        let x = random(&mut rng, rows * input, 1.5);
        let w = random(&mut rng, rows * 2, 1.0);
        let loss = |x: &[f64]| {
            let mut ws = MlpWorkspace::default();
            mlp.forward(&params, x, rows, &mut ws);
            ws.output().iter().zip(&w).map(|(o, w)| o * w).sum::<f64>()
        };
        let mut ws = MlpWorkspace::default();
        mlp.forward(&params, &x, rows, &mut ws);
        ws.output_grad(rows, 2).copy_from_slice(&w);
        mlp.backward_input(&params, &x, rows, &mut ws);
        let analytic = ws.input_grad()[..rows * input].to_vec();
        for i in 0..rows * input {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[i] += H;
            minus[i] -= H;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * H);
            assert!(
                (numeric - analytic[i]).abs() <= 1e-7 + 1e-6 * analytic[i].abs(),
                "{activation:?} x[{i}]: analytic {} vs numeric {numeric}",
                analytic[i]
            );
        }
        let mut grads = vec![0.0; layout.len()];
        mlp.forward(&params, &x, rows, &mut ws);
        ws.output_grad(rows, 2).copy_from_slice(&w);
        mlp.backward(&params, &mut grads, &x, rows, &mut ws, true);
        assert_eq!(&ws.input_grad()[..rows * input], &analytic[..], "backward's input gradient");
        assert!(grads.iter().any(|&g| g != 0.0));
    }
}
