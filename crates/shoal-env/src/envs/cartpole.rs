//! CartPole-v1: balance a pole on a cart (Barto, Sutton & Anderson, 1983).
//!
//! Mirrors `gymnasium/envs/classic_control/cartpole.py` operation for operation: the state is
//! kept in `f64` and rounded to `f32` only in the observation, exactly as Gymnasium does.

mod lanes;
mod sin_cos;

pub use lanes::CartPoleLanes;

use rand::Rng;

use crate::env::{needs_reset, obs_array, snapshot_fields, state_array, Env, EnvRng, StepResult};
use crate::error::Result;
use crate::options::EnvOptions;
use crate::space::{Action, Space};

const GRAVITY: f64 = 9.8;
const MASS_CART: f64 = 1.0;
const MASS_POLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASS_POLE + MASS_CART;
/// Half the pole's length.
const LENGTH: f64 = 0.5;
const POLE_MASS_LENGTH: f64 = MASS_POLE * LENGTH;
const FORCE_MAG: f64 = 10.0;
/// Seconds between state updates.
const TAU: f64 = 0.02;
const THETA_THRESHOLD: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
const X_THRESHOLD: f64 = 2.4;
/// Reset draws every state variable uniformly from this interval.
pub const RESET_BOUND: f64 = 0.05;

/// The cart-pole system. State: cart position, cart velocity, pole angle, pole angular velocity.
#[derive(Debug, Clone)]
pub struct CartPole {
    state: Option<[f64; 4]>,
    sutton_barto_reward: bool,
    /// Steps taken since the episode terminated (Gymnasium's `steps_beyond_terminated`).
    steps_beyond_terminated: Option<u32>,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl CartPole {
    /// Builds the env; option `sutton_barto_reward` (bool) switches to the 0 / −1 reward.
    pub fn new(options: &mut EnvOptions) -> Result<Self> {
        let sutton_barto_reward = options.bool("sutton_barto_reward", false)?;
        let high = [(X_THRESHOLD * 2.0) as f32, f32::INFINITY, (THETA_THRESHOLD * 2.0) as f32, f32::INFINITY];
        Ok(CartPole {
            state: None,
            sutton_barto_reward,
            steps_beyond_terminated: None,
            rng: EnvRng::from_entropy(),
            observation_space: Space::box_from_bounds(high.map(|h| -h).to_vec(), high.to_vec()),
            action_space: Space::discrete(2),
        })
    }

    fn write_obs(state: &[f64; 4], obs: &mut [f32]) -> Result<()> {
        *obs_array::<4>(obs)? = state.map(|x| x as f32);
        Ok(())
    }
}

/// Reset's start state: every variable uniform in ±[`RESET_BOUND`], drawn in order.
fn initial_state(rng: &mut impl Rng) -> [f64; 4] {
    std::array::from_fn(|_| rng.random_range(-RESET_BOUND..RESET_BOUND))
}

/// One step of the dynamics (Gymnasium's `step`, operation for operation, explicit Euler, its
/// default `kinematics_integrator`), given θ's sine and cosine. Shared by [`CartPole`] and
/// [`CartPoleLanes`], whose vector loop inlines it: both round identically by construction.
#[inline(always)]
fn advance([x, x_dot, theta, theta_dot]: [f64; 4], push_right: bool, sintheta: f64, costheta: f64) -> [f64; 4] {
    let force = if push_right { FORCE_MAG } else { -FORCE_MAG };
    let temp = (force + POLE_MASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS;
    let thetaacc = (GRAVITY * sintheta - costheta * temp)
        / (LENGTH * (4.0 / 3.0 - MASS_POLE * (costheta * costheta) / TOTAL_MASS));
    let xacc = temp - POLE_MASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
    [x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc]
}

/// The pole fell past 12° or the cart left the track.
#[inline(always)]
fn is_terminal(state: &[f64; 4]) -> bool {
    state[0] < -X_THRESHOLD || state[0] > X_THRESHOLD || state[2] < -THETA_THRESHOLD || state[2] > THETA_THRESHOLD
}

/// The step's reward, counting steps past termination as Gymnasium does.
fn reward(terminated: bool, steps_beyond_terminated: &mut Option<u32>, sutton_barto_reward: bool) -> f64 {
    if !terminated {
        if sutton_barto_reward {
            0.0
        } else {
            1.0
        }
    } else if steps_beyond_terminated.is_none() {
        *steps_beyond_terminated = Some(0);
        if sutton_barto_reward {
            -1.0
        } else {
            1.0
        }
    } else {
        // Stepping past termination is undefined in Gymnasium; it pays nothing (or −1).
        *steps_beyond_terminated = steps_beyond_terminated.map(|n| n + 1);
        if sutton_barto_reward {
            -1.0
        } else {
            0.0
        }
    }
}

impl Env for CartPole {
    snapshot_fields!(state, steps_beyond_terminated, rng);

    crate::env::space_fields!("CartPole");

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        let state = initial_state(self.rng.reseed(seed));
        self.reset_to_state(&state, obs)
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        let state = state_array::<4>(self.name(), state)?;
        Self::write_obs(&state, obs)?;
        self.state = Some(state);
        self.steps_beyond_terminated = None;
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let push_right = self.action_space.discrete_action(action)? == 1;
        let state = self.state.ok_or_else(|| needs_reset("CartPole"))?;
        let (sintheta, costheta) = state[2].sin_cos();
        let state = advance(state, push_right, sintheta, costheta);
        Self::write_obs(&state, obs)?;
        self.state = Some(state);
        let terminated = is_terminal(&state);
        let reward = reward(terminated, &mut self.steps_beyond_terminated, self.sutton_barto_reward);
        Ok(StepResult { reward, terminated, truncated: false })
    }
}
