//! A trained run loaded as one agent with its acting network — what `shoal optimize` and
//! `shoal export` start from, whatever topology trained the run.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use shoal_algo::checkpoint::load_checkpoint;
use shoal_algo::config::Precision;
use shoal_algo::policy_net::PolicyNet;
use shoal_algo::{build_agent, Agent, LoopState, TrainConfig};

use shoal::run::find_config;
use shoal::training::checkpoint_dir;

/// See the module documentation.
pub struct Trained {
    /// The checkpoint directory read.
    pub source: PathBuf,
    /// The run's config, as one agent acting in f32 (no `[cluster]`, no `[inference]`).
    pub config: TrainConfig,
    pub agent: Box<dyn Agent>,
    pub loop_state: LoopState,
    pub net: PolicyNet,
    /// The run's own `[inference] precision` (what `shoal eval` acts in).
    pub precision: Precision,
}

/// Loads `run` (a run directory or a checkpoint); `purpose` ("optimized", "exported") names
/// what cannot be done to a policy that is not one MLP chain.
pub fn load_trained(run: &Path, purpose: &str) -> Result<Trained> {
    let source = checkpoint_dir(run);
    let mut config = TrainConfig::load(&find_config(&source)?, &[])?;
    config.common.cluster = None;
    let precision = std::mem::take(&mut config.common.inference).precision;
    let mut agent = build_agent(&config)?;
    let loop_state = load_checkpoint(agent.as_mut(), &source)
        .with_context(|| format!("loading {} (a corrupted or foreign checkpoint?)", source.display()))?;
    let net = agent.policy_net().ok_or_else(|| unsupported(config.algo.name(), purpose))?;
    Ok(Trained { source, config, agent, loop_state, net, precision })
}

/// The error for an algorithm whose policy is not one MLP chain.
pub fn unsupported(algo: &str, purpose: &str) -> anyhow::Error {
    anyhow!("`{algo}` runs cannot be {purpose}: only policies that are one MLP chain can (ppo, a2c, a3c, dqn without dueling)")
}
