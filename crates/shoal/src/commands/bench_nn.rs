//! `shoal bench nn`: the network engine on the shapes PPO runs on CartPole — actor
//! obs→64→64→actions and critic obs→64→64→1 — timing one minibatch update (forward, PPO loss,
//! backward, gradient clipping, Adam) and batched inference, and the actor alone in f32 and
//! int8. `bench/nn_bench.sh` runs
//! PyTorch on the same shapes in the same session for the ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::bench_timing::median;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use shoal_nn::quant::{Int8Kernel, QuantizedMlp};
use shoal_nn::{
    clip_grad_norm, Activation, ActorCritic, ActorCriticConfig, Adam, Loss, Model, Optimizer, PolicyGradientBatch,
    PolicyHead, PolicyObjective,
};

/// Arguments of `shoal bench nn`.
#[derive(clap::Args)]
pub struct NnArgs {
    #[arg(long, default_value_t = 4)]
    obs_dim: usize,
    #[arg(long, default_value_t = 2)]
    actions: usize,
    #[arg(long, default_value = "64,64", value_delimiter = ',')]
    hidden: Vec<usize>,
    /// tanh or relu.
    #[arg(long, default_value = "tanh")]
    activation: String,
    /// Minibatch size of the update.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Threads of the update and inference (2: actor and critic side by side, as
    /// `net.threads = 2` trains).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Runs `f` repeatedly for about `seconds` (after a warm-up) and returns microseconds per call.
/// Alternating rounds of the f32 and int8 actor timings.
const ACTOR_ROUNDS: usize = 7;

pub(crate) fn time_per_call(seconds: f64, mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..10 {
            f();
        }
        calls += 10;
    }
    start.elapsed().as_secs_f64() * 1e6 / calls as f64
}

pub fn run(args: &NnArgs) -> Result<()> {
    let Some(activation) = Activation::parse(&args.activation) else {
        bail!("--activation must be tanh or relu, got `{}`", args.activation);
    };
    let mut model: ActorCritic<f32> = ActorCritic::new(ActorCriticConfig {
        obs_dim: args.obs_dim,
        head: PolicyHead::Categorical { n: args.actions },
        hidden: args.hidden.clone(),
        activation,
        shared_trunk: false,
        init_log_std: 0.0,
        encoder: None,
        seed: 0,
    })?;
    if !(1..=2).contains(&args.threads) {
        bail!("--threads must be 1 or 2 (actor and critic side by side), got {}", args.threads);
    }
    model.set_threads(args.threads);
    let n = args.batch;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
    let obs: Vec<f32> = (0..n * args.obs_dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let actions: Vec<f32> = (0..n).map(|_| rng.random_range(0..args.actions) as f32).collect();
    let old_log_probs: Vec<f32> = (0..n).map(|_| -(args.actions as f32).ln() + rng.random_range(-0.1..0.1)).collect();
    let advantages: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let returns: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..10.0)).collect();
    let old_values: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..10.0)).collect();
    let mut adam = Adam::new(model.layout().len(), 0.9, 0.999, 1e-5);
    let mut grads = vec![0.0f32; model.layout().len()];

    let update_us = time_per_call(args.seconds, || {
        let batch = PolicyGradientBatch {
            obs: &obs,
            rows: n,
            actions: &actions,
            old_log_probs: &old_log_probs,
            advantages: &advantages,
            returns: &returns,
            old_values: &old_values,
            objective: PolicyObjective::Clipped { clip: 0.2 },
            value_clip: Some(0.2),
            ent_coef: 0.01,
            vf_coef: 0.5,
        };
        black_box(model.loss_and_grad(Loss::PolicyGradient(batch)).expect("shapes are consistent"));
        grads.copy_from_slice(model.grads());
        clip_grad_norm(&mut grads, 0.5);
        adam.step(model.params_mut(), &grads, 2.5e-4);
    });
    // Forward 2·MACs, backward ≈ 4·MACs (weight and input gradients).
    let macs = model.macs_per_row() as f64;
    let update_flops = 6.0 * macs * n as f64;
    println!(
        "model: actor {obs}→{h}→{a}, critic {obs}→{h}→1, {act}, {} parameters, {} thread(s)",
        model.layout().len(),
        args.threads,
        obs = args.obs_dim,
        h = args.hidden.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("→"),
        a = args.actions,
        act = args.activation,
    );
    println!("ppo_update_batch{n}_us: {update_us:.1}");
    println!("ppo_update_gflops: {:.2}", update_flops / update_us / 1e3);
    for rows in [1usize, 16, 64, 256] {
        let input = &obs[..rows.min(n) * args.obs_dim];
        let rows = input.len() / args.obs_dim;
        let us = time_per_call(args.seconds / 2.0, || {
            black_box(model.forward(input, rows).expect("shapes are consistent").policy);
        });
        println!("inference_batch{rows}_us: {us:.2}");
        if rows == 256 {
            println!("inference_batch256_gflops: {:.2}", 2.0 * macs * rows as f64 / us / 1e3);
        }
    }
    // The actor alone, in f32 and in int8 (what `shoal optimize --quantize int8` acts with),
    // on the kernel this CPU runs and, at batch 256, on the others it can run.
    let actor = model.policy_chain().and_then(|chain| chain.into_iter().next()).expect("a separate actor, no encoder");
    let int8 = QuantizedMlp::new(&actor, model.params());
    let mut runs: Vec<(usize, QuantizedMlp)> = vec![(1, int8.clone()), (256, int8.clone())];
    runs.extend(
        Int8Kernel::available().into_iter().filter(|&k| k != int8.kernel()).map(|k| (256, int8.clone().with_kernel(k))),
    );
    for (rows, mut int8) in runs {
        let input = &obs[..rows.min(n) * args.obs_dim];
        let rows = input.len() / args.obs_dim;
        // Alternating short rounds, medians: a burst of load on the other core or a clock
        // change then moves one round of each side, not one side's whole measurement.
        let (mut f32_rounds, mut int8_rounds) = (Vec::new(), Vec::new());
        for _ in 0..ACTOR_ROUNDS {
            f32_rounds.push(time_per_call(args.seconds / (2 * ACTOR_ROUNDS) as f64, || {
                black_box(model.forward_policy(input, rows).expect("shapes are consistent"));
            }));
            int8_rounds.push(time_per_call(args.seconds / (2 * ACTOR_ROUNDS) as f64, || {
                black_box(int8.forward(input, rows));
            }));
        }
        let (f32_us, int8_us) = (median(&mut f32_rounds), median(&mut int8_rounds));
        println!("actor_f32_batch{rows}_us: {f32_us:.2}");
        println!("actor_int8_batch{rows}_us: {int8_us:.2} ({}, {:.2}x f32)", int8.kernel().name(), f32_us / int8_us);
    }
    Ok(())
}
