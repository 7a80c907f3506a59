//! Training configs: one TOML file per (algorithm, environment) under `configs/`.
//!
//! Every key has a name and a default (CleanRL's or rl-zoo3's); unknown keys, wrong types and
//! out-of-range values fail before training starts, with the key in the message. Any key can be
//! overridden from the command line as `section.key=value` (`--set ppo.learning_rate=3e-4`).

use serde::{Deserialize, Serialize};

use crate::a2c::A2cConfig;
use crate::apex::ApexConfig;
use crate::cluster::ClusterConfig;
use crate::dqn::DqnConfig;
use crate::error::{config_err, Result};
use crate::ppo::PpoConfig;
use crate::q_learning::QLearningConfig;

/// Which algorithm a config trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algo {
    Ppo,
    A2c,
    A3c,
    Dqn,
    /// Ape-X: distributed prioritized replay DQN (actors, a replay, one learner).
    Apex,
    QLearning,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ppo => "ppo",
            Algo::A2c => "a2c",
            Algo::A3c => "a3c",
            Algo::Dqn => "dqn",
            Algo::Apex => "apex",
            Algo::QLearning => "q_learning",
        }
    }
}

/// A complete training run description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub algo: Algo,
    /// Seeds the envs (env i gets seed + i), the network initialization and all sampling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub env: EnvConfig,
    #[serde(default)]
    pub stop: StopConfig,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppo: Option<PpoConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2c: Option<A2cConfig>,
    /// A3C's hyperparameters are A2C's: A3C is A2C's worker run asynchronously by a
    /// `[cluster]` (two async workers when the config gives no cluster section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a3c: Option<A2cConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dqn: Option<DqnConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apex: Option<ApexConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q_learning: Option<QLearningConfig>,
    /// Several workers and parameter servers, embedded or as processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

fn default_seed() -> u64 {
    1
}

/// The environment and how many copies step together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// A registered id, e.g. `CartPole-v1` (`shoal envs` lists them).
    pub id: String,
    #[serde(default = "one")]
    pub num_envs: usize,
    /// Threads stepping the envs (1 = on the training thread).
    #[serde(default = "one")]
    pub threads: usize,
    /// Env options, as `make` takes them (e.g. `{ is_slippery = true }`).
    #[serde(default)]
    pub options: toml::Table,
}

fn one() -> usize {
    1
}

/// When training stops: whichever criterion is met first (at least one is required).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopConfig {
    /// Total environment steps (over all envs).
    pub env_steps: Option<u64>,
    /// Wall-clock seconds.
    pub wall_seconds: Option<f64>,
    /// Mean return of the last 100 training episodes (RLlib's classic "stop at 200").
    pub episode_return_mean: Option<f64>,
    /// Mean return of a deterministic evaluation — `eval_episodes` fresh episodes every
    /// `eval_every` env steps (Stable-Baselines3's EvalCallback with
    /// StopTrainingOnRewardThreshold). What the greedy policy does, where training episodes
    /// show the exploring one (Ape-X's actors explore with ε up to 0.4).
    pub eval_return_mean: Option<f64>,
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    #[serde(default = "default_eval_episodes")]
    pub eval_episodes: usize,
}

fn default_eval_every() -> u64 {
    10_000
}

fn default_eval_episodes() -> usize {
    10
}

impl Default for StopConfig {
    fn default() -> Self {
        StopConfig {
            env_steps: None,
            wall_seconds: None,
            episode_return_mean: None,
            eval_return_mean: None,
            eval_every: default_eval_every(),
            eval_episodes: default_eval_episodes(),
        }
    }
}

/// Bookkeeping of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Write a checkpoint every this many env steps (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: u64,
}

/// The network every neural algorithm builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// `tanh` or `relu`.
    #[serde(default = "default_activation")]
    pub activation: String,
}

fn default_hidden() -> Vec<usize> {
    vec![64, 64]
}

fn default_activation() -> String {
    "tanh".into()
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig { hidden: default_hidden(), activation: default_activation() }
    }
}

impl NetConfig {
    pub(crate) fn activation(&self, section: &str) -> Result<shoal_nn::Activation> {
        shoal_nn::Activation::parse(&self.activation).ok_or_else(|| {
            config_err(format!("{section}.net.activation must be \"tanh\" or \"relu\", got \"{}\"", self.activation))
        })
    }
}

/// Checks `value` lies in `[lo, hi]`, naming `key` otherwise.
pub(crate) fn check_range(key: &str, value: f64, lo: f64, hi: f64) -> Result<()> {
    if !(lo..=hi).contains(&value) {
        return Err(config_err(format!("{key} = {value} is out of range: it must be in [{lo}, {hi}]")));
    }
    Ok(())
}

/// Checks a count is positive, naming `key` otherwise.
pub(crate) fn check_positive(key: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(config_err(format!("{key} must be at least 1")));
    }
    Ok(())
}

impl TrainConfig {
    /// Parses a config, applies `overrides` (`section.key=value`), and validates it.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| config_err(e.to_string()))?;
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        let mut config: TrainConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().message().to_string();
            if path == "." {
                config_err(message)
            } else {
                config_err(format!("{path}: {message}"))
            }
        })?;
        config.fill_algo_section();
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a config file.
    pub fn load(path: &std::path::Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_err(path))?;
        Self::parse(&text, overrides).map_err(|e| match e {
            crate::AlgoError::Config(m) => config_err(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The resolved config as TOML (what a run directory records).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Inserts the default section of the chosen algorithm when the file has none.
    fn fill_algo_section(&mut self) {
        match self.algo {
            Algo::Ppo => _ = self.ppo.get_or_insert_with(Default::default),
            Algo::A2c => _ = self.a2c.get_or_insert_with(Default::default),
            Algo::A3c => _ = self.a3c.get_or_insert_with(Default::default),
            Algo::Dqn => _ = self.dqn.get_or_insert_with(Default::default),
            Algo::Apex => _ = self.apex.get_or_insert_with(Default::default),
            Algo::QLearning => _ = self.q_learning.get_or_insert_with(Default::default),
        }
    }

    fn validate(&self) -> Result<()> {
        let given = [
            (Algo::Ppo, self.ppo.is_some()),
            (Algo::A2c, self.a2c.is_some()),
            (Algo::A3c, self.a3c.is_some()),
            (Algo::Dqn, self.dqn.is_some()),
            (Algo::Apex, self.apex.is_some()),
            (Algo::QLearning, self.q_learning.is_some()),
        ];
        if let Some((other, _)) = given.iter().find(|(a, present)| *present && *a != self.algo) {
            return Err(config_err(format!(
                "section [{}] is given but algo = \"{}\"; remove the section or change algo",
                other.name(),
                self.algo.name()
            )));
        }
        check_positive("env.num_envs", self.env.num_envs)?;
        check_positive("env.threads", self.env.threads)?;
        let stop = &self.stop;
        if stop.env_steps.is_none()
            && stop.wall_seconds.is_none()
            && stop.episode_return_mean.is_none()
            && stop.eval_return_mean.is_none()
        {
            return Err(config_err(
                "[stop] needs at least one of env_steps, wall_seconds, episode_return_mean, eval_return_mean (otherwise training never ends)",
            ));
        }
        check_positive("stop.eval_every", stop.eval_every as usize)?;
        check_positive("stop.eval_episodes", stop.eval_episodes)?;
        if let Some(s) = stop.wall_seconds {
            check_range("stop.wall_seconds", s, 0.0, f64::MAX)?;
        }
        if let Some(cluster) = self.cluster() {
            cluster.validate(self.algo)?;
        }
        Ok(())
    }

    /// The cluster the run uses: the `[cluster]` section, or A3C's default.
    pub fn cluster(&self) -> Option<ClusterConfig> {
        self.cluster.clone().or_else(|| (self.algo == Algo::A3c).then(ClusterConfig::a3c_default))
    }

    /// The env options as `make` takes them.
    pub fn env_options(&self) -> Result<Vec<(String, shoal_env::OptionValue)>> {
        self.env
            .options
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    toml::Value::Boolean(b) => shoal_env::OptionValue::Bool(*b),
                    toml::Value::Integer(i) => shoal_env::OptionValue::Int(*i),
                    toml::Value::Float(f) => shoal_env::OptionValue::Float(*f),
                    toml::Value::String(s) => shoal_env::OptionValue::Str(s.clone()),
                    toml::Value::Array(items) => shoal_env::OptionValue::List(
                        items.iter().map(|i| i.as_str().map(String::from).unwrap_or_else(|| i.to_string())).collect(),
                    ),
                    other => {
                        return Err(config_err(format!("env.options.{k} = {other} is not a supported option value")))
                    }
                };
                Ok((k.clone(), value))
            })
            .collect()
    }
}

/// Sets `section.key=value` (any depth) in a parsed TOML table; the value is parsed as TOML
/// (`3e-4`, `true`, `[64, 64]`), or taken as a string when it does not parse.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let (path, raw) = item.split_once('=').ok_or_else(|| {
        config_err(format!("--set takes section.key=value (e.g. ppo.learning_rate=3e-4), got `{item}`"))
    })?;
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let keys: Vec<&str> = path.trim().split('.').collect();
    let (last, parents) = keys.split_last().ok_or_else(|| config_err(format!("empty key in --set `{item}`")))?;
    let mut node = table;
    for key in parents {
        let entry = node.entry(key.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| config_err(format!("--set {path}: `{key}` is not a section")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}
