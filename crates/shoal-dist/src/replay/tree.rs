//! Segment trees over slot priorities (Schaul et al., 2016, appendix B.2.1): a sum tree finds
//! the slot where a prefix sum of priorities crosses a value (proportional sampling in
//! O(log n)), a min tree gives the smallest priority (the largest importance weight, which
//! normalizes the others).
//!
//! Both are one flat array of `2·leaves` nodes, leaves (a power of two ≥ capacity) in the upper
//! half, node `i`'s children at `2i` and `2i + 1`; the root is node 1.

/// A complete binary tree whose every inner node is `combine(left, right)`.
#[derive(Debug, Clone)]
struct SegmentTree {
    nodes: Vec<f64>,
    leaves: usize,
    identity: f64,
    combine: fn(f64, f64) -> f64,
}

impl SegmentTree {
    fn new(capacity: usize, identity: f64, combine: fn(f64, f64) -> f64) -> Self {
        let leaves = capacity.max(1).next_power_of_two();
        SegmentTree { nodes: vec![identity; 2 * leaves], leaves, identity, combine }
    }

    fn set(&mut self, slot: usize, value: f64) {
        let mut i = slot + self.leaves;
        self.nodes[i] = value;
        while i > 1 {
            i /= 2;
            self.nodes[i] = (self.combine)(self.nodes[2 * i], self.nodes[2 * i + 1]);
        }
    }

    fn get(&self, slot: usize) -> f64 {
        self.nodes[slot + self.leaves]
    }

    fn root(&self) -> f64 {
        self.nodes[1]
    }

    fn clear(&mut self) {
        self.nodes.fill(self.identity);
    }
}

/// Sums of priorities, for proportional sampling.
#[derive(Debug, Clone)]
pub struct SumTree(SegmentTree);

impl SumTree {
    /// A tree over `capacity` slots, all of priority 0.
    pub fn new(capacity: usize) -> Self {
        SumTree(SegmentTree::new(capacity, 0.0, |a, b| a + b))
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

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Minimum of priorities (empty slots count as +∞).
#[derive(Debug, Clone)]
pub struct MinTree(SegmentTree);

impl MinTree {
    pub fn new(capacity: usize) -> Self {
        MinTree(SegmentTree::new(capacity, f64::INFINITY, f64::min))
    }

    pub fn set(&mut self, slot: usize, priority: f64) {
        self.0.set(slot, priority);
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
}
