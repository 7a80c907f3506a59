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
use crate::kernel::ROW_SPLIT;
use crate::layout::ParamLayout;
use crate::parallel::{run_pair, Helper};
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
        self.forward_with(None, params, x, rows, ws);
    }

    /// [`Mlp::forward`], each big enough layer's rows split between this thread and `helper`
    /// (see [`splits`]) at a multiple of [`ROW_SPLIT`]: rows are computed independently, by
    /// the same path either way, so the bits are those of one thread.
    pub fn forward_with<T: Scalar>(
        &self,
        mut helper: Option<&mut Helper>,
        params: &[T],
        x: &[T],
        rows: usize,
        ws: &mut MlpWorkspace<T>,
    ) {
        ws.outputs.resize_with(self.layers.len(), Vec::new);
        for (i, layer) in self.layers.iter().enumerate() {
            let (before, after) = ws.outputs.split_at_mut(i);
            let input = if i == 0 { x } else { &before[i - 1] };
            let z = &mut after[0];
            resize(z, rows * layer.out_dim);
            let (weight, bias) = (layer.weight(params), layer.bias(params));
            let activation = self.activated(i).then_some(self.activation);
            let (in_dim, out_dim) = (layer.in_dim, layer.out_dim);
            let rows_forward =
                |x: &[T], rows: usize, z: &mut [T]| x_wt_bias(x, weight, bias, activation, rows, in_dim, out_dim, z);
            match helper.as_deref_mut().filter(|_| rows >= SPLIT_MIN_ROWS && splits(rows, layer)) {
                Some(helper) => {
                    let half = rows / 2 / ROW_SPLIT * ROW_SPLIT;
                    let (x_a, x_b) = input.split_at(half * in_dim);
                    let (z_a, z_b) = z.split_at_mut(half * out_dim);
                    helper.join(|| rows_forward(x_a, half, z_a), || rows_forward(x_b, rows - half, z_b));
                }
                None => rows_forward(input, rows, z),
            }
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
        self.backward_with(None, params, grads, x, rows, ws, input_grad);
    }

    /// [`Mlp::backward`], each big enough layer's two products — its weight gradient and the
    /// gradient it passes down, equal in work — side by side on this thread and `helper` (see
    /// [`splits`]); each is the call one thread makes, so the bits are the same.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_with<T: Scalar>(
        &self,
        helper: Option<&mut Helper>,
        params: &[T],
        grads: &mut [T],
        x: &[T],
        rows: usize,
        ws: &mut MlpWorkspace<T>,
        input_grad: bool,
    ) {
        self.backprop(helper, params, Some((grads, 0)), x, rows, ws, input_grad);
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
        self.backprop(None, params, Some((grads, base)), x, rows, ws, input_grad);
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
        self.backprop(None, params, None, x, rows, ws, true);
    }

    #[allow(clippy::too_many_arguments)]
    fn backprop<T: Scalar>(
        &self,
        mut helper: Option<&mut Helper>,
        params: &[T],
        mut grads: Option<(&mut [T], usize)>,
        x: &[T],
        rows: usize,
        ws: &mut MlpWorkspace<T>,
        input_grad: bool,
    ) {
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let MlpWorkspace { outputs, grad, grad_next } = &mut *ws;
            let activation = Some(self.activation).filter(|_| self.activated(i));
            let input = if i == 0 { x } else { &outputs[i - 1] };
            let (in_dim, out_dim) = (layer.in_dim, layer.out_dim);
            let dz = &mut grad[..rows * out_dim];
            let gw = match grads.as_mut() {
                Some((grads, base)) => {
                    let (weight, bias) = (layer.weight - *base, layer.bias - *base);
                    backprop_and_bias_grad(activation, dz, &outputs[i], &mut grads[bias..bias + out_dim]);
                    Some(&mut grads[weight..weight + in_dim * out_dim])
                }
                None => {
                    if let Some(activation) = activation {
                        activation.backprop(dz, &outputs[i]);
                    }
                    None
                }
            };
            let dz = &*dz;
            let pass_down = i > 0 || input_grad;
            if pass_down {
                resize(grad_next, rows * in_dim);
            }
            let weight_grad = |gw: &mut [T]| acc_dzt_x(dz, input, rows, in_dim, out_dim, gw);
            let input_grad = |dx: &mut [T]| dz_w(dz, layer.weight(params), rows, in_dim, out_dim, dx);
            match (gw, pass_down) {
                (Some(gw), true) => {
                    let helper = helper.as_deref_mut().filter(|_| splits(rows, layer));
                    run_pair(helper, || input_grad(grad_next), || weight_grad(gw));
                }
                (Some(gw), false) => weight_grad(gw),
                (None, true) => input_grad(grad_next),
                (None, false) => {}
            }
            if pass_down {
                std::mem::swap(grad, grad_next);
            }
        }
    }
}

/// Products of a layer at least this big (multiply-adds) are split across a helper thread by
/// [`Mlp::forward_with`] and [`Mlp::backward_with`]: a hand-off costs about a microsecond,
/// this much work about two on one core.
const SPLIT_MACS: usize = 1 << 17;

/// Fewest rows [`Mlp::forward_with`] splits: each half stays above
/// [`crate::gemm::SMALL_ROWS`], below which the product takes row loops of other arithmetic,
/// so both halves take the path the whole batch would.
const SPLIT_MIN_ROWS: usize = 16;

/// Whether `layer` over `rows` rows is worth splitting across two threads.
fn splits(rows: usize, layer: &Linear) -> bool {
    rows * layer.in_dim * layer.out_dim >= SPLIT_MACS
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// Forward and backward passes with a helper thread (rows of the forward split in two, each
    /// layer's weight gradient beside the gradient it passes down) give one thread's bits, on
    /// layers above and below the split threshold and for an odd batch.
    #[test]
    fn passes_split_across_a_helper_equal_one_thread() {
        let mut layout = ParamLayout::new();
        let mlp = Mlp::new(&mut layout, "net", &[17, 256, 96, 6], Activation::Relu, false);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let mut params = vec![0.0f32; layout.len()];
        mlp.init(&mut params, 2f64.sqrt(), 1.0, &mut rng);
        let mut helper = Helper::new();
        for rows in [255, 40, 3] {
            assert!(rows < SPLIT_MIN_ROWS || splits(rows, &mlp.layers()[1]), "{rows} rows exercise the split");
            let x: Vec<f32> = (0..rows * 17).map(|i| ((i * 7 % 19) as f32 - 9.0) / 5.0).collect();
            let run = |helper: Option<&mut Helper>| {
                let mut helper = helper;
                let mut ws = MlpWorkspace::default();
                mlp.forward_with(helper.as_deref_mut(), &params, &x, rows, &mut ws);
                let output = ws.output().to_vec();
                ws.output_grad(rows, 6).iter_mut().enumerate().for_each(|(i, g)| *g = (i % 5) as f32 - 2.0);
                let mut grads = vec![0.0f32; params.len()];
                mlp.backward_with(helper, &params, &mut grads, &x, rows, &mut ws, true);
                (output, grads, ws.input_grad().to_vec())
            };
            let (one, two) = (run(None), run(Some(&mut helper)));
            assert!(one.1.iter().any(|&g| g != 0.0));
            assert!(one.0 == two.0, "{rows} rows: a helper changed the output");
            assert!(one.2 == two.2, "{rows} rows: a helper changed the input grad");
            assert!(one.1 == two.1, "{rows} rows: a helper changed the grads");
        }
    }
}
