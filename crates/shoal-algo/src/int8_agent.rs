//! An agent that acts through its policy quantized to int8 (`[inference] precision = "int8"`,
//! what `shoal optimize --quantize int8` writes): training, checkpoints and clusters stay the
//! wrapped agent's, in `f32`; only `predict` changes. The int8 policy is rebuilt from the
//! `f32` weights after every load or update — quantization is deterministic, so an int8 run
//! acts the same in every process that loads it.

use std::path::Path;

use crate::agent::{Agent, Network};
use crate::episodes::EpisodeTracker;
use crate::error::{config_err, Result};
use crate::metrics::Metrics;
use crate::policy_net::{PolicyNet, QuantizedPolicy};

/// See the module documentation.
pub struct Int8Agent {
    inner: Box<dyn Agent>,
    /// The quantized policy, `None` until the next `predict` after a change of weights.
    policy: Option<QuantizedPolicy>,
}

impl Int8Agent {
    pub fn new(inner: Box<dyn Agent>) -> Self {
        Int8Agent { inner, policy: None }
    }
}

impl Agent for Int8Agent {
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
            return Err(config_err(
                "an int8 policy acts deterministically only: evaluate with --deterministic, or set inference.precision = \"f32\" to sample",
            ));
        }
        let policy = match &mut self.policy {
            Some(policy) => policy,
            None => {
                let net = self.inner.policy_net().ok_or_else(|| {
                    config_err("inference.precision = \"int8\" needs a policy that is one MLP chain (ppo, a2c, a3c, non-dueling dqn)")
                })?;
                self.policy.insert(net.quantize())
            }
        };
        policy.predict(obs, rows, actions)
    }
    fn save(&mut self, dir: &Path) -> Result<()> {
        self.inner.save(dir)
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        self.policy = None;
        self.inner.load(dir)
    }
}
