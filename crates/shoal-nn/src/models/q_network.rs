//! Q-networks for DQN and Ape-X: a plain MLP, or the dueling architecture
//! `Q(s,a) = V(s) + A(s,a) − mean_a' A(s,a')` (Wang et al., 2016) — over the observation, or
//! over the features of a convolutional encoder for image observations (the Nature DQN).

use crate::activation::Activation;
use crate::conv::{ConvEncoder, EncoderConfig, EncoderWorkspace};
use crate::error::{check_len, NnError, Result};
use crate::layout::ParamLayout;
use crate::loss::td_loss;
use crate::mlp::{backward_two_heads, Mlp, MlpWorkspace};
use crate::model::{Loss, LossStats, Model, Outputs, TdBatch};
use crate::scalar::Scalar;

use super::{check_sizes, encode, init_rng, HIDDEN_GAIN};

/// The shape of a [`QNetwork`].
#[derive(Debug, Clone, PartialEq)]
pub struct QNetworkConfig {
    pub obs_dim: usize,
    pub n_actions: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub dueling: bool,
    /// Convolutions the observation (an image of `obs_dim` values) passes through first
    /// (tensors `encoder.*`); `hidden` then sizes the layers after them.
    pub encoder: Option<EncoderConfig>,
    pub seed: u64,
}

#[derive(Debug, Clone)]
enum Body {
    /// Tensors `q.*`.
    Plain(Mlp),
    /// Tensors `trunk.*`, `value.*`, `advantage.*`.
    Dueling { trunk: Mlp, value: Mlp, advantage: Mlp },
}

/// Action values over one flat parameter vector.
#[derive(Debug, Clone)]
pub struct QNetwork<T> {
    config: QNetworkConfig,
    layout: ParamLayout,
    params: Vec<T>,
    grads: Vec<T>,
    encoder: Option<ConvEncoder>,
    encoder_ws: EncoderWorkspace<T>,
    body: Body,
    ws: [MlpWorkspace<T>; 3],
    /// Dueling Q-values and their gradient (the plain body's live in its workspace).
    q: Vec<T>,
    d_q: Vec<T>,
    td_errors: Vec<T>,
}

impl<T: Scalar> QNetwork<T> {
    pub fn new(config: QNetworkConfig) -> Result<Self> {
        check_sizes("Q-network", &[&[config.obs_dim, config.n_actions][..], &config.hidden].concat())?;
        let mut layout = ParamLayout::new();
        let encoder = super::build_encoder(&mut layout, config.encoder.as_ref(), config.obs_dim)?;
        let features = encoder.as_ref().map_or(config.obs_dim, ConvEncoder::out_len);
        let trunk_sizes = [&[features][..], &config.hidden].concat();
        let body = if config.dueling {
            let width = *config
                .hidden
                .last()
                .ok_or_else(|| NnError::Config("a dueling network needs at least one hidden layer".into()))?;
            Body::Dueling {
                trunk: Mlp::new(&mut layout, "trunk", &trunk_sizes, config.activation, true),
                value: Mlp::new(&mut layout, "value", &[width, 1], config.activation, false),
                advantage: Mlp::new(&mut layout, "advantage", &[width, config.n_actions], config.activation, false),
            }
        } else {
            Body::Plain(Mlp::new(
                &mut layout,
                "q",
                &[&trunk_sizes[..], &[config.n_actions]].concat(),
                config.activation,
                false,
            ))
        };
        let mut params = vec![T::zero(); layout.len()];
        let mut rng = init_rng(config.seed);
        if let Some(encoder) = &encoder {
            encoder.init(&mut params, HIDDEN_GAIN, &mut rng);
        }
        match &body {
            Body::Plain(net) => net.init(&mut params, HIDDEN_GAIN, 1.0, &mut rng),
            Body::Dueling { trunk, value, advantage } => {
                trunk.init(&mut params, HIDDEN_GAIN, HIDDEN_GAIN, &mut rng);
                value.init(&mut params, HIDDEN_GAIN, 1.0, &mut rng);
                advantage.init(&mut params, HIDDEN_GAIN, 1.0, &mut rng);
            }
        }
        Ok(QNetwork {
            grads: vec![T::zero(); layout.len()],
            config,
            layout,
            params,
            encoder,
            encoder_ws: EncoderWorkspace::default(),
            body,
            ws: Default::default(),
            q: Vec::new(),
            d_q: Vec::new(),
            td_errors: Vec::new(),
        })
    }

    /// The MLPs an observation passes through to become Q-values, in order; `None` for a
    /// dueling network, whose value and advantage streams are not one chain, and for one
    /// with a convolutional encoder.
    pub fn policy_chain(&self) -> Option<Vec<Mlp>> {
        match &self.body {
            Body::Plain(net) if self.encoder.is_none() => Some(vec![net.clone()]),
            _ => None,
        }
    }

    pub fn config(&self) -> &QNetworkConfig {
        &self.config
    }

    /// `[rows, n_actions]` Q-values.
    pub fn q_values(&mut self, obs: &[T], rows: usize) -> Result<&[T]> {
        check_len("observations", obs.len(), rows, self.config.obs_dim)?;
        let n = self.config.n_actions;
        let input = encode(self.encoder.as_ref(), &self.params, obs, rows, &mut self.encoder_ws);
        let [ws0, ws1, ws2] = &mut self.ws;
        Ok(match &self.body {
            Body::Plain(net) => {
                net.forward(&self.params, input, rows, ws0);
                ws0.output()
            }
            Body::Dueling { trunk, value, advantage } => {
                trunk.forward(&self.params, input, rows, ws0);
                value.forward(&self.params, ws0.output(), rows, ws1);
                advantage.forward(&self.params, ws0.output(), rows, ws2);
                self.q.resize(rows * n, T::zero());
                for ((q, a), &v) in self.q.chunks_exact_mut(n).zip(ws2.output().chunks_exact(n)).zip(ws1.output()) {
                    let mean = a.iter().copied().sum::<T>() / T::of(n as f64);
                    q.iter_mut().zip(a).for_each(|(q, &a)| *q = v + a - mean);
                }
                &self.q
            }
        })
    }

    fn td(&mut self, batch: &TdBatch<'_, T>) -> Result<LossStats> {
        let (rows, n) = (batch.rows, self.config.n_actions);
        check_len("actions", batch.actions.len(), rows, 1)?;
        check_len("targets", batch.targets.len(), rows, 1)?;
        if let Some(w) = batch.weights {
            check_len("weights", w.len(), rows, 1)?;
        }
        if let Some(bad) = batch.actions.iter().find(|a| !(a.as_f64() >= 0.0 && (a.as_f64() as usize) < n)) {
            return Err(NnError::Config(format!("action {bad:?} is not an index in 0..{n}")));
        }
        self.q_values(batch.obs, rows)?;
        self.grads.fill(T::zero());
        self.td_errors.resize(rows, T::zero());
        // The body's input: the encoder's features, or the observations.
        let (input, encoded) = match &self.encoder {
            Some(_) => (self.encoder_ws.features(), true),
            None => (batch.obs, false),
        };
        let [ws0, ws1, ws2] = &mut self.ws;
        let loss = match &self.body {
            Body::Plain(net) => {
                let (q, d_q) = ws0.output_and_grad(rows, n);
                let loss =
                    td_loss(q, n, batch.actions, batch.targets, batch.weights, batch.kind, d_q, &mut self.td_errors);
                net.backward(&self.params, &mut self.grads, input, rows, ws0, encoded);
                loss
            }
            Body::Dueling { trunk, value, advantage } => {
                self.d_q.resize(rows * n, T::zero());
                let loss = td_loss(
                    &self.q,
                    n,
                    batch.actions,
                    batch.targets,
                    batch.weights,
                    batch.kind,
                    &mut self.d_q,
                    &mut self.td_errors,
                );
                // ∂V = Σ_a ∂Q(·,a);  ∂A(·,a) = ∂Q(·,a) − mean_a' ∂Q(·,a').
                let d_v = ws1.output_grad(rows, 1);
                let d_a = ws2.output_grad(rows, n);
                for ((dq, dv), da) in self.d_q.chunks_exact(n).zip(d_v.iter_mut()).zip(d_a.chunks_exact_mut(n)) {
                    let sum = dq.iter().copied().sum::<T>();
                    *dv = sum;
                    let mean = sum / T::of(n as f64);
                    da.iter_mut().zip(dq).for_each(|(da, &g)| *da = g - mean);
                }
                backward_two_heads(
                    (trunk, ws0),
                    (value, ws1),
                    (advantage, ws2),
                    &self.params,
                    &mut self.grads,
                    input,
                    rows,
                    encoded,
                );
                loss
            }
        };
        if let Some(encoder) = &self.encoder {
            // ∂L/∂features is the body's input gradient (the trunk's, for a dueling body).
            encoder.backward(&self.params, &mut self.grads, batch.obs, rows, ws0.input_grad(), &mut self.encoder_ws);
        }
        Ok(LossStats { total: loss, td: loss, ..Default::default() })
    }
}

impl<T: Scalar> Model<T> for QNetwork<T> {
    crate::model::flat_param_fields!("Q-network");

    fn forward(&mut self, obs: &[T], rows: usize) -> Result<Outputs<'_, T>> {
        let q = self.q_values(obs, rows)?;
        Ok(Outputs { q: Some(q), ..Default::default() })
    }

    fn loss_and_grad(&mut self, loss: Loss<'_, T>) -> Result<LossStats> {
        match loss {
            Loss::Td(batch) => self.td(&batch),
            other => Err(NnError::UnsupportedLoss { model: "Q-network", loss: other.name() }),
        }
    }

    fn td_errors(&self) -> &[T] {
        &self.td_errors
    }
}
