//! n-step transition assembly, per env: a step enters a window of the last n; when the window
//! is full (or the episode ends) its oldest step leaves as one transition carrying the
//! discounted reward sum of the window and the observation to bootstrap from.

use std::collections::VecDeque;

use crate::replay::transitions::{Row, Transitions};

/// One step waiting for the rewards that follow it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingStep {
    pub obs: Vec<f32>,
    /// The action's values (one for a discrete index); checkpoints written before actions had
    /// a width hold a single number here.
    #[serde(deserialize_with = "number_or_values")]
    pub action: Vec<f32>,
    pub reward: f32,
}

/// Reads an action saved as one number (discrete, older checkpoints) or as a list.
fn number_or_values<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Saved {
        One(f32),
        Many(Vec<f32>),
    }
    Ok(match <Saved as serde::Deserialize>::deserialize(deserializer)? {
        Saved::One(value) => vec![value],
        Saved::Many(values) => values,
    })
}

/// One step of one env, as [`NStepAssembler::add`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub obs: &'a [f32],
    /// The action's values (one for a discrete index).
    pub action: &'a [f32],
    pub reward: f32,
    /// The observation after the step (the episode's final one when it ended).
    pub next_obs: &'a [f32],
    /// The episode ended in a terminal state: no bootstrap.
    pub terminated: bool,
    /// The episode ended (terminated or truncated): flush the window.
    pub episode_end: bool,
}

/// Windows of the last n steps of every env.
#[derive(Debug, Clone)]
pub struct NStepAssembler {
    n: usize,
    gamma: f64,
    pending: Vec<VecDeque<PendingStep>>,
}

impl NStepAssembler {
    pub fn new(num_envs: usize, n: usize, gamma: f64) -> Self {
        NStepAssembler { n: n.max(1), gamma, pending: vec![VecDeque::new(); num_envs] }
    }

    /// Adds env `env`'s step and appends the transitions it completes to `out`.
    pub fn add(&mut self, env: usize, step: Step<'_>, out: &mut Transitions) {
        let pending = PendingStep { obs: step.obs.to_vec(), action: step.action.to_vec(), reward: step.reward };
        self.pending[env].push_back(pending);
        if self.pending[env].len() == self.n {
            self.emit(env, step.next_obs, step.terminated, out);
        }
        if step.episode_end {
            while !self.pending[env].is_empty() {
                self.emit(env, step.next_obs, step.terminated, out);
            }
        }
    }

    /// The oldest pending step of `env`, with the discounted sum of what follows it.
    fn emit(&mut self, env: usize, next_obs: &[f32], done: bool, out: &mut Transitions) {
        let (mut sum, mut discount) = (0.0f64, 1.0f64);
        for p in &self.pending[env] {
            sum += discount * p.reward as f64;
            discount *= self.gamma;
        }
        let Some(first) = self.pending[env].pop_front() else { return };
        out.push(Row {
            obs: &first.obs,
            action: &first.action,
            reward: sum as f32,
            next_obs,
            done: if done { 1.0 } else { 0.0 },
            discount: discount as f32,
        });
    }

    /// The steps still waiting, per env (for checkpoints).
    pub fn pending(&self) -> &[VecDeque<PendingStep>] {
        &self.pending
    }

    /// Restores [`NStepAssembler::pending`]; fails when the env count differs.
    pub fn restore(&mut self, pending: Vec<VecDeque<PendingStep>>) -> Result<(), String> {
        if pending.len() != self.pending.len() {
            return Err(format!("saved n-step windows of {} envs, this run has {}", pending.len(), self.pending.len()));
        }
        self.pending = pending;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_step_sums_rewards_and_flushes_at_episode_end() {
        let mut nstep = NStepAssembler::new(1, 3, 0.5);
        let mut out = Transitions::new(1);
        // Episode: rewards 1, 2, 4, 8 then terminated.
        for (t, r) in [1.0, 2.0, 4.0, 8.0].into_iter().enumerate() {
            let end = t == 3;
            let (obs, next) = ([t as f32], [t as f32 + 1.0]);
            let step =
                Step { obs: &obs, action: &[0.0], reward: r, next_obs: &next, terminated: end, episode_end: end };
            nstep.add(0, step, &mut out);
        }
        assert_eq!(out.len(), 4);
        // From s0: 1 + 0.5·2 + 0.25·4 = 3, bootstrap from s3 with γ³, not done.
        assert_eq!((out.rewards[0], out.discounts[0], out.dones[0], out.next_obs[0]), (3.0, 0.125, 0.0, 3.0));
        // From s1: 2 + 0.5·4 + 0.25·8 = 6, next s4, terminated.
        assert_eq!((out.rewards[1], out.dones[1], out.next_obs[1]), (6.0, 1.0, 4.0));
        // Flushed tails: from s2 (4 + 4 = 8) and s3 (8), both terminal.
        assert_eq!((out.rewards[2], out.discounts[2], out.dones[2]), (8.0, 0.25, 1.0));
        assert_eq!((out.rewards[3], out.discounts[3], out.dones[3]), (8.0, 0.5, 1.0));
        assert!(nstep.pending()[0].is_empty());
    }

    #[test]
    fn pending_steps_of_older_checkpoints_read_back() {
        let old: PendingStep = serde_json::from_str(r#"{"obs":[1.0],"action":2.0,"reward":0.5}"#).unwrap();
        assert_eq!(old.action, vec![2.0]);
        let new: PendingStep =
            serde_json::from_str(&serde_json::to_string(&PendingStep { action: vec![0.5, -1.0], ..old }).unwrap())
                .unwrap();
        assert_eq!(new.action, vec![0.5, -1.0]);
    }
}
