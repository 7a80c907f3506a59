//! Gradual magnitude pruning of an agent's network while it trains (Zhu & Gupta, 2017): the
//! sparsity follows [`cubic_sparsity`] over a window of env steps, each tightening zeroes the
//! smallest remaining weights, and the optimizer keeps them at zero from then on
//! ([`Updater::fix_mask`](crate::updater::Updater::fix_mask)). A window that starts and ends
//! at once is one-shot pruning followed by fine-tuning.

use shoal_nn::prune::{check_sparsity, cubic_sparsity, PruneMask, PruneScope};

use crate::agent::{Agent, Callback, Control, Progress};
use crate::config::PruneConfig;
use crate::error::{config_err, Result};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct GradualPruning {
    sparsity: f64,
    scope: PruneScope,
    /// The pruning window in env steps: sparsity rises from 0 at `begin` to its target at `end`.
    begin: u64,
    end: u64,
    mask: Option<PruneMask>,
}

impl GradualPruning {
    /// Prunes to `sparsity` between env steps `begin` and `end`.
    pub fn new(sparsity: f64, scope: PruneScope, begin: u64, end: u64) -> Result<Self> {
        check_sparsity(sparsity).map_err(|e| config_err(e.to_string()))?;
        Ok(GradualPruning { sparsity, scope, begin, end: end.max(begin), mask: None })
    }

    /// The schedule a `[prune]` section asks for over a run of `total_steps` env steps.
    pub fn from_config(config: &PruneConfig, total_steps: u64) -> Result<Self> {
        let scope = config.scope()?;
        let at = |fraction: f64| (fraction * total_steps as f64) as u64;
        Self::new(config.sparsity, scope, at(config.start), at(config.end))
    }

    /// Continues from `mask` (a resumed run's), keeping those weights at zero from now on.
    pub fn resume(&mut self, agent: &mut dyn Agent, mask: PruneMask) -> Result<()> {
        let network = agent.network().ok_or_else(|| config_err("pruning needs an agent with a network"))?;
        network.layout.check_len("prune mask", mask.keeps().len())?;
        mask.apply(network.params);
        network.updater.fix_mask(mask.clone())?;
        self.mask = Some(mask);
        Ok(())
    }

    /// The mask so far (`None` before the first tightening).
    pub fn mask(&self) -> Option<&PruneMask> {
        self.mask.as_ref()
    }

    /// Tightens the mask to the schedule's sparsity at `env_steps` and applies it to `agent`.
    pub fn update(&mut self, agent: &mut dyn Agent, env_steps: u64) -> Result<()> {
        let progress = if env_steps >= self.end {
            1.0
        } else {
            env_steps.saturating_sub(self.begin) as f64 / (self.end - self.begin) as f64
        };
        let target = cubic_sparsity(progress, 0.0, 1.0, self.sparsity);
        let network = agent.network().ok_or_else(|| config_err("pruning needs an agent with a network"))?;
        let mask = self.mask.get_or_insert_with(|| PruneMask::dense(network.layout.len()));
        if target <= mask.sparsity(&network.layout) && progress > 0.0 {
            return Ok(());
        }
        mask.prune_to(&network.layout, network.params, target, self.scope)?;
        mask.apply(network.params);
        network.updater.fix_mask(mask.clone())
    }
}

impl Callback for GradualPruning {
    fn on_iteration(&mut self, agent: &mut dyn Agent, progress: &Progress<'_>) -> Result<Control> {
        self.update(agent, progress.env_steps)?;
        Ok(Control::Continue)
    }
}
