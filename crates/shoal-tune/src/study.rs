//! The study file: which train config to start from, what to tune and how, read and checked
//! before any trial runs.
//!
//! ```toml
//! base = "../cartpole-ppo.toml"      # any train config, relative to this file
//! metric = "episode_return_mean"     # what a trial is judged by; mode = "max" | "min"
//! num_samples = 3                    # trials (a grid repeats num_samples times)
//! max_concurrent = 2                 # trials at once
//! searcher = "grid"                  # grid | random | tpe
//! scheduler = "fifo"                 # fifo | asha | median | pbt
//! [set]                              # fixed overrides of the base config, for every trial
//! "stop.env_steps" = 100_000
//! [space]                            # the tuned keys (see `space.rs`)
//! "ppo.learning_rate" = { grid = [1e-3, 1e-4, 1e-5] }
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use shoal_algo::TrainConfig;

use crate::error::{io_err, spec_err, Result, TuneError};
use crate::pbt::PbtConfig;
use crate::scheduler::{AshaConfig, MedianConfig};
use crate::space::{Params, Space};

/// Whether a larger or a smaller metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Max,
    Min,
}

impl Direction {
    /// True when `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Max => a > b,
            Direction::Min => a < b,
        }
    }

    /// The metric as "larger is better" (what schedulers rank).
    pub fn score(self, value: f64) -> f64 {
        match self {
            Direction::Max => value,
            Direction::Min => -value,
        }
    }
}

/// How the next configuration is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SearcherKind {
    /// Every combination of the `grid` keys, `num_samples` times; other keys sampled.
    Grid,
    /// Every key sampled independently.
    #[default]
    Random,
    /// Tree-structured Parzen estimators (`tpe.rs`): random for 10 trials, then guided by
    /// the results so far.
    Tpe,
}

/// Which trials are stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// None: every trial runs its whole budget.
    #[default]
    Fifo,
    /// Asynchronous successive halving (Li et al., 2020).
    Asha,
    /// Median stopping (Golovin et al., 2017).
    Median,
    /// Population-based training (Jaderberg et al., 2017; `pbt.rs`).
    Pbt,
}

/// The study file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyFile {
    base: PathBuf,
    #[serde(default = "default_metric")]
    metric: String,
    #[serde(default)]
    mode: Direction,
    #[serde(default = "one")]
    num_samples: usize,
    #[serde(default = "one")]
    max_concurrent: usize,
    #[serde(default)]
    searcher: SearcherKind,
    #[serde(default)]
    scheduler: SchedulerKind,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    max_failures: usize,
    #[serde(default)]
    asha: AshaConfig,
    #[serde(default)]
    median: MedianConfig,
    #[serde(default)]
    pbt: PbtConfig,
    #[serde(default)]
    set: toml::Table,
    #[serde(default)]
    space: toml::Table,
}

fn default_metric() -> String {
    "episode_return_mean".into()
}

fn one() -> usize {
    1
}

/// A checked study: the base config's text and everything the tuner needs.
#[derive(Debug, Clone)]
pub struct Study {
    /// The study file's own text (stored with the study, so `--resume` needs nothing else).
    pub text: String,
    /// The base train config's text, as read when the study started.
    pub base_text: String,
    pub base_path: PathBuf,
    pub metric: String,
    pub mode: Direction,
    pub num_samples: usize,
    pub max_concurrent: usize,
    pub searcher: SearcherKind,
    pub scheduler: SchedulerKind,
    pub seed: u64,
    /// Times a trial whose job crashed runs again (from its last checkpoint) before it is
    /// recorded as failed; the study goes on either way.
    pub max_failures: usize,
    pub asha: AshaConfig,
    pub median: MedianConfig,
    pub pbt: PbtConfig,
    /// `key=value` overrides every trial gets.
    pub fixed: Vec<String>,
    pub space: Space,
    /// The base config's seed: trial k's seed is this plus its repeat (see [`Study::trial_config`]).
    pub base_seed: u64,
    /// The base config's `stop.env_steps`: a trial's budget.
    pub budget: Option<u64>,
}

impl Study {
    /// Reads a study file and its base config, and checks every key against the train
    /// config's schema before any trial runs.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir, None).map_err(|e| match e {
            TuneError::Spec(m) => spec_err(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses a study's text; `base` relative to `dir`. `base_text` is the base config's
    /// text when it is already known (a resumed study uses the copy it stored).
    pub fn parse(text: &str, dir: &Path, base_text: Option<String>) -> Result<Self> {
        let file: StudyFile = toml::from_str(text).map_err(|e| spec_err(e.message().to_string()))?;
        let base_path = dir.join(&file.base);
        let base_text = match base_text {
            Some(t) => t,
            None => std::fs::read_to_string(&base_path).map_err(|e| {
                spec_err(format!("base = {:?}: {e} (the path is relative to the study file)", file.base))
            })?,
        };
        if file.num_samples == 0 || file.max_concurrent == 0 {
            return Err(spec_err("num_samples and max_concurrent must be at least 1"));
        }
        if file.asha.reduction_factor < 2 || file.asha.grace_period == 0 {
            return Err(spec_err("asha.reduction_factor must be at least 2 and asha.grace_period at least 1"));
        }
        if file.pbt.perturbation_interval == 0 || !(0.0..=0.5).contains(&file.pbt.quantile_fraction) {
            return Err(spec_err(
                "pbt.perturbation_interval must be at least 1 and pbt.quantile_fraction within [0, 0.5]",
            ));
        }
        let space = Space::parse(&file.space)?;
        if file.searcher != SearcherKind::Grid && !space.grid().is_empty() {
            let (key, _) = space.grid()[0];
            return Err(spec_err(format!(
                "space.\"{key}\" is a grid, which only searcher = \"grid\" enumerates: use it, or {{ choice = [...] }} to sample the values"
            )));
        }
        let fixed: Vec<String> = file.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let base =
            TrainConfig::parse(&base_text, &fixed).map_err(|e| spec_err(format!("base config with [set]: {e}")))?;
        let budget = base.common.stop.env_steps;
        if file.scheduler != SchedulerKind::Fifo && budget.is_none() {
            return Err(spec_err(
                "an early-stopping scheduler measures trials in env steps: set stop.env_steps in the base config or in [set]",
            ));
        }
        let study = Study {
            text: text.to_string(),
            base_text,
            base_path,
            metric: file.metric,
            mode: file.mode,
            num_samples: file.num_samples,
            max_concurrent: file.max_concurrent,
            searcher: file.searcher,
            scheduler: file.scheduler,
            seed: file.seed,
            max_failures: file.max_failures,
            asha: file.asha,
            median: file.median,
            pbt: file.pbt,
            fixed,
            space,
            base_seed: base.common.seed,
            budget,
        };
        study.check_keys()?;
        Ok(study)
    }

    /// Every space key with each of its listed values (or a draw), alone over the base config:
    /// an unknown key or a wrong type fails here, naming the key.
    fn check_keys(&self) -> Result<()> {
        use rand::SeedableRng;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(self.seed);
        for (key, domain) in &self.space.keys {
            let values = match domain.values() {
                Some(values) => values.to_vec(),
                None => vec![domain.sample(&mut rng)],
            };
            for value in values {
                let mut overrides = self.fixed.clone();
                overrides.push(format!("{key}={value}"));
                TrainConfig::parse(&self.base_text, &overrides)
                    .map_err(|e| spec_err(format!("space.\"{key}\" = {value}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Trials the study runs: `num_samples` (times the grid's size for a grid search).
    pub fn trial_count(&self) -> usize {
        match self.searcher {
            SearcherKind::Grid => self.num_samples * self.space.grid_size(),
            SearcherKind::Random | SearcherKind::Tpe => self.num_samples,
        }
    }

    /// Trial `index`'s train config: the base, `[set]`, its parameters, and its seed — the base
    /// seed plus the trial's repeat (grid: which pass over the grid; otherwise the index), so
    /// the configurations of one grid pass share their seed and repeats differ.
    pub fn trial_config(&self, index: usize, params: &Params) -> Result<TrainConfig> {
        let repeat = index / self.space.grid_size().max(1);
        let mut overrides = self.fixed.clone();
        overrides.push(format!("seed={}", self.base_seed + repeat as u64));
        overrides.extend(params.iter().map(|(k, v)| format!("{k}={v}")));
        TrainConfig::parse(&self.base_text, &overrides).map_err(|e| spec_err(format!("trial {index}: {e}")))
    }
}
