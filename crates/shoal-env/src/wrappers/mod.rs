//! Wrappers: envs that change another env's behaviour, as Gymnasium's `gymnasium.wrappers`.
//!
//! Each wrapper owns its inner env (`inner()` borrows it back) and allocates nothing per step.

mod clip_action;
mod normalize;
mod record_stats;
mod time_limit;
mod transform;

pub use clip_action::ClipAction;
pub use normalize::{NormalizeObservation, NormalizeReward, RunningMeanStd};
pub use record_stats::{EpisodeStats, RecordEpisodeStatistics};
pub use time_limit::TimeLimit;
pub use transform::{TransformObservation, TransformReward};

/// Forwards the `Env` methods a wrapper does not change to its `inner` field.
macro_rules! forward_env {
    (name) => {
        fn name(&self) -> &str {
            self.inner.name()
        }
    };
    (observation_space) => {
        fn observation_space(&self) -> &crate::space::Space {
            self.inner.observation_space()
        }
    };
    (action_space) => {
        fn action_space(&self) -> &crate::space::Space {
            self.inner.action_space()
        }
    };
    (reset) => {
        fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> crate::error::Result<()> {
            self.inner.reset(seed, obs)
        }
    };
    (reset_to_state) => {
        fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> crate::error::Result<()> {
            self.inner.reset_to_state(state, obs)
        }
    };
    ($($method:ident),+) => {
        $(forward_env!($method);)+
    };
}
pub(crate) use forward_env;
