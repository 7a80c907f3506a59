//! `shoal export RUN --onnx FILE`: a trained policy as an ONNX model (its observation
//! normalization, network and action) that ONNX Runtime and other engines run — deployment
//! without Shoal. A run that acts in int8 (`shoal optimize --quantize int8`) is written in
//! QDQ form, the same arithmetic as Shoal's int8 path. `--samples N` also writes states the
//! deterministic policy visits with Shoal's outputs and actions for them
//! (`FILE.samples.json`), which `scripts/check_onnx.py` compares a runtime's answers against.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;
use shoal_algo::checkpoint::write_json;
use shoal_algo::config::Precision;
use shoal_algo::eval::{env_action, make_env};
use shoal_algo::{Agent, TrainConfig};
use shoal_env::Space;

use super::trained::{load_trained, Trained};

/// Arguments of `shoal export`.
#[derive(clap::Args)]
pub struct Args {
    /// A trained run directory (or one of its checkpoints).
    run: PathBuf,
    /// Where to write the ONNX model.
    #[arg(long)]
    onnx: PathBuf,
    /// Also write this many visited states with Shoal's outputs to `<FILE>.samples.json`.
    #[arg(long, default_value_t = 0)]
    samples: usize,
    /// Seed of the first episode the samples come from.
    #[arg(long, default_value_t = 1_000_000)]
    seed: u64,
}

/// `<FILE>.samples.json`: flat row-major arrays.
#[derive(Serialize)]
struct Samples {
    rows: usize,
    obs_dim: usize,
    out_dim: usize,
    obs: Vec<f32>,
    outputs: Vec<f32>,
    actions: Vec<f32>,
}

pub fn run(args: &Args) -> Result<()> {
    let Trained { config, mut agent, mut net, precision, .. } = load_trained(&args.run, "exported")?;
    let mut int8 = (precision == Precision::Int8).then(|| net.quantize());
    let model = match &int8 {
        Some(int8) => int8.to_onnx()?,
        None => net.to_onnx()?,
    };
    shoal_nn::io::atomic_write(&args.onnx, &model)?;
    let out_dim = net.chain().last().map_or(0, |m| m.out_dim());
    println!(
        "wrote {} ({} bytes, {}): obs float[batch, {}] → outputs float[batch, {out_dim}], action",
        args.onnx.display(),
        model.len(),
        if int8.is_some() { "int8 in QDQ form" } else { "f32" },
        net.obs_dim()
    );
    if args.samples > 0 {
        // States the (f32) policy visits: int8 and f32 act alike on them.
        let obs = visited_states(agent.as_mut(), &config, args.samples, args.seed)?;
        let rows = args.samples;
        let mut actions = vec![0.0; rows * net.head().action_dim()];
        let outputs = match &mut int8 {
            Some(int8) => {
                int8.predict(&obs, rows, &mut actions)?;
                int8.outputs(&obs, rows).to_vec()
            }
            None => {
                net.predict(&obs, rows, &mut actions);
                net.outputs(&obs, rows).to_vec()
            }
        };
        let path = PathBuf::from(format!("{}.samples.json", args.onnx.display()));
        write_json(&path, &Samples { rows, obs_dim: net.obs_dim(), out_dim, obs, outputs, actions })?;
        println!("wrote {} ({rows} visited states with Shoal's outputs)", path.display());
    }
    Ok(())
}

/// `count` observations (flat) the agent's deterministic policy visits, over as many seeded
/// episodes as it takes.
fn visited_states(agent: &mut dyn Agent, config: &TrainConfig, count: usize, seed: u64) -> Result<Vec<f32>> {
    let mut env = make_env(&config.common)?;
    let discrete = matches!(env.action_space(), Space::Discrete { .. });
    let dim = env.observation_space().flat_dim();
    let (mut obs, mut action) = (vec![0.0f32; dim], vec![0.0f32; agent.action_dim()]);
    let mut states = Vec::with_capacity(count * dim);
    let mut episode = seed;
    env.reset(Some(episode), &mut obs)?;
    while states.len() < count * dim {
        states.extend_from_slice(&obs);
        agent.predict(&obs, 1, true, &mut action)?;
        if env.step(env_action(discrete, &action), &mut obs)?.done() {
            episode += 1;
            env.reset(Some(episode), &mut obs)?;
        }
    }
    Ok(states)
}
