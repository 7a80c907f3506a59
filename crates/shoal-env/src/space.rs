//! Observation and action spaces, with Gymnasium's names and meaning.
//!
//! Observations of every space are written as `f32` values into a flat buffer (a `Discrete`
//! observation is its index as one `f32`), so vector envs and networks see one contiguous
//! `[num_envs, obs_dim]` array whatever the env. Actions keep their natural type through
//! [`Action`]: integers stay integers, continuous actions stay `f32`.

use std::fmt;

use rand::Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};

use crate::error::{EnvError, Result};

/// The set an observation or action belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum Space {
    /// Integers `start, start+1, …, start+n-1` (Gymnasium's `Discrete(n, start)`).
    Discrete { n: i64, start: i64 },
    /// A box of `f32` values with per-element bounds (which may be infinite).
    Box { low: Vec<f32>, high: Vec<f32>, shape: Vec<usize> },
    /// A vector of integers, element `i` in `0..nvec[i]`.
    MultiDiscrete { nvec: Vec<i64> },
}

/// One action, borrowed: what `Env::step` takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action<'a> {
    Discrete(i64),
    Continuous(&'a [f32]),
    MultiDiscrete(&'a [i64]),
}

/// One action, owned: what sampling returns and what a CLI or file produces.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedAction {
    Discrete(i64),
    Continuous(Vec<f32>),
    MultiDiscrete(Vec<i64>),
}

impl OwnedAction {
    /// Borrow as the [`Action`] that `Env::step` takes.
    pub fn as_action(&self) -> Action<'_> {
        match self {
            OwnedAction::Discrete(a) => Action::Discrete(*a),
            OwnedAction::Continuous(v) => Action::Continuous(v),
            OwnedAction::MultiDiscrete(v) => Action::MultiDiscrete(v),
        }
    }
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Discrete(a) => write!(f, "{a}"),
            Action::Continuous(v) => write!(f, "{v:?}"),
            Action::MultiDiscrete(v) => write!(f, "{v:?}"),
        }
    }
}

impl Space {
    /// `Discrete(n)` starting at 0.
    pub fn discrete(n: i64) -> Self {
        Space::Discrete { n, start: 0 }
    }

    /// A one-dimensional box from per-element bounds.
    pub fn box_from_bounds(low: Vec<f32>, high: Vec<f32>) -> Self {
        let shape = vec![low.len()];
        Space::Box { low, high, shape }
    }

    /// A box whose elements all share the same bounds.
    pub fn box_uniform(low: f32, high: f32, shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Space::Box { low: vec![low; len], high: vec![high; len], shape }
    }

    /// How many `f32` values one element of this space occupies in a flat buffer.
    pub fn flat_dim(&self) -> usize {
        match self {
            Space::Discrete { .. } => 1,
            Space::Box { low, .. } => low.len(),
            Space::MultiDiscrete { nvec } => nvec.len(),
        }
    }

    /// Number of choices of a `Discrete` space, `None` for other spaces.
    pub fn n(&self) -> Option<i64> {
        match self {
            Space::Discrete { n, .. } => Some(*n),
            _ => None,
        }
    }

    /// True when `action` is an element of this space (no NaN, within bounds, right length).
    pub fn contains(&self, action: Action<'_>) -> bool {
        self.check(action).is_ok()
    }

    /// Checks that `action` belongs to this space, with an error that says how it does not.
    pub fn check(&self, action: Action<'_>) -> Result<()> {
        let invalid =
            |hint: String| EnvError::InvalidAction { action: action.to_string(), space: self.to_string(), hint };
        match (self, action) {
            (Space::Discrete { n, start }, Action::Discrete(a)) => {
                if a < *start || a >= start + n {
                    return Err(invalid(format!("valid actions are {} to {}", start, start + n - 1)));
                }
            }
            (Space::Box { low, high, .. }, Action::Continuous(v)) => {
                if v.len() != low.len() {
                    return Err(invalid(format!("expected {} values, got {}", low.len(), v.len())));
                }
                for (i, ((&x, &lo), &hi)) in v.iter().zip(low).zip(high).enumerate() {
                    if !x.is_finite() {
                        return Err(invalid(format!("element {i} is {x}; actions must be finite numbers")));
                    }
                    if x < lo || x > hi {
                        return Err(invalid(format!("element {i} = {x} is outside [{lo}, {hi}]; clip actions (ClipAction wrapper) or fix the policy's output scaling")));
                    }
                }
            }
            (Space::MultiDiscrete { nvec }, Action::MultiDiscrete(v)) => {
                if v.len() != nvec.len() {
                    return Err(invalid(format!("expected {} values, got {}", nvec.len(), v.len())));
                }
                if let Some(i) = v.iter().zip(nvec).position(|(&a, &n)| a < 0 || a >= n) {
                    return Err(invalid(format!("element {i} must be in 0..{}", nvec[i])));
                }
            }
            _ => return Err(self.kind_mismatch(action)),
        }
        Ok(())
    }

    /// Checks `action` and returns it as the integer a `Discrete` space holds.
    pub fn discrete_action(&self, action: Action<'_>) -> Result<i64> {
        match (self, action) {
            // The hot path of every discrete env step: one range check, no error built.
            (Space::Discrete { n, start }, Action::Discrete(a)) if a >= *start && a < start + n => Ok(a),
            _ => Err(self.check(action).err().unwrap_or_else(|| self.kind_mismatch(action))),
        }
    }

    /// Checks `action` and returns it as the float vector a `Box` space holds.
    pub fn continuous_action<'a>(&self, action: Action<'a>) -> Result<&'a [f32]> {
        self.check(action)?;
        match action {
            Action::Continuous(v) => Ok(v),
            _ => Err(self.kind_mismatch(action)),
        }
    }

    /// The error for an action of the wrong kind (a float vector for a `Discrete` space …).
    pub(crate) fn kind_mismatch(&self, action: Action<'_>) -> EnvError {
        EnvError::InvalidAction {
            action: action.to_string(),
            space: self.to_string(),
            hint: format!("the action kind does not match; this space takes {}", self.action_kind()),
        }
    }

    fn action_kind(&self) -> &'static str {
        match self {
            Space::Discrete { .. } => "one integer",
            Space::Box { .. } => "a vector of floats",
            Space::MultiDiscrete { .. } => "a vector of integers",
        }
    }

    /// Samples an element the way Gymnasium does: uniform for discrete and bounded box
    /// elements, exponential for half-bounded, normal for unbounded ones.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> OwnedAction {
        match self {
            Space::Discrete { n, start } => OwnedAction::Discrete(start + rng.random_range(0..*n)),
            Space::Box { low, high, .. } => {
                OwnedAction::Continuous(low.iter().zip(high).map(|(&lo, &hi)| sample_interval(rng, lo, hi)).collect())
            }
            Space::MultiDiscrete { nvec } => {
                OwnedAction::MultiDiscrete(nvec.iter().map(|&n| rng.random_range(0..n)).collect())
            }
        }
    }
}

fn sample_interval<R: Rng + ?Sized>(rng: &mut R, lo: f32, hi: f32) -> f32 {
    match (lo.is_finite(), hi.is_finite()) {
        (true, true) => rng.random_range(lo..=hi),
        (true, false) => lo + <Exp1 as Distribution<f32>>::sample(&Exp1, rng),
        (false, true) => hi - <Exp1 as Distribution<f32>>::sample(&Exp1, rng),
        (false, false) => StandardNormal.sample(rng),
    }
}

impl fmt::Display for Space {
    /// Prints like Gymnasium: `Discrete(2)`, `Box(-1.0, 1.0, (1,), float32)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Space::Discrete { n, start: 0 } => write!(f, "Discrete({n})"),
            Space::Discrete { n, start } => write!(f, "Discrete({n}, start={start})"),
            Space::Box { low, high, shape } => {
                let shape = match shape.as_slice() {
                    [d] => format!("({d},)"),
                    dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
                };
                let uniform = low.windows(2).all(|w| w[0] == w[1]) && high.windows(2).all(|w| w[0] == w[1]);
                match (uniform, low.first(), high.first()) {
                    (true, Some(lo), Some(hi)) => {
                        write!(f, "Box({lo:?}, {hi:?}, {shape}, float32)")
                    }
                    _ => write!(f, "Box({low:?}, {high:?}, {shape}, float32)"),
                }
            }
            Space::MultiDiscrete { nvec } => write!(f, "MultiDiscrete({nvec:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn discrete_contains_respects_start() {
        let s = Space::Discrete { n: 3, start: -1 };
        assert!(s.contains(Action::Discrete(-1)));
        assert!(s.contains(Action::Discrete(1)));
        assert!(!s.contains(Action::Discrete(2)));
        assert!(!s.contains(Action::Continuous(&[0.0])));
    }

    #[test]
    fn box_rejects_nan_out_of_range_and_wrong_length() {
        let s = Space::box_uniform(-2.0, 2.0, vec![1]);
        assert!(s.contains(Action::Continuous(&[1.5])));
        let nan = s.check(Action::Continuous(&[f32::NAN])).unwrap_err().to_string();
        assert!(nan.contains("finite"), "{nan}");
        let out = s.check(Action::Continuous(&[2.5])).unwrap_err().to_string();
        assert!(out.contains("outside [-2, 2]"), "{out}");
        let len = s.check(Action::Continuous(&[0.0, 0.0])).unwrap_err().to_string();
        assert!(len.contains("expected 1 values, got 2"), "{len}");
    }

    #[test]
    fn samples_are_members() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let spaces = [
            Space::discrete(4),
            Space::box_uniform(-1.0, 1.0, vec![3]),
            Space::box_from_bounds(
                vec![0.0, f32::NEG_INFINITY, f32::NEG_INFINITY],
                vec![f32::INFINITY, 1.0, f32::INFINITY],
            ),
            Space::MultiDiscrete { nvec: vec![2, 5] },
        ];
        for s in &spaces {
            for _ in 0..1000 {
                let a = s.sample(&mut rng);
                assert!(s.contains(a.as_action()), "{s} sampled {a:?}");
            }
        }
    }

    #[test]
    fn display_matches_gymnasium() {
        assert_eq!(Space::discrete(2).to_string(), "Discrete(2)");
        assert_eq!(Space::box_uniform(-2.0, 2.0, vec![1]).to_string(), "Box(-2.0, 2.0, (1,), float32)");
    }
}
