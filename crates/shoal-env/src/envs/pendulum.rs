//! Pendulum-v1: swing a pendulum up and keep it upright with limited torque.
//!
//! Mirrors `pendulum.py`. The torque is `f32` and NumPy keeps the terms that involve only it in
//! `f32`; we round at the same places so trajectories match Gymnasium's to the last bit.

use std::f64::consts::PI;

use rand::Rng;

use crate::env::{needs_reset, obs_array, snapshot_fields, state_array, Env, EnvRng, StepResult};
use crate::error::Result;
use crate::options::EnvOptions;
use crate::space::{Action, Space};

const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
const MASS: f64 = 1.0;
const LENGTH: f64 = 1.0;
/// Reset draws the angle from [−π, π] and the angular velocity from [−1, 1].
pub const RESET_HIGH: [f64; 2] = [PI, 1.0];

/// State: angle θ (0 = upright) and angular velocity θ̇.
#[derive(Debug, Clone)]
pub struct Pendulum {
    state: Option<[f64; 2]>,
    gravity: f64,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl Pendulum {
    /// Builds the env; option `g` (float, default 10.0) is the gravity, as in Gymnasium.
    pub fn new(options: &mut EnvOptions) -> Result<Self> {
        let high = [1.0, 1.0, MAX_SPEED as f32];
        Ok(Pendulum {
            state: None,
            gravity: options.float("g", 10.0)?,
            rng: EnvRng::from_entropy(),
            observation_space: Space::box_from_bounds(high.map(|h| -h).to_vec(), high.to_vec()),
            action_space: Space::box_uniform(-MAX_TORQUE, MAX_TORQUE, vec![1]),
        })
    }

    fn write_obs(s: &[f64; 2], obs: &mut [f32]) -> Result<()> {
        let (sin, cos) = s[0].sin_cos();
        *obs_array::<3>(obs)? = [cos, sin, s[1]].map(|x| x as f32);
        Ok(())
    }
}

/// Maps an angle into [−π, π) (Python's floor modulo).
fn angle_normalize(x: f64) -> f64 {
    (x + PI).rem_euclid(2.0 * PI) - PI
}

impl Env for Pendulum {
    snapshot_fields!(state, rng);

    crate::env::space_fields!("Pendulum");

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        let rng = self.rng.reseed(seed);
        let state = RESET_HIGH.map(|h| rng.random_range(-h..h));
        self.reset_to_state(&state, obs)
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        let state = state_array::<2>(self.name(), state)?;
        Self::write_obs(&state, obs)?;
        self.state = Some(state);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let u = self.action_space.continuous_action(action)?[0].clamp(-MAX_TORQUE, MAX_TORQUE);
        let [th, thdot] = self.state.ok_or_else(|| needs_reset("Pendulum"))?;
        let costs = angle_normalize(th).powi(2) + 0.1 * thdot.powi(2) + (0.001f32 * (u * u)) as f64;
        let torque_term = ((3.0 / (MASS * LENGTH.powi(2))) as f32 * u) as f64;
        let newthdot =
            (thdot + (3.0 * self.gravity / (2.0 * LENGTH) * th.sin() + torque_term) * DT).clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        let state = [newth, newthdot];
        Self::write_obs(&state, obs)?;
        self.state = Some(state);
        Ok(StepResult { reward: -costs, terminated: false, truncated: false })
    }
}
