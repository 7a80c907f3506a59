//! The process roles of the actor–learner algorithms ([`Algo::has_learner`]: Ape-X and
//! IMPALA), for `shoal replay` and `shoal worker`: what the replay service holds (Ape-X's
//! prioritized replay, IMPALA's trajectory queue), and the actor and learner loops.

use std::sync::Arc;

use shoal_dist::{Coordinator, LocalReplay, ParamStore, ReplayStore};

use crate::error::{config_err, Result};
use crate::registry::{Algo, TrainConfig};
use crate::{apex, impala};

fn not_actor_learner(config: &TrainConfig) -> crate::error::AlgoError {
    config_err(format!(
        "algo = \"{}\" has no actors and learner around a replay service (apex and impala do)",
        config.algo.name()
    ))
}

fn impala_section(config: &TrainConfig) -> Result<&impala::ImpalaConfig> {
    config.impala.as_ref().ok_or_else(|| config_err("missing [impala] section"))
}

/// What the run's replay service holds, empty: Ape-X's prioritized replay, or IMPALA's
/// trajectory queue.
pub fn replay_service(config: &TrainConfig) -> Result<LocalReplay> {
    let common = &config.common;
    match config.algo {
        Algo::Apex => {
            Ok(LocalReplay::new(apex::replay_for(common, &config.apex_setup()?)?, common.seed.wrapping_add(0x4e91a7)))
        }
        Algo::Impala => Ok(impala::queue_for(common, impala_section(config)?)?.0),
        _ => Err(not_actor_learner(config)),
    }
}

/// The observation and action widths of the rows the replay service carries.
pub fn row_widths(config: &TrainConfig) -> Result<(usize, usize)> {
    match config.algo {
        Algo::Apex => apex::row_widths(&config.common, &config.apex_setup()?),
        Algo::Impala => impala::row_widths(&config.common, impala_section(config)?),
        _ => Err(not_actor_learner(config)),
    }
}

/// Actor `rank`'s loop until `coordinator` says stop; returns its env steps and mean
/// parameter lag.
pub fn run_actor(
    config: &TrainConfig,
    rank: usize,
    store: Arc<dyn ParamStore>,
    replay: &dyn ReplayStore,
    coordinator: &dyn Coordinator,
) -> Result<(u64, f64)> {
    match config.algo {
        Algo::Apex => apex::run_actor(&config.common, &config.apex_setup()?, rank, store, replay, coordinator),
        Algo::Impala => impala::run_actor(&config.common, impala_section(config)?, rank, store, replay, coordinator),
        _ => Err(not_actor_learner(config)),
    }
}

/// The learner's loop until `coordinator` says stop (`rank` is the learner's in reports);
/// returns its update count.
pub fn run_learner(
    config: &TrainConfig,
    store: Arc<dyn ParamStore>,
    replay: &dyn ReplayStore,
    coordinator: &dyn Coordinator,
    rank: usize,
) -> Result<u64> {
    match config.algo {
        Algo::Apex => {
            Ok(apex::run_learner(&config.common, &config.apex_setup()?, store, replay, coordinator, rank)?.updates)
        }
        Algo::Impala => {
            let cfg = impala_section(config)?;
            Ok(impala::run_learner(&config.common, cfg, store, replay, coordinator, rank)?.updates)
        }
        _ => Err(not_actor_learner(config)),
    }
}
