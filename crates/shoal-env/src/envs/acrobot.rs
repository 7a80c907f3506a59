//! Acrobot-v1: swing a two-link pendulum's tip above a line (Sutton, 1996; RLPy's dynamics).
//!
//! Mirrors `acrobot.py`: the "book" dynamics, one fourth-order Runge–Kutta step of 0.2 s per
//! action, angles wrapped to [−π, π] and velocities bounded after each step.

use std::f64::consts::PI;

use rand::Rng;

use crate::env::{needs_reset, obs_array, snapshot_fields, state_array, Env, EnvRng, StepResult};
use crate::error::Result;
use crate::options::EnvOptions;
use crate::space::{Action, Space};

const DT: f64 = 0.2;
const LINK_LENGTH_1: f64 = 1.0;
const LINK_MASS_1: f64 = 1.0;
const LINK_MASS_2: f64 = 1.0;
const LINK_COM_POS_1: f64 = 0.5;
const LINK_COM_POS_2: f64 = 0.5;
const LINK_MOI: f64 = 1.0;
const MAX_VEL_1: f64 = 4.0 * PI;
const MAX_VEL_2: f64 = 9.0 * PI;
const AVAIL_TORQUE: [f64; 3] = [-1.0, 0.0, 1.0];
/// Reset draws every state variable uniformly from this interval.
pub const RESET_BOUND: f64 = 0.1;

/// State: both joint angles and both angular velocities.
#[derive(Debug, Clone)]
pub struct Acrobot {
    state: Option<[f64; 4]>,
    rng: EnvRng,
    observation_space: Space,
    action_space: Space,
}

impl Acrobot {
    /// Builds the env (Acrobot has no options).
    pub fn new(_options: &mut EnvOptions) -> Result<Self> {
        let high = [1.0, 1.0, 1.0, 1.0, MAX_VEL_1 as f32, MAX_VEL_2 as f32];
        Ok(Acrobot {
            state: None,
            rng: EnvRng::from_entropy(),
            observation_space: Space::box_from_bounds(high.map(|h| -h).to_vec(), high.to_vec()),
            action_space: Space::discrete(3),
        })
    }

    fn write_obs(s: &[f64; 4], obs: &mut [f32]) -> Result<()> {
        let (sin0, cos0) = s[0].sin_cos();
        let (sin1, cos1) = s[1].sin_cos();
        *obs_array::<6>(obs)? = [cos0, sin0, cos1, sin1, s[2], s[3]].map(|x| x as f32);
        Ok(())
    }

    fn terminal(s: &[f64; 4]) -> bool {
        -s[0].cos() - (s[1] + s[0]).cos() > 1.0
    }
}

/// Time derivative of (θ₁, θ₂, θ̇₁, θ̇₂) under torque `a` on the second joint.
fn dsdt(s: &[f64; 4], a: f64) -> [f64; 4] {
    let (m1, m2, l1, lc1, lc2, i1, i2, g) =
        (LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2, LINK_MOI, LINK_MOI, 9.8);
    let [theta1, theta2, dtheta1, dtheta2] = *s;
    let d1 = m1 * lc1.powi(2) + m2 * (l1.powi(2) + lc2.powi(2) + 2.0 * l1 * lc2 * theta2.cos()) + i1 + i2;
    let d2 = m2 * (lc2.powi(2) + l1 * lc2 * theta2.cos()) + i2;
    let phi2 = m2 * lc2 * g * (theta1 + theta2 - PI / 2.0).cos();
    let phi1 = -m2 * l1 * lc2 * dtheta2.powi(2) * theta2.sin() - 2.0 * m2 * l1 * lc2 * dtheta2 * dtheta1 * theta2.sin()
        + (m1 * lc1 + m2 * l1) * g * (theta1 - PI / 2.0).cos()
        + phi2;
    let ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1.powi(2) * theta2.sin() - phi2)
        / (m2 * lc2.powi(2) + i2 - d2.powi(2) / d1);
    let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    [dtheta1, dtheta2, ddtheta1, ddtheta2]
}

/// One classic RK4 step of length `dt` (Gymnasium's `rk4` over `[0, dt]`).
fn rk4(y0: &[f64; 4], a: f64, dt: f64) -> [f64; 4] {
    let dt2 = dt / 2.0;
    let shifted = |k: &[f64; 4], h: f64| std::array::from_fn::<f64, 4, _>(|i| y0[i] + h * k[i]);
    let k1 = dsdt(y0, a);
    let k2 = dsdt(&shifted(&k1, dt2), a);
    let k3 = dsdt(&shifted(&k2, dt2), a);
    let k4 = dsdt(&shifted(&k3, dt), a);
    std::array::from_fn(|i| y0[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
}

/// Wraps `x` into `[lo, hi]` by whole periods, as Gymnasium's `wrap`.
fn wrap(mut x: f64, lo: f64, hi: f64) -> f64 {
    let diff = hi - lo;
    while x > hi {
        x -= diff;
    }
    while x < lo {
        x += diff;
    }
    x
}

impl Env for Acrobot {
    snapshot_fields!(state, rng);

    crate::env::space_fields!("Acrobot");

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        let rng = self.rng.reseed(seed);
        // Gymnasium casts the initial state to float32.
        let state: [f64; 4] = std::array::from_fn(|_| rng.random_range(-RESET_BOUND..RESET_BOUND) as f32 as f64);
        self.reset_to_state(&state, obs)
    }

    fn reset_to_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<()> {
        let state = state_array::<4>(self.name(), state)?;
        Self::write_obs(&state, obs)?;
        self.state = Some(state);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<StepResult> {
        let a = self.action_space.discrete_action(action)?;
        let s = self.state.ok_or_else(|| needs_reset("Acrobot"))?;
        let torque = AVAIL_TORQUE[a as usize];
        let mut ns = rk4(&s, torque, DT);
        ns[0] = wrap(ns[0], -PI, PI);
        ns[1] = wrap(ns[1], -PI, PI);
        ns[2] = ns[2].clamp(-MAX_VEL_1, MAX_VEL_1);
        ns[3] = ns[3].clamp(-MAX_VEL_2, MAX_VEL_2);
        Self::write_obs(&ns, obs)?;
        self.state = Some(ns);
        let terminated = Self::terminal(&ns);
        Ok(StepResult { reward: if terminated { 0.0 } else { -1.0 }, terminated, truncated: false })
    }
}
