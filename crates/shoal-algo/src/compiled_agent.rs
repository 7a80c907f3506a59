//! An agent that acts through its policy compiled for inference: quantized to int8
//! (`[inference] precision = "int8"`, what `shoal optimize --quantize int8` writes) or run over
//! its non-zero weights (`[inference] sparse = true`, what `shoal optimize --prune` writes
//! where that measured faster). Training, checkpoints and clusters stay the wrapped agent's,
//! in `f32`; only `predict` changes. The compiled policy is rebuilt from the `f32` weights
//! after every load or update — compilation is deterministic, so such a run acts the same in
//! every process that loads it.

use std::path::Path;

use crate::agent::{Agent, Network};
use crate::config::InferenceEngine;
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, Result};
use crate::metrics::Metrics;
use crate::policy_net::{PolicyNet, QuantizedPolicy, SparsePolicy};

/// See the module documentation.
pub struct CompiledAgent {
    inner: Box<dyn Agent>,
    engine: InferenceEngine,
    /// The compiled policy, `None` until the next `predict` after a change of weights.
    policy: Option<Compiled>,
}

enum Compiled {
    Int8(QuantizedPolicy),
    Sparse(SparsePolicy),
}

impl CompiledAgent {
    pub fn new(inner: Box<dyn Agent>, engine: InferenceEngine) -> Self {
        CompiledAgent { inner, engine, policy: None }
    }

    /// The name of the `[inference]` setting, for errors.
    fn setting(&self) -> &'static str {
        match self.engine {
            InferenceEngine::Int8 => "inference.precision = \"int8\"",
            InferenceEngine::Sparse => "inference.sparse = true",
        }
    }
}

impl Agent for CompiledAgent {
    fn train_iteration(&mut self, progress: f64) -> Result<Metrics> {
        self.policy = None;
        self.inner.train_iteration(progress)
    }
    fn env_steps(&self) -> u64 {
        self.inner.env_steps()
    }
    fn episodes(&self) -> &EpisodeTracker {
        self.inner.episodes()
    }
    fn episodes_mut(&mut self) -> &mut EpisodeTracker {
        self.inner.episodes_mut()
    }
    fn network(&mut self) -> Option<Network<'_>> {
        self.policy = None;
        self.inner.network()
    }
    fn statistics(&self) -> Option<Vec<f64>> {
        self.inner.statistics()
    }
    fn set_peer_statistics(&mut self, peers: &[Vec<f64>]) -> Result<()> {
        self.policy = None;
        self.inner.set_peer_statistics(peers)
    }
    fn policy_net(&mut self) -> Option<PolicyNet> {
        self.inner.policy_net()
    }
    fn obs_dim(&self) -> usize {
        self.inner.obs_dim()
    }
    fn action_dim(&self) -> usize {
        self.inner.action_dim()
    }
    fn predict(&mut self, obs: &[f32], rows: usize, deterministic: bool, actions: &mut [f32]) -> Result<()> {
        if !deterministic {
            return Err(config_err(format!(
                "a policy compiled by {} acts deterministically only: evaluate with --deterministic, or remove the setting to sample",
                self.setting()
            )));
        }
        let policy = match &mut self.policy {
            Some(policy) => policy,
            None => {
                let net = self.inner.policy_net().ok_or_else(|| {
                    config_err(format!(
                        "{} needs a policy that is one MLP chain (ppo, a2c, a3c, non-dueling dqn)",
                        self.setting()
                    ))
                })?;
                self.policy.insert(match self.engine {
                    InferenceEngine::Int8 => Compiled::Int8(net.quantize()),
                    InferenceEngine::Sparse => Compiled::Sparse(net.sparsify()),
                })
            }
        };
        match policy {
            Compiled::Int8(policy) => policy.predict(obs, rows, actions),
            Compiled::Sparse(policy) => policy.predict(obs, rows, actions),
        }
    }
    fn save(&mut self, dir: &Path) -> Result<()> {
        self.inner.save(dir)
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        self.policy = None;
        self.inner.load(dir)
    }
}
