//! MountainCar-v0 and MountainCarContinuous-v0: drive an underpowered car up a hill (Moore, 1990).
//!
//! Mirror `mountain_car.py` and `continuous_mountain_car.py`. The continuous version stores its
//! state as `f32` after every step and does part of its arithmetic in `f32` (NumPy's promotion
//! rules); we round at the same places so trajectories match Gymnasium's to the last bit.

use rand::Rng;

use crate::env::{needs_reset, obs_array, snapshot_fields, state_array, Env, EnvRng, StepResult};
use crate::error::Result;
use crate::options::EnvOptions;
use crate::space::{Action, Space};

const MIN_POSITION: f64 = -1.2;
const MAX_POSITION: f64 = 0.6;
const MAX_SPEED: f64 = 0.07;
const GRAVITY: f64 = 0.0025;
/// Reset draws the position uniformly from this interval, with zero velocity.
pub const RESET_POSITION: (f64, f64) = (-0.6, -0.4);

fn observation_space() -> Space {
    Space::box_from_bounds(vec![MIN_POSITION as f32, -MAX_SPEED as f32], vec![MAX_POSITION as f32, MAX_SPEED as f32])
}

fn draw_start(rng: &mut EnvRng, seed: Option<u64>) -> [f64; 2] {
    [rng.reseed(seed).random_range(RESET_POSITION.0..RESET_POSITION.1), 0.0]
}

/// Discrete MountainCar: actions push left, do nothing, push right; −1 per step.
#[derive(Debug, Clone)]
pub struct MountainCar {
    state: Option<[f64; 2]>,
    goal_velocity: f64,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl MountainCar {
    const FORCE: f64 = 0.001;
    const GOAL_POSITION: f64 = 0.5;

    /// Builds the env; option `goal_velocity` (float, default 0) as in Gymnasium.
    pub fn new(options: &mut EnvOptions) -> Result<Self> {
        Ok(MountainCar {
            state: None,
            goal_velocity: options.float("goal_velocity", 0.0)?,
            rng: EnvRng::from_entropy(),
            observation_space: observation_space(),
            action_space: Space::discrete(3),
        })
    }
}

impl Env for MountainCar {
    snapshot_fields!(state, rng);

    crate::env::space_fields!("MountainCar");

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        let state = draw_start(&mut self.rng, seed);
        self.reset_to_state(&state, obs)
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        let state = state_array::<2>(self.name(), state)?;
        *obs_array::<2>(obs)? = state.map(|x| x as f32);
        self.state = Some(state);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let a = self.action_space.discrete_action(action)?;
        let [mut position, mut velocity] = self.state.ok_or_else(|| needs_reset("MountainCar"))?;
        velocity += (a - 1) as f64 * Self::FORCE + (3.0 * position).cos() * -GRAVITY;
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= Self::GOAL_POSITION && velocity >= self.goal_velocity;
        let state = [position, velocity];
        *obs_array::<2>(obs)? = state.map(|x| x as f32);
        self.state = Some(state);
        Ok(StepResult { reward: -1.0, terminated, truncated: false })
    }
}

/// Continuous MountainCar: the action is a force in [−1, 1]; +100 at the goal minus 0.1·a² per step.
#[derive(Debug, Clone)]
pub struct MountainCarContinuous {
    state: Option<[f64; 2]>,
    /// True until the first step after a reset: Gymnasium's state is `f64` until then, `f32` after.
    fresh: bool,
    goal_velocity: f64,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl MountainCarContinuous {
    const POWER: f32 = 0.0015;
    const GOAL_POSITION: f64 = 0.45;

    /// Builds the env; option `goal_velocity` (float, default 0) as in Gymnasium.
    pub fn new(options: &mut EnvOptions) -> Result<Self> {
        Ok(MountainCarContinuous {
            state: None,
            fresh: true,
            goal_velocity: options.float("goal_velocity", 0.0)?,
            rng: EnvRng::from_entropy(),
            observation_space: observation_space(),
            action_space: Space::box_uniform(-1.0, 1.0, vec![1]),
        })
    }
}

/// Rounds to `f32` when NumPy would be computing in `f32` at this point.
fn round_if(f32_arithmetic: bool, x: f64) -> f64 {
    if f32_arithmetic {
        x as f32 as f64
    } else {
        x
    }
}

impl Env for MountainCarContinuous {
    snapshot_fields!(state, fresh, rng);

    crate::env::space_fields!("MountainCarContinuous");

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        let state = draw_start(&mut self.rng, seed);
        self.reset_to_state(&state, obs)
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        let state = state_array::<2>(self.name(), state)?;
        *obs_array::<2>(obs)? = state.map(|x| x as f32);
        self.state = Some(state);
        self.fresh = true;
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let a = self.action_space.continuous_action(action)?[0];
        let [mut position, mut velocity] = self.state.ok_or_else(|| needs_reset("MountainCarContinuous"))?;
        let stored_f32 = !self.fresh;
        // `force * power - 0.0025 * cos(3x)` is f32 arithmetic (the force is the f32 action);
        // `3x` is f32 too once the state has been stored as f32.
        let three_x = round_if(stored_f32, 3.0 * position);
        let dv = (a * Self::POWER - (0.0025 * three_x.cos()) as f32) as f64;
        velocity = round_if(stored_f32, velocity + dv).clamp(-MAX_SPEED, MAX_SPEED);
        position = round_if(stored_f32, position + velocity).clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= Self::GOAL_POSITION && velocity >= self.goal_velocity;
        let reward = if terminated { 100.0 } else { 0.0 } - (a as f64).powi(2) * 0.1;
        let state = [position as f32 as f64, velocity as f32 as f64];
        *obs_array::<2>(obs)? = state.map(|x| x as f32);
        self.state = Some(state);
        self.fresh = false;
        Ok(StepResult { reward, terminated, truncated: false })
    }
}
