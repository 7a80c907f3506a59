//! `shoal rollout`: step one env and print what happened, to reproduce or debug an env.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use serde_json::{json, Value};
use shoal_env::{Env, OwnedAction, Space};

/// Arguments of `shoal rollout`.
#[derive(clap::Args)]
pub struct Args {
    /// Environment id, e.g. CartPole-v1 (see `shoal envs`).
    #[arg(long)]
    env: String,
    /// Seed for the env's reset and for the random actions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of steps; after an episode ends the env is reset and a new `reset_obs` line printed.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// A JSON array of actions to take (integers, or arrays of floats for Box spaces);
    /// random actions when absent. Its length must be at least --steps.
    #[arg(long)]
    actions: Option<PathBuf>,
    /// Env option as key=value, repeatable (e.g. --opt map_name=8x8).
    #[arg(long = "opt")]
    options: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let options = super::parse_env_options(&args.options)?;
    let mut env = shoal_env::make_with(&args.env, &options)?;
    let planned = match &args.actions {
        Some(path) => Some(read_actions(path, env.action_space(), args.steps)?),
        None => None,
    };
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(args.seed);
    let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    env.reset(Some(args.seed), &mut obs)?;
    writeln!(out, "{}", json!({ "reset_obs": obs }))?;
    for step in 0..args.steps {
        let action = match &planned {
            Some(actions) => actions[step].clone(),
            None => env.action_space().sample(&mut rng),
        };
        let result = env.step(action.as_action(), &mut obs).with_context(|| format!("at step {step}"))?;
        let line = json!({
            "step": step,
            "action": action_json(&action),
            "obs": obs,
            "reward": result.reward,
            "terminated": result.terminated,
            "truncated": result.truncated,
        });
        writeln!(out, "{line}")?;
        if result.done() && step + 1 < args.steps {
            env.reset(None, &mut obs)?;
            writeln!(out, "{}", json!({ "reset_obs": obs }))?;
        }
    }
    out.flush()?;
    Ok(())
}

fn action_json(action: &OwnedAction) -> Value {
    match action {
        OwnedAction::Discrete(a) => json!(a),
        OwnedAction::Continuous(v) => json!(v),
        OwnedAction::MultiDiscrete(v) => json!(v),
    }
}

/// Reads a JSON array of actions and checks each belongs to the action space.
fn read_actions(path: &PathBuf, space: &Space, steps: usize) -> Result<Vec<OwnedAction>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading actions file {}", path.display()))?;
    let values: Vec<Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} must hold a JSON array of actions, e.g. [0, 1, 1]", path.display()))?;
    if values.len() < steps {
        bail!(
            "{} has {} actions but --steps is {steps}; give more actions or fewer steps",
            path.display(),
            values.len()
        );
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let action = parse_action(v, space).with_context(|| format!("{} action {i} (`{v}`)", path.display()))?;
            space.check(action.as_action()).with_context(|| format!("{} action {i}", path.display()))?;
            Ok(action)
        })
        .collect()
}

fn parse_action(value: &Value, space: &Space) -> Result<OwnedAction> {
    Ok(match space {
        Space::Discrete { .. } => match value.as_i64() {
            Some(a) => OwnedAction::Discrete(a),
            None => bail!("expected an integer for {space}"),
        },
        Space::Box { .. } => {
            let items = value.as_array().context("expected an array of numbers")?;
            OwnedAction::Continuous(
                items
                    .iter()
                    .map(|x| x.as_f64().map(|f| f as f32).context("expected numbers"))
                    .collect::<Result<_>>()?,
            )
        }
        Space::MultiDiscrete { .. } => {
            let items = value.as_array().context("expected an array of integers")?;
            OwnedAction::MultiDiscrete(
                items.iter().map(|x| x.as_i64().context("expected integers")).collect::<Result<_>>()?,
            )
        }
    })
}
