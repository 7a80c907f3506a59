//! `cluster.mode = "allreduce"`: synchronous data parallelism without a parameter server, one
//! agent per rank of a group (MPI's ranks under `mpirun`). Each rank runs the config's agent
//! on its own envs (seeds 10 000 apart); every gradient step sums the ranks' gradients, and
//! each rank takes the same optimizer step on the mean from the same starting parameters
//! (rank 0's), so all ranks hold the same model — data-parallel PPO/A2C/DQN as the sync
//! parameter server runs it, with one collective instead of a push and a pull.
//!
//! Ranks must make the same collective calls in the same order, so they run in lockstep: each
//! trains the same number of iterations (its share of `stop.env_steps`), and after every
//! iteration the ranks agree whether to stop — rank 0 decides, from its wall clock, its
//! training episodes and its deterministic evaluations (`stop.eval_return_mean`).

use std::sync::Arc;

use shoal_dist::AllReduce;

use crate::agent::{time_or_return_reached, Agent, Callback, Control, Progress};
use crate::config::{CommonConfig, StopConfig};
use crate::error::{config_err, Result};
use crate::eval::EvalStop;

/// Makes `agent`'s gradient steps collective over `group`.
pub fn join_group(agent: &mut dyn Agent, group: Arc<dyn AllReduce>) -> Result<()> {
    let network = agent.network().ok_or_else(|| config_err("this algorithm has no network to train in a group"))?;
    network.updater.join(group)
}

/// What each rank's own training loop stops on: its equal share of the env-step budget
/// (every other criterion is decided by rank 0 through [`GroupStop`], so that no rank leaves
/// the lockstep alone).
pub fn rank_stop(stop: &StopConfig, size: usize) -> StopConfig {
    StopConfig {
        env_steps: Some(stop.env_steps.map_or(u64::MAX, |total| total.div_ceil(size as u64))),
        wall_seconds: None,
        episode_return_mean: None,
        eval_return_mean: None,
        ..stop.clone()
    }
}

/// The callback every rank runs after each iteration: rank 0 says whether the run is over,
/// the group agrees on it with one all-reduce.
pub struct GroupStop {
    group: Arc<dyn AllReduce>,
    stop: StopConfig,
    evaluator: Option<EvalStop>,
}

impl GroupStop {
    pub fn new(group: Arc<dyn AllReduce>, common: &CommonConfig) -> Self {
        let evaluator = if group.rank() == 0 { EvalStop::from_config(common) } else { None };
        GroupStop { group, stop: common.stop.clone(), evaluator }
    }

    /// Rank 0's verdict: 0 go on, 1 stop, 2 stop because the evaluation reached the target.
    fn verdict(&mut self, agent: &mut dyn Agent, progress: &Progress<'_>) -> Result<f64> {
        let total_steps = progress.env_steps * self.group.size() as u64;
        if let Some(eval) = self.evaluator.as_mut() {
            if let Some(mean) = eval.maybe_evaluate(agent, total_steps)? {
                eprintln!("deterministic evaluation at {total_steps} env steps (all ranks): mean return {mean:.1}");
                if eval.reached(mean) {
                    return Ok(2.0);
                }
            }
        }
        Ok(if time_or_return_reached(&self.stop, progress).is_some() { 1.0 } else { 0.0 })
    }
}

impl Callback for GroupStop {
    fn on_iteration(&mut self, agent: &mut dyn Agent, progress: &Progress<'_>) -> Result<Control> {
        let mut verdict = [if self.group.rank() == 0 { self.verdict(agent, progress)? } else { 0.0 }];
        self.group.sum_f64(&mut verdict)?;
        Ok(match verdict[0] {
            v if v >= 2.0 => Control::Solved,
            v if v >= 1.0 => Control::Stop,
            _ => Control::Continue,
        })
    }
}
