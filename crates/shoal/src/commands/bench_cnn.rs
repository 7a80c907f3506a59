//! `shoal bench cnn`: the convolutional Q-network of DQN on Atari (the Nature CNN: 32×8×8/4,
//! 64×4×4/2, 64×3×3/1, 512, on 84×84×4 frames of bytes scaled by 1/255 inside the first layer)
//! or MinAtar's — one TD update (forward, Huber TD loss, backward, Adam) at batch 32 and
//! inference at batch 1 and 256, one thread. `bench/cnn_bench.sh` runs PyTorch on the same
//! network in the same session for the ratio.

use std::hint::black_box;

use super::bench_nn::time_per_call;
use super::bench_timing::median;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use shoal_nn::conv::EncoderConfig;
use shoal_nn::{Activation, Adam, Loss, Model, Optimizer, QNetwork, QNetworkConfig, TdBatch, TdLoss};

/// Arguments of `shoal bench cnn`.
#[derive(clap::Args)]
pub struct CnnArgs {
    /// `nature` (84×84×4 Atari frames) or `minatar` (10×10×4 boards).
    #[arg(long, default_value = "nature")]
    preset: String,
    /// Frames stored channels first (`[4, 84, 84]`, as Gymnasium's frame stack gives them)
    /// instead of channels last.
    #[arg(long)]
    channels_first: bool,
    #[arg(long, default_value_t = 6)]
    actions: usize,
    /// Minibatch size of the update.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Rounds of each measurement (medians are printed).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per round.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

pub fn run(args: &CnnArgs) -> Result<()> {
    let (mut encoder, hidden, bytes) = match args.preset.as_str() {
        "nature" => (EncoderConfig::nature(84, 84, 4), 512, true),
        "minatar" => (EncoderConfig::minatar(10, 10, 4), 128, false),
        other => bail!("--preset must be nature or minatar, got `{other}`"),
    };
    encoder.channels_first = args.channels_first;
    let obs_dim = encoder.in_len();
    let mut q: QNetwork<f32> = QNetwork::new(QNetworkConfig {
        obs_dim,
        n_actions: args.actions,
        hidden: vec![hidden],
        activation: Activation::Relu,
        dueling: false,
        encoder: Some(encoder),
        seed: 0,
    })?;
    let rows = args.batch.max(256);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
    let obs: Vec<f32> = (0..rows * obs_dim)
        .map(|_| if bytes { rng.random_range(0..=255u8) as f32 } else { rng.random_range(0..2u8) as f32 })
        .collect();
    let n = args.batch;
    let actions: Vec<f32> = (0..n).map(|_| rng.random_range(0..args.actions) as f32).collect();
    let targets: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut adam = Adam::new(q.layout().len(), 0.9, 0.999, 1e-8);
    let mut grads = vec![0.0f32; q.layout().len()];
    println!(
        "model: {} encoder ({}), {} → {hidden} relu → {} actions, {} parameters",
        args.preset,
        if args.channels_first { "channels first" } else { "channels last" },
        obs_dim,
        args.actions,
        q.layout().len()
    );
    let mut update = |q: &mut QNetwork<f32>| {
        let batch = TdBatch {
            obs: &obs[..n * obs_dim],
            rows: n,
            actions: &actions,
            targets: &targets,
            weights: None,
            kind: TdLoss::Huber { delta: 1.0 },
        };
        black_box(q.loss_and_grad(Loss::Td(batch)).expect("shapes are consistent"));
        grads.copy_from_slice(q.grads());
        adam.step(q.params_mut(), &grads, 1e-4);
    };
    let rounds = |f: &mut dyn FnMut()| -> f64 {
        let mut times: Vec<f64> = (0..args.rounds).map(|_| time_per_call(args.seconds, &mut *f)).collect();
        median(&mut times)
    };
    let update_us = rounds(&mut || update(&mut q));
    println!("cnn_update_batch{n}_ms: {:.3}", update_us / 1e3);
    for batch in [1usize, 256] {
        let input = &obs[..batch * obs_dim];
        let us = rounds(&mut || {
            black_box(q.q_values(input, batch).expect("shapes are consistent"));
        });
        println!("cnn_inference_batch{batch}_ms: {:.3}", us / 1e3);
    }
    Ok(())
}
