//! CartPole as a structure of arrays: many envs stepped by one vector loop.
//!
//! `make_vec("CartPole-v1", …)` builds its vector env over a [`CartPoleLanes`] instead of a
//! `Vec` of envs. Each state variable is one contiguous `f64` array, so the dynamics (the
//! divisions, the Euler update, the termination test, the `f32` observation) run on four envs
//! per AVX2 instruction, eight per AVX-512 one (chosen at run time; two with the baseline
//! SSE2). θ's sine and cosine come from [`sin_cos`]: vector series where their result is
//! certain to be libm's, the libm that [`CartPole`] and Gymnasium's `math.sin` call elsewhere
//! (with FMA; per env through libm otherwise). The arithmetic is [`advance`] itself, inlined
//! into the loop, and no contraction into FMA happens (Rust never fuses on its own), so every
//! lane rounds exactly like the scalar env: the vector tests compare both bit for bit and the
//! parity suite replays Gymnasium's episodes through the lanes.
//!
//! Snapshots are per env and identical to `TimeLimit<CartPole>`'s, so a checkpoint taken with
//! one kind of vector env restores into the other.

use crate::env::{needs_reset, Env, EnvRng, Snapshot, StepResult};
use crate::error::{EnvError, Result};
use crate::options::EnvOptions;
use crate::space::{Action, Space};
use crate::vector::slice::{check_finite, check_snapshot_count, marked_lanes};
use crate::vector::{Actions, EnvSlice, Rows};
use crate::wrappers::TimeLimit;

use super::sin_cos::sin_cos_lanes;
use super::{advance, initial_state, is_terminal, reward, CartPole};

/// `num_envs` CartPoles with their time limit, one array per state variable.
#[derive(Debug, Clone)]
pub struct CartPoleLanes {
    x: Vec<f64>,
    x_dot: Vec<f64>,
    theta: Vec<f64>,
    theta_dot: Vec<f64>,
    /// θ's sine and cosine, per lane, for the step in progress (scratch).
    sin: Vec<f64>,
    cos: Vec<f64>,
    /// Which of them libm computes, per lane (scratch of [`sin_cos_lanes`]).
    trig_fallback: Vec<u8>,
    /// Whether the step in progress ended in a terminal state, per lane (scratch).
    terminal: Vec<bool>,
    /// Lanes whose step needs more than the common case — a pending reset, a terminal state,
    /// the time limit — and is recorded one lane at a time (scratch).
    special: Vec<bool>,
    /// Whether the lane has been reset (a CartPole's `state.is_some()`).
    started: Vec<bool>,
    steps_beyond_terminated: Vec<Option<u32>>,
    /// Steps into the episode, for the time limit (`TimeLimit`'s counter).
    elapsed: Vec<u64>,
    rngs: Vec<EnvRng>,
    max_episode_steps: Option<u64>,
    /// Spaces and options; also the shape of one lane as a [`CartPole`], for snapshots.
    template: CartPole,
}

impl CartPoleLanes {
    /// `num_envs` envs built with `options` as [`CartPole::new`] reads them, truncated after
    /// `max_episode_steps` when given (as `make` wraps a single env in `TimeLimit`).
    pub fn new(options: &mut EnvOptions, max_episode_steps: Option<u64>, num_envs: usize) -> Result<Self> {
        let template = CartPole::new(options)?;
        Ok(CartPoleLanes {
            x: vec![0.0; num_envs],
            x_dot: vec![0.0; num_envs],
            theta: vec![0.0; num_envs],
            theta_dot: vec![0.0; num_envs],
            sin: vec![0.0; num_envs],
            cos: vec![0.0; num_envs],
            trig_fallback: vec![0; num_envs],
            terminal: vec![false; num_envs],
            special: vec![false; num_envs],
            started: vec![false; num_envs],
            steps_beyond_terminated: vec![None; num_envs],
            elapsed: vec![0; num_envs],
            rngs: (0..num_envs).map(|_| EnvRng::from_entropy()).collect(),
            max_episode_steps,
            template,
        })
    }

    /// Starts lane `j` from `state` and writes its observation.
    fn start_lane(&mut self, j: usize, state: [f64; 4], obs: &mut [f32]) {
        [self.x[j], self.x_dot[j], self.theta[j], self.theta_dot[j]] = state;
        obs.copy_from_slice(&state.map(|v| v as f32));
        self.started[j] = true;
        self.steps_beyond_terminated[j] = None;
        self.elapsed[j] = 0;
    }

    fn reset_lane(&mut self, j: usize, seed: Option<u64>, obs: &mut [f32]) {
        let state = initial_state(self.rngs[j].reseed(seed));
        self.start_lane(j, state, obs);
    }

    /// Lane `j` as a stand-alone [`CartPole`] (for its snapshot).
    fn lane_env(&self, j: usize) -> CartPole {
        CartPole {
            state: self.started[j].then(|| [self.x[j], self.x_dot[j], self.theta[j], self.theta_dot[j]]),
            steps_beyond_terminated: self.steps_beyond_terminated[j],
            rng: self.rngs[j].clone(),
            ..self.template.clone()
        }
    }

    /// Takes lane `j`'s state from a stand-alone [`CartPole`] (a restored snapshot).
    fn load_lane(&mut self, j: usize, env: &CartPole) {
        self.started[j] = env.state.is_some();
        [self.x[j], self.x_dot[j], self.theta[j], self.theta_dot[j]] = env.state.unwrap_or_default();
        self.steps_beyond_terminated[j] = env.steps_beyond_terminated;
        self.rngs[j] = env.rng.clone();
    }

    /// The actions as CartPole's 0/1, with a single env's errors: the wrong kind of action, a
    /// value outside the space, a step before the first reset. Envs waiting for a next-step
    /// reset ignore their action, as in the `Vec` of envs.
    #[inline(always)]
    fn checked_actions<'a>(&self, actions: Actions<'a>, rows: &Rows<'_>) -> Result<&'a [i64]> {
        let space = &self.template.action_space;
        let Actions::Discrete(values) = actions else {
            return Err(space.kind_mismatch(actions.get(0, 1)));
        };
        // The common case in one vectorized pass; the loop below finds the culprit.
        let all_valid =
            values.iter().zip(&self.started).fold(true, |ok, (&a, &started)| ok & started & (a == 0 || a == 1));
        if all_valid {
            return Ok(values);
        }
        for (j, &action) in values.iter().enumerate().filter(|&(j, _)| !rows.reset_pending(j)) {
            if !self.started[j] {
                return Err(needs_reset("CartPole"));
            }
            if action != 0 && action != 1 {
                space.discrete_action(Action::Discrete(action))?;
            }
        }
        Ok(values)
    }

    /// One step of every lane: the vector passes (actions, dynamics, finiteness, the common
    /// case's bookkeeping), then the special lanes one at a time. `fma`: compiled with FMA,
    /// so θ's sine and cosine can take the vector series.
    #[inline(always)]
    fn step_lanes(&mut self, actions: Actions<'_>, first_index: usize, mut rows: Rows<'_>, fma: bool) -> Result<()> {
        let push_right = self.checked_actions(actions, &rows)?;
        self.advance_all(push_right, rows.all_obs(), fma);
        self.check_finite(&mut rows, first_index)?;
        self.mark_special(&rows);
        let alive_reward = reward(false, &mut None, self.template.sutton_barto_reward);
        rows.record_ongoing_steps(alive_reward, &self.special);
        // Taken out while the lanes change (no `?` in the loop: it is always put back).
        let special = std::mem::take(&mut self.special);
        for j in marked_lanes(&special) {
            if rows.take_pending_reset(j) {
                self.reset_lane(j, None, rows.obs(j));
                continue;
            }
            let terminated = self.terminal[j];
            let reward = reward(terminated, &mut self.steps_beyond_terminated[j], self.template.sutton_barto_reward);
            let truncated = self.max_episode_steps.is_some_and(|limit| self.elapsed[j] >= limit);
            if rows.record_step(j, StepResult { reward, terminated, truncated }) {
                self.reset_lane(j, None, rows.obs(j));
            }
        }
        self.special = special;
        Ok(())
    }

    /// [`CartPoleLanes::step_lanes`] compiled for AVX2 and FMA: four `f64` lanes per
    /// instruction. (FMA only serves the sine and cosine; the dynamics are never contracted.)
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn step_avx2(&mut self, actions: Actions<'_>, first_index: usize, rows: Rows<'_>) -> Result<()> {
        self.step_lanes(actions, first_index, rows, true)
    }

    /// [`CartPoleLanes::step_lanes`] compiled for AVX-512: eight `f64` lanes per instruction,
    /// the same operations (no contraction), so the same bits.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, DQ, VL and BW, and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
    unsafe fn step_avx512(&mut self, actions: Actions<'_>, first_index: usize, rows: Rows<'_>) -> Result<()> {
        self.step_lanes(actions, first_index, rows, true)
    }

    /// Counts the step against the time limit and marks the lanes that need the one-by-one
    /// path: a pending reset, a terminal state or the limit reached. (A lane that resets
    /// instead of stepping has its counter cleared by the reset.)
    #[inline(always)]
    fn mark_special(&mut self, rows: &Rows<'_>) {
        let limit = self.max_episode_steps.unwrap_or(u64::MAX);
        let n = self.num_envs();
        let (elapsed, terminal, special) = (&mut self.elapsed[..n], &self.terminal[..n], &mut self.special[..n]);
        let pending = &rows.pending_reset[..n];
        for j in 0..n {
            elapsed[j] += 1;
            special[j] = terminal[j] | (elapsed[j] >= limit) | pending[j];
        }
    }

    /// A non-finite observation (only from a state restored or set out of range) is an error
    /// naming the first lane that has one, as in the `Vec` of envs.
    #[inline(always)]
    fn check_finite(&self, rows: &mut Rows<'_>, first_index: usize) -> Result<()> {
        if rows.all_obs().iter().fold(true, |finite, v| finite & v.is_finite()) {
            return Ok(());
        }
        for j in 0..self.num_envs() {
            if !rows.reset_pending(j) {
                check_finite("CartPole", 0.0, rows.obs(j), first_index + j)?;
            }
        }
        Ok(())
    }

    /// Advances every lane one step and writes its observation and whether it terminated.
    #[inline(always)]
    fn advance_all(&mut self, push_right: &[i64], obs: &mut [f32], fma: bool) {
        sin_cos_lanes(&self.theta, &mut self.sin, &mut self.cos, &mut self.trig_fallback, fma);
        let lanes = Arrays {
            x: &mut self.x,
            x_dot: &mut self.x_dot,
            theta: &mut self.theta,
            theta_dot: &mut self.theta_dot,
            sin: &self.sin,
            cos: &self.cos,
            terminal: &mut self.terminal,
        };
        lanes.advance(push_right, obs);
    }
}

/// The arrays the vector loop reads and writes, borrowed apart from the rest of the lanes.
struct Arrays<'a> {
    x: &'a mut [f64],
    x_dot: &'a mut [f64],
    theta: &'a mut [f64],
    theta_dot: &'a mut [f64],
    sin: &'a [f64],
    cos: &'a [f64],
    terminal: &'a mut [bool],
}

impl Arrays<'_> {
    /// The loop over lanes; every slice is cut to the same length first, so the compiler drops
    /// the bounds checks and vectorizes it.
    #[inline(always)]
    fn advance(self, push_right: &[i64], obs: &mut [f32]) {
        let n = self.x.len();
        let (x, x_dot, theta, theta_dot) =
            (self.x, &mut self.x_dot[..n], &mut self.theta[..n], &mut self.theta_dot[..n]);
        let (sin, cos, terminal, push_right) =
            (&self.sin[..n], &self.cos[..n], &mut self.terminal[..n], &push_right[..n]);
        let obs = &mut obs[..4 * n];
        for i in 0..n {
            let state = advance([x[i], x_dot[i], theta[i], theta_dot[i]], push_right[i] == 1, sin[i], cos[i]);
            [x[i], x_dot[i], theta[i], theta_dot[i]] = state;
            obs[4 * i..4 * i + 4].copy_from_slice(&state.map(|v| v as f32));
            terminal[i] = is_terminal(&state);
        }
    }
}

impl EnvSlice for CartPoleLanes {
    fn num_envs(&self) -> usize {
        self.rngs.len()
    }

    fn split_off(&mut self, at: usize) -> Self {
        CartPoleLanes {
            x: self.x.split_off(at),
            x_dot: self.x_dot.split_off(at),
            theta: self.theta.split_off(at),
            theta_dot: self.theta_dot.split_off(at),
            sin: self.sin.split_off(at),
            cos: self.cos.split_off(at),
            trig_fallback: self.trig_fallback.split_off(at),
            terminal: self.terminal.split_off(at),
            special: self.special.split_off(at),
            started: self.started.split_off(at),
            steps_beyond_terminated: self.steps_beyond_terminated.split_off(at),
            elapsed: self.elapsed.split_off(at),
            rngs: self.rngs.split_off(at),
            max_episode_steps: self.max_episode_steps,
            template: self.template.clone(),
        }
    }

    fn spaces(&self) -> Result<(Space, Space)> {
        if self.num_envs() == 0 {
            return Err(EnvError::SpaceMismatch("a vector env needs at least one env".into()));
        }
        Ok((self.template.observation_space.clone(), self.template.action_space.clone()))
    }

    fn reset(&mut self, seed: Option<u64>, first_index: usize, mut rows: Rows<'_>) -> Result<()> {
        for j in 0..self.num_envs() {
            self.reset_lane(j, seed.map(|s| s.wrapping_add((first_index + j) as u64)), rows.obs(j));
        }
        rows.clear();
        Ok(())
    }

    fn step(&mut self, actions: Actions<'_>, _per_env: usize, first_index: usize, rows: Rows<'_>) -> Result<()> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512dq") && has!("avx512vl") && has!("avx512bw") && has!("fma") {
                // SAFETY: the CPU has these features, checked just above.
                return unsafe { self.step_avx512(actions, first_index, rows) };
            }
            if has!("avx2") && has!("fma") {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                return unsafe { self.step_avx2(actions, first_index, rows) };
            }
        }
        self.step_lanes(actions, first_index, rows, false)
    }

    fn snapshots(&self) -> Result<Vec<Snapshot>> {
        (0..self.num_envs())
            .map(|j| match self.max_episode_steps {
                Some(limit) => TimeLimit::resume(self.lane_env(j), limit, self.elapsed[j]).snapshot(),
                None => self.lane_env(j).snapshot(),
            })
            .collect()
    }

    fn restore(&mut self, snapshots: &[Snapshot]) -> Result<()> {
        check_snapshot_count(snapshots, self.num_envs())?;
        for (j, snapshot) in snapshots.iter().enumerate() {
            let mut env = self.lane_env(j);
            match self.max_episode_steps {
                Some(limit) => {
                    let mut limited = TimeLimit::new(env, limit);
                    limited.restore(snapshot)?;
                    self.elapsed[j] = limited.elapsed_steps();
                    self.load_lane(j, limited.inner());
                }
                None => {
                    env.restore(snapshot)?;
                    self.load_lane(j, &env);
                }
            }
        }
        Ok(())
    }
}
