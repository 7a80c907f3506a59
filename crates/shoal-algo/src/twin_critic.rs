//! The networks the off-policy continuous-control algorithms (SAC, TD3) share: two critics
//! `Q_i(s, a)` over `[obs | action]` rows with Polyak-averaged targets (Fujimoto et al.'s
//! clipped double Q), the actor's construction, the rescaling of actions between [−1, 1] and
//! the env's bounds, and the `[actor | critics]` vector actors and averaging workers share.

use std::collections::HashMap;
use std::path::Path;

use rand::Rng;
use shoal_dist::replay::Transitions;
use shoal_env::Space;
use shoal_nn::mlp::{Mlp, MlpWorkspace};
use shoal_nn::parallel::{run_pair, Helper};
use shoal_nn::{io, Adam, ParamLayout};

use crate::config::NetConfig;
use crate::error::{config_err, AlgoError, Result};

/// An actor network `obs_dim → hidden… → output` in its own flat vector, initialized with a
/// small output gain (near-zero initial actions).
pub(crate) fn actor(
    obs_dim: usize,
    output: usize,
    net: &NetConfig,
    section: &str,
    rng: &mut impl Rng,
) -> Result<(Mlp, ParamLayout, Vec<f32>)> {
    let mut layout = ParamLayout::new();
    let mlp = mlp(&mut layout, "actor", obs_dim, output, net, section)?;
    let mut params = vec![0.0; layout.len()];
    mlp.init(&mut params, 2f64.sqrt(), 0.01, rng);
    Ok((mlp, layout, params))
}

/// A network `input → hidden… → output` of `net`'s activation (no output activation).
fn mlp(
    layout: &mut ParamLayout,
    prefix: &str,
    input: usize,
    output: usize,
    net: &NetConfig,
    section: &str,
) -> Result<Mlp> {
    let sizes: Vec<usize> =
        std::iter::once(input).chain(net.hidden.iter().copied()).chain(std::iter::once(output)).collect();
    net.without_encoder(section)?;
    Ok(Mlp::new(layout, prefix, &sizes, net.activation(section)?, false))
}

/// Twin critics in one flat vector (one Adam steps both), their target copy, and buffers.
pub(crate) struct TwinCritic {
    q1: Mlp,
    q2: Mlp,
    layout: ParamLayout,
    params: Vec<f32>,
    grads: Vec<f32>,
    opt: Adam<f32>,
    target: Vec<f32>,
    obs_dim: usize,
    act_dim: usize,
    /// `[rows, obs_dim + act_dim]`: what a critic reads.
    input: Vec<f32>,
    q1_ws: MlpWorkspace<f32>,
    q2_ws: MlpWorkspace<f32>,
    /// Per row of the actor's loss: whether Q_1 (rather than Q_2) gave the value.
    from_q1: Vec<bool>,
    /// Next-state values of [`TwinCritic::online_td_errors`].
    scratch_values: Vec<f32>,
    /// The second thread Q_2 runs on beside Q_1 (`net.threads = 2`); the learner's actor
    /// borrows it between critic passes ([`TwinCritic::helper`]).
    helper: Option<Helper>,
}

/// How one critic step is taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CriticStep<'a> {
    /// Both critics (clipped double Q) or Q_1 alone (DDPG).
    pub twin: bool,
    /// Importance weights per row (a prioritized sample), or none (uniform).
    pub weights: Option<&'a [f32]>,
    pub lr: f32,
    /// The config key of `lr`, named when the loss diverges.
    pub lr_key: &'static str,
}

impl TwinCritic {
    pub fn new(
        obs_dim: usize,
        act_dim: usize,
        net: &NetConfig,
        section: &str,
        adam_eps: f64,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let threads = net.threads(section)?;
        let mut layout = ParamLayout::new();
        let q1 = mlp(&mut layout, "q1", obs_dim + act_dim, 1, net, section)?;
        let q2 = mlp(&mut layout, "q2", obs_dim + act_dim, 1, net, section)?;
        let mut params = vec![0.0; layout.len()];
        // Each network initializes only its own tensors of the shared vector.
        q1.init(&mut params, 2f64.sqrt(), 1.0, rng);
        q2.init(&mut params, 2f64.sqrt(), 1.0, rng);
        Ok(TwinCritic {
            grads: vec![0.0; params.len()],
            opt: Adam::new(params.len(), 0.9, 0.999, adam_eps),
            target: params.clone(),
            params,
            q1,
            q2,
            layout,
            obs_dim,
            act_dim,
            input: Vec::new(),
            q1_ws: MlpWorkspace::default(),
            q2_ws: MlpWorkspace::default(),
            from_q1: Vec::new(),
            scratch_values: Vec::new(),
            helper: (threads > 1).then(Helper::new),
        })
    }

    /// The second thread, if `net.threads = 2`: the critics' passes use it most, and the
    /// actor's forward and backward passes, which run between them, borrow it.
    pub fn helper(&mut self) -> Option<&mut Helper> {
        self.helper.as_mut()
    }

    /// The width of an action.
    pub fn act_dim(&self) -> usize {
        self.act_dim
    }

    /// Writes `[obs | actions]` rows as the critics' input.
    fn set_input(&mut self, obs: &[f32], actions: &[f32], rows: usize) {
        let (d, a) = (self.obs_dim, self.act_dim);
        self.input.resize(rows * (d + a), 0.0);
        for (r, row) in self.input.chunks_exact_mut(d + a).enumerate() {
            row[..d].copy_from_slice(&obs[r * d..(r + 1) * d]);
            row[d..].copy_from_slice(&actions[r * a..(r + 1) * a]);
        }
    }

    /// The target critics' `min(Q'_1, Q'_2)(s', a')` per row, or `Q'_1` alone without `twin`
    /// (DDPG).
    pub fn target_values(
        &mut self,
        next_obs: &[f32],
        next_actions: &[f32],
        rows: usize,
        twin: bool,
        out: &mut Vec<f32>,
    ) {
        self.values(true, next_obs, next_actions, rows, twin, out);
    }

    /// `min(Q_1, Q_2)(s, a)` per row (`Q_1` alone without `twin`) of the `target` critics or
    /// the online ones.
    fn values(&mut self, target: bool, obs: &[f32], actions: &[f32], rows: usize, twin: bool, out: &mut Vec<f32>) {
        self.set_input(obs, actions, rows);
        self.forward(target, rows, twin);
        out.clear();
        out.extend_from_slice(self.q1_ws.output());
        if twin {
            out.iter_mut().zip(self.q2_ws.output()).for_each(|(q, &q2)| *q = q.min(q2));
        }
    }

    /// Both critics (Q_1 alone without `twin`), the target or the online ones, forward on
    /// `self.input`, side by side with a helper thread.
    fn forward(&mut self, target: bool, rows: usize, twin: bool) {
        let params = if target { &self.target } else { &self.params };
        let (input, q1_ws, q2_ws) = (&self.input, &mut self.q1_ws, &mut self.q2_ws);
        let (q1, q2) = (&self.q1, &self.q2);
        if twin {
            run_pair(
                self.helper.as_mut(),
                || q1.forward(params, input, rows, q1_ws),
                || q2.forward(params, input, rows, q2_ws),
            );
        } else {
            q1.forward(params, input, rows, q1_ws);
        }
    }

    /// `|y − Q_1(s, a)|` per row of `batch` by the online critics alone, with
    /// `y = r + γᵏ(1 − d)·min_i Q_i(s', a')` for the given next actions: the priority an Ape-X
    /// actor, which has no target networks, gives a new transition.
    pub fn online_td_errors(&mut self, batch: &Transitions, next_actions: &[f32], twin: bool, out: &mut Vec<f32>) {
        let rows = batch.len();
        let mut next = std::mem::take(&mut self.scratch_values);
        self.values(false, &batch.next_obs, next_actions, rows, twin, &mut next);
        self.values(false, &batch.obs, &batch.actions, rows, false, out);
        for (i, q) in out.iter_mut().enumerate() {
            let y = batch.rewards[i] + batch.discounts[i] * (1.0 - batch.dones[i]) * next[i];
            *q = (y - *q).abs();
        }
        self.scratch_values = next;
    }

    /// One step on `½·Σ_i mean w·(Q_i(s, a) − y)²` (Q_1 alone without `twin`; `w` the
    /// importance weights of a prioritized sample, or 1); returns (loss, mean Q_1) and leaves
    /// `|Q_1 − y|` per row (the new priorities) in `td_abs`. A non-finite loss is
    /// [`AlgoError::Diverged`], naming `lr_key`.
    pub fn update(
        &mut self,
        batch: &Transitions,
        targets: &[f32],
        step: CriticStep<'_>,
        td_abs: &mut Vec<f32>,
    ) -> Result<(f64, f64)> {
        let rows = targets.len();
        self.set_input(&batch.obs, &batch.actions, rows);
        let scale = 1.0 / rows as f32;
        let weight = |i: usize| step.weights.map_or(1.0, |w| w[i]);
        let (params, input) = (&self.params, &self.input);
        // One critic's forward pass, loss and backward pass into its own (zeroed) gradient range.
        let critic_step = |net: &Mlp, ws: &mut MlpWorkspace<f32>, grads: &mut [f32], base: usize| {
            grads.fill(0.0);
            net.forward(params, input, rows, ws);
            let (q, grad) = ws.output_and_grad(rows, 1);
            let mut loss = 0.0f64;
            for (i, ((g, &q), &y)) in grad.iter_mut().zip(q).zip(targets).enumerate() {
                loss += 0.5 * weight(i) as f64 * ((q - y) as f64).powi(2) / rows as f64;
                *g = weight(i) * (q - y) * scale;
            }
            net.backward_from(params, grads, base, input, rows, ws, false);
            loss
        };
        let q2_start = self.q2.param_range().start;
        let (q1_grads, q2_grads) = self.grads.split_at_mut(q2_start);
        let (q1, q2, q1_ws, q2_ws) = (&self.q1, &self.q2, &mut self.q1_ws, &mut self.q2_ws);
        let (loss1, loss2) = if step.twin {
            run_pair(
                self.helper.as_mut(),
                || critic_step(q1, q1_ws, q1_grads, 0),
                || critic_step(q2, q2_ws, q2_grads, q2_start),
            )
        } else {
            q2_grads.fill(0.0);
            (critic_step(q1, q1_ws, q1_grads, 0), 0.0)
        };
        let loss = loss1 + loss2;
        td_abs.clear();
        td_abs.extend(self.q1_ws.output().iter().zip(targets).map(|(&q, &y)| (q - y).abs()));
        let lr_key = step.lr_key;
        if !loss.is_finite() {
            return Err(AlgoError::Diverged(format!(
                "the critic loss is {loss}; lower {lr_key} or check the env's rewards"
            )));
        }
        let mean_q = self.q1_ws.output().iter().map(|&v| v as f64).sum::<f64>() / rows as f64;
        self.opt.step_with(self.helper.as_mut(), &mut self.params, &self.grads, step.lr);
        Ok((loss, mean_q))
    }

    /// For an actor's loss `−mean Q(s, a)`: the Q used per row into `q_used` (min of both, or
    /// Q_1 alone without `twin`) and `∂(−mean Q)/∂a` into `d_actions` (`[rows, act_dim]`),
    /// backpropagated through whichever critic gave the row's value. The critics' own
    /// gradients are not touched.
    pub fn action_gradient(
        &mut self,
        obs: &[f32],
        actions: &[f32],
        rows: usize,
        twin: bool,
        q_used: &mut Vec<f32>,
        d_actions: &mut Vec<f32>,
    ) {
        let (d, a, scale) = (self.obs_dim, self.act_dim, 1.0 / rows as f32);
        self.set_input(obs, actions, rows);
        self.forward(false, rows, twin);
        q_used.clear();
        q_used.extend_from_slice(self.q1_ws.output());
        // Per row, which critic gives the value: Q_1 unless Q_2 is strictly smaller.
        self.from_q1.clear();
        self.from_q1.resize(rows, true);
        if twin {
            for ((q, &q2), from_q1) in q_used.iter_mut().zip(self.q2_ws.output()).zip(&mut self.from_q1) {
                *from_q1 = *q <= q2;
                *q = q.min(q2);
            }
        }
        let (params, input, from_q1) = (&self.params, &self.input, &self.from_q1);
        // `∂(−mean Q)/∂input` of the rows a critic gave the value of.
        let input_gradient = |first: bool, net: &Mlp, ws: &mut MlpWorkspace<f32>| {
            let grad = ws.output_grad(rows, 1);
            for (g, &q1_row) in grad.iter_mut().zip(from_q1) {
                *g = if q1_row == first { -scale } else { 0.0 };
            }
            net.backward_input(params, input, rows, ws);
        };
        let (q1, q2, q1_ws, q2_ws) = (&self.q1, &self.q2, &mut self.q1_ws, &mut self.q2_ws);
        if twin {
            run_pair(self.helper.as_mut(), || input_gradient(true, q1, q1_ws), || input_gradient(false, q2, q2_ws));
        } else {
            input_gradient(true, q1, q1_ws);
        }
        d_actions.clear();
        d_actions.resize(rows * a, 0.0);
        for ws in [&self.q1_ws, &self.q2_ws].into_iter().take(if twin { 2 } else { 1 }) {
            for (r, row) in ws.input_grad().chunks_exact(d + a).enumerate() {
                d_actions[r * a..(r + 1) * a].iter_mut().zip(&row[d..]).for_each(|(o, &g)| *o += g);
            }
        }
    }

    /// `θ' ← τθ + (1 − τ)θ'`.
    pub fn soft_update(&mut self, tau: f64) {
        soft_update(self.helper.as_mut(), &mut self.target, &self.params, tau);
    }

    /// Writes `critic.safetensors` (with Adam's state) and `critic_target.safetensors`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let meta = HashMap::new();
        io::save_flat(&dir.join("critic.safetensors"), &self.layout, &self.params, Some(&self.opt), &meta)?;
        io::save_flat(&dir.join("critic_target.safetensors"), &self.layout, &self.target, None, &meta)?;
        Ok(())
    }

    /// Restores what [`TwinCritic::save`] wrote.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        io::load_flat(&dir.join("critic.safetensors"), &self.layout, &mut self.params, Some(&mut self.opt))?;
        io::load_flat(&dir.join("critic_target.safetensors"), &self.layout, &mut self.target, None)?;
        Ok(())
    }
}

/// `target ← τ·online + (1 − τ)·target`, the second half on `helper` if there is one
/// (elementwise: the same bits).
pub(crate) fn soft_update(helper: Option<&mut Helper>, target: &mut [f32], online: &[f32], tau: f64) {
    let tau = tau as f32;
    let polyak = |target: &mut [f32], online: &[f32]| {
        target.iter_mut().zip(online).for_each(|(t, &o)| *t = tau * o + (1.0 - tau) * *t);
    };
    let half = target.len() / 2;
    let (t0, t1) = target.split_at_mut(half);
    let (o0, o1) = online.split_at(half);
    run_pair(helper, || polyak(t0, o0), || polyak(t1, o1));
}

/// A bounded Box action space: the agent acts in [−1, 1], the env in `[low, high]`.
pub(crate) struct ActionBounds {
    low: Vec<f32>,
    high: Vec<f32>,
}

impl ActionBounds {
    /// The bounds of `space`, or an error naming `section` and the env.
    pub fn of(space: &Space, section: &str, env_id: &str) -> Result<Self> {
        match space {
            Space::Box { low, high, .. } if low.iter().chain(high).all(|b| b.is_finite()) => {
                Ok(ActionBounds { low: low.clone(), high: high.clone() })
            }
            other => Err(config_err(format!(
                "{section} needs a bounded Box action space, but {env_id} has {other}; use algo = \"dqn\" or \"ppo\" for discrete actions"
            ))),
        }
    }

    pub fn dim(&self) -> usize {
        self.low.len()
    }

    /// Rescales actions in [−1, 1] (rows of `dim`) to the env's bounds.
    pub fn to_env(&self, squashed: &[f32], out: &mut [f32]) {
        let a = self.dim();
        for (i, (o, &x)) in out.iter_mut().zip(squashed).enumerate() {
            let (lo, hi) = (self.low[i % a], self.high[i % a]);
            *o = lo + 0.5 * (x + 1.0) * (hi - lo);
        }
    }
}

/// The layout of `[actor | critics]` as [`ContinuousLearner::published`] lays them out.
pub(crate) fn published_layout(actor: &ParamLayout, critic: &TwinCritic) -> ParamLayout {
    let mut layout = ParamLayout::new();
    for spec in actor.tensors().iter().chain(critic.layout.tensors()) {
        layout.push(spec.name.clone(), &spec.shape);
    }
    layout
}

/// `[actor | critics]` into `out`.
pub(crate) fn publish(actor: &[f32], critic: &TwinCritic, out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(actor);
    out.extend_from_slice(&critic.params);
}

/// Takes `[actor | critics]` back (the critics' targets are a learner's own).
pub(crate) fn take_published(params: &[f32], actor: &mut [f32], critic: &mut TwinCritic) {
    let (a, c) = params.split_at(actor.len());
    actor.copy_from_slice(a);
    critic.params.copy_from_slice(c);
}
