//! Tabular MDPs given by an explicit transition table, as Gymnasium's toy-text envs are.
//!
//! FrozenLake, CliffWalking and Taxi all keep a table `P[s][a] = [(prob, next, reward,
//! terminated), …]` and sample from it; [`TabularEnv`] is that machinery once. The table is
//! public so that planning methods (value iteration) and tests can read the exact model.

use rand::Rng;

use crate::env::{needs_reset, obs_array, snapshot_fields, Env, EnvRng, StepResult};
use crate::error::{EnvError, Result};
use crate::space::{Action, Space};

/// One possible outcome of taking an action in a state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub prob: f64,
    pub next_state: usize,
    pub reward: f64,
    pub terminated: bool,
}

/// The full model of a finite MDP: outcome lists per (state, action), and the start distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct TabularModel {
    pub n_states: usize,
    pub n_actions: usize,
    /// Outcomes of action `a` in state `s` at index `s * n_actions + a`.
    pub transitions: Vec<Vec<Transition>>,
    /// Probability of starting in each state.
    pub initial: Vec<f64>,
}

impl TabularModel {
    /// An empty table for `n_states × n_actions`, filled in by the env's builder.
    pub fn new(n_states: usize, n_actions: usize) -> Self {
        TabularModel {
            n_states,
            n_actions,
            transitions: vec![Vec::new(); n_states * n_actions],
            initial: vec![0.0; n_states],
        }
    }

    /// The outcomes of `action` in `state`.
    pub fn outcomes(&self, state: usize, action: usize) -> &[Transition] {
        &self.transitions[state * self.n_actions + action]
    }

    /// Mutable outcome list, for builders.
    pub fn outcomes_mut(&mut self, state: usize, action: usize) -> &mut Vec<Transition> {
        &mut self.transitions[state * self.n_actions + action]
    }

    /// Scales the start weights to a distribution.
    pub fn normalize_initial(&mut self) {
        let total: f64 = self.initial.iter().sum();
        self.initial.iter_mut().for_each(|p| *p /= total);
    }
}

/// Gymnasium's `categorical_sample`: the first index whose cumulative probability exceeds one
/// uniform draw. Kept identical so the same uniform draw picks the same outcome.
pub fn categorical_sample<R: Rng + ?Sized>(probs: impl IntoIterator<Item = f64>, rng: &mut R) -> usize {
    let u: f64 = rng.random();
    let mut cumulative = 0.0;
    for (i, p) in probs.into_iter().enumerate() {
        cumulative += p;
        if cumulative > u {
            return i;
        }
    }
    // NumPy's argmax of an all-false mask is 0 (rounding can leave the total just below u).
    0
}

/// An env that samples a [`TabularModel`]. Observations are the state index as one `f32`.
#[derive(Debug, Clone)]
pub struct TabularEnv {
    name: &'static str,
    model: TabularModel,
    state: Option<usize>,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl TabularEnv {
    /// Wraps a finished model; `name` is used in error messages.
    pub fn new(name: &'static str, model: TabularModel) -> Self {
        TabularEnv {
            name,
            observation_space: Space::discrete(model.n_states as i64),
            action_space: Space::discrete(model.n_actions as i64),
            model,
            state: None,
            rng: EnvRng::from_entropy(),
        }
    }

    /// The exact model this env samples from.
    pub fn model(&self) -> &TabularModel {
        &self.model
    }

    /// The current state index, if reset.
    pub fn state(&self) -> Option<usize> {
        self.state
    }

    /// The RNG, for envs built on top that draw extra randomness (Taxi's fickle passenger).
    pub(crate) fn rng(&mut self) -> &mut EnvRng {
        &mut self.rng
    }

    /// Overrides the current state (after a step that changed it outside the table).
    pub(crate) fn set_state(&mut self, state: usize, obs: &mut [f32]) -> Result<()> {
        obs_array::<1>(obs)?[0] = state as f32;
        self.state = Some(state);
        Ok(())
    }

    /// Samples one transition and returns it, for envs that post-process it.
    pub(crate) fn sample_step(&mut self, action: Action<'_>) -> Result<Transition> {
        let a = self.action_space.discrete_action(action)? as usize;
        let s = self.state.ok_or_else(|| needs_reset(self.name))?;
        let outcomes = self.model.outcomes(s, a);
        let i = categorical_sample(outcomes.iter().map(|t| t.prob), self.rng.get());
        Ok(outcomes[i])
    }
}

impl Env for TabularEnv {
    snapshot_fields!(state, rng);

    fn name(&self) -> &str {
        self.name
    }
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        let rng = self.rng.reseed(seed);
        let s = categorical_sample(self.model.initial.iter().copied(), rng);
        self.set_state(s, obs)
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        match state {
            [s] if s.fract() == 0.0 && *s >= 0.0 && (*s as usize) < self.model.n_states => {
                self.set_state(*s as usize, obs)
            }
            _ => Err(EnvError::SpaceMismatch(format!(
                "{} state is one index in 0..{}, got {state:?}",
                self.name, self.model.n_states
            ))),
        }
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let t = self.sample_step(action)?;
        self.set_state(t.next_state, obs)?;
        Ok(StepResult { reward: t.reward, terminated: t.terminated, truncated: false })
    }
}
