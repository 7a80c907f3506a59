use std::collections::VecDeque;

use crate::env::{Env, StepResult};
use crate::error::Result;
use crate::space::Action;

use super::forward_env;

/// The return and length of one finished episode.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpisodeStats {
    pub episode_return: f64,
    pub length: u64,
}

/// Tracks episode returns and lengths (Gymnasium's `RecordEpisodeStatistics`): the last
/// finished episode, and a window of the most recent ones for running means.
#[derive(Debug, Clone)]
pub struct RecordEpisodeStatistics<E> {
    inner: E,
    episode_return: f64,
    length: u64,
    last: Option<EpisodeStats>,
    recent: VecDeque<EpisodeStats>,
    window: usize,
}

impl<E: Env> RecordEpisodeStatistics<E> {
    /// Keeps the last `window` episodes (Gymnasium's `buffer_length`, 100 by default there).
    pub fn new(inner: E, window: usize) -> Self {
        RecordEpisodeStatistics {
            inner,
            episode_return: 0.0,
            length: 0,
            last: None,
            recent: VecDeque::with_capacity(window),
            window,
        }
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The episode that ended on the most recent step, if it ended there.
    pub fn finished_episode(&self) -> Option<EpisodeStats> {
        self.last
    }

    /// The most recent finished episodes, oldest first.
    pub fn recent_episodes(&self) -> impl Iterator<Item = &EpisodeStats> {
        self.recent.iter()
    }

    /// Mean return over the recent window, `None` before the first episode ends.
    pub fn mean_return(&self) -> Option<f64> {
        (!self.recent.is_empty())
            .then(|| self.recent.iter().map(|e| e.episode_return).sum::<f64>() / self.recent.len() as f64)
    }
}

impl<E: Env> Env for RecordEpisodeStatistics<E> {
    crate::env::snapshot_fields!(inner; episode_return, length, last, recent);

    forward_env!(name, observation_space, action_space);

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        (self.episode_return, self.length, self.last) = (0.0, 0, None);
        self.inner.reset(seed, obs)
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        (self.episode_return, self.length, self.last) = (0.0, 0, None);
        self.inner.reset_to_state(state, obs)
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let result = self.inner.step(action, obs)?;
        self.episode_return += result.reward;
        self.length += 1;
        self.last = None;
        if result.done() {
            let stats = EpisodeStats { episode_return: self.episode_return, length: self.length };
            self.last = Some(stats);
            if self.recent.len() == self.window {
                self.recent.pop_front();
            }
            if self.window > 0 {
                self.recent.push_back(stats);
            }
            (self.episode_return, self.length) = (0.0, 0);
        }
        Ok(result)
    }
}
