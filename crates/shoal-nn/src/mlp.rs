//! A multilayer perceptron over a slice of a flat parameter vector, with fused
//! bias + activation and a reusable workspace (no allocation once the batch size is seen).
//!
//! Weights are stored `[out, in]` row-major like PyTorch's `nn.Linear`, so checkpoints map
//! one to one. Forward: `Z = X·Wᵀ + b`, `A = f(Z)`. Backward: `∂Z = ∂A ⊙ f'(A)`,
//! `∂W += ∂Zᵀ·X`, `∂b += Σ_rows ∂Z`, `∂X = ∂Z·W`.

use rand::Rng;

use crate::activation::{backprop_and_bias_grad, Activation};
use crate::gemm::{acc_dzt_x, dz_w, x_wt_bias};
use crate::init::orthogonal;
use crate::layout::ParamLayout;
use crate::scalar::Scalar;

/// One fully connected layer: where its weight and bias live in the flat vector.
#[derive(Debug, Clone)]
pub struct Linear {
    pub in_dim: usize,
    pub out_dim: usize,
    weight: usize,
    bias: usize,
}

impl Linear {
    /// The weight matrix, `[out_dim, in_dim]` row-major, in `params`.
    pub fn weight<'a, T>(&self, params: &'a [T]) -> &'a [T] {
        &params[self.weight..self.weight + self.in_dim * self.out_dim]
    }
    /// The bias, `[out_dim]`, in `params`.
    pub fn bias<'a, T>(&self, params: &'a [T]) -> &'a [T] {
        &params[self.bias..self.bias + self.out_dim]
    }
}

/// Layers `sizes[0] → sizes[1] → … → sizes[last]` with an activation after every layer except,
/// unless `activate_output`, the last.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Activation,
    activate_output: bool,
}

/// Per-call buffers of one [`Mlp`]: layer outputs kept for the backward pass, and gradients.
#[derive(Debug, Clone, Default)]
pub struct MlpWorkspace<T> {
    outputs: Vec<Vec<T>>,
    grad: Vec<T>,
    grad_next: Vec<T>,
}

impl<T: Scalar> MlpWorkspace<T> {
    /// The network's output from the last `forward`.
    pub fn output(&self) -> &[T] {
        self.outputs.last().map_or(&[], |v| v.as_slice())
    }

    /// The last hidden layer's activations from the last `forward` (`[rows, width]`; empty
    /// for a network without hidden layers): the features gSDE's noise is a function of.
    pub fn features(&self) -> &[T] {
        let n = self.outputs.len();
        if n < 2 {
            return &[];
        }
        &self.outputs[n - 2]
    }

    /// Buffer for `∂L/∂output`, sized for `rows`, to fill before `backward`.
    pub fn output_grad(&mut self, rows: usize, width: usize) -> &mut [T] {
        resize(&mut self.grad, rows * width);
        &mut self.grad
    }

    /// The last output and the buffer for its gradient, together (a loss reads one and writes
    /// the other).
    pub fn output_and_grad(&mut self, rows: usize, width: usize) -> (&[T], &mut [T]) {
        resize(&mut self.grad, rows * width);
        (self.outputs.last().map_or(&[], |v| v.as_slice()), &mut self.grad)
    }

    /// `∂L/∂input` from the last `backward` with `input_grad = true`.
    pub fn input_grad(&self) -> &[T] {
        &self.grad
    }
}

/// Grows (never shrinks the capacity of) a buffer to `len` elements.
fn resize<T: Scalar>(buf: &mut Vec<T>, len: usize) {
    buf.resize(len, T::zero());
}

impl Mlp {
    /// Registers the layers' tensors as `{prefix}.{i}.weight` / `{prefix}.{i}.bias`.
    pub fn new(
        layout: &mut ParamLayout,
        prefix: &str,
        sizes: &[usize],
        activation: Activation,
        activate_output: bool,
    ) -> Self {
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| Linear {
                in_dim: w[0],
                out_dim: w[1],
                weight: layout.push(format!("{prefix}.{i}.weight"), &[w[1], w[0]]),
                bias: layout.push(format!("{prefix}.{i}.bias"), &[w[1]]),
            })
            .collect();
        Mlp { layers, activation, activate_output }
    }

    pub fn in_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.in_dim)
    }

    pub fn out_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// Multiply-adds of one forward pass per row (for GFLOP/s figures).
    pub fn macs_per_row(&self) -> usize {
        self.layers.iter().map(|l| l.in_dim * l.out_dim).sum()
    }

    /// Orthogonal weights (`hidden_gain` for hidden layers, `output_gain` for the last), zero biases.
    pub fn init<T: Scalar, R: Rng + ?Sized>(&self, params: &mut [T], hidden_gain: f64, output_gain: f64, rng: &mut R) {
        for (i, layer) in self.layers.iter().enumerate() {
            let gain = if i + 1 == self.layers.len() { output_gain } else { hidden_gain };
            let w = orthogonal(layer.out_dim, layer.in_dim, gain, rng);
            let dst = &mut params[layer.weight..layer.weight + w.len()];
            dst.iter_mut().zip(&w).for_each(|(d, &s)| *d = T::of(s));
            params[layer.bias..layer.bias + layer.out_dim].fill(T::zero());
        }
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Whether layer `layer`'s output goes through the activation (all but the last, unless
    /// the output is activated too).
    pub fn activated(&self, layer: usize) -> bool {
        layer + 1 < self.layers.len() || self.activate_output
    }

    /// Runs `rows` inputs (`x`: `[rows, in_dim]`) forward; the result is `ws.output()`.
    pub fn forward<T: Scalar>(&self, params: &[T], x: &[T], rows: usize, ws: &mut MlpWorkspace<T>) {
        ws.outputs.resize_with(self.layers.len(), Vec::new);
        for (i, layer) in self.layers.iter().enumerate() {
            let (before, after) = ws.outputs.split_at_mut(i);
            let input = if i == 0 { x } else { &before[i - 1] };
            let z = &mut after[0];
            resize(z, rows * layer.out_dim);
            let (weight, bias) = (layer.weight(params), layer.bias(params));
            let activation = self.activated(i).then_some(self.activation);
            x_wt_bias(input, weight, bias, activation, rows, layer.in_dim, layer.out_dim, z);
        }
    }

    /// Backpropagates `ws.output_grad` (filled by the caller after `forward` on the same `x`),
    /// accumulating into `grads`. With `input_grad`, leaves `∂L/∂x` in `ws.input_grad()`.
    pub fn backward<T: Scalar>(
        &self,
        params: &[T],
        grads: &mut [T],
        x: &[T],
        rows: usize,
        ws: &mut MlpWorkspace<T>,
        input_grad: bool,
    ) {
        self.backprop(params, Some((grads, 0)), x, rows, ws, input_grad);
    }

    /// [`Mlp::backward`] into `grads` holding the gradient of parameters `base..` only (a
    /// slice of the flat vector starting at or before [`Mlp::param_range`]'s start): how two
    /// threads fill the disjoint gradient ranges of two networks at once.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_from<T: Scalar>(
        &self,
        params: &[T],
        grads: &mut [T],
        base: usize,
        x: &[T],
        rows: usize,
        ws: &mut MlpWorkspace<T>,
        input_grad: bool,
    ) {
        self.backprop(params, Some((grads, base)), x, rows, ws, input_grad);
    }

    /// Where this network's parameters lie in the flat vector (its tensors are registered one
    /// after the other).
    pub fn param_range(&self) -> std::ops::Range<usize> {
        match (self.layers.first(), self.layers.last()) {
            (Some(first), Some(last)) => first.weight..last.bias + last.out_dim,
            _ => 0..0,
        }
    }

    /// Backpropagates `ws.output_grad` to `∂L/∂x` alone (in `ws.input_grad()`), without the
    /// parameters' gradients: how an actor's loss reaches its actions through a critic whose
    /// own weights it does not train — a third less work than [`Mlp::backward`].
    pub fn backward_input<T: Scalar>(&self, params: &[T], x: &[T], rows: usize, ws: &mut MlpWorkspace<T>) {
        self.backprop(params, None, x, rows, ws, true);
    }

    fn backprop<T: Scalar>(
        &self,
        params: &[T],
        mut grads: Option<(&mut [T], usize)>,
        x: &[T],
        rows: usize,
        ws: &mut MlpWorkspace<T>,
        input_grad: bool,
    ) {
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let activation = Some(self.activation).filter(|_| self.activated(i));
            let input = if i == 0 { x } else { &ws.outputs[i - 1] };
            let dz = &mut ws.grad[..rows * layer.out_dim];
            if let Some((grads, base)) = grads.as_mut() {
                let (weight, bias) = (layer.weight - *base, layer.bias - *base);
                backprop_and_bias_grad(activation, dz, &ws.outputs[i], &mut grads[bias..bias + layer.out_dim]);
                let gw = &mut grads[weight..weight + layer.in_dim * layer.out_dim];
                acc_dzt_x(dz, input, rows, layer.in_dim, layer.out_dim, gw);
            } else if let Some(activation) = activation {
                activation.backprop(dz, &ws.outputs[i]);
            }
            let dz = &ws.grad[..rows * layer.out_dim];
            if i > 0 || input_grad {
                resize(&mut ws.grad_next, rows * layer.in_dim);
                dz_w(dz, layer.weight(params), rows, layer.in_dim, layer.out_dim, &mut ws.grad_next);
                std::mem::swap(&mut ws.grad, &mut ws.grad_next);
            }
        }
    }
}

/// A trunk feeding two heads (actor-critic with a shared body, dueling Q-network): runs the
/// heads' backward passes, sums their input gradients into the trunk's output gradient, and
/// backpropagates the trunk (to its input too with `input_grad`: an encoder below it). The
/// heads' output gradients must already be filled.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_two_heads<T: Scalar>(
    (trunk, trunk_ws): (&Mlp, &mut MlpWorkspace<T>),
    (head_a, ws_a): (&Mlp, &mut MlpWorkspace<T>),
    (head_b, ws_b): (&Mlp, &mut MlpWorkspace<T>),
    params: &[T],
    grads: &mut [T],
    x: &[T],
    rows: usize,
    input_grad: bool,
) {
    let width = trunk.out_dim();
    let features = std::mem::take(&mut trunk_ws.outputs);
    let hidden = features.last().map_or(&[][..], |v| v.as_slice());
    head_a.backward(params, grads, hidden, rows, ws_a, true);
    head_b.backward(params, grads, hidden, rows, ws_b, true);
    trunk_ws.outputs = features;
    let d_hidden = trunk_ws.output_grad(rows, width);
    for ((d, &a), &b) in d_hidden.iter_mut().zip(ws_a.input_grad()).zip(ws_b.input_grad()) {
        *d = a + b;
    }
    trunk.backward(params, grads, x, rows, trunk_ws, input_grad);
}
