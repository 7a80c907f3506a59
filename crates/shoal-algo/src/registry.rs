//! The one place that knows every algorithm: which ones exist ([`Algo`]), the config file
//! that aggregates their sections ([`TrainConfig`]), and the factory that builds the agent a
//! config describes ([`build_agent`]). Adding an algorithm: its own file (config section,
//! agent, `new(common, section)`), then a variant, a section field and a
//! `build_single_agent` arm here.
//!
//! Configs are TOML files, one per (algorithm, environment) under `configs/`. Every key has a
//! name and a default (CleanRL's or rl-zoo3's); unknown keys, wrong types and out-of-range
//! values fail before training starts, with the key in the message. Any key can be overridden
//! from the command line as `section.key=value` (`--set ppo.learning_rate=3e-4`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::a2c::{A2c, A2cConfig};
use crate::agent::Agent;
use crate::apex::{ApexAgent, ApexConfig, ApexSetup};
use crate::cluster::{ClusterAgent, ServerSpec};
use crate::cluster_config::{ClusterConfig, Mode};
use crate::compiled_agent::CompiledAgent;
use crate::config::CommonConfig;
use crate::dqn::{Dqn, DqnConfig};
use crate::error::{config_err, io_err, AlgoError, Result};
use crate::impala::{ImpalaAgent, ImpalaConfig};
use crate::ppo::{Ppo, PpoConfig};
use crate::q_learning::{QLearning, QLearningConfig};
use crate::sac::{Sac, SacConfig};
use crate::td3::{Td3, Td3Config};

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
    /// IMPALA: actors send trajectories to one learner, which corrects them with V-trace.
    Impala,
    QLearning,
    /// Soft Actor-Critic, for continuous actions.
    Sac,
    /// Twin Delayed DDPG (DDPG with its tricks off), for continuous actions.
    Td3,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ppo => "ppo",
            Algo::A2c => "a2c",
            Algo::A3c => "a3c",
            Algo::Dqn => "dqn",
            Algo::Apex => "apex",
            Algo::Impala => "impala",
            Algo::QLearning => "q_learning",
            Algo::Sac => "sac",
            Algo::Td3 => "td3",
        }
    }

    /// Whether runs of this algorithm are actors and one learner around a replay service
    /// (Ape-X's prioritized replay, IMPALA's trajectory queue), the learner publishing its
    /// parameters to the parameter server.
    pub fn has_learner(self) -> bool {
        matches!(self, Algo::Apex | Algo::Impala)
    }
}

/// A complete training run description: `algo`, the keys every algorithm shares
/// ([`CommonConfig`], flattened: `seed`, `[env]`, `[stop]`, `[run]`, `[cluster]`) and the
/// chosen algorithm's section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainConfig {
    pub algo: Algo,
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppo: Option<PpoConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a2c: Option<A2cConfig>,
    /// A3C's hyperparameters are A2C's: A3C is A2C's worker run asynchronously by a
    /// `[cluster]` (two async workers when the config gives no cluster section).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a3c: Option<A2cConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dqn: Option<DqnConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apex: Option<ApexConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impala: Option<ImpalaConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q_learning: Option<QLearningConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sac: Option<SacConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub td3: Option<Td3Config>,
}

impl TrainConfig {
    /// Parses a config, applies `overrides` (`section.key=value`), and validates it.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| config_err(e.to_string()))?;
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        let algo = table.remove("algo").ok_or_else(|| config_err("missing field `algo`"))?;
        let mut config = TrainConfig {
            algo: deserialize("algo", algo)?,
            ppo: take_section(&mut table, "ppo")?,
            a2c: take_section(&mut table, "a2c")?,
            a3c: take_section(&mut table, "a3c")?,
            dqn: take_section(&mut table, "dqn")?,
            apex: take_section(&mut table, "apex")?,
            impala: take_section(&mut table, "impala")?,
            q_learning: take_section(&mut table, "q_learning")?,
            sac: take_section(&mut table, "sac")?,
            td3: take_section(&mut table, "td3")?,
            // What is left is the shared part; a key it does not know is an error there.
            common: deserialize("", toml::Value::Table(table))?,
        };
        config.fill_algo_section();
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a config file.
    pub fn load(path: &std::path::Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::parse(&text, overrides).map_err(|e| match e {
            AlgoError::Config(m) => config_err(format!("{}: {m}", path.display())),
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
            Algo::Impala => _ = self.impala.get_or_insert_with(Default::default),
            Algo::QLearning => _ = self.q_learning.get_or_insert_with(Default::default),
            Algo::Sac => _ = self.sac.get_or_insert_with(Default::default),
            Algo::Td3 => _ = self.td3.get_or_insert_with(Default::default),
        }
    }

    fn validate(&self) -> Result<()> {
        let given = [
            (Algo::Ppo, self.ppo.is_some()),
            (Algo::A2c, self.a2c.is_some()),
            (Algo::A3c, self.a3c.is_some()),
            (Algo::Dqn, self.dqn.is_some()),
            (Algo::Apex, self.apex.is_some()),
            (Algo::Impala, self.impala.is_some()),
            (Algo::QLearning, self.q_learning.is_some()),
            (Algo::Sac, self.sac.is_some()),
            (Algo::Td3, self.td3.is_some()),
        ];
        // An Ape-X learner's section is `apex.learner`'s business (`ApexSetup::new` checks it).
        let learner_section = |a: Algo| self.algo == Algo::Apex && matches!(a, Algo::Sac | Algo::Td3);
        if let Some((other, _)) = given.iter().find(|(a, present)| *present && *a != self.algo && !learner_section(*a))
        {
            return Err(config_err(format!(
                "section [{}] is given but algo = \"{}\"; remove the section or change algo",
                other.name(),
                self.algo.name()
            )));
        }
        self.common.validate()?;
        if self.algo == Algo::Apex {
            self.apex_setup()?;
        }
        if let Some(impala) = &self.impala {
            impala.validate()?;
        }
        if let Some(cluster) = self.cluster() {
            if self.algo == Algo::QLearning {
                return Err(config_err(
                    "[cluster] needs a network algorithm (ppo, a2c, a3c, dqn); q_learning is tabular and runs alone",
                ));
            }
            if matches!(self.algo, Algo::Sac | Algo::Td3) && !matches!(cluster.mode, Mode::Average | Mode::Easgd) {
                let name = self.algo.name();
                return Err(config_err(format!(
                    "{name} keeps an optimizer per network, so its workers average parameters: set cluster.mode = \"average\" \
                     or \"easgd\" (got {:?}), or run it as an Ape-X learner with algo = \"apex\" and apex.learner = \"{name}\"",
                    cluster.mode
                )));
            }
            if self.algo == Algo::A3c && cluster.mode != Mode::Async {
                return Err(config_err(format!(
                    "a3c is asynchronous: set cluster.mode = \"async\" (got {:?}), or use algo = \"a2c\" for synchronous data-parallel training",
                    cluster.mode
                )));
            }
        }
        Ok(())
    }

    /// An `algo = "apex"` run's setup: `[apex]` and the section of its `apex.learner`.
    pub fn apex_setup(&self) -> Result<ApexSetup> {
        ApexSetup::new(section(&self.apex, "apex")?, self.sac.as_ref(), self.td3.as_ref())
    }

    /// The cluster the run uses: the `[cluster]` section, or A3C's default.
    pub fn cluster(&self) -> Option<ClusterConfig> {
        self.common.cluster.clone().or_else(|| (self.algo == Algo::A3c).then(ClusterConfig::a3c_default))
    }
}

/// Deserializes `value`, naming its key path (below `prefix`) in the error.
fn deserialize<T: DeserializeOwned>(prefix: &str, value: toml::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().message().to_string();
        match (prefix, path.as_str()) {
            ("", ".") => config_err(message),
            ("", path) => config_err(format!("{path}: {message}")),
            (prefix, ".") => config_err(format!("{prefix}: {message}")),
            (prefix, path) => config_err(format!("{prefix}.{path}: {message}")),
        }
    })
}

/// Removes and parses the section `[name]`, if the table has one, written over the
/// algorithm's defaults: a key it leaves out, at any depth, keeps the algorithm's own default.
/// (Parsed alone, `[sac.net]` with only `threads = 2` took the generic network's 64-64 tanh
/// for `hidden` and `activation`, silently replacing SAC's 256-256 relu.)
fn take_section<T: DeserializeOwned + Serialize + Default>(table: &mut toml::Table, name: &str) -> Result<Option<T>> {
    let Some(given) = table.remove(name) else {
        return Ok(None);
    };
    let mut merged = toml::Value::try_from(T::default())
        .map_err(|e| config_err(format!("[{name}]: its defaults do not serialize ({e}); this is a bug")))?;
    overlay(&mut merged, given);
    deserialize(name, merged).map(Some)
}

/// Writes `top` over `base`: tables merge key by key, any other value replaces.
fn overlay(base: &mut toml::Value, top: toml::Value) {
    match (base, top) {
        (toml::Value::Table(base), toml::Value::Table(top)) => {
            for (key, value) in top {
                match base.get_mut(&key) {
                    Some(slot) => overlay(slot, value),
                    None => _ = base.insert(key, value),
                }
            }
        }
        (base, top) => *base = top,
    }
}

/// The `[section]` of the chosen algorithm (always present after parsing).
fn section<'a, T>(section: &'a Option<T>, name: &str) -> Result<&'a T> {
    section.as_ref().ok_or_else(|| config_err(format!("missing [{name}] section")))
}

/// Builds the agent a config describes: one agent, or an embedded [`ClusterAgent`] when the
/// config has several workers or shards (`shoal train` starts processes itself for
/// `topology = "processes"`; this is what it evaluates and checkpoints their result as).
pub fn build_agent(config: &TrainConfig) -> Result<Box<dyn Agent>> {
    let agent = match config.cluster() {
        Some(cluster) if cluster.is_distributed() && !config.algo.has_learner() => {
            Box::new(cluster_agent(config, &cluster)?)
        }
        _ => build_single_agent(config)?,
    };
    Ok(match config.common.inference.engine()? {
        None => agent,
        Some(engine) => Box::new(CompiledAgent::new(agent, engine)),
    })
}

/// One agent of the config's algorithm, ignoring `[cluster]`.
fn build_single_agent(config: &TrainConfig) -> Result<Box<dyn Agent>> {
    let common = &config.common;
    Ok(match config.algo {
        Algo::Ppo => Box::new(Ppo::new(common, section(&config.ppo, "ppo")?)?),
        Algo::A2c => Box::new(A2c::new(common, section(&config.a2c, "a2c")?, "a2c")?),
        Algo::A3c => Box::new(A2c::new(common, section(&config.a3c, "a3c")?, "a3c")?),
        Algo::Dqn => Box::new(Dqn::new(common, section(&config.dqn, "dqn")?)?),
        Algo::Apex => Box::new(ApexAgent::new(common, &config.apex_setup()?)?),
        Algo::Impala => Box::new(ImpalaAgent::new(common, section(&config.impala, "impala")?)?),
        Algo::QLearning => Box::new(QLearning::new(common, section(&config.q_learning, "q_learning")?)?),
        Algo::Sac => Box::new(Sac::new(common, section(&config.sac, "sac")?)?),
        Algo::Td3 => Box::new(Td3::new(common, section(&config.td3, "td3")?)?),
    })
}

/// Worker `rank`'s copy of the config's agent, with its own env seeds (seed + 10 000·rank).
pub fn worker_agent(config: &TrainConfig, rank: usize) -> Result<Box<dyn Agent>> {
    let mut own = config.clone();
    own.common.seed = config.common.seed.wrapping_add(10_000 * rank as u64);
    build_single_agent(&own)
}

/// What a parameter server starts from: rank 0's initial parameters and the algorithm's
/// optimizer and learning-rate schedule. An Ape-X or IMPALA learner publishes its parameters
/// (an averaging round of one worker); the other algorithms' servers run the cluster's mode.
pub fn server_spec(config: &TrainConfig) -> Result<ServerSpec> {
    let mut agent = worker_agent(config, 0)?;
    let network = agent.network().ok_or_else(|| config_err("this algorithm has no network to distribute"))?;
    ServerSpec::from_network(network, config.algo.has_learner())
}

/// An embedded cluster of the config's agent: `cluster.workers` copies (seeded apart) around
/// in-process parameter servers.
pub fn cluster_agent(config: &TrainConfig, cluster: &ClusterConfig) -> Result<ClusterAgent> {
    ClusterAgent::new(cluster, server_spec(config)?, |rank| worker_agent(config, rank))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A section that gives some keys of a nested table keeps the algorithm's defaults for
    /// the others, from the file and from `--set` alike; a wrong key is still an error.
    #[test]
    fn a_partial_section_keeps_the_algorithms_defaults() {
        let from_file = TrainConfig::parse(
            "algo = \"sac\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n[sac.net]\nthreads = 2\n",
            &[],
        )
        .unwrap();
        let from_set = TrainConfig::parse(
            "algo = \"sac\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n",
            &["sac.net.threads=2".into()],
        )
        .unwrap();
        for config in [from_file, from_set] {
            let sac = config.sac.unwrap();
            assert_eq!((sac.net.hidden, sac.net.activation.as_str(), sac.net.threads), (vec![256, 256], "relu", 2));
            assert_eq!(sac.batch_size, SacConfig::default().batch_size);
        }
        let td3 = TrainConfig::parse(
            "algo = \"td3\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n",
            &["td3.net.threads=2".into()],
        )
        .unwrap()
        .td3
        .unwrap();
        assert_eq!(td3.net.hidden, Td3Config::default().net.hidden);
        let err = TrainConfig::parse(
            "algo = \"sac\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n",
            &["sac.net.hiden=[8]".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sac.net") && err.contains("hiden"), "{err}");
    }
}
