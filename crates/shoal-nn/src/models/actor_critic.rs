//! An actor-critic: a policy head and a value head, on separate MLPs or a shared trunk —
//! over the observation, or over the features of a convolutional encoder both share (image
//! observations).

use crate::activation::Activation;
use crate::conv::{ConvEncoder, EncoderConfig, EncoderWorkspace};
use crate::error::{check_len, NnError, Result};
use crate::layout::ParamLayout;
use crate::loss::{distill_kl, policy_loss, value_loss, PolicySamples, PolicyStats};
use crate::mlp::{backward_two_heads, Mlp, MlpWorkspace};
use crate::model::{DistillBatch, Loss, LossStats, Model, Outputs, PolicyGradientBatch};
use crate::parallel::{run_pair, Helper};
use crate::policy::PolicyHead;
use crate::scalar::Scalar;

use super::{check_sizes, encode, init_rng, HIDDEN_GAIN};

/// The shape of an [`ActorCritic`].
#[derive(Debug, Clone, PartialEq)]
pub struct ActorCriticConfig {
    pub obs_dim: usize,
    pub head: PolicyHead,
    /// Hidden layer widths, e.g. `[64, 64]`.
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// One trunk for both heads (fewer parameters) instead of separate actor and critic MLPs
    /// (CleanRL's and SB3's default for PPO on vector observations).
    pub shared_trunk: bool,
    /// Initial log-std of a Gaussian policy.
    pub init_log_std: f64,
    /// Convolutions the observation (an image of `obs_dim` values) passes through first,
    /// shared by policy and value (tensors `encoder.*`).
    pub encoder: Option<EncoderConfig>,
    /// Fixes the initial parameters.
    pub seed: u64,
}

#[derive(Debug, Clone)]
enum Body {
    /// Tensors `actor.*` and `critic.*`.
    Separate { actor: Mlp, critic: Mlp },
    /// Tensors `trunk.*`, `policy.*`, `value.*`.
    Shared { trunk: Mlp, policy: Mlp, value: Mlp },
}

/// Policy and value function over one flat parameter vector.
#[derive(Debug, Clone)]
pub struct ActorCritic<T> {
    config: ActorCriticConfig,
    layout: ParamLayout,
    params: Vec<T>,
    grads: Vec<T>,
    body: Body,
    /// Where the Gaussian log-std lives (tensor `log_std`).
    log_std: Option<std::ops::Range<usize>>,
    /// Workspaces: actor | trunk, critic | policy head, value head.
    ws: [MlpWorkspace<T>; 3],
    encoder: Option<ConvEncoder>,
    encoder_ws: EncoderWorkspace<T>,
    /// `∂L/∂features`: the sum of the actor's and the critic's input gradients.
    d_features: Vec<T>,
    /// The second thread separate actor and critic run on ([`ActorCritic::set_threads`]).
    helper: Option<Helper>,
    /// With a shared trunk and 2 threads: the buffers the second half of each minibatch
    /// writes (see [`GradientStep::shared_split`]).
    replica: Option<Box<Replica<T>>>,
}

/// The gradient and workspaces of the second thread's half of a data-parallel step.
#[derive(Debug, Clone)]
struct Replica<T> {
    grads: Vec<T>,
    ws: [MlpWorkspace<T>; 3],
    encoder_ws: EncoderWorkspace<T>,
    d_features: Vec<T>,
}

impl<T: Scalar> ActorCritic<T> {
    pub fn new(config: ActorCriticConfig) -> Result<Self> {
        let out = config.head.out_dim();
        check_sizes("actor-critic", &[&[config.obs_dim, out][..], &config.hidden].concat())?;
        let mut layout = ParamLayout::new();
        let encoder = super::build_encoder(&mut layout, config.encoder.as_ref(), config.obs_dim)?;
        let features = encoder.as_ref().map_or(config.obs_dim, ConvEncoder::out_len);
        let sizes = |last: usize| [&[features][..], &config.hidden, &[last]].concat();
        let body = if config.shared_trunk {
            if config.hidden.is_empty() {
                return Err(NnError::Config("a shared trunk needs at least one hidden layer".into()));
            }
            let width = *config.hidden.last().unwrap_or(&features);
            Body::Shared {
                trunk: Mlp::new(
                    &mut layout,
                    "trunk",
                    &[&[features][..], &config.hidden].concat(),
                    config.activation,
                    true,
                ),
                policy: Mlp::new(&mut layout, "policy", &[width, out], config.activation, false),
                value: Mlp::new(&mut layout, "value", &[width, 1], config.activation, false),
            }
        } else {
            Body::Separate {
                actor: Mlp::new(&mut layout, "actor", &sizes(out), config.activation, false),
                critic: Mlp::new(&mut layout, "critic", &sizes(1), config.activation, false),
            }
        };
        let log_std = match config.head {
            PolicyHead::Gaussian { dim } => {
                let start = layout.push("log_std", &[dim]);
                Some(start..start + dim)
            }
            PolicyHead::Categorical { .. } => None,
        };
        let mut params = vec![T::zero(); layout.len()];
        let mut rng = init_rng(config.seed);
        if let Some(encoder) = &encoder {
            encoder.init(&mut params, HIDDEN_GAIN, &mut rng);
        }
        match &body {
            Body::Separate { actor, critic } => {
                actor.init(&mut params, HIDDEN_GAIN, 0.01, &mut rng);
                critic.init(&mut params, HIDDEN_GAIN, 1.0, &mut rng);
            }
            Body::Shared { trunk, policy, value } => {
                trunk.init(&mut params, HIDDEN_GAIN, HIDDEN_GAIN, &mut rng);
                policy.init(&mut params, HIDDEN_GAIN, 0.01, &mut rng);
                value.init(&mut params, HIDDEN_GAIN, 1.0, &mut rng);
            }
        }
        if let Some(range) = &log_std {
            params[range.clone()].fill(T::of(config.init_log_std));
        }
        Ok(ActorCritic {
            grads: vec![T::zero(); layout.len()],
            config,
            layout,
            params,
            body,
            log_std,
            ws: Default::default(),
            encoder,
            encoder_ws: EncoderWorkspace::default(),
            d_features: Vec::new(),
            helper: None,
            replica: None,
        })
    }

    /// Threads the forward and backward passes use (1 or 2). With 2, separate actor and
    /// critic networks run side by side — each does exactly what it does alone, so results
    /// are bit-identical to 1 thread (the encoder, if any, stays on the caller's). A shared
    /// trunk cannot be cut that way, so its minibatch is cut instead: each thread takes half
    /// the rows through encoder, trunk and heads, and the two gradients are averaged — the
    /// same run every time, equal to 1 thread's up to rounding.
    pub fn set_threads(&mut self, threads: usize) {
        if threads <= 1 {
            self.helper = None;
            self.replica = None;
            return;
        }
        if self.helper.is_none() {
            self.helper = Some(Helper::new());
        }
        if matches!(self.body, Body::Shared { .. }) && self.replica.is_none() {
            self.replica = Some(Box::new(Replica {
                grads: vec![T::zero(); self.params.len()],
                ws: Default::default(),
                encoder_ws: EncoderWorkspace::default(),
                d_features: Vec::new(),
            }));
        }
    }

    /// Threads set by [`ActorCritic::set_threads`].
    pub fn threads(&self) -> usize {
        1 + usize::from(self.helper.is_some())
    }

    pub fn config(&self) -> &ActorCriticConfig {
        &self.config
    }

    pub fn head(&self) -> &PolicyHead {
        &self.config.head
    }

    /// The Gaussian policy's log-std (empty for a categorical policy).
    pub fn log_std(&self) -> &[T] {
        self.log_std.clone().map_or(&[], |r| &self.params[r])
    }

    /// The MLPs an observation passes through to become policy outputs, in order (the actor;
    /// or the trunk, then the policy head): what inference engines outside this crate run.
    /// `None` with a convolutional encoder, which they do not run.
    pub fn policy_chain(&self) -> Option<Vec<Mlp>> {
        if self.encoder.is_some() {
            return None;
        }
        Some(match &self.body {
            Body::Separate { actor, .. } => vec![actor.clone()],
            Body::Shared { trunk, policy, .. } => vec![trunk.clone(), policy.clone()],
        })
    }

    /// Multiply-adds per row of a full forward pass (policy and value).
    pub fn macs_per_row(&self) -> usize {
        let encoder = self.encoder.as_ref().map_or(0, |e| e.layers().iter().map(|l| l.macs_per_image()).sum());
        encoder
            + match &self.body {
                Body::Separate { actor, critic } => actor.macs_per_row() + critic.macs_per_row(),
                Body::Shared { trunk, policy, value } => {
                    trunk.macs_per_row() + policy.macs_per_row() + value.macs_per_row()
                }
            }
    }

    /// Runs only the policy (what an actor needs to act): returns `[rows, out_dim]`.
    pub fn forward_policy(&mut self, obs: &[T], rows: usize) -> Result<&[T]> {
        check_len("observations", obs.len(), rows, self.config.obs_dim)?;
        let input = encode(self.encoder.as_ref(), &self.params, obs, rows, &mut self.encoder_ws);
        let [ws0, ws1, _] = &mut self.ws;
        Ok(match &self.body {
            Body::Separate { actor, .. } => {
                actor.forward(&self.params, input, rows, ws0);
                ws0.output()
            }
            Body::Shared { trunk, policy, .. } => {
                trunk.forward(&self.params, input, rows, ws0);
                policy.forward(&self.params, ws0.output(), rows, ws1);
                ws1.output()
            }
        })
    }

    /// Runs policy and value: `(policy outputs, values)`.
    fn forward_both(&mut self, obs: &[T], rows: usize) -> Result<(&[T], &[T])> {
        check_len("observations", obs.len(), rows, self.config.obs_dim)?;
        let input = encode(self.encoder.as_ref(), &self.params, obs, rows, &mut self.encoder_ws);
        let [ws0, ws1, ws2] = &mut self.ws;
        Ok(match &self.body {
            Body::Separate { actor, critic } => {
                let params = &self.params;
                run_pair(
                    self.helper.as_mut(),
                    || actor.forward(params, input, rows, ws0),
                    || critic.forward(params, input, rows, ws1),
                );
                (ws0.output(), ws1.output())
            }
            Body::Shared { trunk, policy, value } => {
                trunk.forward(&self.params, input, rows, ws0);
                policy.forward(&self.params, ws0.output(), rows, ws1);
                value.forward(&self.params, ws0.output(), rows, ws2);
                (ws1.output(), ws2.output())
            }
        })
    }

    fn policy_gradient(&mut self, batch: &PolicyGradientBatch<'_, T>) -> Result<LossStats> {
        let rows = batch.rows;
        let head = self.config.head;
        check_len("observations", batch.obs.len(), rows, self.config.obs_dim)?;
        check_len("actions", batch.actions.len(), rows, head.action_dim())?;
        for (what, len) in [
            ("old_log_probs", batch.old_log_probs.len()),
            ("advantages", batch.advantages.len()),
            ("returns", batch.returns.len()),
            ("old_values", batch.old_values.len()),
        ] {
            check_len(what, len, rows, 1)?;
        }
        self.grads.fill(T::zero());
        let mut step = GradientStep {
            head,
            params: &self.params,
            grads: &mut self.grads,
            log_std: self.log_std.clone(),
            ws: &mut self.ws,
            encoder: self.encoder.as_ref(),
            encoder_ws: &mut self.encoder_ws,
            d_features: &mut self.d_features,
        };
        let (policy, value) = match (&self.body, self.helper.as_mut(), self.replica.as_deref_mut()) {
            (Body::Separate { actor, critic }, helper, _) => step.separate(helper, actor, critic, batch),
            (Body::Shared { trunk, policy, value }, Some(helper), Some(replica)) if rows >= 2 => {
                step.shared_split(helper, replica, [trunk, policy, value], batch)
            }
            (Body::Shared { trunk, policy, value }, ..) => step.shared([trunk, policy, value], batch),
        };
        Ok(LossStats {
            total: policy.loss + batch.vf_coef * value,
            policy: policy.loss + batch.ent_coef * policy.entropy,
            value,
            entropy: policy.entropy,
            approx_kl: policy.approx_kl,
            clip_fraction: policy.clip_fraction,
            td: 0.0,
        })
    }

    fn distill(&mut self, batch: &DistillBatch<'_, T>) -> Result<LossStats> {
        let PolicyHead::Categorical { n } = self.config.head else {
            return Err(NnError::UnsupportedLoss {
                model: "actor-critic with a Gaussian policy",
                loss: "distillation",
            });
        };
        check_len("teacher_logits", batch.teacher_logits.len(), batch.rows, n)?;
        self.forward_policy(batch.obs, batch.rows)?;
        self.grads.fill(T::zero());
        let rows = batch.rows;
        let encoded = self.encoder.is_some();
        let input = if encoded { self.encoder_ws.features() } else { batch.obs };
        let [ws0, ws1, _] = &mut self.ws;
        let kl = match &self.body {
            Body::Separate { actor, .. } => {
                let (student, d) = ws0.output_and_grad(rows, n);
                let kl = distill_kl(student, batch.teacher_logits, n, batch.temperature, d);
                actor.backward(&self.params, &mut self.grads, input, rows, ws0, encoded);
                kl
            }
            Body::Shared { trunk, policy, .. } => {
                let (student, d) = ws1.output_and_grad(rows, n);
                let kl = distill_kl(student, batch.teacher_logits, n, batch.temperature, d);
                let features = std::mem::take(ws0);
                policy.backward(&self.params, &mut self.grads, features.output(), rows, ws1, true);
                *ws0 = features;
                ws0.output_grad(rows, trunk.out_dim()).copy_from_slice(ws1.input_grad());
                trunk.backward(&self.params, &mut self.grads, input, rows, ws0, encoded);
                kl
            }
        };
        if let Some(encoder) = &self.encoder {
            // The actor's (or the trunk's) input gradient is ∂L/∂features.
            encoder.backward(&self.params, &mut self.grads, batch.obs, rows, ws0.input_grad(), &mut self.encoder_ws);
        }
        Ok(LossStats { total: kl, td: kl, ..Default::default() })
    }
}

impl<T: Scalar> Model<T> for ActorCritic<T> {
    crate::model::flat_param_fields!("actor-critic");

    fn forward(&mut self, obs: &[T], rows: usize) -> Result<Outputs<'_, T>> {
        let (policy, value) = self.forward_both(obs, rows)?;
        Ok(Outputs { policy: Some(policy), value: Some(value), q: None })
    }

    fn loss_and_grad(&mut self, loss: Loss<'_, T>) -> Result<LossStats> {
        match loss {
            Loss::PolicyGradient(batch) => self.policy_gradient(&batch),
            Loss::Distill(batch) => self.distill(&batch),
            other => Err(NnError::UnsupportedLoss { model: "actor-critic", loss: other.name() }),
        }
    }
}

/// What a policy-gradient step borrows from an [`ActorCritic`] beside its body, split off so
/// that the step takes the body's networks as arguments — one method per body shape, each
/// given exactly its networks.
struct GradientStep<'a, T> {
    head: PolicyHead,
    params: &'a [T],
    grads: &'a mut [T],
    log_std: Option<std::ops::Range<usize>>,
    ws: &'a mut [MlpWorkspace<T>; 3],
    encoder: Option<&'a ConvEncoder>,
    encoder_ws: &'a mut EncoderWorkspace<T>,
    d_features: &'a mut Vec<T>,
}

impl<T: Scalar> GradientStep<'_, T> {
    /// Separate actor and critic: each network's forward pass, loss and backward pass is one
    /// half of the step, the two halves run side by side with 2 threads (they write disjoint
    /// gradient ranges), then the encoder (if any) takes the sum of their input gradients.
    fn separate(
        self,
        helper: Option<&mut Helper>,
        actor: &Mlp,
        critic: &Mlp,
        batch: &PolicyGradientBatch<'_, T>,
    ) -> (PolicyStats, f64) {
        let GradientStep { head, params, grads, log_std, ws, encoder, encoder_ws, d_features } = self;
        let rows = batch.rows;
        let input = encode(encoder, params, batch.obs, rows, encoder_ws);
        let encoded = encoder.is_some();
        // Layout: [encoder] actor critic [log_std].
        let (actor_range, critic_range) = (actor.param_range(), critic.param_range());
        debug_assert_eq!(actor_range.end, critic_range.start);
        let (before_critic, from_critic) = grads.split_at_mut(critic_range.start);
        let actor_grads = &mut before_critic[actor_range.start..];
        let (critic_grads, after_critic) = from_critic.split_at_mut(critic_range.len());
        let (log_std, d_log_std) = match &log_std {
            Some(r) => (&params[r.clone()], &mut after_critic[r.start - critic_range.end..r.end - critic_range.end]),
            None => (&[][..], &mut [][..]),
        };
        let samples =
            PolicySamples { actions: batch.actions, advantages: batch.advantages, old_log_probs: batch.old_log_probs };
        let [ws0, ws1, _] = ws;
        let (policy, value) = run_pair(
            helper,
            || {
                actor.forward(params, input, rows, ws0);
                let (outputs, d_out) = ws0.output_and_grad(rows, head.out_dim());
                let stats = policy_loss(
                    &head,
                    outputs,
                    log_std,
                    rows,
                    samples,
                    batch.objective,
                    batch.ent_coef,
                    d_out,
                    d_log_std,
                );
                actor.backward_from(params, actor_grads, actor_range.start, input, rows, ws0, encoded);
                stats
            },
            || {
                critic.forward(params, input, rows, ws1);
                let (values, d_values) = ws1.output_and_grad(rows, 1);
                let value =
                    value_loss(values, batch.returns, batch.old_values, batch.value_clip, batch.vf_coef, d_values);
                critic.backward_from(params, critic_grads, critic_range.start, input, rows, ws1, encoded);
                value
            },
        );
        if let Some(encoder) = encoder {
            d_features.clear();
            d_features.extend(ws0.input_grad().iter().zip(ws1.input_grad()).map(|(&a, &b)| a + b));
            encoder.backward(params, grads, batch.obs, rows, d_features, encoder_ws);
        }
        (policy, value)
    }

    /// A shared trunk on two threads: the caller takes the first half of the rows into this
    /// step's buffers, the helper the second half into `replica`'s, each exactly as
    /// [`GradientStep::shared`] does alone; then the two gradients (each a mean over its
    /// half) are averaged, weighted by their rows, in one fixed order. (0.5 each for an even
    /// minibatch, an exact scaling.)
    fn shared_split(
        &mut self,
        helper: &mut Helper,
        replica: &mut Replica<T>,
        nets: [&Mlp; 3],
        batch: &PolicyGradientBatch<'_, T>,
    ) -> (PolicyStats, f64) {
        let (first, second) = batch.split_at(batch.rows / 2);
        replica.grads.fill(T::zero());
        let mut other = GradientStep {
            head: self.head,
            params: self.params,
            grads: &mut replica.grads,
            log_std: self.log_std.clone(),
            ws: &mut replica.ws,
            encoder: self.encoder,
            encoder_ws: &mut replica.encoder_ws,
            d_features: &mut replica.d_features,
        };
        let ((policy_a, value_a), (policy_b, value_b)) =
            helper.join(|| self.shared(nets, &first), || other.shared(nets, &second));
        let weight_a = first.rows as f64 / batch.rows as f64;
        let weight_b = second.rows as f64 / batch.rows as f64;
        let (wa, wb) = (T::of(weight_a), T::of(weight_b));
        for (g, &h) in self.grads.iter_mut().zip(&replica.grads) {
            *g = wa * *g + wb * h;
        }
        let mean = |a: f64, b: f64| weight_a * a + weight_b * b;
        let policy = PolicyStats {
            loss: mean(policy_a.loss, policy_b.loss),
            entropy: mean(policy_a.entropy, policy_b.entropy),
            approx_kl: mean(policy_a.approx_kl, policy_b.approx_kl),
            clip_fraction: mean(policy_a.clip_fraction, policy_b.clip_fraction),
        };
        (policy, mean(value_a, value_b))
    }

    /// A shared trunk: both heads' losses, then one backward pass through heads and trunk
    /// (and the encoder).
    fn shared(&mut self, [trunk, policy, value]: [&Mlp; 3], batch: &PolicyGradientBatch<'_, T>) -> (PolicyStats, f64) {
        let GradientStep { head, params, grads, log_std, ws, encoder, encoder_ws, d_features } = self;
        let (head, params, encoder) = (*head, *params, *encoder);
        let rows = batch.rows;
        let input = encode(encoder, params, batch.obs, rows, encoder_ws);
        let [trunk_ws, policy_ws, value_ws] = ws;
        trunk.forward(params, input, rows, trunk_ws);
        policy.forward(params, trunk_ws.output(), rows, policy_ws);
        value.forward(params, trunk_ws.output(), rows, value_ws);
        let (outputs, d_out) = policy_ws.output_and_grad(rows, head.out_dim());
        let (log_std, d_log_std) = match &log_std {
            Some(r) => (&params[r.clone()], &mut grads[r.clone()]),
            None => (&[][..], &mut [][..]),
        };
        let samples =
            PolicySamples { actions: batch.actions, advantages: batch.advantages, old_log_probs: batch.old_log_probs };
        let policy_stats =
            policy_loss(&head, outputs, log_std, rows, samples, batch.objective, batch.ent_coef, d_out, d_log_std);
        let (values, d_values) = value_ws.output_and_grad(rows, 1);
        let value_stats =
            value_loss(values, batch.returns, batch.old_values, batch.value_clip, batch.vf_coef, d_values);
        let encoded = encoder.is_some();
        backward_two_heads(
            (trunk, trunk_ws),
            (policy, policy_ws),
            (value, value_ws),
            params,
            grads,
            input,
            rows,
            encoded,
        );
        if let Some(encoder) = encoder {
            d_features.clear();
            d_features.extend_from_slice(trunk_ws.input_grad());
            encoder.backward(params, grads, batch.obs, rows, d_features, encoder_ws);
        }
        (policy_stats, value_stats)
    }
}
