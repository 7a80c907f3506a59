//! Proportional prioritized replay (Schaul et al., 2016): slot i is sampled with probability
//! `P(i) = p_i^α / Σ_k p_k^α`, with `p_i = |δ_i| + ε`, and its loss weighted by the importance
//! weight `w_i = (N·P(i))^−β / max_j w_j` — which is `(p_i^α / min_k p_k^α)^−β`.
//!
//! Every inserted row gets a key (its insertion count); a slot remembers the key of the row in
//! it. A priority update names keys, so an update for a row that has since been overwritten
//! by a newer one (the ring wrapped while the learner computed) finds another key in the slot
//! and is skipped instead of re-prioritizing the newcomer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use rand::Rng;
use safetensors::tensor::{Dtype, View};
use safetensors::SafeTensors;

use crate::error::{DistError, Result};
use crate::replay::transitions::{Row, TransitionRing, Transitions};
use crate::replay::tree::{MinTree, SumTree};
use crate::replay::{ReplayStats, Sample};

/// How many rows ahead a sample's gather asks for the rows it will copy.
const PREFETCH_AHEAD: usize = 8;

/// Added to |δ| so no transition has probability 0.
pub const MIN_PRIORITY: f64 = 1e-6;

/// A ring of transitions with sum and min trees over their priorities.
#[derive(Debug, Clone)]
pub struct PrioritizedReplay {
    ring: TransitionRing,
    /// The key of the row in each slot.
    keys: Vec<u64>,
    next_key: u64,
    sums: SumTree,
    mins: MinTree,
    alpha: f64,
    /// The largest `p` seen: the priority of rows inserted without one.
    max_priority: f64,
    stats: ReplayStats,
    // Scratch of the batched tree operations.
    masses: Vec<f64>,
    slots: Vec<usize>,
    scaled: Vec<f64>,
    path: Vec<usize>,
}

fn bad(message: impl Into<String>) -> DistError {
    DistError::Replay(message.into())
}

impl PrioritizedReplay {
    /// An empty replay of `capacity` rows of observation width `obs_dim` and one action value
    /// (a discrete index); `alpha` = 0 samples uniformly.
    pub fn new(capacity: usize, obs_dim: usize, alpha: f64) -> Result<Self> {
        Self::with_act_dim(capacity, obs_dim, 1, alpha)
    }

    /// The same for actions of `act_dim` values (continuous control).
    pub fn with_act_dim(capacity: usize, obs_dim: usize, act_dim: usize, alpha: f64) -> Result<Self> {
        if capacity == 0 || obs_dim == 0 || act_dim == 0 {
            return Err(bad(format!(
                "a replay needs a capacity, obs_dim and act_dim of at least 1 (got {capacity}, {obs_dim} and {act_dim})"
            )));
        }
        if !(0.0..=1.0).contains(&alpha) {
            return Err(bad(format!("the priority exponent alpha must be in [0, 1], got {alpha}")));
        }
        Ok(PrioritizedReplay {
            ring: TransitionRing::new(capacity, obs_dim, act_dim),
            keys: vec![u64::MAX; capacity],
            next_key: 0,
            sums: SumTree::new(capacity),
            mins: MinTree::new(capacity),
            alpha,
            max_priority: 1.0,
            stats: ReplayStats { capacity: capacity as u64, ..ReplayStats::default() },
            masses: Vec::new(),
            slots: Vec::new(),
            scaled: Vec::new(),
            path: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn obs_dim(&self) -> usize {
        self.ring.obs_dim()
    }

    pub fn act_dim(&self) -> usize {
        self.ring.act_dim()
    }

    fn checked_priority(p: f32, what: &str, i: usize) -> Result<f64> {
        if p.is_finite() && p >= 0.0 {
            Ok(p as f64 + MIN_PRIORITY)
        } else {
            Err(bad(format!(
                "{what} {i} has priority {p}; priorities are |TD error| ≥ 0 — a NaN or infinite one means the learner or actor diverged"
            )))
        }
    }

    /// Queues priority `p` (|δ| + ε) for `slot`; [`Self::apply_staged`] writes the queue
    /// into both trees at once.
    fn stage(&mut self, slot: usize, p: f64) {
        self.max_priority = self.max_priority.max(p);
        self.slots.push(slot);
        self.scaled.push(p.powf(self.alpha));
    }

    fn apply_staged(&mut self) {
        self.sums.set_many(&self.slots, &self.scaled, &mut self.path);
        self.mins.set_many(&self.slots, &self.scaled, &mut self.path);
    }

    /// Appends `batch`, each row with its priority `|δ|` (the largest seen so far when
    /// `priorities` is `None`). Nothing is written when the batch is malformed.
    pub fn insert(&mut self, batch: &Transitions, priorities: Option<&[f32]>) -> Result<()> {
        batch.check().map_err(bad)?;
        if batch.obs_dim != self.obs_dim() || batch.act_dim != self.act_dim() {
            return Err(bad(format!(
                "transitions with obs_dim {} and act_dim {} sent to a replay of obs_dim {} and act_dim {}; start \
                 actors and replay from the same env",
                batch.obs_dim,
                batch.act_dim,
                self.obs_dim(),
                self.act_dim()
            )));
        }
        let checked = match priorities {
            Some(p) if p.len() != batch.len() => {
                return Err(bad(format!("{} priorities for {} transitions", p.len(), batch.len())))
            }
            Some(p) => {
                p.iter().enumerate().map(|(i, &p)| Self::checked_priority(p, "transition", i)).collect::<Result<_>>()?
            }
            None => vec![self.max_priority; batch.len()],
        };
        self.slots.clear();
        self.scaled.clear();
        for (i, p) in checked.into_iter().enumerate() {
            let slot = self.ring.push(batch.row(i));
            self.keys[slot] = self.next_key;
            self.next_key += 1;
            self.stage(slot, p);
        }
        self.apply_staged();
        self.stats.inserted += batch.len() as u64;
        Ok(())
    }

    /// Draws `size` rows proportionally to priority — one from each of `size` equal slices of
    /// the priority mass (stratified, as in the paper) — with their keys and importance
    /// weights for exponent `beta`.
    pub fn sample(&mut self, size: usize, beta: f64, rng: &mut impl Rng, out: &mut Sample) -> Result<()> {
        if self.is_empty() {
            return Err(bad("cannot sample from an empty replay; wait until actors have inserted transitions"));
        }
        if size == 0 {
            return Err(bad("a sample needs at least 1 row"));
        }
        let (total, min) = (self.sums.total(), self.mins.min());
        let segment = total / size as f64;
        self.masses.clear();
        self.masses.extend((0..size).map(|i| (i as f64 + rng.random::<f64>()) * segment));
        self.sums.find_many(&mut self.masses, &mut self.slots);
        let (last, d, a) = (self.len() - 1, self.obs_dim(), self.act_dim());
        let batch = &mut out.batch;
        (batch.obs_dim, batch.act_dim) = (d, a);
        for column in [&mut batch.obs, &mut batch.next_obs] {
            column.resize(size * d, 0.0);
        }
        batch.actions.resize(size * a, 0.0);
        for column in [&mut batch.rewards, &mut batch.dones, &mut batch.discounts, &mut out.weights] {
            column.resize(size, 0.0);
        }
        out.keys.resize(size, 0);
        let (min, beta) = (min as f32, -beta as f32);
        // Rounding can carry the topmost mass past the filled slots.
        self.slots.iter_mut().for_each(|slot| *slot = (*slot).min(last));
        for (k, &slot) in self.slots.iter().enumerate() {
            // The rows are scattered over the ring: ask for the ones a few steps ahead now.
            if let Some(&ahead) = self.slots.get(k + PREFETCH_AHEAD) {
                self.ring.prefetch_row(ahead);
                super::prefetch(&self.keys[ahead]);
            }
            let row = self.ring.row(slot);
            batch.obs[k * d..(k + 1) * d].copy_from_slice(row.obs);
            batch.next_obs[k * d..(k + 1) * d].copy_from_slice(row.next_obs);
            batch.actions[k * a..(k + 1) * a].copy_from_slice(row.action);
            batch.rewards[k] = row.reward;
            batch.dones[k] = row.done;
            batch.discounts[k] = row.discount;
            out.keys[k] = self.keys[slot];
            out.weights[k] = (self.sums.get(slot) as f32 / min).powf(beta);
        }
        self.stats.sampled += size as u64;
        Ok(())
    }

    /// Draws `size` rows uniformly with replacement (plain DQN's replay; no keys or weights).
    pub fn sample_uniform(&mut self, size: usize, rng: &mut impl Rng, out: &mut Transitions) {
        (out.obs_dim, out.act_dim) = (self.obs_dim(), self.act_dim());
        out.clear();
        let len = self.len();
        if len == 0 {
            return;
        }
        for _ in 0..size {
            self.ring.copy_row(rng.random_range(0..len), out);
        }
        self.stats.sampled += size as u64;
    }

    /// Sets the priorities `|δ|` of the rows named by `keys`; rows overwritten since they were
    /// sampled are skipped (counted in `stale_updates`).
    pub fn update_priorities(&mut self, keys: &[u64], priorities: &[f32]) -> Result<()> {
        if keys.len() != priorities.len() {
            return Err(bad(format!("{} keys but {} priorities", keys.len(), priorities.len())));
        }
        // Check everything first: a refused update changes nothing.
        for (i, &p) in priorities.iter().enumerate() {
            Self::checked_priority(p, "update", i)?;
        }
        let capacity = self.keys.len() as u64;
        self.slots.clear();
        self.scaled.clear();
        for (&key, &p) in keys.iter().zip(priorities) {
            let slot = (key % capacity) as usize;
            if self.keys[slot] == key {
                self.stage(slot, p as f64 + MIN_PRIORITY);
            }
        }
        self.apply_staged();
        let applied = self.slots.len() as u64;
        self.stats.priority_updates += applied;
        self.stats.stale_updates += keys.len() as u64 - applied;
        Ok(())
    }

    /// Counters, size and mean stored priority `p^α`.
    pub fn stats(&self) -> ReplayStats {
        let len = self.len() as u64;
        let mean = if len == 0 { 0.0 } else { self.sums.total() / len as f64 };
        ReplayStats { len, priority_mean: mean, ..self.stats }
    }

    /// Writes rows, keys, priorities and counters to one safetensors file, atomically. Each
    /// tensor is gathered only when the writer reaches it ([`Lazy`]), so a save holds one
    /// column in memory at a time: a soak (`shoal bench load --soak`) saw a 1M-row replay's
    /// resident memory go from 119 to 306 MB while whole copies were serialized.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (ring, n, d, a) = (&self.ring, self.ring.len(), self.ring.obs_dim(), self.ring.act_dim());
        let pos = ring.pos();
        // Row fields as stored before: observations as [n, d], one-value actions and the
        // scalars as [n], wider actions as [n, a].
        let action_shape = if a == 1 { vec![n] } else { vec![n, a] };
        let rows = |shape: Vec<usize>, pick: fn(&Row<'_>, &mut Vec<u8>)| {
            let bytes = shape.iter().product::<usize>() * 4;
            Lazy::new(Dtype::F32, shape, move || {
                let mut out = Vec::with_capacity(bytes);
                (0..n).for_each(|slot| pick(&ring.row(slot), &mut out));
                out
            })
        };
        let tensors = [
            ("obs", rows(vec![n, d], |r, out| r.obs.iter().for_each(|v| out.extend(v.to_le_bytes())))),
            ("actions", rows(action_shape, |r, out| r.action.iter().for_each(|v| out.extend(v.to_le_bytes())))),
            ("rewards", rows(vec![n], |r, out| out.extend(r.reward.to_le_bytes()))),
            ("next_obs", rows(vec![n, d], |r, out| r.next_obs.iter().for_each(|v| out.extend(v.to_le_bytes())))),
            ("dones", rows(vec![n], |r, out| out.extend(r.done.to_le_bytes()))),
            ("discounts", rows(vec![n], |r, out| out.extend(r.discount.to_le_bytes()))),
            ("keys", Lazy::new(Dtype::U64, vec![n], || self.keys[..n].iter().flat_map(|k| k.to_le_bytes()).collect())),
            (
                "priorities",
                Lazy::new(Dtype::F64, vec![n], || (0..n).flat_map(|s| self.sums.get(s).to_le_bytes()).collect()),
            ),
        ];
        let s = &self.stats;
        let meta: HashMap<String, String> = [
            ("capacity", self.keys.len().to_string()),
            ("pos", pos.to_string()),
            ("next_key", self.next_key.to_string()),
            ("max_priority", self.max_priority.to_string()),
            ("alpha", self.alpha.to_string()),
            ("inserted", s.inserted.to_string()),
            ("sampled", s.sampled.to_string()),
            ("priority_updates", s.priority_updates.to_string()),
            ("stale_updates", s.stale_updates.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        shoal_nn::io::atomic_write_with(path, |tmp| {
            safetensors::serialize_to_file(tensors.iter().map(|(name, t)| (*name, t)), Some(meta), tmp)
                .map_err(|e| shoal_nn::NnError::Format { path: tmp.display().to_string(), problem: e.to_string() })
        })?;
        Ok(())
    }

    /// Restores what [`PrioritizedReplay::save`] wrote into this (empty or not) replay, which
    /// must have the same capacity, obs_dim and alpha.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let io = |message: String| DistError::Io { path: path.display().to_string(), message };
        let data = std::fs::read(path).map_err(|e| io(e.to_string()))?;
        let (_, header) = SafeTensors::read_metadata(&data).map_err(|e| io(e.to_string()))?;
        let file = SafeTensors::deserialize(&data).map_err(|e| io(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let field = |key: &str| -> Result<String> {
            meta.get(key).cloned().ok_or_else(|| io(format!("not a replay checkpoint: no {key} in its metadata")))
        };
        let int = |key: &str| -> Result<u64> { field(key)?.parse().map_err(|e| io(format!("{key}: {e}"))) };
        let float = |key: &str| -> Result<f64> { field(key)?.parse().map_err(|e| io(format!("{key}: {e}"))) };
        if int("capacity")? != self.keys.len() as u64 || float("alpha")? != self.alpha {
            return Err(io(format!(
                "the checkpoint holds a replay of capacity {} and alpha {}; this one has {} and {} — set the same replay size and alpha",
                int("capacity")?,
                float("alpha")?,
                self.keys.len(),
                self.alpha
            )));
        }
        let column = |name: &str| -> Result<&[u8]> {
            let view = file.tensor(name).map_err(|e| io(format!("{name}: {e}")))?;
            Ok(view.data())
        };
        let f32s = |name: &str| -> Result<Vec<f32>> {
            let bytes = column(name)?;
            Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        let rows = Transitions {
            obs_dim: self.obs_dim(),
            act_dim: self.act_dim(),
            obs: f32s("obs")?,
            actions: f32s("actions")?,
            rewards: f32s("rewards")?,
            next_obs: f32s("next_obs")?,
            dones: f32s("dones")?,
            discounts: f32s("discounts")?,
        };
        let keys: Vec<u64> =
            column("keys")?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        let priorities: Vec<f64> =
            column("priorities")?.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        if keys.len() != rows.len() || priorities.len() != rows.len() {
            return Err(io(format!("{} rows but {} keys and {} priorities", rows.len(), keys.len(), priorities.len())));
        }
        self.ring.restore(&rows, int("pos")? as usize).map_err(io)?;
        self.sums.clear();
        self.mins.clear();
        self.keys.fill(u64::MAX);
        for (slot, (&key, &p)) in keys.iter().zip(&priorities).enumerate() {
            self.keys[slot] = key;
            self.sums.set(slot, p);
            self.mins.set(slot, p);
        }
        self.next_key = int("next_key")?;
        self.max_priority = float("max_priority")?;
        self.stats = ReplayStats {
            capacity: self.keys.len() as u64,
            inserted: int("inserted")?,
            sampled: int("sampled")?,
            priority_updates: int("priority_updates")?,
            stale_updates: int("stale_updates")?,
            ..ReplayStats::default()
        };
        Ok(())
    }
}

/// A tensor of a replay checkpoint whose bytes are gathered when the writer asks for them.
struct Lazy<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    gather: Box<dyn Fn() -> Vec<u8> + 'a>,
}

impl<'a> Lazy<'a> {
    fn new(dtype: Dtype, shape: Vec<usize>, gather: impl Fn() -> Vec<u8> + 'a) -> Self {
        Lazy { dtype, shape, gather: Box::new(gather) }
    }
}

impl View for &Lazy<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned((self.gather)())
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}
