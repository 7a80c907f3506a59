//! Segment trees over slot priorities (Schaul et al., 2016, appendix B.2.1): a sum tree finds
//! the slot where a prefix sum of priorities crosses a value (proportional sampling in
//! O(log n)), a min tree gives the smallest priority (the largest importance weight, which
//! normalizes the others).
//!
//! Both are one flat array of `2·leaves` nodes, leaves (a power of two ≥ capacity) in the upper
//! half, node `i`'s children at `2i` and `2i + 1`; the root is node 1.

/// How a tree combines two children (a type, not a function pointer, so it inlines).
trait Combine {
    const IDENTITY: f64;
    fn combine(a: f64, b: f64) -> f64;
}

#[derive(Debug, Clone)]
struct Sum;

impl Combine for Sum {
    const IDENTITY: f64 = 0.0;
    #[inline]
    fn combine(a: f64, b: f64) -> f64 {
        a + b
    }
}

#[derive(Debug, Clone)]
struct Min;

impl Combine for Min {
    const IDENTITY: f64 = f64::INFINITY;
    #[inline]
    fn combine(a: f64, b: f64) -> f64 {
        if a < b {
            a
        } else {
            b
        }
    }
}

/// A complete binary tree whose every inner node is `C::combine(left, right)`.
#[derive(Debug, Clone)]
struct SegmentTree<C> {
    nodes: Vec<f64>,
    leaves: usize,
    op: std::marker::PhantomData<C>,
}

impl<C: Combine> SegmentTree<C> {
    fn new(capacity: usize) -> Self {
        let leaves = capacity.max(1).next_power_of_two();
        SegmentTree { nodes: vec![C::IDENTITY; 2 * leaves], leaves, op: std::marker::PhantomData }
    }

    fn set(&mut self, slot: usize, value: f64) {
        let mut i = slot + self.leaves;
        self.nodes[i] = value;
        while i > 1 {
            i /= 2;
            self.nodes[i] = C::combine(self.nodes[2 * i], self.nodes[2 * i + 1]);
        }
    }

    /// Sets many leaves, then recomputes their ancestors one level at a time: the loads of
    /// one level are independent of each other, so the CPU overlaps their cache misses
    /// instead of waiting for each leaf-to-root walk in turn.
    fn set_many(&mut self, slots: &[usize], values: &[f64], path: &mut Vec<usize>) {
        path.clear();
        for (&slot, &value) in slots.iter().zip(values) {
            let i = slot + self.leaves;
            self.nodes[i] = value;
            path.push(i / 2);
        }
        // Every leaf is at the same depth, so all walks reach the root together.
        while path.first().is_some_and(|&i| i >= 1) {
            for i in path.iter_mut() {
                self.nodes[*i] = C::combine(self.nodes[2 * *i], self.nodes[2 * *i + 1]);
                *i /= 2;
            }
        }
    }

    fn get(&self, slot: usize) -> f64 {
        self.nodes[slot + self.leaves]
    }

    fn root(&self) -> f64 {
        self.nodes[1]
    }

    fn clear(&mut self) {
        self.nodes.fill(C::IDENTITY);
    }
}

/// Sums of priorities, for proportional sampling.
#[derive(Debug, Clone)]
pub struct SumTree(SegmentTree<Sum>);

impl SumTree {
    /// A tree over `capacity` slots, all of priority 0.
    pub fn new(capacity: usize) -> Self {
        SumTree(SegmentTree::new(capacity))
    }

    pub fn set(&mut self, slot: usize, priority: f64) {
        self.0.set(slot, priority);
    }

    pub fn get(&self, slot: usize) -> f64 {
        self.0.get(slot)
    }

    /// Sum of all priorities.
    pub fn total(&self) -> f64 {
        self.0.root()
    }

    /// The slot `i` with `Σ_{j<i} p_j ≤ mass < Σ_{j≤i} p_j`, for `mass` in `[0, total)`.
    /// Rounding can carry a mass at the very top past the last slot with priority: the
    /// caller clamps to its filled slots.
    pub fn find(&self, mut mass: f64) -> usize {
        let nodes = &self.0.nodes;
        let mut i = 1;
        while i < self.0.leaves {
            let left = nodes[2 * i];
            if mass < left {
                i *= 2;
            } else {
                mass -= left;
                i = 2 * i + 1;
            }
        }
        i - self.0.leaves
    }

    /// [`SumTree::find`] for many masses at once, descending one level at a time for all of
    /// them (branch-free, so independent loads overlap); `masses` is used up as scratch.
    pub fn find_many(&self, masses: &mut [f64], slots: &mut Vec<usize>) {
        let nodes = &self.0.nodes;
        slots.clear();
        slots.resize(masses.len(), 1);
        let mut width = 1;
        while width < self.0.leaves {
            for (i, mass) in slots.iter_mut().zip(masses.iter_mut()) {
                let left = nodes[2 * *i];
                let right = *mass >= left;
                *mass -= if right { left } else { 0.0 };
                *i = 2 * *i + usize::from(right);
            }
            width *= 2;
        }
        slots.iter_mut().for_each(|i| *i -= self.0.leaves);
    }

    /// Sets `slots[k]` to `priorities[k]` for every k (see `set_many`); `path` is scratch.
    pub fn set_many(&mut self, slots: &[usize], priorities: &[f64], path: &mut Vec<usize>) {
        self.0.set_many(slots, priorities, path);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Minimum of priorities (empty slots count as +∞).
#[derive(Debug, Clone)]
pub struct MinTree(SegmentTree<Min>);

impl MinTree {
    pub fn new(capacity: usize) -> Self {
        MinTree(SegmentTree::new(capacity))
    }

    pub fn set(&mut self, slot: usize, priority: f64) {
        self.0.set(slot, priority);
    }

    /// Sets `slots[k]` to `priorities[k]` for every k; `path` is scratch.
    pub fn set_many(&mut self, slots: &[usize], priorities: &[f64], path: &mut Vec<usize>) {
        self.0.set_many(slots, priorities, path);
    }

    /// The smallest priority (+∞ when no slot is set).
    pub fn min(&self) -> f64 {
        self.0.root()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_minima_and_prefix_search() {
        let mut sum = SumTree::new(5);
        let mut min = MinTree::new(5);
        for (slot, p) in [1.0, 2.0, 3.0, 4.0, 5.0].into_iter().enumerate() {
            sum.set(slot, p);
            min.set(slot, p);
        }
        assert_eq!((sum.total(), min.min()), (15.0, 1.0));
        // Prefix sums 1, 3, 6, 10, 15.
        let found: Vec<usize> = [0.0, 0.99, 1.0, 2.5, 3.0, 9.99, 10.0, 14.99].iter().map(|&m| sum.find(m)).collect();
        assert_eq!(found, [0, 0, 1, 1, 2, 3, 4, 4]);
        sum.set(0, 0.0);
        min.set(0, 7.0);
        assert_eq!((sum.total(), sum.find(0.0), min.min()), (14.0, 1, 2.0));
    }

    #[test]
    fn batched_search_and_updates_equal_one_at_a_time() {
        let (mut one, mut many) = ((SumTree::new(37), MinTree::new(37)), (SumTree::new(37), MinTree::new(37)));
        let slots: Vec<usize> = (0..37).map(|i| (i * 11) % 37).collect();
        let values: Vec<f64> = (0..37).map(|i| 0.5 + (i % 5) as f64).collect();
        for (&s, &v) in slots.iter().zip(&values) {
            one.0.set(s, v);
            one.1.set(s, v);
        }
        let mut path = Vec::new();
        many.0.set_many(&slots, &values, &mut path);
        many.1.set_many(&slots, &values, &mut path);
        assert_eq!((one.0 .0.nodes.clone(), one.1.min()), (many.0 .0.nodes.clone(), many.1.min()));
        let total = one.0.total();
        let mut masses: Vec<f64> = (0..100).map(|k| total * k as f64 / 100.0).collect();
        let expected: Vec<usize> = masses.iter().map(|&m| one.0.find(m)).collect();
        let mut found = Vec::new();
        many.0.find_many(&mut masses, &mut found);
        assert_eq!(found, expected);
    }
}
