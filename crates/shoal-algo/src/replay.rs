//! Experience replay for DQN: transitions in contiguous ring arrays, n-step returns assembled
//! per env before insertion, uniform sampling into contiguous batch buffers.

use std::collections::VecDeque;
use std::path::Path;

use rand::Rng;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::error::{AlgoError, Result};

/// One transition on its way into the buffer (n-step assembly keeps a few per env).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    obs: Vec<f32>,
    action: f32,
    reward: f32,
}

/// A sampled batch, contiguous: `obs`/`next_obs` are `[batch, obs_dim]`.
#[derive(Debug, Default)]
pub struct ReplayBatch {
    pub obs: Vec<f32>,
    pub actions: Vec<f32>,
    /// Discounted n-step reward sums.
    pub rewards: Vec<f32>,
    pub next_obs: Vec<f32>,
    /// 1 when the episode terminated within the n steps (no bootstrap).
    pub dones: Vec<f32>,
    /// `γᵏ` for the k steps the reward sum covers (k < n when the episode ended early).
    pub discounts: Vec<f32>,
}

/// A ring buffer of transitions with n-step assembly.
#[derive(Debug)]
pub struct ReplayBuffer {
    capacity: usize,
    obs_dim: usize,
    n_step: usize,
    gamma: f64,
    obs: Vec<f32>,
    next_obs: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<f32>,
    discounts: Vec<f32>,
    /// Next slot to write, and how many slots hold data.
    pos: usize,
    len: usize,
    pending: Vec<VecDeque<Pending>>,
}

/// What of the buffer goes into `state.json` (the arrays go to `replay.safetensors`).
#[derive(Debug, Serialize, Deserialize)]
struct ReplayMeta {
    pos: usize,
    len: usize,
    pending: Vec<VecDeque<Pending>>,
}

impl ReplayBuffer {
    pub fn new(capacity: usize, obs_dim: usize, num_envs: usize, n_step: usize, gamma: f64) -> Self {
        ReplayBuffer {
            capacity,
            obs_dim,
            n_step,
            gamma,
            obs: vec![0.0; capacity * obs_dim],
            next_obs: vec![0.0; capacity * obs_dim],
            actions: vec![0.0; capacity],
            rewards: vec![0.0; capacity],
            dones: vec![0.0; capacity],
            discounts: vec![0.0; capacity],
            pos: 0,
            len: 0,
            pending: vec![VecDeque::new(); num_envs],
        }
    }

    /// Number of stored transitions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds env `env`'s transition `(obs, action, reward, next_obs)`; `terminated` ends the
    /// episode without bootstrap, `episode_end` (terminated or truncated) flushes the n-step
    /// window. `next_obs` is the episode's final observation when it ended.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        env: usize,
        obs: &[f32],
        action: f32,
        reward: f32,
        next_obs: &[f32],
        terminated: bool,
        episode_end: bool,
    ) {
        self.pending[env].push_back(Pending { obs: obs.to_vec(), action, reward });
        if self.pending[env].len() == self.n_step {
            self.emit(env, next_obs, terminated);
        }
        if episode_end {
            while !self.pending[env].is_empty() {
                self.emit(env, next_obs, terminated);
            }
        }
    }

    /// Writes the oldest pending transition of `env` with the discounted sum of what follows it.
    fn emit(&mut self, env: usize, next_obs: &[f32], done: bool) {
        let window = &self.pending[env];
        let (mut sum, mut discount) = (0.0f64, 1.0f64);
        for p in window {
            sum += discount * p.reward as f64;
            discount *= self.gamma;
        }
        let first = self.pending[env].pop_front().expect("emit is called with a non-empty window");
        let (i, d) = (self.pos, self.obs_dim);
        self.obs[i * d..(i + 1) * d].copy_from_slice(&first.obs);
        self.next_obs[i * d..(i + 1) * d].copy_from_slice(next_obs);
        self.actions[i] = first.action;
        self.rewards[i] = sum as f32;
        self.dones[i] = if done { 1.0 } else { 0.0 };
        self.discounts[i] = discount as f32;
        self.pos = (self.pos + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// Samples `size` transitions uniformly (with replacement) into `batch`.
    pub fn sample(&self, size: usize, rng: &mut impl Rng, batch: &mut ReplayBatch) {
        let d = self.obs_dim;
        batch.obs.clear();
        batch.next_obs.clear();
        batch.actions.clear();
        batch.rewards.clear();
        batch.dones.clear();
        batch.discounts.clear();
        for _ in 0..size {
            let i = rng.random_range(0..self.len);
            batch.obs.extend_from_slice(&self.obs[i * d..(i + 1) * d]);
            batch.next_obs.extend_from_slice(&self.next_obs[i * d..(i + 1) * d]);
            batch.actions.push(self.actions[i]);
            batch.rewards.push(self.rewards[i]);
            batch.dones.push(self.dones[i]);
            batch.discounts.push(self.discounts[i]);
        }
    }

    /// Saves the arrays (first `len` slots) to `path` and returns the JSON bookkeeping.
    pub fn save(&self, path: &Path) -> Result<serde_json::Value> {
        let n = self.len;
        let d = self.obs_dim;
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let arrays = [
            ("obs", bytes(&self.obs[..n * d]), vec![n, d]),
            ("next_obs", bytes(&self.next_obs[..n * d]), vec![n, d]),
            ("actions", bytes(&self.actions[..n]), vec![n]),
            ("rewards", bytes(&self.rewards[..n]), vec![n]),
            ("dones", bytes(&self.dones[..n]), vec![n]),
            ("discounts", bytes(&self.discounts[..n]), vec![n]),
        ];
        let io = |e: safetensors::SafeTensorError| AlgoError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let views = arrays
            .iter()
            .map(|(name, data, shape)| TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (*name, v)).map_err(io))
            .collect::<Result<Vec<_>>>()?;
        let data = safetensors::serialize(views, None).map_err(io)?;
        shoal_nn::io::atomic_write(path, &data)?;
        let meta = ReplayMeta { pos: self.pos, len: self.len, pending: self.pending.clone() };
        serde_json::to_value(meta)
            .map_err(|e| AlgoError::Io { path: path.display().to_string(), message: e.to_string() })
    }

    /// Restores what [`ReplayBuffer::save`] wrote.
    pub fn load(&mut self, path: &Path, meta: &serde_json::Value) -> Result<()> {
        let bad = |message: String| AlgoError::Io { path: path.display().to_string(), message };
        let meta: ReplayMeta = serde_json::from_value(meta.clone()).map_err(|e| bad(e.to_string()))?;
        let data = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let file = SafeTensors::deserialize(&data).map_err(|e| bad(e.to_string()))?;
        if meta.len > self.capacity || meta.pending.len() != self.pending.len() {
            return Err(bad(format!(
                "replay of {} transitions / {} envs does not fit this run",
                meta.len,
                meta.pending.len()
            )));
        }
        let (n, d) = (meta.len, self.obs_dim);
        for (name, target) in [
            ("obs", &mut self.obs[..n * d]),
            ("next_obs", &mut self.next_obs[..n * d]),
            ("actions", &mut self.actions[..n]),
            ("rewards", &mut self.rewards[..n]),
            ("dones", &mut self.dones[..n]),
            ("discounts", &mut self.discounts[..n]),
        ] {
            let view = file.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            if view.data().len() != target.len() * 4 {
                return Err(bad(format!("{name} has {} bytes, expected {}", view.data().len(), target.len() * 4)));
            }
            for (t, c) in target.iter_mut().zip(view.data().chunks_exact(4)) {
                *t = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        self.pos = meta.pos;
        self.len = meta.len;
        self.pending = meta.pending;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_step_sums_rewards_and_flushes_at_episode_end() {
        let mut buf = ReplayBuffer::new(10, 1, 1, 3, 0.5);
        // Episode: rewards 1, 2, 4, 8 then terminated.
        for (t, r) in [1.0, 2.0, 4.0, 8.0].into_iter().enumerate() {
            let end = t == 3;
            buf.add(0, &[t as f32], 0.0, r, &[t as f32 + 1.0], end, end);
        }
        assert_eq!(buf.len(), 4);
        // From s0: 1 + 0.5·2 + 0.25·4 = 3, bootstrap from s3 with γ³, not done.
        assert_eq!((buf.rewards[0], buf.discounts[0], buf.dones[0], buf.next_obs[0]), (3.0, 0.125, 0.0, 3.0));
        // From s1: 2 + 0.5·4 + 0.25·8 = 6, next s4, terminated.
        assert_eq!((buf.rewards[1], buf.dones[1], buf.next_obs[1]), (6.0, 1.0, 4.0));
        // Flushed tails: from s2 (4 + 4 = 8) and s3 (8), both terminal.
        assert_eq!((buf.rewards[2], buf.discounts[2], buf.dones[2]), (8.0, 0.25, 1.0));
        assert_eq!((buf.rewards[3], buf.discounts[3], buf.dones[3]), (8.0, 0.5, 1.0));
    }

    #[test]
    fn ring_overwrites_oldest() {
        let mut buf = ReplayBuffer::new(3, 1, 1, 1, 0.9);
        for t in 0..5 {
            buf.add(0, &[t as f32], 0.0, t as f32, &[0.0], false, false);
        }
        assert_eq!(buf.len(), 3);
        assert_eq!(buf.rewards, [3.0, 4.0, 2.0]);
    }
}
