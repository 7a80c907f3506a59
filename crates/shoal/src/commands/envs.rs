//! `shoal envs`: what can be built with `make`, and with which spaces.

use anyhow::Result;

/// Arguments of `shoal envs`.
#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object per env instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    for spec in shoal_env::specs() {
        let env = spec.make(&[])?;
        let limit = spec.max_episode_steps.map_or("none".to_string(), |n| n.to_string());
        let threshold = spec.reward_threshold.map_or("none".to_string(), |r| r.to_string());
        if args.json {
            let line = serde_json::json!({
                "id": spec.id,
                "observation_space": env.observation_space().to_string(),
                "action_space": env.action_space().to_string(),
                "max_episode_steps": spec.max_episode_steps,
                "reward_threshold": spec.reward_threshold,
            });
            println!("{line}");
        } else {
            println!(
                "{:<26} obs {:<60} act {:<28} limit {:<5} threshold {}",
                spec.id,
                env.observation_space().to_string(),
                env.action_space().to_string(),
                limit,
                threshold
            );
        }
    }
    Ok(())
}
