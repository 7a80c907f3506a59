//! The config vocabulary every algorithm shares: what a config file holds besides `algo` and
//! the algorithm's own section ([`CommonConfig`]: seed, `[env]`, `[stop]`, `[run]`,
//! `[cluster]`), the network section the neural algorithms embed ([`NetConfig`]), and the
//! range checks that name the offending key. The file as a whole, with the algorithm sections,
//! is `registry::TrainConfig`.

use serde::{Deserialize, Serialize};
use shoal_env::Space;
use shoal_nn::conv::EncoderConfig;

use crate::checks::{check_positive, check_range};
use crate::cluster_config::ClusterConfig;
use crate::error::{config_err, Result};

/// The keys of a config every algorithm reads: an algorithm is built from these and its own
/// section, and knows nothing of the other algorithms' sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonConfig {
    /// Seeds the envs (env i gets seed + i), the network initialization and all sampling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub env: EnvConfig,
    #[serde(default)]
    pub stop: StopConfig,
    #[serde(default)]
    pub run: RunConfig,
    /// Several workers and parameter servers, embedded or as processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// How the trained policy acts (`shoal optimize --quantize int8` writes `int8`).
    #[serde(default, skip_serializing_if = "InferenceConfig::is_default")]
    pub inference: InferenceConfig,
    /// Gradual magnitude pruning while training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneConfig>,
}

/// `[prune]`: gradual magnitude pruning during training (Zhu & Gupta's cubic schedule): the
/// sparsity of the network's weight matrices rises from 0 at `start` to `sparsity` at `end`
/// (fractions of `stop.env_steps`), and pruned weights stay zero from then on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// Final fraction of weights that are zero, in [0, 1).
    pub sparsity: f64,
    #[serde(default = "default_prune_start")]
    pub start: f64,
    #[serde(default = "default_prune_end")]
    pub end: f64,
    /// `global` (one magnitude threshold over all layers), `per-layer` or `erdos-renyi`.
    #[serde(default = "default_prune_scope")]
    pub scope: String,
}

fn default_prune_start() -> f64 {
    0.2
}

fn default_prune_end() -> f64 {
    0.8
}

fn default_prune_scope() -> String {
    "erdos-renyi".into()
}

impl PruneConfig {
    /// The parsed `scope`.
    pub fn scope(&self) -> Result<shoal_nn::prune::PruneScope> {
        shoal_nn::prune::PruneScope::parse(&self.scope).ok_or_else(|| {
            config_err(format!("prune.scope = \"{}\": use \"global\", \"per-layer\" or \"erdos-renyi\"", self.scope))
        })
    }

    fn validate(&self, stop: &StopConfig) -> Result<()> {
        shoal_nn::prune::check_sparsity(self.sparsity).map_err(|e| config_err(format!("prune.sparsity: {e}")))?;
        check_range("prune.start", self.start, 0.0, 1.0)?;
        check_range("prune.end", self.end, self.start, 1.0)?;
        self.scope()?;
        if stop.env_steps.is_none() {
            return Err(config_err("[prune] schedules by stop.env_steps; set it"));
        }
        Ok(())
    }
}

/// The arithmetic a policy acts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Weights per output channel and activations per row in int8 (`shoal_nn::quant`);
    /// deterministic actions only.
    Int8,
}

/// `[inference]`: how `predict` (evaluation, `shoal eval`, serving) runs the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    #[serde(default)]
    pub precision: Precision,
    /// Act over the non-zero weights only (`shoal_nn::sparse`): what `shoal optimize --prune`
    /// sets where it measured that faster than the dense path. Deterministic actions only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sparse: bool,
}

/// The engine `predict` runs a policy on, other than the algorithm's own `f32` network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferenceEngine {
    Int8,
    Sparse,
}

impl InferenceConfig {
    fn is_default(&self) -> bool {
        *self == InferenceConfig::default()
    }

    /// The engine this section asks for, if any.
    pub fn engine(&self) -> Result<Option<InferenceEngine>> {
        match (self.precision, self.sparse) {
            (Precision::F32, false) => Ok(None),
            (Precision::Int8, false) => Ok(Some(InferenceEngine::Int8)),
            (Precision::F32, true) => Ok(Some(InferenceEngine::Sparse)),
            (Precision::Int8, true) => Err(config_err(
                "[inference] asks for both precision = \"int8\" and sparse = true: the int8 kernels are dense; choose one",
            )),
        }
    }
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
    /// A convolutional encoder for image observations (a Box of shape `[height, width,
    /// channels]`) before the `hidden` layers: `"nature"` (Mnih et al. 2015: 32×8×8/4,
    /// 64×4×4/2, 64×3×3/1, inputs /255) or `"minatar"` (Young & Tian 2019: 16×3×3/1).
    /// DQN, Ape-X's DQN learner and the actor-critics (PPO, A2C, A3C: one encoder shared by
    /// policy and value) build it; SAC and TD3 refuse it for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// The images are `[channels, height, width]` (ale-py's stacked Atari frames) rather
    /// than `[height, width, channels]` (MinAtar).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub channels_first: bool,
    /// Threads the network's forward and backward passes use: 2 runs a separate actor and
    /// critic side by side (PPO, A2C, IMPALA), or SAC's and TD3's twin critics (and splits
    /// their actor's passes, Adam steps and Polyak updates), with results bit-identical to 1; a shared trunk's update takes half the minibatch per thread (the
    /// same run every time, equal to 1 thread up to rounding). Leave 1 when env threads or
    /// other workers already own the cores.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub threads: usize,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn default_hidden() -> Vec<usize> {
    vec![64, 64]
}

fn default_activation() -> String {
    "tanh".into()
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            hidden: default_hidden(),
            activation: default_activation(),
            encoder: None,
            channels_first: false,
            threads: 1,
        }
    }
}

impl NetConfig {
    /// The encoder `net.encoder` names, for observations of `space` (an error names the key
    /// and what the observation is).
    pub(crate) fn encoder(&self, section: &str, space: &Space, env_id: &str) -> Result<Option<EncoderConfig>> {
        let Some(name) = &self.encoder else { return Ok(None) };
        let [height, width, channels] = match space {
            Space::Box { shape, .. } if shape.len() == 3 && self.channels_first => [shape[1], shape[2], shape[0]],
            Space::Box { shape, .. } if shape.len() == 3 => [shape[0], shape[1], shape[2]],
            other => {
                return Err(config_err(format!(
                    "{section}.net.encoder = \"{name}\" needs image observations (a Box of shape [height, width, channels]), but {env_id} has {other}"
                )))
            }
        };
        let mut encoder = match name.as_str() {
            "nature" => EncoderConfig::nature(height, width, channels),
            "minatar" => EncoderConfig::minatar(height, width, channels),
            other => {
                return Err(config_err(format!(
                    "{section}.net.encoder must be \"nature\" or \"minatar\", got \"{other}\""
                )))
            }
        };
        encoder.channels_first = self.channels_first;
        Ok(Some(encoder))
    }

    /// Refuses `net.encoder` for an algorithm that builds no encoder yet.
    pub(crate) fn without_encoder(&self, section: &str) -> Result<()> {
        match &self.encoder {
            Some(_) => Err(config_err(format!(
                "{section}.net.encoder: {section} builds no convolutional encoder yet (dqn, apex, ppo, a2c, a3c and impala do); remove the key"
            ))),
            None => Ok(()),
        }
    }

    /// `net.threads`, checked: 1, or 2 (actor and critic, or twin critics, side by side).
    pub(crate) fn threads(&self, section: &str) -> Result<usize> {
        match self.threads {
            1 | 2 => Ok(self.threads),
            n => Err(config_err(format!(
                "{section}.net.threads = {n}: the passes split in two (actor and critic, or twin critics), so use 1 or 2"
            ))),
        }
    }

    /// Refuses `net.threads` in an algorithm whose networks do not split over threads (yet),
    /// rather than ignoring it.
    pub(crate) fn single_thread(&self, section: &str) -> Result<()> {
        if self.threads != 1 {
            return Err(config_err(format!(
                "{section}.net.threads = {}: only ppo, a2c, impala, sac and td3 split their passes over threads; remove the key",
                self.threads
            )));
        }
        Ok(())
    }

    pub(crate) fn activation(&self, section: &str) -> Result<shoal_nn::Activation> {
        shoal_nn::Activation::parse(&self.activation).ok_or_else(|| {
            config_err(format!("{section}.net.activation must be \"tanh\" or \"relu\", got \"{}\"", self.activation))
        })
    }
}

impl CommonConfig {
    /// Checks the shared keys (the registry checks the algorithm's section).
    pub(crate) fn validate(&self) -> Result<()> {
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
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        if let Some(prune) = &self.prune {
            prune.validate(stop)?;
        }
        Ok(())
    }
}

impl EnvConfig {
    /// The env options as `make` takes them.
    pub fn options(&self) -> Result<Vec<(String, shoal_env::OptionValue)>> {
        self.options
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
