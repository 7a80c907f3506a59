//! A bounded first-in first-out queue of rows: how IMPALA's actors hand trajectories to its
//! learner. Unlike a replay, each row is read once — taking rows removes them — and in the
//! order it arrived, so a fragment an actor inserted in one call comes out whole and in order.

use crate::error::{DistError, Result};
use crate::replay::{ReplayStats, Sample, TransitionRing, Transitions};

/// A FIFO over a [`TransitionRing`]: inserts append, [`TrajectoryQueue::take`] removes the
/// oldest rows. When an insert finds the queue full the oldest rows are dropped — the most
/// off-policy data, which a learner that has fallen behind would rather skip — and the
/// statistics show it (`inserted − sampled − len` rows were dropped).
#[derive(Debug, Clone)]
pub struct TrajectoryQueue {
    ring: TransitionRing,
    /// The slot of the oldest row, and how many rows are queued.
    head: usize,
    len: usize,
    /// The key of the oldest row: rows are numbered in arrival order.
    head_key: u64,
    stats: ReplayStats,
}

fn bad(message: impl Into<String>) -> DistError {
    DistError::Replay(message.into())
}

impl TrajectoryQueue {
    /// An empty queue of at most `capacity` rows of widths `obs_dim` and `act_dim`.
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize) -> Result<Self> {
        if capacity == 0 || obs_dim == 0 || act_dim == 0 {
            return Err(bad(format!(
                "a trajectory queue needs a capacity, obs_dim and act_dim of at least 1 (got {capacity}, {obs_dim} and {act_dim})"
            )));
        }
        Ok(TrajectoryQueue {
            ring: TransitionRing::new(capacity, obs_dim, act_dim),
            head: 0,
            len: 0,
            head_key: 0,
            stats: ReplayStats { capacity: capacity as u64, ..ReplayStats::default() },
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn obs_dim(&self) -> usize {
        self.ring.obs_dim()
    }

    pub fn act_dim(&self) -> usize {
        self.ring.act_dim()
    }

    /// Appends `batch` in order, dropping the oldest rows when it does not fit. Nothing is
    /// written when the batch is malformed.
    pub fn insert(&mut self, batch: &Transitions) -> Result<()> {
        batch.check().map_err(bad)?;
        if batch.obs_dim != self.obs_dim() || batch.act_dim != self.act_dim() {
            return Err(bad(format!(
                "rows of obs_dim {} and act_dim {} do not fit a queue of obs_dim {} and act_dim {}",
                batch.obs_dim,
                batch.act_dim,
                self.obs_dim(),
                self.act_dim()
            )));
        }
        let capacity = self.ring.capacity();
        for i in 0..batch.len() {
            if self.len == capacity {
                self.head = (self.head + 1) % capacity;
                self.head_key += 1;
                self.len -= 1;
            }
            self.ring.push(batch.row(i));
            self.len += 1;
        }
        self.stats.inserted += batch.len() as u64;
        Ok(())
    }

    /// Removes the oldest `size` rows into `out` (keys in arrival order, weights 1); refuses
    /// when fewer are queued, leaving the queue as it was.
    pub fn take(&mut self, size: usize, out: &mut Sample) -> Result<()> {
        if size > self.len {
            return Err(bad(format!("cannot take {size} rows: the queue holds {}", self.len)));
        }
        out.batch = Transitions::with_act_dim(self.obs_dim(), self.act_dim());
        out.keys.clear();
        out.weights.clear();
        for k in 0..size {
            self.ring.copy_row((self.head + k) % self.ring.capacity(), &mut out.batch);
            out.keys.push(self.head_key + k as u64);
        }
        out.weights.resize(size, 1.0);
        self.head = (self.head + size) % self.ring.capacity();
        self.head_key += size as u64;
        self.len -= size;
        self.stats.sampled += size as u64;
        Ok(())
    }

    /// Size and counters (no priorities: `priority_mean` is 0).
    pub fn stats(&self) -> ReplayStats {
        ReplayStats { len: self.len as u64, ..self.stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Row;

    fn rows(first: usize, count: usize) -> Transitions {
        let mut t = Transitions::new(1);
        for i in first..first + count {
            let v = i as f32;
            t.push(Row { obs: &[v], action: &[v], reward: v, next_obs: &[v + 0.5], done: 0.0, discount: 1.0 });
        }
        t
    }

    #[test]
    fn rows_come_out_once_in_arrival_order() {
        let mut q = TrajectoryQueue::new(8, 1, 1).unwrap();
        q.insert(&rows(0, 3)).unwrap();
        q.insert(&rows(3, 4)).unwrap();
        let mut out = Sample::default();
        q.take(5, &mut out).unwrap();
        assert_eq!(out.batch.obs, [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(out.keys, [0, 1, 2, 3, 4]);
        assert_eq!(out.weights, [1.0; 5]);
        q.insert(&rows(7, 5)).unwrap(); // Wraps around the ring.
        q.take(7, &mut out).unwrap();
        assert_eq!(out.batch.obs, [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(out.batch.next_obs[0], 5.5);
        assert!(q.is_empty());
        let stats = q.stats();
        assert_eq!((stats.inserted, stats.sampled, stats.len), (12, 12, 0));
    }

    #[test]
    fn a_full_queue_drops_its_oldest_rows() {
        let mut q = TrajectoryQueue::new(4, 1, 1).unwrap();
        q.insert(&rows(0, 3)).unwrap();
        q.insert(&rows(3, 3)).unwrap();
        let mut out = Sample::default();
        q.take(4, &mut out).unwrap();
        assert_eq!(out.batch.obs, [2.0, 3.0, 4.0, 5.0]);
        assert_eq!(out.keys, [2, 3, 4, 5]);
        let stats = q.stats();
        assert_eq!(stats.inserted - stats.sampled - stats.len, 2, "two rows dropped");
    }

    #[test]
    fn bad_calls_are_refused_and_change_nothing() {
        let mut q = TrajectoryQueue::new(4, 1, 1).unwrap();
        q.insert(&rows(0, 2)).unwrap();
        let mut out = Sample::default();
        assert!(q.take(3, &mut out).unwrap_err().to_string().contains("holds 2"));
        assert!(q.insert(&Transitions::new(2)).is_err());
        assert_eq!(q.len(), 2);
        assert!(TrajectoryQueue::new(0, 1, 1).is_err());
    }
}
