//! V-trace (Espeholt et al., 2018, section 4.1): value targets and policy-gradient advantages
//! for a trajectory collected by a behaviour policy μ older than the learner's π.
//!
//! With `ρ_t = min(ρ̄, π(a_t|x_t)/μ(a_t|x_t))`, `c_t = min(c̄, π/μ)` and
//! `δ_t = ρ_t·(r_t + γ_t·V(x_{t+1}) − V(x_t))`, the n-step target of state `x_s` is
//!
//! ```text
//! v_s = V(x_s) + Σ_{t=s}^{s+n−1} (Π_{i=s}^{t−1} γ_i·c_i) · δ_t        (the paper's eq. 1)
//!     = V(x_s) + δ_s + γ_s·c_s·(v_{s+1} − V(x_{s+1}))                    (its recursion)
//! ```
//!
//! and the policy gradient uses `min(ρ̄_pg, π/μ)·(r_s + γ_s·v_{s+1} − V(x_s))`. On-policy
//! (π = μ, ρ̄ and c̄ ≥ 1) `v_s` is the n-step return bootstrapped at the trajectory's end.
//! The paper's remark on λ-returns is the option `λ`: `c_t = λ·min(c̄, π/μ)`, which on-policy
//! makes `v_s` the λ-return (GAE's target) — λ = 1 is the paper's V-trace.
//!
//! Episode boundaries inside a trajectory: each step carries its own next-state value
//! `V(x'_t)` (the episode's final observation where it ended, so a time-limit truncation
//! bootstraps from the state it stopped in) and its discount `γ_t` (0 where the episode
//! terminated); where an episode ended, the trace is cut — the next row's state belongs to
//! another episode — and `v_{t+1}` is `V(x'_t)`.

/// One trajectory of `T` steps of one env, in time order.
#[derive(Debug, Clone, Copy)]
pub struct Trajectory<'a> {
    /// `log π(a_t|x_t) − log μ(a_t|x_t)`.
    pub log_rhos: &'a [f32],
    pub rewards: &'a [f32],
    /// `γ_t`: γ, or 0 where the episode terminated at step t.
    pub discounts: &'a [f32],
    /// 1 where the episode ended (terminated or truncated) at step t: the trace stops there.
    pub ends: &'a [f32],
    /// `V(x_t)` under the learner's value function.
    pub values: &'a [f32],
    /// `V(x'_t)`: the value of the state step t led to.
    pub next_values: &'a [f32],
}

/// The truncation levels ρ̄ (value targets), c̄ (trace) and ρ̄_pg (policy gradient), and the
/// trace's λ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clips {
    pub rho: f64,
    pub c: f64,
    pub pg_rho: f64,
    pub lambda: f64,
}

/// Writes the targets `v_s` into `targets` and the policy-gradient advantages into
/// `advantages` (both of length `T`), by the recursion, from the last step back.
pub fn vtrace(traj: Trajectory<'_>, clips: Clips, targets: &mut [f32], advantages: &mut [f32]) {
    // `acc` is v_{t+1} − V(x_{t+1}) for the row after t, zero past the trajectory's end.
    let mut acc = 0.0f64;
    for t in (0..traj.rewards.len()).rev() {
        let ratio = (traj.log_rhos[t] as f64).exp();
        let (value, next_value) = (traj.values[t] as f64, traj.next_values[t] as f64);
        let (reward, discount) = (traj.rewards[t] as f64, traj.discounts[t] as f64);
        // The next state's target: V(x'_t) plus the correction carried back from t + 1,
        // unless the episode ended here.
        let next_target = next_value + (1.0 - traj.ends[t] as f64) * acc;
        let delta = ratio.min(clips.rho) * (reward + discount * next_value - value);
        acc = delta + discount * clips.lambda * ratio.min(clips.c) * (1.0 - traj.ends[t] as f64) * acc;
        targets[t] = (value + acc) as f32;
        advantages[t] = (ratio.min(clips.pg_rho) * (reward + discount * next_target - value)) as f32;
    }
}
