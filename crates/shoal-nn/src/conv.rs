//! A 2-D convolution over a slice of a flat parameter vector, as a GEMM over image patches
//! (im2col), with fused bias + activation and a reusable workspace.
//!
//! **Layout: NHWC** (`[rows, height, width, channels]`), because that is how pixel
//! observations arrive (Gymnasium's Atari frames and MinAtar's boards are height × width ×
//! channels), so the first layer reads them without a transpose, and because one output
//! position's patch — `kernel × kernel × channels` values — is then a few contiguous runs
//! of the input, and the product `patches · Wᵀ` writes NHWC output directly, ready for the
//! next layer or to be flattened. Weights are stored `[out, kh, kw, in]` (each filter in
//! patch order); PyTorch's `[out, in, kh, kw]` is a transpose of each filter away.
//!
//! Forward: `P = im2col(s·X)` (`[rows·oh·ow, kh·kw·in]`, zero outside the padding),
//! `Z = P·Wᵀ + b`, `A = f(Z)`. Backward: `∂Z = ∂A ⊙ f'(A)`, `∂W += ∂Zᵀ·P`, `∂b += Σ ∂Z`,
//! `∂X = s·col2im(∂Z·W)`. `s` scales raw inputs inside the first layer (1/255 for `u8`
//! pixels stored as floats), so nothing else has to.

use rand::Rng;

use crate::activation::{backprop_and_bias_grad, Activation};
use crate::error::{NnError, Result};
use crate::gemm::{acc_dzt_x, dz_w, x_wt};
use crate::init::orthogonal;
use crate::layout::ParamLayout;
use crate::scalar::Scalar;

/// The geometry of a convolution: its input image and its filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub in_height: usize,
    pub in_width: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// The input is `[channels, height, width]` (ale-py's stacked frames) instead of NHWC;
    /// only an encoder's first layer reads such input, and it writes NHWC.
    pub channels_first: bool,
}

impl ConvShape {
    pub fn out_height(&self) -> usize {
        (self.in_height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.in_width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Values of one input image (`in_height · in_width · in_channels`).
    pub fn in_len(&self) -> usize {
        self.in_height * self.in_width * self.in_channels
    }

    /// Values of one output image (`out_height · out_width · out_channels`).
    pub fn out_len(&self) -> usize {
        self.out_height() * self.out_width() * self.out_channels
    }

    /// Values of one patch, the product's inner dimension (`kernel² · in_channels`).
    fn patch_len(&self) -> usize {
        self.kernel * self.kernel * self.in_channels
    }

    /// Output positions of one image.
    fn positions(&self) -> usize {
        self.out_height() * self.out_width()
    }
}

/// One convolution layer: its shape and where its weight and bias live in the flat vector.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub shape: ConvShape,
    activation: Activation,
    /// Multiplies the inputs as they are read (see the module documentation).
    input_scale: f64,
    weight: usize,
    bias: usize,
}

/// Per-call buffers of one [`Conv2d`] (no allocation once the batch size is seen).
#[derive(Debug, Clone, Default)]
pub struct ConvWorkspace<T> {
    patches: Vec<T>,
    /// Channels-first input turned NHWC, one chunk of images.
    nhwc: Vec<T>,
    output: Vec<T>,
    grad: Vec<T>,
    patch_grad: Vec<T>,
    input_grad: Vec<T>,
}

impl<T: Scalar> ConvWorkspace<T> {
    /// The layer's activated output from the last `forward`, NHWC.
    pub fn output(&self) -> &[T] {
        &self.output
    }

    /// Buffer for `∂L/∂output`, sized for `len` values, to fill before `backward`.
    pub fn output_grad(&mut self, len: usize) -> &mut [T] {
        self.grad.resize(len, T::zero());
        &mut self.grad
    }

    /// `∂L/∂input` from the last `backward` with `input_grad = true`.
    pub fn input_grad(&self) -> &[T] {
        &self.input_grad
    }
}

impl Conv2d {
    /// Registers `{name}.weight` (`[out, kh, kw, in]`) and `{name}.bias` (`[out]`).
    pub fn new(
        layout: &mut ParamLayout,
        name: &str,
        shape: ConvShape,
        activation: Activation,
        input_scale: f64,
    ) -> Self {
        let k = shape.kernel;
        Conv2d {
            shape,
            activation,
            input_scale,
            weight: layout.push(format!("{name}.weight"), &[shape.out_channels, k, k, shape.in_channels]),
            bias: layout.push(format!("{name}.bias"), &[shape.out_channels]),
        }
    }

    /// The filters, `[out, kh, kw, in]` row-major, in `params`.
    pub fn weight<'a, T>(&self, params: &'a [T]) -> &'a [T] {
        &params[self.weight..self.weight + self.shape.out_channels * self.shape.patch_len()]
    }

    /// The bias, `[out]`, in `params`.
    pub fn bias<'a, T>(&self, params: &'a [T]) -> &'a [T] {
        &params[self.bias..self.bias + self.shape.out_channels]
    }

    /// Multiply-adds of one forward pass per image (for GFLOP/s figures).
    pub fn macs_per_image(&self) -> usize {
        self.shape.positions() * self.shape.patch_len() * self.shape.out_channels
    }

    /// Orthogonal filters (each flattened filter a row) scaled by `gain`, zero biases.
    pub fn init<T: Scalar, R: Rng + ?Sized>(&self, params: &mut [T], gain: f64, rng: &mut R) {
        let w = orthogonal(self.shape.out_channels, self.shape.patch_len(), gain, rng);
        let dst = &mut params[self.weight..self.weight + w.len()];
        dst.iter_mut().zip(&w).for_each(|(d, &s)| *d = T::of(s));
        params[self.bias..self.bias + self.shape.out_channels].fill(T::zero());
    }

    /// Images whose patches [`im2col`] writes at once: about a megabyte of them, so the patch
    /// matrix the GEMM reads (and packs) is still in L2 — at batch 256 the Nature CNN's first
    /// layer would otherwise write and read back 105 MB of patches (inference took 112 ms
    /// against 60 ms for PyTorch).
    fn chunk_images(&self) -> usize {
        const PATCH_VALUES: usize = 256 * 1024;
        (PATCH_VALUES / (self.shape.positions() * self.shape.patch_len())).max(1)
    }

    /// The patches of `n` images of `x` into `patches`; channels-first images go through
    /// `nhwc` first, so the contiguous-run path of [`im2col`] reads them.
    fn cut_patches<T: Scalar>(&self, x: &[T], n: usize, nhwc: &mut Vec<T>, patches: &mut [T]) {
        let (s, scale) = (self.shape, T::of(self.input_scale));
        if s.channels_first && s.padding == 0 {
            nhwc.resize(n * s.in_len(), T::zero());
            to_nhwc(&s, x, n, nhwc);
            im2col(&ConvShape { channels_first: false, ..s }, nhwc, n, scale, patches);
        } else {
            im2col(&s, x, n, scale, patches);
        }
    }

    /// Runs `rows` images (`x`: `[rows, in_len]`, NHWC) forward; the result is `ws.output()`.
    pub fn forward<T: Scalar>(&self, params: &[T], x: &[T], rows: usize, ws: &mut ConvWorkspace<T>) {
        let s = self.shape;
        assert!(x.len() >= rows * s.in_len(), "conv: input holds fewer than {rows} images");
        let (positions, patch, out) = (s.positions(), s.patch_len(), s.out_channels);
        let chunk = self.chunk_images().min(rows.max(1));
        ws.patches.resize(chunk * positions * patch, T::zero());
        ws.output.resize(rows * positions * out, T::zero());
        for start in (0..rows).step_by(chunk) {
            let n = chunk.min(rows - start);
            let patches = &mut ws.patches[..n * positions * patch];
            self.cut_patches(&x[start * s.in_len()..], n, &mut ws.nhwc, patches);
            let z = &mut ws.output[start * positions * out..(start + n) * positions * out];
            x_wt(patches, self.weight(params), n * positions, patch, out, z);
        }
        self.activation.bias_activate(&mut ws.output, self.bias(params));
    }

    /// Backpropagates `ws.output_grad` (filled by the caller after `forward` on the same `x`),
    /// accumulating into `grads`; the patches are cut again from `x`, chunk by chunk, as
    /// `forward` cut them. With `input_grad`, leaves `∂L/∂x` in `ws.input_grad()`.
    pub fn backward<T: Scalar>(
        &self,
        params: &[T],
        grads: &mut [T],
        x: &[T],
        rows: usize,
        ws: &mut ConvWorkspace<T>,
        input_grad: bool,
    ) {
        let s = self.shape;
        let (positions, patch, out) = (s.positions(), s.patch_len(), s.out_channels);
        assert!(ws.grad.len() >= rows * positions * out, "conv: output gradient not filled");
        let dz = &mut ws.grad[..rows * positions * out];
        backprop_and_bias_grad(Some(self.activation), dz, &ws.output, &mut grads[self.bias..self.bias + out]);
        let chunk = self.chunk_images().min(rows.max(1));
        ws.patches.resize(chunk * positions * patch, T::zero());
        if input_grad {
            ws.patch_grad.resize(chunk * positions * patch, T::zero());
            ws.input_grad.resize(rows * s.in_len(), T::zero());
        }
        let scale = T::of(self.input_scale);
        for start in (0..rows).step_by(chunk) {
            let n = chunk.min(rows - start);
            let patches = &mut ws.patches[..n * positions * patch];
            self.cut_patches(&x[start * s.in_len()..], n, &mut ws.nhwc, patches);
            let dz = &dz[start * positions * out..(start + n) * positions * out];
            let gw = &mut grads[self.weight..self.weight + out * patch];
            acc_dzt_x(dz, patches, n * positions, patch, out, gw);
            if input_grad {
                let patch_grad = &mut ws.patch_grad[..n * positions * patch];
                dz_w(dz, self.weight(params), n * positions, patch, out, patch_grad);
                let image_grads = &mut ws.input_grad[start * s.in_len()..(start + n) * s.in_len()];
                col2im(&s, patch_grad, n, scale, image_grads);
            }
        }
    }
}

/// One convolution of an encoder: `channels` filters of `kernel × kernel`, moved by `stride`
/// over an input padded with `padding` zeros on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

/// An image encoder: the input image (height × width × channels), its convolutions in order
/// (each followed by the activation), and the factor raw inputs are scaled by as the first
/// layer reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub layers: Vec<ConvSpec>,
    pub input_scale: f64,
    /// Images arrive `[channels, height, width]` (see [`ConvShape::channels_first`]).
    pub channels_first: bool,
}

impl EncoderConfig {
    /// Mnih et al.'s Nature DQN encoder: 32 filters 8×8 stride 4, 64 4×4 stride 2, 64 3×3
    /// stride 1, over `u8` frames scaled by 1/255 (84×84×4 in the paper; its 512-unit layer
    /// is the MLP that follows).
    pub fn nature(height: usize, width: usize, channels: usize) -> Self {
        let conv = |channels, kernel, stride| ConvSpec { channels, kernel, stride, padding: 0 };
        EncoderConfig {
            height,
            width,
            channels,
            layers: vec![conv(32, 8, 4), conv(64, 4, 2), conv(64, 3, 1)],
            input_scale: 1.0 / 255.0,
            channels_first: false,
        }
    }

    /// Young & Tian's MinAtar encoder: 16 filters 3×3 stride 1 over the 10×10×n boolean board
    /// (their 128-unit layer is the MLP that follows).
    pub fn minatar(height: usize, width: usize, channels: usize) -> Self {
        let layers = vec![ConvSpec { channels: 16, kernel: 3, stride: 1, padding: 0 }];
        EncoderConfig { height, width, channels, layers, input_scale: 1.0, channels_first: false }
    }

    /// Values of one input image.
    pub fn in_len(&self) -> usize {
        self.height * self.width * self.channels
    }
}

/// Convolutions in sequence (see [`EncoderConfig`]): an image in, its features (the last
/// layer's NHWC output, flattened) out.
#[derive(Debug, Clone)]
pub struct ConvEncoder {
    layers: Vec<Conv2d>,
}

/// Per-call buffers of a [`ConvEncoder`], one per layer.
#[derive(Debug, Clone, Default)]
pub struct EncoderWorkspace<T> {
    layers: Vec<ConvWorkspace<T>>,
}

impl<T: Scalar> EncoderWorkspace<T> {
    /// The features from the last `forward`.
    pub fn features(&self) -> &[T] {
        self.layers.last().map_or(&[], |l| l.output())
    }
}

impl ConvEncoder {
    /// Registers `{prefix}.{i}.weight` / `.bias` per layer; an image too small for a kernel is
    /// an error naming the layer.
    pub fn new(layout: &mut ParamLayout, prefix: &str, config: &EncoderConfig, activation: Activation) -> Result<Self> {
        let (mut height, mut width, mut channels) = (config.height, config.width, config.channels);
        let mut layers = Vec::with_capacity(config.layers.len());
        for (i, spec) in config.layers.iter().enumerate() {
            if spec.kernel == 0 || spec.stride == 0 || spec.channels == 0 {
                return Err(NnError::Config(format!("conv layer {i}: kernel, stride and channels must be ≥ 1")));
            }
            if spec.kernel > height.min(width) + 2 * spec.padding {
                let hint = match (i, config.channels_first) {
                    (0, false) => " (images stored channels-first? say so: net.channels_first = true)",
                    _ => "; use fewer or smaller layers",
                };
                return Err(NnError::Config(format!(
                    "conv layer {i}: a {k}×{k} kernel does not fit its {height}×{width} input (padding {p}){hint}",
                    k = spec.kernel,
                    p = spec.padding
                )));
            }
            let shape = ConvShape {
                in_height: height,
                in_width: width,
                in_channels: channels,
                out_channels: spec.channels,
                kernel: spec.kernel,
                stride: spec.stride,
                padding: spec.padding,
                channels_first: i == 0 && config.channels_first,
            };
            let scale = if i == 0 { config.input_scale } else { 1.0 };
            layers.push(Conv2d::new(layout, &format!("{prefix}.{i}"), shape, activation, scale));
            (height, width, channels) = (shape.out_height(), shape.out_width(), spec.channels);
        }
        if layers.is_empty() {
            return Err(NnError::Config("an image encoder needs at least one conv layer".into()));
        }
        Ok(ConvEncoder { layers })
    }

    pub fn layers(&self) -> &[Conv2d] {
        &self.layers
    }

    /// Values of one image's features.
    pub fn out_len(&self) -> usize {
        self.layers.last().map_or(0, |l| l.shape.out_len())
    }

    /// Every layer's filters orthogonal with `gain`, biases zero.
    pub fn init<T: Scalar, R: Rng + ?Sized>(&self, params: &mut [T], gain: f64, rng: &mut R) {
        self.layers.iter().for_each(|l| l.init(params, gain, rng));
    }

    /// The features of `rows` images (`[rows, in_len]`), `[rows, out_len]`.
    pub fn forward<'a, T: Scalar>(
        &self,
        params: &[T],
        x: &[T],
        rows: usize,
        ws: &'a mut EncoderWorkspace<T>,
    ) -> &'a [T] {
        ws.layers.resize_with(self.layers.len(), Default::default);
        for (i, layer) in self.layers.iter().enumerate() {
            let (before, after) = ws.layers.split_at_mut(i);
            let input = if i == 0 { x } else { before[i - 1].output() };
            layer.forward(params, input, rows, &mut after[0]);
        }
        ws.layers.last().map_or(&[], |l| l.output())
    }

    /// Backpropagates `d_features` (`∂L/∂features` of the last `forward` of `x`) into `grads`.
    pub fn backward<T: Scalar>(
        &self,
        params: &[T],
        grads: &mut [T],
        x: &[T],
        rows: usize,
        d_features: &[T],
        ws: &mut EncoderWorkspace<T>,
    ) {
        let n = self.layers.len();
        ws.layers[n - 1].output_grad(d_features.len()).copy_from_slice(d_features);
        for i in (0..n).rev() {
            let (below, above) = ws.layers.split_at_mut(i);
            let input = if i == 0 { x } else { below[i - 1].output() };
            self.layers[i].backward(params, grads, input, rows, &mut above[0], i > 0);
            if i > 0 {
                let d = above[0].input_grad();
                below[i - 1].output_grad(d.len()).copy_from_slice(d);
            }
        }
    }
}

/// The `(input row, input column)` of kernel offset `(ki, kj)` at output `(oi, oj)`, if it
/// falls inside the image (outside it is the zero padding).
#[inline]
fn source(s: &ConvShape, oi: usize, oj: usize, ki: usize, kj: usize) -> Option<(usize, usize)> {
    let i = (oi * s.stride + ki).checked_sub(s.padding)?;
    let j = (oj * s.stride + kj).checked_sub(s.padding)?;
    (i < s.in_height && j < s.in_width).then_some((i, j))
}

/// Where input value `(i, j, channel 0)` of an image is, and the step between its channels.
#[inline]
fn input_index(s: &ConvShape, i: usize, j: usize) -> (usize, usize) {
    match s.channels_first {
        true => (i * s.in_width + j, s.in_height * s.in_width),
        false => ((i * s.in_width + j) * s.in_channels, 1),
    }
}

/// Each output position's patch of `scale · x`, `[rows·oh·ow, kh·kw·in]` (for NHWC input, each
/// cell of a patch is a contiguous run of `in` values).
fn im2col<T: Scalar>(s: &ConvShape, x: &[T], rows: usize, scale: T, patches: &mut [T]) {
    if !s.channels_first && s.padding == 0 {
        return im2col_unpadded(s, x, rows, scale, patches);
    }
    let (c, k, patch) = (s.in_channels, s.kernel, s.patch_len());
    let mut p = 0;
    for image in x.chunks_exact(s.in_len()).take(rows) {
        for oi in 0..s.out_height() {
            for oj in 0..s.out_width() {
                let dst = &mut patches[p * patch..(p + 1) * patch];
                for ki in 0..k {
                    for kj in 0..k {
                        let cell = &mut dst[(ki * k + kj) * c..(ki * k + kj + 1) * c];
                        match source(s, oi, oj, ki, kj) {
                            Some((i, j)) => {
                                let (first, step) = input_index(s, i, j);
                                let from = image[first..].iter().step_by(step);
                                cell.iter_mut().zip(from).for_each(|(d, &v)| *d = v * scale);
                            }
                            None => cell.fill(T::zero()),
                        }
                    }
                }
                p += 1;
            }
        }
    }
}

/// [`im2col`] for NHWC input without padding (every layer of the Nature and MinAtar
/// encoders): kernel row `ki` of a patch is one contiguous run of `kernel · in` input values,
/// copied whole — cell by cell with bounds checks, im2col took 38 % of the Nature CNN's
/// inference at batch 256.
fn im2col_unpadded<T: Scalar>(s: &ConvShape, x: &[T], rows: usize, scale: T, patches: &mut [T]) {
    let (run, patch, line) = (s.kernel * s.in_channels, s.patch_len(), s.in_width * s.in_channels);
    let one = scale == T::of(1.0);
    let mut dst = patches.chunks_exact_mut(patch);
    for image in x.chunks_exact(s.in_len()).take(rows) {
        for oi in 0..s.out_height() {
            for oj in 0..s.out_width() {
                let Some(dst) = dst.next() else { return };
                for (ki, cells) in dst.chunks_exact_mut(run).enumerate() {
                    let start = (oi * s.stride + ki) * line + oj * s.stride * s.in_channels;
                    let src = &image[start..start + run];
                    if one {
                        cells.copy_from_slice(src);
                    } else {
                        cells.iter_mut().zip(src).for_each(|(d, &v)| *d = v * scale);
                    }
                }
            }
        }
    }
}

/// `rows` images from `[channels, height, width]` to NHWC, into `out`.
fn to_nhwc<T: Scalar>(s: &ConvShape, x: &[T], rows: usize, out: &mut [T]) {
    let (c, plane) = (s.in_channels, s.in_height * s.in_width);
    for (image, nhwc) in x.chunks_exact(s.in_len()).zip(out.chunks_exact_mut(s.in_len())).take(rows) {
        for (p, cell) in nhwc.chunks_exact_mut(c).enumerate() {
            cell.iter_mut().enumerate().for_each(|(ch, v)| *v = image[ch * plane + p]);
        }
    }
}

/// The adjoint of [`im2col`]: every patch value's gradient added back to the input value it
/// was read from (times `scale`), `[rows, in_len]`.
fn col2im<T: Scalar>(s: &ConvShape, patch_grad: &[T], rows: usize, scale: T, input_grad: &mut [T]) {
    let (c, k, patch) = (s.in_channels, s.kernel, s.patch_len());
    input_grad.fill(T::zero());
    let mut p = 0;
    for image in input_grad.chunks_exact_mut(s.in_len()).take(rows) {
        for oi in 0..s.out_height() {
            for oj in 0..s.out_width() {
                let src = &patch_grad[p * patch..(p + 1) * patch];
                for ki in 0..k {
                    for kj in 0..k {
                        if let Some((i, j)) = source(s, oi, oj, ki, kj) {
                            let cell = &src[(ki * k + kj) * c..(ki * k + kj + 1) * c];
                            let (first, step) = input_index(s, i, j);
                            let to = image[first..].iter_mut().step_by(step);
                            to.zip(cell).for_each(|(d, &g)| *d += g * scale);
                        }
                    }
                }
                p += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    use super::*;

    /// A direct transcription of the convolution sum, for the forward pass.
    fn reference(conv: &Conv2d, params: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
        let s = conv.shape;
        let (w, b) = (conv.weight(params), conv.bias(params));
        let mut out = Vec::new();
        for image in x.chunks_exact(s.in_len()).take(rows) {
            for oi in 0..s.out_height() {
                for oj in 0..s.out_width() {
                    for (o, &bias) in b.iter().enumerate() {
                        let mut z = bias;
                        for ki in 0..s.kernel {
                            for kj in 0..s.kernel {
                                let Some((i, j)) = source(&s, oi, oj, ki, kj) else { continue };
                                for ch in 0..s.in_channels {
                                    let wi = ((o * s.kernel + ki) * s.kernel + kj) * s.in_channels + ch;
                                    z += w[wi] * conv.input_scale * image[(i * s.in_width + j) * s.in_channels + ch];
                                }
                            }
                        }
                        out.push(z.tanh());
                    }
                }
            }
        }
        out
    }

    fn layer(stride: usize, padding: usize, channels_first: bool) -> (Conv2d, Vec<f64>, Vec<f64>) {
        let shape = ConvShape {
            in_height: 7,
            in_width: 6,
            in_channels: 3,
            out_channels: 4,
            kernel: 3,
            stride,
            padding,
            channels_first,
        };
        let mut layout = ParamLayout::new();
        let conv = Conv2d::new(&mut layout, "conv", shape, Activation::Tanh, 0.5);
        let mut rng = Pcg64Mcg::seed_from_u64(stride as u64 * 10 + padding as u64);
        let params: Vec<f64> = (0..layout.len()).map(|_| rng.random_range(-0.5..0.5)).collect();
        let x: Vec<f64> = (0..2 * shape.in_len()).map(|_| rng.random_range(-1.0..1.0)).collect();
        (conv, params, x)
    }

    #[test]
    fn the_forward_pass_is_the_convolution_sum() {
        for (stride, padding) in [(1, 0), (2, 1), (1, 1), (3, 2)] {
            let (conv, params, x) = layer(stride, padding, false);
            let mut ws = ConvWorkspace::default();
            conv.forward(&params, &x, 2, &mut ws);
            let want = reference(&conv, &params, &x, 2);
            assert_eq!(ws.output().len(), want.len());
            let worst = ws.output().iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-12, "stride {stride} padding {padding}: {worst}");
            // The same images channels-first give the same outputs.
            let (chw, ..) = layer(stride, padding, true);
            let s = chw.shape;
            let mut transposed = vec![0.0; x.len()];
            for (image, out) in x.chunks_exact(s.in_len()).zip(transposed.chunks_exact_mut(s.in_len())) {
                for (p, pixel) in image.chunks_exact(s.in_channels).enumerate() {
                    for (ch, &v) in pixel.iter().enumerate() {
                        out[ch * s.in_height * s.in_width + p] = v;
                    }
                }
            }
            let mut ws_chw = ConvWorkspace::default();
            chw.forward(&params, &transposed, 2, &mut ws_chw);
            assert_eq!(ws_chw.output(), ws.output(), "channels-first, stride {stride} padding {padding}");
        }
    }

    /// `L = Σ c ⊙ output` for fixed random `c`: central differences against `backward` for
    /// every parameter and every input value.
    #[test]
    fn gradients_match_finite_differences() {
        const H: f64 = 1e-6;
        for (stride, padding, channels_first) in
            [(1, 0, false), (2, 1, false), (3, 2, false), (2, 1, true), (1, 0, true)]
        {
            let (conv, params, x) = layer(stride, padding, channels_first);
            let mut rng = Pcg64Mcg::seed_from_u64(99);
            let c: Vec<f64> = (0..2 * conv.shape.out_len()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let loss = |params: &[f64], x: &[f64]| {
                let mut ws = ConvWorkspace::default();
                conv.forward(params, x, 2, &mut ws);
                ws.output().iter().zip(&c).map(|(a, b)| a * b).sum::<f64>()
            };
            let mut ws = ConvWorkspace::default();
            conv.forward(&params, &x, 2, &mut ws);
            ws.output_grad(c.len()).copy_from_slice(&c);
            let mut grads = vec![0.0; params.len()];
            conv.backward(&params, &mut grads, &x, 2, &mut ws, true);
            for i in 0..params.len() {
                let (mut up, mut down) = (params.clone(), params.clone());
                up[i] += H;
                down[i] -= H;
                let numeric = (loss(&up, &x) - loss(&down, &x)) / (2.0 * H);
                assert!(
                    (numeric - grads[i]).abs() <= 1e-7 + 1e-6 * grads[i].abs(),
                    "param {i}: {} vs {numeric}",
                    grads[i]
                );
            }
            for i in 0..x.len() {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += H;
                down[i] -= H;
                let numeric = (loss(&params, &up) - loss(&params, &down)) / (2.0 * H);
                let analytic = ws.input_grad()[i];
                assert!(
                    (numeric - analytic).abs() <= 1e-7 + 1e-6 * analytic.abs(),
                    "input {i}: {analytic} vs {numeric}"
                );
            }
            assert!(grads.iter().any(|g| g.abs() > 1e-3), "gradient is trivially zero");
        }
    }

    /// A layer whose patches fill two images per chunk, run on 5 images (chunks 2, 2, 1):
    /// the batch's outputs, input gradients and summed weight gradients equal those of its
    /// images one at a time — the seams between chunks lose or repeat nothing.
    #[test]
    fn chunks_of_images_add_up_to_the_whole_batch() {
        let shape = ConvShape {
            in_height: 40,
            in_width: 40,
            in_channels: 4,
            out_channels: 3,
            kernel: 5,
            stride: 1,
            padding: 0,
            channels_first: false,
        };
        let mut layout = ParamLayout::new();
        let conv = Conv2d::new(&mut layout, "c", shape, Activation::Relu, 0.5);
        assert_eq!(conv.chunk_images(), 2);
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let params: Vec<f64> = (0..layout.len()).map(|_| rng.random_range(-0.3..0.3)).collect();
        let rows = 5;
        let x: Vec<f64> = (0..rows * shape.in_len()).map(|_| rng.random_range(-1.0..1.0)).collect();
        let c: Vec<f64> = (0..rows * shape.out_len()).map(|_| rng.random_range(-1.0..1.0)).collect();
        let run = |x: &[f64], c: &[f64], rows: usize| {
            let mut ws = ConvWorkspace::default();
            conv.forward(&params, x, rows, &mut ws);
            ws.output_grad(c.len()).copy_from_slice(c);
            let mut grads = vec![0.0; params.len()];
            conv.backward(&params, &mut grads, x, rows, &mut ws, true);
            (ws.output().to_vec(), ws.input_grad().to_vec(), grads)
        };
        let (output, input_grad, grads) = run(&x, &c, rows);
        let mut summed = vec![0.0; params.len()];
        for i in 0..rows {
            let (xi, ci) =
                (&x[i * shape.in_len()..(i + 1) * shape.in_len()], &c[i * shape.out_len()..(i + 1) * shape.out_len()]);
            let (o, g, w) = run(xi, ci, 1);
            assert_eq!(&output[i * shape.out_len()..(i + 1) * shape.out_len()], &o[..], "image {i}'s output");
            assert_eq!(&input_grad[i * shape.in_len()..(i + 1) * shape.in_len()], &g[..], "image {i}'s input gradient");
            summed.iter_mut().zip(&w).for_each(|(s, g)| *s += g);
        }
        for (a, b) in grads.iter().zip(&summed) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "weight gradient {a} vs {b}");
        }
    }
}
