//! What the tests of synchronous data parallelism share: a small Q-network, random TD
//! batches, their gradients, and the two sides of "equal to one process on the concatenated
//! batch".
#![allow(dead_code)] // each test crate uses its part

use rand::Rng;
use rand_pcg::Pcg64Mcg;
use shoal_dist::AllReduce;
use shoal_nn::{Activation, Adam, Loss, Model, Optimizer, QNetwork, QNetworkConfig, TdBatch, TdLoss};

pub type Batch = (Vec<f32>, Vec<f32>, Vec<f32>);

pub fn q_network() -> QNetwork<f32> {
    QNetwork::new(QNetworkConfig {
        obs_dim: 3,
        n_actions: 2,
        hidden: vec![16, 16],
        activation: Activation::Tanh,
        dueling: false,
        encoder: None,
        seed: 4,
    })
    .unwrap()
}

/// A TD batch of `rows` random transitions.
pub fn batch(rng: &mut Pcg64Mcg, rows: usize) -> Batch {
    let obs = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
    let actions = (0..rows).map(|_| rng.random_range(0..2) as f32).collect();
    let targets = (0..rows).map(|_| rng.random_range(-2.0..2.0)).collect();
    (obs, actions, targets)
}

pub fn gradient(model: &mut QNetwork<f32>, (obs, actions, targets): &Batch) -> Vec<f32> {
    let rows = targets.len();
    model.loss_and_grad(Loss::Td(TdBatch { obs, rows, actions, targets, weights: None, kind: TdLoss::Mse })).unwrap();
    model.grads().to_vec()
}

/// One process: the mean loss over both halves, one Adam step (lr 1e-2) from `model`.
pub fn one_step_on_the_concatenated_batch(model: &QNetwork<f32>, a: &Batch, b: &Batch) -> Vec<f32> {
    let mut model = model.clone();
    let joined =
        ([a.0.clone(), b.0.clone()].concat(), [a.1.clone(), b.1.clone()].concat(), [a.2.clone(), b.2.clone()].concat());
    let grad = gradient(&mut model, &joined);
    let mut params = model.params().to_vec();
    Adam::new(params.len(), 0.9, 0.999, 1e-8).step(&mut params, &grad, 1e-2);
    params
}

/// One member of `group`: its half's gradient, summed over the group and scaled to the mean,
/// then its own Adam step (what `Updater::Group` does).
pub fn allreduce_step(group: &dyn AllReduce, model: &mut QNetwork<f32>, half: &Batch) -> Vec<f32> {
    let mut grad = gradient(model, half);
    group.sum(&mut grad).unwrap();
    grad.iter_mut().for_each(|g| *g /= group.size() as f32);
    let mut params = model.params().to_vec();
    Adam::new(params.len(), 0.9, 0.999, 1e-8).step(&mut params, &grad, 1e-2);
    params
}
