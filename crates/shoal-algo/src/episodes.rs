//! Episode statistics of a training run: the window RLlib and SB3 report means over.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use shoal_env::Batch;

/// Returns and lengths of the most recent finished episodes, and the total count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeTracker {
    recent: VecDeque<(f64, u64)>,
    total: u64,
    /// Episodes recorded since the last [`EpisodeTracker::drain_into`].
    #[serde(default)]
    undrained: usize,
}

impl EpisodeTracker {
    /// Episodes kept for the running means (as SB3's `ep_info_buffer`).
    pub const WINDOW: usize = 100;

    /// Records one finished episode.
    pub fn record(&mut self, episode_return: f64, length: u64) {
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((episode_return, length));
        self.total += 1;
        self.undrained += 1;
    }

    /// Records the episodes finished since the last call into `other` (how parallel workers'
    /// episodes reach the agent's one window).
    pub fn drain_into(&mut self, other: &mut EpisodeTracker) {
        let new = self.undrained.min(self.recent.len());
        for &(ret, len) in self.recent.iter().skip(self.recent.len() - new) {
            other.record(ret, len);
        }
        // Episodes that already left this window still count in the total.
        other.total += (self.undrained - new) as u64;
        self.undrained = 0;
    }

    /// Records the episodes that ended on a vector env's last step.
    pub fn record_batch(&mut self, batch: &Batch) {
        for (ret, len) in batch.finished_episodes() {
            self.record(ret, len);
        }
    }

    /// `episode_return_mean` over the window, once an episode has finished.
    pub fn mean_return(&self) -> Option<f64> {
        (!self.recent.is_empty()).then(|| self.recent.iter().map(|e| e.0).sum::<f64>() / self.recent.len() as f64)
    }

    /// `episode_len_mean` over the window.
    pub fn mean_length(&self) -> Option<f64> {
        (!self.recent.is_empty())
            .then(|| self.recent.iter().map(|e| e.1 as f64).sum::<f64>() / self.recent.len() as f64)
    }

    /// The (return, length) of the episodes in the window, oldest first.
    pub fn recent(&self) -> Vec<(f64, u64)> {
        self.recent.iter().copied().collect()
    }

    /// Episodes finished since the start of the run.
    pub fn total(&self) -> u64 {
        self.total
    }
}
