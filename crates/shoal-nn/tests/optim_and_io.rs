//! Optimizers against straightforward reference implementations of PyTorch's documented
//! update rules; checkpoints round-trip bit-exactly and reject other layouts by name.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_nn::{
    clip_grad_norm, io, Activation, ActorCritic, ActorCriticConfig, Adam, LinearSchedule, Loss, Model, NnError,
    Optimizer, PolicyGradientBatch, PolicyHead, PolicyObjective, RmsProp, Sgd,
};

fn run<O: Optimizer<f64>>(opt: &mut O, steps: usize, lr: f64) -> Vec<Vec<f64>> {
    let mut rng = Pcg64Mcg::seed_from_u64(9);
    let mut p: Vec<f64> = (0..17).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut trace = Vec::new();
    for _ in 0..steps {
        let g: Vec<f64> = (0..17).map(|_| rng.random_range(-3.0..3.0)).collect();
        opt.step(&mut p, &g, lr);
        trace.push(p.clone());
    }
    trace
}

/// The same parameters and gradients, updated by a transcription of PyTorch's pseudocode.
fn reference(steps: usize, mut update: impl FnMut(usize, &mut [f64], &[f64])) -> Vec<Vec<f64>> {
    let mut rng = Pcg64Mcg::seed_from_u64(9);
    let mut p: Vec<f64> = (0..17).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut trace = Vec::new();
    for t in 1..=steps {
        let g: Vec<f64> = (0..17).map(|_| rng.random_range(-3.0..3.0)).collect();
        update(t, &mut p, &g);
        trace.push(p.clone());
    }
    trace
}

fn assert_traces_equal(a: &[Vec<f64>], b: &[Vec<f64>]) {
    for (step, (x, y)) in a.iter().zip(b).enumerate() {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() < 1e-12, "step {step}: {u} vs {v}");
        }
    }
}

#[test]
fn adam_matches_pytorch_rule() {
    let (b1, b2, eps, lr) = (0.9, 0.999, 1e-5, 3e-3);
    let mut adam = Adam::new(17, b1, b2, eps);
    let (mut m, mut v) = (vec![0.0; 17], vec![0.0; 17]);
    let want = reference(25, |t, p, g| {
        for i in 0..17 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let m_hat = m[i] / (1.0 - b1.powi(t as i32));
            let v_hat = v[i] / (1.0 - b2.powi(t as i32));
            p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
    });
    assert_traces_equal(&run(&mut adam, 25, lr), &want);
}

#[test]
fn rmsprop_centered_with_momentum_matches_pytorch_rule() {
    let (alpha, eps, mu, lr) = (0.99, 1e-5, 0.5, 7e-4);
    for centered in [false, true] {
        let mut opt = RmsProp::new(17, alpha, eps, centered, mu);
        let (mut sq, mut ga, mut buf) = (vec![0.0; 17], vec![0.0; 17], vec![0.0; 17]);
        let want = reference(25, |_, p, g| {
            for i in 0..17 {
                sq[i] = alpha * sq[i] + (1.0 - alpha) * g[i] * g[i];
                let avg = if centered {
                    ga[i] = alpha * ga[i] + (1.0 - alpha) * g[i];
                    (sq[i] - ga[i] * ga[i]).sqrt() + eps
                } else {
                    sq[i].sqrt() + eps
                };
                buf[i] = mu * buf[i] + g[i] / avg;
                p[i] -= lr * buf[i];
            }
        });
        assert_traces_equal(&run(&mut opt, 25, lr), &want);
    }
}

#[test]
fn sgd_momentum_and_nesterov_match_pytorch_rule() {
    for nesterov in [false, true] {
        let (mu, lr) = (0.9, 0.01);
        let mut opt = Sgd::new(17, mu, nesterov);
        let mut buf = [0.0; 17];
        let want = reference(25, |_, p, g| {
            for i in 0..17 {
                buf[i] = mu * buf[i] + g[i];
                p[i] -= lr * if nesterov { g[i] + mu * buf[i] } else { buf[i] };
            }
        });
        assert_traces_equal(&run(&mut opt, 25, lr), &want);
    }
}

#[test]
fn gradient_clipping_and_schedules() {
    let mut g = vec![3.0f32, 4.0];
    let norm = clip_grad_norm(&mut g, 1.0);
    assert_eq!(norm, 5.0);
    assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
    let mut small = vec![0.3f32, 0.4];
    clip_grad_norm(&mut small, 1.0);
    assert_eq!(small, [0.3, 0.4]);
    let s = LinearSchedule { start: 1.0, end: 0.05, fraction: 0.5 };
    assert_eq!((s.value(0.0), s.value(0.25), s.value(0.9)), (1.0, 0.525, 0.05));
}

fn model(obs_dim: usize, hidden: Vec<usize>) -> ActorCritic<f32> {
    ActorCritic::new(ActorCriticConfig {
        obs_dim,
        head: PolicyHead::Categorical { n: 2 },
        hidden,
        activation: Activation::Tanh,
        shared_trunk: false,
        init_log_std: 0.0,
        encoder: None,
        seed: 3,
    })
    .unwrap()
}

/// A few Adam steps so that parameters and optimizer moments are all non-trivial.
fn trained() -> (ActorCritic<f32>, Adam<f32>) {
    let mut m = model(4, vec![16, 16]);
    let mut adam = Adam::new(m.layout().len(), 0.9, 0.999, 1e-5);
    let obs: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin()).collect();
    let actions: Vec<f32> = (0..8).map(|i| (i % 2) as f32).collect();
    let ones = vec![1.0f32; 8];
    let zeros = vec![0.0f32; 8];
    for _ in 0..3 {
        let batch = PolicyGradientBatch {
            obs: &obs,
            rows: 8,
            actions: &actions,
            old_log_probs: &zeros,
            advantages: &ones,
            returns: &ones,
            old_values: &zeros,
            objective: PolicyObjective::Clipped { clip: 0.2 },
            value_clip: None,
            ent_coef: 0.01,
            vf_coef: 0.5,
        };
        m.loss_and_grad(Loss::PolicyGradient(batch)).unwrap();
        let grads = m.grads().to_vec();
        adam.step(m.params_mut(), &grads, 1e-3);
    }
    (m, adam)
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let (m, adam) = trained();
    let meta = HashMap::from([("env_steps".to_string(), "1234".to_string())]);
    io::save(&path, &m, Some(&adam), &meta).unwrap();

    let mut restored = model(4, vec![16, 16]);
    let mut restored_adam = Adam::new(restored.layout().len(), 0.9, 0.999, 1e-5);
    let read = io::load(&path, &mut restored, Some(&mut restored_adam)).unwrap();
    assert_eq!(read.get("env_steps").map(String::as_str), Some("1234"));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(restored.params()), bits(m.params()));
    assert_eq!(restored_adam.steps(), 3);
    for ((n1, a), (n2, b)) in restored_adam.buffers().iter().zip(adam.buffers()) {
        assert_eq!(n1, &n2);
        assert_eq!(bits(a), bits(b));
    }
    // No temporary file is left behind by the atomic write.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn loading_another_layout_names_the_first_mismatching_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let (m, _) = trained();
    io::save(&path, &m, None, &HashMap::new()).unwrap();

    let mut other = model(6, vec![16, 16]);
    let before = other.params().to_vec();
    let err = io::load(&path, &mut other, None).unwrap_err();
    assert!(matches!(err, NnError::Layout { ref tensor, .. } if tensor == "actor.0.weight"), "{err}");
    assert!(err.to_string().contains("[16, 4]") && err.to_string().contains("[16, 6]"), "{err}");
    assert_eq!(other.params(), &before[..], "a failed load leaves the model unchanged");

    let mut wider = model(4, vec![16, 32]);
    let err = io::load(&path, &mut wider, None).unwrap_err().to_string();
    assert!(err.contains("`actor.1.weight`"), "{err}");

    let mut adam = Adam::new(m.layout().len(), 0.9, 0.999, 1e-5);
    let err = io::load(&path, &mut model(4, vec![16, 16]), Some(&mut adam)).unwrap_err().to_string();
    assert!(err.contains("holds `none` optimizer state, but the run uses `adam`"), "{err}");

    let err =
        io::load(&dir.path().join("missing.safetensors"), &mut model(4, vec![16, 16]), None).unwrap_err().to_string();
    assert!(err.contains("missing.safetensors"), "{err}");
}
