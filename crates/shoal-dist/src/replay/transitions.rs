//! Transitions as contiguous columns: what actors insert, what a replay holds (as a ring) and
//! what learners sample. One layout for all three, so moving rows is `copy_from_slice`.

/// A batch of n-step transitions, one row per transition; `obs` and `next_obs` are
/// `[rows, obs_dim]` row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transitions {
    pub obs_dim: usize,
    /// Values per action: 1 for a discrete action index (as `f32`, like every action row in
    /// Shoal), the action's width for continuous actions (SAC, TD3).
    pub act_dim: usize,
    pub obs: Vec<f32>,
    /// `[rows, act_dim]`.
    pub actions: Vec<f32>,
    /// Discounted n-step reward sums `Σ_{k<n} γᵏ r_{t+k}`.
    pub rewards: Vec<f32>,
    /// The observation the return bootstraps from (the episode's last one when it ended).
    pub next_obs: Vec<f32>,
    /// 1 when the episode terminated within the n steps (no bootstrap).
    pub dones: Vec<f32>,
    /// `γᵏ` for the k steps the reward sum covers (k < n when the episode ended early).
    pub discounts: Vec<f32>,
}

/// One transition, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub obs: &'a [f32],
    pub action: &'a [f32],
    pub reward: f32,
    pub next_obs: &'a [f32],
    pub done: f32,
    pub discount: f32,
}

impl Transitions {
    /// Rows of observations of width `obs_dim` and one action value (a discrete index).
    pub fn new(obs_dim: usize) -> Self {
        Self::with_act_dim(obs_dim, 1)
    }

    /// Rows of observations of width `obs_dim` and actions of width `act_dim`.
    pub fn with_act_dim(obs_dim: usize, act_dim: usize) -> Self {
        Transitions { obs_dim, act_dim, ..Transitions::default() }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    /// Empties every column, keeping the allocations.
    pub fn clear(&mut self) {
        self.obs.clear();
        self.actions.clear();
        self.rewards.clear();
        self.next_obs.clear();
        self.dones.clear();
        self.discounts.clear();
    }

    /// Appends every row of `other` (of the same widths).
    pub fn extend_from(&mut self, other: &Transitions) {
        self.obs.extend_from_slice(&other.obs);
        self.actions.extend_from_slice(&other.actions);
        self.rewards.extend_from_slice(&other.rewards);
        self.next_obs.extend_from_slice(&other.next_obs);
        self.dones.extend_from_slice(&other.dones);
        self.discounts.extend_from_slice(&other.discounts);
    }

    pub fn push(&mut self, row: Row<'_>) {
        self.obs.extend_from_slice(row.obs);
        self.actions.extend_from_slice(row.action);
        self.rewards.push(row.reward);
        self.next_obs.extend_from_slice(row.next_obs);
        self.dones.push(row.done);
        self.discounts.push(row.discount);
    }

    pub fn row(&self, i: usize) -> Row<'_> {
        let (d, a) = (self.obs_dim, self.act_dim);
        Row {
            obs: &self.obs[i * d..(i + 1) * d],
            action: &self.actions[i * a..(i + 1) * a],
            reward: self.rewards[i],
            next_obs: &self.next_obs[i * d..(i + 1) * d],
            done: self.dones[i],
            discount: self.discounts[i],
        }
    }

    /// Why this batch's columns do not describe `len()` rows of widths `obs_dim` and
    /// `act_dim`, if they do not.
    pub fn check(&self) -> Result<(), String> {
        let (n, d) = (self.len(), self.obs_dim);
        let columns = [
            ("obs", self.obs.len(), n * d),
            ("actions", self.actions.len(), n * self.act_dim),
            ("rewards", self.rewards.len(), n),
            ("next_obs", self.next_obs.len(), n * d),
            ("dones", self.dones.len(), n),
            ("discounts", self.discounts.len(), n),
        ];
        match columns.iter().find(|(_, got, want)| got != want) {
            Some((name, got, want)) => Err(format!(
                "transition column {name} has {got} values, {n} rows of obs_dim {d} and act_dim {} need {want}",
                self.act_dim
            )),
            None => Ok(()),
        }
    }
}

/// A fixed-capacity ring of transitions: one preallocated array of row records
/// `[obs, next_obs, reward, done, discount, action…]`, the oldest row overwritten first. Memory
/// is the raw `f32`s of the rows and nothing else, and a sampled row is one contiguous read
/// (one or two cache lines for small observations, where six columns would be six misses).
#[derive(Debug, Clone)]
pub struct TransitionRing {
    capacity: usize,
    obs_dim: usize,
    act_dim: usize,
    data: Vec<f32>,
    /// Next slot to write, and how many slots hold data.
    pos: usize,
    len: usize,
}

impl TransitionRing {
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize) -> Self {
        let stride = 2 * obs_dim + 3 + act_dim;
        TransitionRing { capacity, obs_dim, act_dim, data: vec![0.0; capacity * stride], pos: 0, len: 0 }
    }

    fn stride(&self) -> usize {
        2 * self.obs_dim + 3 + self.act_dim
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    pub fn act_dim(&self) -> usize {
        self.act_dim
    }

    /// Slots holding data.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `row` over the oldest slot and returns the slot.
    pub fn push(&mut self, row: Row<'_>) -> usize {
        let (slot, d, stride) = (self.pos, self.obs_dim, self.stride());
        let record = &mut self.data[slot * stride..(slot + 1) * stride];
        record[..d].copy_from_slice(row.obs);
        record[d..2 * d].copy_from_slice(row.next_obs);
        record[2 * d..2 * d + 3].copy_from_slice(&[row.reward, row.done, row.discount]);
        record[2 * d + 3..].copy_from_slice(row.action);
        self.pos = (self.pos + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
        slot
    }

    /// Asks the CPU to start loading slot `slot`'s row (both ends: a row can straddle two
    /// cache lines).
    #[inline]
    pub fn prefetch_row(&self, slot: usize) {
        let stride = self.stride();
        super::prefetch(&self.data[slot * stride]);
        super::prefetch(&self.data[(slot + 1) * stride - 1]);
    }

    /// Slot `slot`'s row.
    pub fn row(&self, slot: usize) -> Row<'_> {
        let (d, stride) = (self.obs_dim, self.stride());
        let record = &self.data[slot * stride..(slot + 1) * stride];
        Row {
            obs: &record[..d],
            next_obs: &record[d..2 * d],
            reward: record[2 * d],
            done: record[2 * d + 1],
            discount: record[2 * d + 2],
            action: &record[2 * d + 3..],
        }
    }

    /// Appends slot `slot`'s row to `out`.
    pub fn copy_row(&self, slot: usize, out: &mut Transitions) {
        out.push(self.row(slot));
    }

    /// The next slot to write.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The filled slots as columns (slot order, not insertion order), and the write position.
    #[cfg(test)]
    pub fn filled(&self) -> (Transitions, usize) {
        let mut filled = Transitions::with_act_dim(self.obs_dim, self.act_dim);
        (0..self.len).for_each(|slot| self.copy_row(slot, &mut filled));
        (filled, self.pos)
    }

    /// Restores what [`TransitionRing::filled`] returned.
    pub fn restore(&mut self, filled: &Transitions, pos: usize) -> Result<(), String> {
        filled.check()?;
        let (n, d, a) = (filled.len(), self.obs_dim, self.act_dim);
        if filled.obs_dim != d
            || filled.act_dim != a
            || n > self.capacity
            || pos >= self.capacity.max(1)
            || (n < self.capacity && pos != n)
        {
            return Err(format!(
                "saved replay of {n} rows (obs_dim {}, act_dim {}, write position {pos}) does not fit a ring of {} \
                 rows with obs_dim {d} and act_dim {a}",
                filled.obs_dim, filled.act_dim, self.capacity
            ));
        }
        self.pos = 0;
        self.len = 0;
        (0..n).for_each(|i| {
            self.push(filled.row(i));
        });
        self.pos = pos;
        self.len = n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(x: f32) -> Transitions {
        let mut t = Transitions::new(1);
        t.push(Row { obs: &[x], action: &[0.0], reward: x, next_obs: &[0.0], done: 0.0, discount: 1.0 });
        t
    }

    #[test]
    fn ring_overwrites_oldest() {
        let mut ring = TransitionRing::new(3, 1, 1);
        let slots: Vec<usize> = (0..5).map(|t| ring.push(row(t as f32).row(0))).collect();
        assert_eq!(slots, [0, 1, 2, 0, 1]);
        assert_eq!(ring.len(), 3);
        let (filled, pos) = ring.filled();
        assert_eq!((filled.rewards, pos), (vec![3.0, 4.0, 2.0], 2));
    }

    #[test]
    fn restore_round_trips_and_rejects_misfits() {
        let mut ring = TransitionRing::new(4, 1, 1);
        (0..6).for_each(|t| {
            ring.push(row(t as f32).row(0));
        });
        let (filled, pos) = ring.filled();
        let mut copy = TransitionRing::new(4, 1, 1);
        copy.restore(&filled, pos).unwrap();
        assert_eq!(copy.filled(), (filled.clone(), pos));
        assert!(TransitionRing::new(3, 1, 1).restore(&filled, pos).is_err());
        assert!(TransitionRing::new(4, 2, 1).restore(&filled, pos).is_err());
        assert!(TransitionRing::new(4, 1, 2).restore(&filled, pos).is_err());
    }

    #[test]
    fn continuous_actions_keep_their_width() {
        let mut ring = TransitionRing::new(2, 2, 3);
        let mut rows = Transitions::with_act_dim(2, 3);
        rows.push(Row {
            obs: &[1.0, 2.0],
            action: &[0.5, -0.5, 0.25],
            reward: 3.0,
            next_obs: &[4.0, 5.0],
            done: 1.0,
            discount: 0.9,
        });
        ring.push(rows.row(0));
        let row = ring.row(0);
        assert_eq!(
            (row.obs, row.action, row.reward, row.next_obs),
            (&[1.0, 2.0][..], &[0.5, -0.5, 0.25][..], 3.0, &[4.0, 5.0][..])
        );
        assert_eq!((row.done, row.discount), (1.0, 0.9));
        let (filled, _) = ring.filled();
        assert_eq!(filled.actions, vec![0.5, -0.5, 0.25]);
        assert!(filled.check().is_ok());
    }
}
