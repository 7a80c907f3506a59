//! int8 inference for trained MLP policies: weights quantized per output channel, activations
//! per row, products summed exactly in `i32`.
//!
//! A layer `y = x·Wᵀ + b` becomes `y[r,o] = s_x[r]·s_w[o]·Σ_k q_x[r,k]·q_w[o,k] + b[o]` with
//! symmetric scales `s_w[o] = max_k |W[o,k]| / 127` (fixed at quantization) and
//! `s_x[r] = max_k |x[r,k]| / 127` (computed for each row as it arrives: dynamic
//! quantization, so no calibration set can miss a state's range), `q = round(v / s)` to even
//! and clamped to ±127 as ONNX's `QuantizeLinear` does. Biases and the activation stay in
//! `f32`. The dot products are integers, so every kernel gives the same accumulators bit for
//! bit; the kernels differ only in speed:
//!
//! - AVX-512 VNNI (`vpdpbusd`: 64 multiply-adds of u8 × i8 per instruction; the activations
//!   are shifted by +128 into u8 and `128·Σ_k q_w[o,k]` is subtracted after);
//! - AVX2 (`vpmaddubsw` on |q_x| and q_w with x's sign: pairs of products stay within i16
//!   because both sides are within ±127);
//! - a portable loop everywhere else.
//!
//! The first two read the weights packed in blocks of 16 outputs × 4 inputs (the shape of one
//! `vpdpbusd`), so each loaded weight vector serves several rows.

use crate::activation::{add_bias_and_activate, Activation};
use crate::mlp::Mlp;

/// Outputs per packed block: one 512-bit register of `i32` accumulators.
const LANES: usize = 16;
/// Inputs per lane step: the 4 bytes `vpdpbusd` sums per lane.
const GROUP: usize = 4;
/// Rows sharing one pass over a weight block.
const ROW_TILE: usize = 4;

/// The integer dot-product kernel a CPU can run; chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernel {
    Portable,
    Avx2,
    Avx512Vnni,
}

impl Int8Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                return Int8Kernel::Avx512Vnni;
            }
            if is_x86_feature_detected!("avx2") {
                return Int8Kernel::Avx2;
            }
        }
        Int8Kernel::Portable
    }

    /// Every kernel this CPU can run (for tests that compare them).
    pub fn available() -> Vec<Self> {
        let best = Self::detect();
        [Int8Kernel::Portable, Int8Kernel::Avx2, Int8Kernel::Avx512Vnni]
            .into_iter()
            .filter(|k| {
                matches!(
                    (k, best),
                    (Int8Kernel::Portable, _)
                        | (Int8Kernel::Avx2, Int8Kernel::Avx2 | Int8Kernel::Avx512Vnni)
                        | (Int8Kernel::Avx512Vnni, Int8Kernel::Avx512Vnni)
                )
            })
            .collect()
    }

    /// Whether the kernel reads activations shifted into u8 (`q + 128`, `vpdpbusd`'s unsigned
    /// operand) rather than as i8.
    fn shifted_inputs(self) -> bool {
        self == Int8Kernel::Avx512Vnni && Int8Kernel::detect() == Int8Kernel::Avx512Vnni
    }

    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Portable => "portable",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::Avx512Vnni => "avx512-vnni",
        }
    }
}

/// `round(v / scale)` to even, clamped to ±127. The rounding is the float adder's: adding
/// 1.5·2²³ leaves no fraction bits and the default rounding mode is to even, and the integer
/// then sits in the sum's low mantissa bits — so no float-to-int conversion either, and the
/// loop vectorizes (a `round_ties_even` library call per value took 3× the whole int8 pass).
#[inline(always)]
fn quantize_value(v: f32, inv_scale: f32) -> i8 {
    const SHIFT: f32 = 12_582_912.0;
    const SHIFT_BITS: i32 = 0x4B40_0000;
    let x = (v * inv_scale).clamp(-127.0, 127.0);
    ((x + SHIFT).to_bits() as i32).wrapping_sub(SHIFT_BITS) as i8
}

/// The symmetric scale of a set of values: `max |v| / 127`, or 1 when all are zero.
#[inline(always)]
pub fn symmetric_scale(values: &[f32]) -> f32 {
    // Sixteen running maxima, so the loop vectorizes.
    let mut lanes = [0.0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (m, v) in lanes.iter_mut().zip(chunk) {
            *m = if v.abs() > *m { v.abs() } else { *m };
        }
    }
    let tail = chunks.remainder().iter().fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    scale_of_max(lanes.iter().fold(tail, |m, &v| if v > m { v } else { m }))
}

/// `max / 127`, or 1 for a row of zeros (any scale quantizes those exactly).
#[inline(always)]
fn scale_of_max(max: f32) -> f32 {
    if max > 0.0 {
        max / 127.0
    } else {
        1.0
    }
}

/// One fully connected layer in int8.
#[derive(Debug, Clone)]
pub struct QuantizedLinear {
    pub in_dim: usize,
    pub out_dim: usize,
    /// `q_w`, `[out_dim, in_dim]` row-major.
    pub weights: Vec<i8>,
    /// `s_w`, one per output.
    pub scales: Vec<f32>,
    pub bias: Vec<f32>,
    /// `q_w` in blocks: `[out_blocks][in_groups][LANES][GROUP]`, zero-padded.
    packed: Vec<i8>,
    /// `128·Σ_k q_w[o,k]` per (padded) output: the VNNI kernel's shift correction.
    shift_correction: Vec<i32>,
}

impl QuantizedLinear {
    /// Quantizes a `[out_dim, in_dim]` weight matrix per output channel.
    pub fn new(weight: &[f32], bias: &[f32], in_dim: usize, out_dim: usize) -> Self {
        let mut weights = vec![0i8; in_dim * out_dim];
        let mut scales = vec![0f32; out_dim];
        for o in 0..out_dim {
            let row = &weight[o * in_dim..(o + 1) * in_dim];
            scales[o] = symmetric_scale(row);
            let inv = 1.0 / scales[o];
            for (q, &w) in weights[o * in_dim..(o + 1) * in_dim].iter_mut().zip(row) {
                *q = quantize_value(w, inv);
            }
        }
        let mut layer = QuantizedLinear {
            in_dim,
            out_dim,
            weights,
            scales,
            bias: bias.to_vec(),
            packed: Vec::new(),
            shift_correction: Vec::new(),
        };
        layer.pack();
        layer
    }

    fn groups(&self) -> usize {
        self.in_dim.div_ceil(GROUP)
    }

    fn blocks(&self) -> usize {
        self.out_dim.div_ceil(LANES)
    }

    /// Width of a quantized input row (inputs padded to whole groups).
    fn padded_in(&self) -> usize {
        self.groups() * GROUP
    }

    fn pack(&mut self) {
        let (groups, blocks) = (self.groups(), self.blocks());
        self.packed = vec![0i8; blocks * groups * LANES * GROUP];
        self.shift_correction = vec![0i32; blocks * LANES];
        for o in 0..self.out_dim {
            let (block, lane) = (o / LANES, o % LANES);
            let row = &self.weights[o * self.in_dim..(o + 1) * self.in_dim];
            for (k, &q) in row.iter().enumerate() {
                let (group, byte) = (k / GROUP, k % GROUP);
                self.packed[((block * groups + group) * LANES + lane) * GROUP + byte] = q;
            }
            self.shift_correction[o] = 128 * row.iter().map(|&q| q as i32).sum::<i32>();
        }
    }

    /// `out[r, o] = row_scales[r]·channel_scales[o]·Σ_k xq[r,k]·q_w[o,k]` for `rows` rows of
    /// quantized inputs (`[rows, padded_in]`, shifted into u8 for the VNNI kernel); `out` is
    /// `[rows, out_dim]`. The sums are exact integers; the scaling is fused into their store.
    fn accumulate(
        &self,
        kernel: Int8Kernel,
        xq: &[i8],
        rows: usize,
        row_scales: &[f32],
        channel_scales: &[f32],
        out: &mut [f32],
    ) {
        assert!(xq.len() >= rows * self.padded_in(), "int8 layer: input buffer too short");
        assert!(out.len() >= rows * self.out_dim, "int8 layer: output buffer too short");
        assert!(row_scales.len() >= rows && channel_scales.len() == self.out_dim, "int8 layer: scales");
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni if kernel.shifted_inputs() => {
                // SAFETY: the CPU supports the kernel's features (checked by `shifted_inputs`);
                // the buffer bounds are asserted above.
                unsafe { x86::accumulate_vnni(self, xq, rows, row_scales, channel_scales, Epilogue::Floats(out)) }
            }
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 if is_x86_feature_detected!("avx2") => {
                // SAFETY: as above, for AVX2.
                unsafe { x86::accumulate_avx2(self, xq, rows, row_scales, channel_scales, out) }
            }
            _ => self.accumulate_portable(xq, rows, row_scales, channel_scales, out),
        }
    }

    /// [`QuantizedLinear::accumulate`] with the activation fused into the kernel's store
    /// (`epilogue`), where the kernel can (VNNI); returns false (and does nothing) for the
    /// other kernels.
    fn accumulate_fused(
        &self,
        kernel: Int8Kernel,
        xq: &[i8],
        rows: usize,
        row_scales: &[f32],
        epilogue: Epilogue<'_>,
    ) -> bool {
        assert!(xq.len() >= rows * self.padded_in() && row_scales.len() >= rows, "int8 layer: input buffers");
        #[cfg(target_arch = "x86_64")]
        {
            if kernel.shifted_inputs() {
                // SAFETY: the CPU supports the kernel's features (checked by `shifted_inputs`);
                // the buffer bounds are asserted above and in the kernel.
                unsafe { x86::accumulate_vnni(self, xq, rows, row_scales, &self.scales, epilogue) };
                return true;
            }
        }
        let _ = (kernel, epilogue);
        false
    }

    fn accumulate_portable(&self, xq: &[i8], rows: usize, row_scales: &[f32], channel_scales: &[f32], out: &mut [f32]) {
        let pin = self.padded_in();
        for r in 0..rows {
            let x = &xq[r * pin..r * pin + self.in_dim];
            let y = &mut out[r * self.out_dim..(r + 1) * self.out_dim];
            for ((y, w), &sw) in y.iter_mut().zip(self.weights.chunks_exact(self.in_dim.max(1))).zip(channel_scales) {
                let sum: i32 = x.iter().zip(w).map(|(&a, &b)| a as i32 * b as i32).sum();
                *y = sum as f32 * (row_scales[r] * sw);
            }
        }
    }
}

/// The first layer of a [`QuantizedMlp`], kept in `f32`: it reads raw observations, whose
/// features differ in scale by orders of magnitude (a cart's velocity and a pole's angle), so
/// one scale per row would round the small ones to nothing — int8 DQN on CartPole fell from
/// 500 to 371 that way. With a few inputs it is a small share of the products (4·64 of
/// 4480 for CartPole's 64-64 net).
#[derive(Debug, Clone)]
pub struct InputLayer {
    pub in_dim: usize,
    pub out_dim: usize,
    /// `Wᵀ`, `[in_dim, out_dim]`: each input scales a contiguous row of outputs.
    pub weight_t: Vec<f32>,
    pub bias: Vec<f32>,
    /// `weight_t` and `bias` times [`TANH_PRESCALE`] before a tanh (else empty): the VNNI
    /// path's tanh takes its argument in that unit, one multiply per value less.
    prescaled_weight_t: Vec<f32>,
    prescaled_bias: Vec<f32>,
}

impl InputLayer {
    fn new(layer: &crate::mlp::Linear, params: &[f32], activation: Activation) -> Self {
        let (w, (i, o)) = (layer.weight(params), (layer.in_dim, layer.out_dim));
        let mut weight_t = vec![0.0; i * o];
        for r in 0..o {
            for k in 0..i {
                weight_t[k * o + r] = w[r * i + k];
            }
        }
        let bias = layer.bias(params).to_vec();
        let prescale = |v: &[f32]| match activation {
            Activation::Tanh => v.iter().map(|v| v * TANH_PRESCALE).collect(),
            Activation::Relu => Vec::new(),
        };
        let (prescaled_weight_t, prescaled_bias) = (prescale(&weight_t), prescale(&bias));
        InputLayer { in_dim: i, out_dim: o, weight_t, bias, prescaled_weight_t, prescaled_bias }
    }

    /// `activation(x·Wᵀ + b)` of a tile, quantized into `xq` for the next layer (per row, or
    /// with [`TANH_SCALE`] after tanh); `out` holds the floats where they were needed.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &[f32],
        rows: usize,
        activation: Activation,
        padded: usize,
        shifted: bool,
        out: &mut Vec<f32>,
        xq: &mut Vec<i8>,
        scales: &mut Vec<f32>,
    ) {
        out.clear();
        out.resize(rows * self.out_dim, 0.0);
        let tanh = activation == Activation::Tanh;
        #[cfg(target_arch = "x86_64")]
        {
            // The VNNI kernel's CPUs have AVX-512; its inputs are shifted into u8.
            if shifted {
                xq.clear();
                xq.resize(rows * padded, 0);
                // Relu rows get their own scales inside.
                scales.clear();
                scales.resize(rows, TANH_SCALE);
                // SAFETY: `shifted` is only set where the CPU runs the VNNI kernel, whose
                // features include the ones this function is compiled for; bounds are
                // asserted inside.
                unsafe { x86::input_layer_avx512(self, x, rows, tanh, padded, out, xq, scales) };
                return;
            }
        }
        for (row, y) in x.chunks_exact(self.in_dim).zip(out.chunks_exact_mut(self.out_dim)) {
            for (&xk, w) in row.iter().zip(self.weight_t.chunks_exact(self.out_dim)) {
                for (y, &w) in y.iter_mut().zip(w) {
                    *y += xk * w;
                }
            }
        }
        activation.bias_activate(out, &self.bias);
        quantize_rows(out, rows, self.out_dim, padded, shifted, tanh.then_some(TANH_SCALE), xq, scales);
    }
}

/// `Σ a·b` with 8 running sums, so the loop vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &x), &y) in sums.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// The last layer of a [`QuantizedMlp`] of two or more layers: `f32` weights over the
/// activations of the layer before — int8 ones dequantized by their row scale where the layer
/// before wrote them quantized (tanh on VNNI), its floats otherwise (relu). Its outputs decide the
/// action by their differences, and a DQN's Q-values differ by a fraction of a percent of
/// their size: int8 weights per channel moved them enough to drop CartPole DQN from 500 to 379
/// (with `f32` weights here: 493). It is a small share of the products (64·2 of 4480).
#[derive(Debug, Clone)]
pub struct OutputLayer {
    pub in_dim: usize,
    pub out_dim: usize,
    /// `[out_dim, in_dim]`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// One dequantized input row.
    row: Vec<f32>,
}

impl OutputLayer {
    fn new(layer: &crate::mlp::Linear, params: &[f32]) -> Self {
        OutputLayer {
            in_dim: layer.in_dim,
            out_dim: layer.out_dim,
            weight: layer.weight(params).to_vec(),
            bias: layer.bias(params).to_vec(),
            row: vec![0.0; layer.in_dim],
        }
    }

    /// Width of a quantized input row, as the int8 layers pad it.
    fn padded_in(&self) -> usize {
        self.in_dim.div_ceil(GROUP) * GROUP
    }

    /// `activation(s_x·(q_x·Wᵀ) + b)` for `rows` quantized rows (`[rows, padded_in]`, shifted
    /// into u8 when `shifted`) into `out` (`[rows, out_dim]`).
    fn forward(
        &mut self,
        xq: &[i8],
        rows: usize,
        shifted: bool,
        scales: &[f32],
        activation: Option<Activation>,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if shifted {
                // SAFETY: as in `InputLayer::forward`.
                unsafe { x86::output_layer_avx512(self, xq, rows, scales, out) };
                return self.finish(rows, activation, out);
            }
        }
        let flip = if shifted { 0x80u8 as i8 } else { 0 };
        let padded = self.padded_in();
        for r in 0..rows {
            for (x, &q) in self.row.iter_mut().zip(&xq[r * padded..r * padded + self.in_dim]) {
                *x = (q ^ flip) as f32;
            }
            let y = &mut out[r * self.out_dim..(r + 1) * self.out_dim];
            for (y, w) in y.iter_mut().zip(self.weight.chunks_exact(self.in_dim)) {
                *y = scales[r] * dot(&self.row, w);
            }
        }
        self.finish(rows, activation, out);
    }

    /// `activation(x·Wᵀ + b)` for `rows` float rows (`[rows, in_dim]`): the path after a
    /// layer whose activation left the kernel as floats (relu), where quantizing them only to
    /// convert them back would cost a pass and a rounding error.
    fn forward_floats(&mut self, x: &[f32], rows: usize, activation: Option<Activation>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the function is compiled for; bounds are
                // asserted inside.
                unsafe { x86::output_floats_avx512(self, x, rows, out) };
                return self.finish(rows, activation, out);
            }
        }
        for (row, y) in x.chunks_exact(self.in_dim).zip(out.chunks_exact_mut(self.out_dim)).take(rows) {
            for (y, w) in y.iter_mut().zip(self.weight.chunks_exact(self.in_dim)) {
                *y = dot(row, w);
            }
        }
        self.finish(rows, activation, out);
    }

    /// Bias and optional activation over the first `rows` rows of `out`.
    fn finish(&self, rows: usize, activation: Option<Activation>, out: &mut [f32]) {
        add_bias_and_activate(&mut out[..rows * self.out_dim], &self.bias, activation);
    }
}

/// A whole [`Mlp`] in int8, with the buffers of its forward pass (no allocation once a batch
/// this large was seen).
#[derive(Debug, Clone)]
pub struct QuantizedMlp {
    /// The first layer, kept in `f32` (see [`InputLayer`]); `None` for a single-layer net.
    input: Option<InputLayer>,
    /// The hidden-to-hidden layers (all of a single-layer net), in int8.
    layers: Vec<QuantizedLinear>,
    /// The last layer, with `f32` weights (see [`OutputLayer`]); `None` for a single-layer net.
    output: Option<OutputLayer>,
    activation: Activation,
    activate_output: bool,
    kernel: Int8Kernel,
    xq: Vec<i8>,
    /// The next layer's quantized input, written by a fused epilogue.
    next_xq: Vec<i8>,
    row_scales: Vec<f32>,
    /// A tile's activations between layers (two, alternating).
    hidden: Vec<f32>,
    output_tile: Vec<f32>,
    /// The whole batch's outputs.
    result: Vec<f32>,
}

impl QuantizedMlp {
    /// Quantizes `mlp`'s weights in `params`.
    pub fn new(mlp: &Mlp, params: &[f32]) -> Self {
        let all = mlp.layers();
        let split = all.len() > 1;
        let input = split.then(|| InputLayer::new(&all[0], params, mlp.activation()));
        let output = split.then(|| OutputLayer::new(&all[all.len() - 1], params));
        let int8 = if split { &all[1..all.len() - 1] } else { all };
        let layers =
            int8.iter().map(|l| QuantizedLinear::new(l.weight(params), l.bias(params), l.in_dim, l.out_dim)).collect();
        let n = mlp.layers().len();
        QuantizedMlp {
            input,
            layers,
            output,
            activation: mlp.activation(),
            activate_output: n > 0 && mlp.activated(n - 1),
            kernel: Int8Kernel::detect(),
            xq: Vec::new(),
            next_xq: Vec::new(),
            row_scales: Vec::new(),
            hidden: Vec::new(),
            output_tile: Vec::new(),
            result: Vec::new(),
        }
    }

    /// Runs with `kernel` instead of the detected one (which it falls back to, or to the
    /// portable loop, where the CPU lacks it).
    pub fn with_kernel(mut self, kernel: Int8Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    pub fn kernel(&self) -> Int8Kernel {
        self.kernel
    }

    pub fn layers(&self) -> &[QuantizedLinear] {
        &self.layers
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }

    pub fn activate_output(&self) -> bool {
        self.activate_output
    }

    pub fn in_dim(&self) -> usize {
        match &self.input {
            Some(input) => input.in_dim,
            None => self.layers.first().map_or(0, |l| l.in_dim),
        }
    }

    pub fn out_dim(&self) -> usize {
        match &self.output {
            Some(output) => output.out_dim,
            None => self.layers.last().map_or(0, |l| l.out_dim),
        }
    }

    /// Bytes the quantized model takes: int8 weights, f32 scales and biases, and the f32
    /// input layer.
    pub fn bytes(&self) -> usize {
        let input = self.input.as_ref().map_or(0, |l| 4 * (l.weight_t.len() + l.bias.len()));
        let output = self.output.as_ref().map_or(0, |l| 4 * (l.weight.len() + l.bias.len()));
        input
            + output
            + self.layers.iter().map(|l| l.weights.len() + 4 * (l.scales.len() + l.bias.len())).sum::<usize>()
    }

    /// The last layer, with f32 weights, if kept.
    pub fn output_layer(&self) -> Option<&OutputLayer> {
        self.output.as_ref()
    }

    /// The f32 input layer, if kept.
    pub fn input_layer(&self) -> Option<&InputLayer> {
        self.input.as_ref()
    }

    /// Runs `rows` inputs (`[rows, in_dim]`) forward; returns `[rows, out_dim]`.
    ///
    /// Rows go through all layers [`FORWARD_TILE`] at a time, so a tile's activations stay in
    /// the L1 cache between the passes of a layer (quantize, products, bias and activation).
    /// A layer fed by tanh quantizes with the fixed scale 1/127 (tanh is within ±1), with no
    /// pass for the row maximum; on VNNI its input is written by the last layer's kernel.
    pub fn forward(&mut self, x: &[f32], rows: usize) -> &[f32] {
        let n = self.layers.len();
        let (in_dim, out_dim) = (self.in_dim(), self.out_dim());
        let shifted = self.kernel.shifted_inputs();
        let tanh = self.activation == Activation::Tanh;
        let mut ping = std::mem::take(&mut self.hidden);
        let mut pong = std::mem::take(&mut self.output_tile);
        self.result.resize(rows * out_dim, 0.0);
        let mut r0 = 0;
        while r0 < rows {
            let tile = FORWARD_TILE.min(rows - r0);
            let tile_x = &x[r0 * in_dim..(r0 + tile) * in_dim];
            let tile_out = &mut self.result[r0 * out_dim..(r0 + tile) * out_dim];
            // Whether `xq` holds the next layer's input; otherwise it is in floats (`tile_x`
            // before any layer ran, `ping` after).
            let mut quantized = false;
            if let Some(input) = &self.input {
                let padded = padded_input_of(&self.layers, self.output.as_ref(), 0);
                input.forward(
                    tile_x,
                    tile,
                    self.activation,
                    padded,
                    shifted,
                    &mut ping,
                    &mut self.xq,
                    &mut self.row_scales,
                );
                quantized = true;
            }
            for i in 0..n {
                let layer = &self.layers[i];
                if !quantized {
                    let floats: &[f32] = if i == 0 && self.input.is_none() { tile_x } else { &ping };
                    let fixed = (tanh && (i > 0 || self.input.is_some())).then_some(TANH_SCALE);
                    quantize_rows(
                        floats,
                        tile,
                        layer.in_dim,
                        layer.padded_in(),
                        shifted,
                        fixed,
                        &mut self.xq,
                        &mut self.row_scales,
                    );
                }
                if i + 1 == n && self.output.is_none() {
                    layer.accumulate(self.kernel, &self.xq, tile, &self.row_scales, &layer.scales, tile_out);
                    add_bias_and_activate(tile_out, &layer.bias, self.activate_output.then_some(self.activation));
                    break;
                }
                // Before the output layer, the activations stay floats (it reads those).
                let last = i + 1 == n;
                if tanh && !last {
                    let next = padded_input_of(&self.layers, self.output.as_ref(), i + 1);
                    self.next_xq.clear();
                    self.next_xq.resize(tile * next, 0);
                    let epilogue = Epilogue::TanhQuantized { bias: &layer.bias, xq: &mut self.next_xq, padded: next };
                    if layer.accumulate_fused(self.kernel, &self.xq, tile, &self.row_scales, epilogue) {
                        std::mem::swap(&mut self.xq, &mut self.next_xq);
                        self.row_scales.clear();
                        self.row_scales.resize(tile, TANH_SCALE);
                        quantized = true;
                        continue;
                    }
                }
                pong.resize(tile * layer.out_dim, 0.0);
                let epilogue = match tanh {
                    true => Epilogue::BiasTanh { bias: &layer.bias, out: &mut pong },
                    false => Epilogue::BiasRelu { bias: &layer.bias, out: &mut pong },
                };
                let fused = layer.accumulate_fused(self.kernel, &self.xq, tile, &self.row_scales, epilogue);
                if !fused {
                    layer.accumulate(self.kernel, &self.xq, tile, &self.row_scales, &layer.scales, &mut pong);
                    self.activation.bias_activate(&mut pong, &layer.bias);
                }
                std::mem::swap(&mut ping, &mut pong);
                quantized = false;
            }
            if let Some(output) = &mut self.output {
                let activation = self.activate_output.then_some(self.activation);
                match quantized {
                    true => output.forward(&self.xq, tile, shifted, &self.row_scales, activation, tile_out),
                    false => output.forward_floats(&ping, tile, activation, tile_out),
                }
            }
            r0 += tile;
        }
        self.hidden = ping;
        self.output_tile = pong;
        &self.result[..rows * out_dim]
    }
}

/// The quantized row width of int8 layer `i`'s input (the output layer's after the last).
fn padded_input_of(layers: &[QuantizedLinear], output: Option<&OutputLayer>, i: usize) -> usize {
    match (layers.get(i), output) {
        (Some(layer), _) => layer.padded_in(),
        (None, Some(output)) => output.padded_in(),
        (None, None) => 0,
    }
}

/// Rows per pass of [`QuantizedMlp::forward`] through all layers.
const FORWARD_TILE: usize = 32;

/// What the AVX-512 tanh takes: `y = 2·log₂(e)·x`, so that `e^{2x} = 2^y`. The kernels fold
/// it into the weights, scales and biases they apply anyway.
const TANH_PRESCALE: f32 = 2.0 * std::f32::consts::LOG2_E;

/// The fixed activation scale of a layer fed by tanh, whose outputs are within ±1.
const TANH_SCALE: f32 = 1.0 / 127.0;

/// Where [`QuantizedLinear::accumulate`] puts its results.
enum Epilogue<'a> {
    /// The scaled sums as `f32`, `[rows, out_dim]` (bias and activation follow).
    Floats(&'a mut [f32]),
    /// `round(127·tanh(sum + bias))` as the next layer's quantized input (`[rows, padded]`,
    /// shifted into u8 for the VNNI kernel), with scale [`TANH_SCALE`]: the hidden layers of
    /// a tanh network never leave the kernel as floats.
    TanhQuantized { bias: &'a [f32], xq: &'a mut [i8], padded: usize },
    /// `max(0, sum + bias)` as `f32`, `[rows, out_dim]`: a relu layer's output, to be
    /// quantized per row for the next, or read by the output layer.
    BiasRelu { bias: &'a [f32], out: &'a mut [f32] },
    /// `tanh(sum + bias)` as `f32`, `[rows, out_dim]`: the last hidden layer's output, which
    /// the output layer reads as floats.
    BiasTanh { bias: &'a [f32], out: &'a mut [f32] },
}

/// Quantizes each of `rows` rows of `x` (`[rows, width]`) with its own symmetric scale (or
/// `fixed` for all) into `xq` (`[rows, padded]`, zero-padded); `shifted` stores `q + 128` as
/// u8 bits instead.
#[allow(clippy::too_many_arguments)]
pub fn quantize_rows(
    x: &[f32],
    rows: usize,
    width: usize,
    padded: usize,
    shifted: bool,
    fixed: Option<f32>,
    xq: &mut Vec<i8>,
    scales: &mut Vec<f32>,
) {
    xq.clear();
    xq.resize(rows * padded, 0);
    scales.resize(rows, 0.0);
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has the features the function is compiled for; `xq` holds
            // `rows × padded` bytes and `x` `rows × width` values (checked inside).
            return unsafe { x86::quantize_rows_avx512(x, rows, width, padded, shifted, fixed, xq, scales) };
        }
    }
    quantize_rows_portable(x, rows, width, padded, shifted, fixed, xq, scales)
}

/// [`quantize_rows`] without SIMD intrinsics (the same values, bit for bit).
#[allow(clippy::too_many_arguments)]
fn quantize_rows_portable(
    x: &[f32],
    rows: usize,
    width: usize,
    padded: usize,
    shifted: bool,
    fixed: Option<f32>,
    xq: &mut [i8],
    scales: &mut [f32],
) {
    // q + 128 as u8 is q with its top bit flipped.
    let flip = if shifted { 0x80u8 as i8 } else { 0 };
    for r in 0..rows {
        let row = &x[r * width..(r + 1) * width];
        let scale = fixed.unwrap_or_else(|| symmetric_scale(row));
        scales[r] = scale;
        let inv = 1.0 / scale;
        for (q, &v) in xq[r * padded..r * padded + width].iter_mut().zip(row) {
            *q = quantize_value(v, inv) ^ flip;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{
        scale_of_max, Epilogue, InputLayer, OutputLayer, QuantizedLinear, GROUP, LANES, ROW_TILE, TANH_PRESCALE,
    };

    /// [`super::quantize_rows`] in AVX-512: `vcvtps2dq` rounds to even in the default
    /// rounding mode, as the portable path's float-adder trick does.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn quantize_rows_avx512(
        x: &[f32],
        rows: usize,
        width: usize,
        padded: usize,
        shifted: bool,
        fixed: Option<f32>,
        xq: &mut [i8],
        scales: &mut [f32],
    ) {
        assert!(x.len() >= rows * width && xq.len() >= rows * padded && scales.len() >= rows && padded >= width);
        let chunks = width.div_ceil(16);
        let mask = |c: usize| lane_mask(width - c * 16);
        // All the rows' scales first: their reductions are independent and overlap, where a
        // quantization waiting on each would stall on the reduction's latency.
        for (r, scale) in scales.iter_mut().enumerate().take(rows) {
            *scale = match fixed {
                Some(scale) => scale,
                None => {
                    let row = x.as_ptr().add(r * width);
                    let mut max = _mm512_setzero_ps();
                    for c in 0..chunks {
                        let v = _mm512_maskz_loadu_ps(mask(c), row.add(c * 16));
                        max = _mm512_max_ps(max, _mm512_abs_ps(v));
                    }
                    scale_of_max(_mm512_reduce_max_ps(max))
                }
            };
        }
        for (r, &scale) in scales.iter().enumerate().take(rows) {
            let row = &x[r * width..(r + 1) * width];
            quantize_row_avx512(row, _mm512_set1_ps(1.0 / scale), shifted, &mut xq[r * padded..]);
        }
    }

    /// `clamp(round(v·inv), ±127)` of one row into `xq` (`+ 128` as u8 bits when `shifted`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn quantize_row_avx512(row: &[f32], inv: __m512, shifted: bool, xq: &mut [i8]) {
        assert!(xq.len() >= row.len());
        let flip = _mm_set1_epi8(if shifted { 0x80u8 as i8 } else { 0 });
        let (low, high) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
        for c in 0..row.len().div_ceil(16) {
            let mask = lane_mask(row.len() - c * 16);
            let v = _mm512_maskz_loadu_ps(mask, row.as_ptr().add(c * 16));
            let clamped = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), low), high);
            let bytes = _mm_xor_si128(_mm512_cvtepi32_epi8(_mm512_cvtps_epi32(clamped)), flip);
            _mm_mask_storeu_epi8(xq.as_mut_ptr().add(c * 16), mask, bytes);
        }
    }

    /// The mask of the first `min(remaining, 16)` lanes: a block's, or a row's tail's.
    #[inline(always)]
    fn lane_mask(remaining: usize) -> __mmask16 {
        if remaining >= 16 {
            0xFFFF
        } else {
            (1u16 << remaining) - 1
        }
    }

    /// `round(127·tanh(x)) + 128` of 16 values as 16 bytes (`vcvtps2dq` rounds to even) from
    /// `y = TANH_PRESCALE·x`: the VNNI kernel's shifted input. With
    /// `tanh(x) = 1 − 2/(1 + 2^y)`: `2^y` from a degree-5 Taylor polynomial of `2^f`
    /// (`|f| ≤ ½`, error 2.4e-6, smallest near 0) scaled by `vscalefps`, the reciprocal from `vrcp14ps` and one
    /// Newton step — float precision, so the bytes are the correctly rounded ones but where
    /// a value lies within ~1e-6 of a rounding boundary (ONNX Runtime running the exported
    /// QDQ model agreed on all of 1,000 CartPole states but one activation), in a third of
    /// the operations of the rational function the f32 path uses. (`vrcp14ps` alone, 2⁻¹⁴,
    /// moved a few percent of the bytes by one step; a near-minimax degree 4 of the same
    /// largest error, spread evenly, 7 of 1,000 states.)
    #[inline(always)]
    unsafe fn tanh_quantize_shifted(y: __m512) -> __m128i {
        // 127·tanh + 128 = 255 − 254/(1 + e^{2x}), within [1, 255] up to float rounding,
        // which the unsigned saturating pack absorbs.
        let t = _mm512_fnmadd_ps(_mm512_set1_ps(254.0), tanh_reciprocal(y), _mm512_set1_ps(255.0));
        _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(t))
    }

    /// `tanh(x) = 1 − 2/(1 + 2^y)` from `y = TANH_PRESCALE·x`, to float precision: the input
    /// of the output layer.
    #[inline(always)]
    unsafe fn tanh_fast(y: __m512) -> __m512 {
        _mm512_fnmadd_ps(_mm512_set1_ps(2.0), tanh_reciprocal(y), _mm512_set1_ps(1.0))
    }

    /// `1/(1 + 2^y)` for [`tanh_quantize_shifted`] and [`tanh_fast`].
    #[inline(always)]
    unsafe fn tanh_reciprocal(y: __m512) -> __m512 {
        let c = |v: f32| _mm512_set1_ps(v);
        // No clamp needed: a large |y| makes 2^y 0 or ∞, and the result ±127.
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
        let f = _mm512_sub_ps(y, n);
        const LN2: f32 = std::f32::consts::LN_2;
        let mut p = c(LN2.powi(5) / 120.0);
        p = _mm512_fmadd_ps(p, f, c(LN2.powi(4) / 24.0));
        p = _mm512_fmadd_ps(p, f, c(LN2.powi(3) / 6.0));
        p = _mm512_fmadd_ps(p, f, c(LN2 * LN2 / 2.0));
        p = _mm512_fmadd_ps(p, f, c(LN2));
        p = _mm512_fmadd_ps(p, f, c(1.0));
        let exp = _mm512_scalef_ps(p, n);
        let d = _mm512_add_ps(exp, c(1.0));
        let r = _mm512_rcp14_ps(d);
        // One Newton step, r·(2 − d·r): 2⁻¹⁴ → float precision.
        _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, c(2.0)))
    }

    /// [`InputLayer`]'s products for `rows` rows: `x·Wᵀ + b` in f32, then tanh quantized
    /// straight into the next layer's shifted input (`tanh`), or relu written to `out` and
    /// quantized with its row's scale (into `scales`) while the row is still in L1 — the
    /// same bytes as [`quantize_rows_avx512`], without its second pass for the maximum.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn input_layer_avx512(
        layer: &InputLayer,
        x: &[f32],
        rows: usize,
        tanh: bool,
        padded: usize,
        out: &mut [f32],
        xq: &mut [i8],
        scales: &mut [f32],
    ) {
        let (in_dim, width) = (layer.in_dim, layer.out_dim);
        assert!(x.len() >= rows * in_dim && out.len() >= rows * width && xq.len() >= rows * padded);
        assert!(padded >= width && layer.weight_t.len() == in_dim * width && layer.bias.len() == width);
        assert!(!tanh || (layer.prescaled_weight_t.len() == in_dim * width && layer.prescaled_bias.len() == width));
        assert!(scales.len() >= rows);
        let full = rows - rows % INPUT_ROWS;
        for r0 in (0..full).step_by(INPUT_ROWS) {
            input_tile::<INPUT_ROWS>(layer, x, r0, tanh, padded, out, xq, scales);
        }
        for r0 in full..rows {
            input_tile::<1>(layer, x, r0, tanh, padded, out, xq, scales);
        }
    }

    /// Rows sharing each weight load of [`input_layer_avx512`].
    const INPUT_ROWS: usize = 4;

    /// Rows `r0 .. r0 + R` of [`input_layer_avx512`] (bounds asserted there).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn input_tile<const R: usize>(
        layer: &InputLayer,
        x: &[f32],
        r0: usize,
        tanh: bool,
        padded: usize,
        out: &mut [f32],
        xq: &mut [i8],
        scales: &mut [f32],
    ) {
        let (in_dim, width) = (layer.in_dim, layer.out_dim);
        // Before a tanh, the products come out in its argument's unit (`TANH_PRESCALE`).
        let (weight_t, bias) = match tanh {
            true => (&layer.prescaled_weight_t, &layer.prescaled_bias),
            false => (&layer.weight_t, &layer.bias),
        };
        let mut max = [_mm512_setzero_ps(); R];
        for b in 0..width.div_ceil(LANES) {
            let mask = lane_mask(width - b * LANES);
            let bias = _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(b * LANES));
            let mut acc = [bias; R];
            for k in 0..in_dim {
                let w = _mm512_maskz_loadu_ps(mask, weight_t.as_ptr().add(k * width + b * LANES));
                for (t, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_set1_ps(*x.get_unchecked((r0 + t) * in_dim + k)), w, *acc);
                }
            }
            for (t, (&acc, max)) in acc.iter().zip(&mut max).enumerate() {
                let r = r0 + t;
                if tanh {
                    _mm_mask_storeu_epi8(xq.as_mut_ptr().add(r * padded + b * LANES), mask, tanh_quantize_shifted(acc));
                } else {
                    let relu = _mm512_max_ps(acc, _mm512_setzero_ps());
                    *max = _mm512_max_ps(*max, relu);
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(r * width + b * LANES), mask, relu);
                }
            }
        }
        if !tanh {
            for (t, &max) in max.iter().enumerate() {
                let r = r0 + t;
                let scale = scale_of_max(_mm512_reduce_max_ps(max));
                scales[r] = scale;
                let row = &out[r * width..(r + 1) * width];
                quantize_row_avx512(row, _mm512_set1_ps(1.0 / scale), true, &mut xq[r * padded..]);
            }
        }
    }

    /// [`OutputLayer`]'s products without the bias: each row's shifted int8 activations
    /// converted to f32 once, then a dot product with every output's f32 weights.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn output_layer_avx512(
        layer: &mut OutputLayer,
        xq: &[i8],
        rows: usize,
        scales: &[f32],
        out: &mut [f32],
    ) {
        let (in_dim, width, padded) = (layer.in_dim, layer.out_dim, layer.padded_in());
        assert!(xq.len() >= rows * padded && scales.len() >= rows && out.len() >= rows * width);
        assert!(layer.weight.len() == in_dim * width && layer.row.len() >= in_dim);
        let chunks = in_dim.div_ceil(16);
        let mask = |c: usize| lane_mask(in_dim - c * 16);
        let shift = _mm512_set1_epi32(128);
        for (r, &scale) in scales.iter().enumerate().take(rows) {
            for c in 0..chunks {
                let bytes = _mm_maskz_loadu_epi8(mask(c), xq.as_ptr().add(r * padded + c * 16));
                let q = _mm512_sub_epi32(_mm512_cvtepu8_epi32(bytes), shift);
                _mm512_mask_storeu_ps(layer.row.as_mut_ptr().add(c * 16), mask(c), _mm512_cvtepi32_ps(q));
            }
            output_row(layer, layer.row.as_ptr(), scale, out.as_mut_ptr().add(r * width));
        }
    }

    /// [`OutputLayer`]'s products without the bias over float rows (`[rows, in_dim]`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_floats_avx512(layer: &OutputLayer, x: &[f32], rows: usize, out: &mut [f32]) {
        let (in_dim, width) = (layer.in_dim, layer.out_dim);
        assert!(x.len() >= rows * in_dim && out.len() >= rows * width && layer.weight.len() == in_dim * width);
        for r in 0..rows {
            output_row(layer, x.as_ptr().add(r * in_dim), 1.0, out.as_mut_ptr().add(r * width));
        }
    }

    /// `scale · (row · Wᵀ)` of one row of `in_dim` floats into `out_dim` outputs.
    #[inline(always)]
    unsafe fn output_row(layer: &OutputLayer, row: *const f32, scale: f32, out: *mut f32) {
        let in_dim = layer.in_dim;
        for o in 0..layer.out_dim {
            let mut acc = _mm512_setzero_ps();
            for c in 0..in_dim.div_ceil(16) {
                let mask = lane_mask(in_dim - c * 16);
                let x = _mm512_maskz_loadu_ps(mask, row.add(c * 16));
                let w = _mm512_maskz_loadu_ps(mask, layer.weight.as_ptr().add(o * in_dim + c * 16));
                acc = _mm512_fmadd_ps(x, w, acc);
            }
            *out.add(o) = scale * _mm512_reduce_add_ps(acc);
        }
    }

    /// The 4 input bytes of `row`'s group `g`, as one lane's worth.
    #[inline(always)]
    unsafe fn group_bytes(xq: &[i8], row: usize, pin: usize, g: usize) -> i32 {
        std::ptr::read_unaligned(xq.as_ptr().add(row * pin + g * GROUP) as *const i32)
    }

    /// Rows sharing one pass over a weight block: 8 accumulators and the weights fit
    /// AVX-512's 32 registers.
    const VNNI_ROWS: usize = 8;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn accumulate_vnni(
        layer: &QuantizedLinear,
        xq: &[i8],
        rows: usize,
        row_scales: &[f32],
        channel_scales: &[f32],
        epilogue: Epilogue<'_>,
    ) {
        let width = layer.out_dim;
        let affine = |bias, prescale| Affine { row_scales, channel_scales, bias, prescale };
        match epilogue {
            Epilogue::Floats(out) => {
                assert!(out.len() >= rows * width);
                vnni_products(layer, xq, rows, affine(None, 1.0), &mut |row, first, mask, z| {
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(row * width + first), mask, z)
                })
            }
            Epilogue::BiasRelu { bias, out } => {
                assert!(bias.len() == width && out.len() >= rows * width);
                vnni_products(layer, xq, rows, affine(Some(bias), 1.0), &mut |row, first, mask, z| {
                    let relu = _mm512_max_ps(z, _mm512_setzero_ps());
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(row * width + first), mask, relu)
                })
            }
            Epilogue::BiasTanh { bias, out } => {
                assert!(bias.len() == width && out.len() >= rows * width);
                vnni_products(layer, xq, rows, affine(Some(bias), TANH_PRESCALE), &mut |row, first, mask, y| {
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(row * width + first), mask, tanh_fast(y))
                })
            }
            Epilogue::TanhQuantized { bias, xq: next, padded } => {
                assert!(bias.len() == width && padded >= width && next.len() >= rows * padded);
                vnni_products(layer, xq, rows, affine(Some(bias), TANH_PRESCALE), &mut |row, first, mask, y| {
                    _mm_mask_storeu_epi8(next.as_mut_ptr().add(row * padded + first), mask, tanh_quantize_shifted(y));
                })
            }
        }
    }

    /// What turns a block's exact sums into an epilogue's input:
    /// `prescale·(row scale·channel scale·sum + bias)`.
    #[derive(Clone, Copy)]
    struct Affine<'a> {
        row_scales: &'a [f32],
        channel_scales: &'a [f32],
        bias: Option<&'a [f32]>,
        /// [`TANH_PRESCALE`] before a tanh, else 1.
        prescale: f32,
    }

    /// The VNNI products of [`accumulate_vnni`], each block of 16 sums scaled and biased by
    /// `affine` (one `fmadd`) and handed to `store(row, first output, lane mask, values)`.
    #[inline(always)]
    unsafe fn vnni_products(
        layer: &QuantizedLinear,
        xq: &[i8],
        rows: usize,
        affine: Affine<'_>,
        store: &mut impl FnMut(usize, usize, __mmask16, __m512),
    ) {
        assert!(affine.row_scales.len() >= rows && affine.channel_scales.len() >= layer.out_dim);
        assert!(affine.bias.is_none_or(|b| b.len() >= layer.out_dim));
        // Rows fed by tanh share one scale: then one scale vector per block serves them all.
        let uniform = affine.row_scales[..rows].iter().all(|&s| s == affine.row_scales[0]);
        let full = rows - rows % VNNI_ROWS;
        for r0 in (0..full).step_by(VNNI_ROWS) {
            vnni_tile::<VNNI_ROWS>(layer, xq, r0, affine, uniform, store);
        }
        for r0 in full..rows {
            vnni_tile::<1>(layer, xq, r0, affine, uniform, store);
        }
    }

    /// Rows `r0 .. r0 + R` of [`vnni_products`] (a constant count, so the loops unroll).
    #[inline(always)]
    unsafe fn vnni_tile<const R: usize>(
        layer: &QuantizedLinear,
        xq: &[i8],
        r0: usize,
        affine: Affine<'_>,
        uniform: bool,
        store: &mut impl FnMut(usize, usize, __mmask16, __m512),
    ) {
        let (groups, blocks, pin, width) = (layer.groups(), layer.blocks(), layer.padded_in(), layer.out_dim);
        let prescale = _mm512_set1_ps(affine.prescale);
        let mut row_scale = [_mm512_setzero_ps(); R];
        for (t, scale) in row_scale.iter_mut().enumerate() {
            *scale = _mm512_set1_ps(*affine.row_scales.get_unchecked(r0 + t));
        }
        for b in 0..blocks {
            let mask = lane_mask(width - b * LANES);
            // The sums start at minus the shift's correction (the inputs are `q + 128`).
            let correction = _mm512_loadu_si512(layer.shift_correction.as_ptr().add(b * LANES) as *const __m512i);
            let mut sums = [_mm512_sub_epi32(_mm512_setzero_si512(), correction); R];
            let weights = layer.packed.as_ptr().add(b * groups * LANES * GROUP);
            for g in 0..groups {
                let w = _mm512_loadu_si512(weights.add(g * LANES * GROUP) as *const __m512i);
                for (t, sum) in sums.iter_mut().enumerate() {
                    let x = _mm512_set1_epi32(group_bytes(xq, r0 + t, pin, g));
                    *sum = _mm512_dpbusd_epi32(*sum, x, w);
                }
            }
            let channel = _mm512_maskz_loadu_ps(mask, affine.channel_scales.as_ptr().add(b * LANES));
            let scales = _mm512_mul_ps(channel, prescale);
            let bias = match affine.bias {
                Some(bias) => _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, bias.as_ptr().add(b * LANES)), prescale),
                None => _mm512_setzero_ps(),
            };
            let shared = _mm512_mul_ps(scales, row_scale[0]);
            for (t, sum) in sums.iter().enumerate() {
                let scale = if uniform { shared } else { _mm512_mul_ps(scales, row_scale[t]) };
                store(r0 + t, b * LANES, mask, _mm512_fmadd_ps(_mm512_cvtepi32_ps(*sum), scale, bias));
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn accumulate_avx2(
        layer: &QuantizedLinear,
        xq: &[i8],
        rows: usize,
        row_scales: &[f32],
        channel_scales: &[f32],
        out: &mut [f32],
    ) {
        let (groups, blocks, pin, width) = (layer.groups(), layer.blocks(), layer.padded_in(), layer.out_dim);
        let ones = _mm256_set1_epi16(1);
        let lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mut r0 = 0;
        while r0 < rows {
            let tile = ROW_TILE.min(rows - r0);
            for b in 0..blocks {
                // Two halves of 8 lanes each per block.
                let mut sums = [[_mm256_setzero_si256(); 2]; ROW_TILE];
                let weights = layer.packed.as_ptr().add(b * groups * LANES * GROUP);
                for g in 0..groups {
                    let lo = _mm256_loadu_si256(weights.add(g * LANES * GROUP) as *const __m256i);
                    let hi = _mm256_loadu_si256(weights.add(g * LANES * GROUP + 32) as *const __m256i);
                    for (t, sum) in sums.iter_mut().enumerate().take(tile) {
                        let x = _mm256_set1_epi32(group_bytes(xq, r0 + t, pin, g));
                        let magnitude = _mm256_abs_epi8(x);
                        // |x|·(w·sign x) = x·w; pairs sum to at most 2·127·127 < 2¹⁵.
                        let pairs_lo = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(lo, x));
                        let pairs_hi = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(hi, x));
                        sum[0] = _mm256_add_epi32(sum[0], _mm256_madd_epi16(pairs_lo, ones));
                        sum[1] = _mm256_add_epi32(sum[1], _mm256_madd_epi16(pairs_hi, ones));
                    }
                }
                for half in 0..2 {
                    let first = b * LANES + 8 * half;
                    if first >= width {
                        break;
                    }
                    let valid = _mm256_set1_epi32((width - first).min(8) as i32);
                    let mask = _mm256_cmpgt_epi32(valid, lane_index);
                    let scales = _mm256_maskload_ps(channel_scales.as_ptr().add(first), mask);
                    for (t, sum) in sums.iter().enumerate().take(tile) {
                        let exact = _mm256_cvtepi32_ps(sum[half]);
                        let y = _mm256_mul_ps(exact, _mm256_mul_ps(scales, _mm256_set1_ps(row_scales[r0 + t])));
                        _mm256_maskstore_ps(out.as_mut_ptr().add((r0 + t) * width + first), mask, y);
                    }
                }
            }
            r0 += tile;
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// [`tanh_quantize_shifted`] of each value, as bytes.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn tanh_bytes(ys: &[f32]) -> Vec<u8> {
            let mut out = vec![0u8; ys.len()];
            for (y, o) in ys.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
                let bytes = tanh_quantize_shifted(_mm512_loadu_ps(y.as_ptr()));
                _mm_storeu_si128(o.as_mut_ptr() as *mut __m128i, bytes);
            }
            out
        }

        #[test]
        fn tanh_is_quantized_as_exact_rounding_would() {
            if !is_x86_feature_detected!("avx512bw") || !is_x86_feature_detected!("avx512vl") {
                eprintln!("no AVX-512 here: the portable path rounds f32 tanh");
                return;
            }
            // Every argument the kernel sees, in its unit (`TANH_PRESCALE`): a fine sweep of
            // [-6, 6] and the exact rounding boundaries atanh((k + ½)/127).
            let mut ys: Vec<f32> = (-600_000..600_000).map(|i| i as f32 * 1e-5 * TANH_PRESCALE).collect();
            for k in -127..127 {
                let boundary = ((k as f64 + 0.5) / 127.0).atanh() * TANH_PRESCALE as f64;
                ys.extend([boundary as f32, (boundary * (1.0 + 1e-6)) as f32, (boundary * (1.0 - 1e-6)) as f32]);
            }
            ys.truncate(ys.len() / 16 * 16);
            // SAFETY: the features were detected above.
            let bytes = unsafe { tanh_bytes(&ys) };
            let (mut off, mut near_boundary) = (0, 0);
            for (&y, &byte) in ys.iter().zip(&bytes) {
                let exact = 127.0 * (y as f64 / TANH_PRESCALE as f64).tanh();
                let got = byte as i32 - 128;
                if got != exact.round_ties_even() as i32 {
                    assert!((got as f64 - exact).abs() < 0.5 + 1e-4, "tanh({y}) rounded to {got}, exactly {exact}");
                    // Only where the exact value is within float rounding of a boundary.
                    assert!((exact.abs().fract() - 0.5).abs() < 1e-4, "y = {y}: {got} against {exact}");
                    near_boundary += 1;
                }
                off += (got - exact.round_ties_even() as i32).abs();
            }
            assert!(near_boundary <= 3 * 254, "{near_boundary} values off by one step");
            assert!(off == near_boundary);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    use super::*;
    use crate::layout::ParamLayout;
    use crate::mlp::MlpWorkspace;

    /// The dot products in f64 from the plain `[out, in]` weights: the reference every packed
    /// kernel must match exactly.
    fn reference(layer: &QuantizedLinear, xq: &[i8], rows: usize) -> Vec<f64> {
        let pin = layer.padded_in();
        let mut out = vec![0.0; rows * layer.out_dim];
        for r in 0..rows {
            for o in 0..layer.out_dim {
                out[r * layer.out_dim + o] = (0..layer.in_dim)
                    .map(|k| xq[r * pin + k] as f64 * layer.weights[o * layer.in_dim + k] as f64)
                    .sum();
            }
        }
        out
    }

    #[test]
    fn every_kernel_matches_the_f64_reference_exactly() {
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        for &(in_dim, out_dim, rows) in &[(4, 64, 9), (64, 64, 256), (5, 3, 1), (37, 17, 6), (256, 2, 5)] {
            let weight: Vec<f32> = (0..in_dim * out_dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let layer = QuantizedLinear::new(&weight, &vec![0.0; out_dim], in_dim, out_dim);
            let mut x: Vec<f32> = (0..rows * in_dim).map(|_| rng.random_range(-3.0..3.0)).collect();
            // Extremes: a row at ±127 everywhere exercises the i16 pair bound of the AVX2 path.
            x[..in_dim].iter_mut().enumerate().for_each(|(k, v)| *v = if k % 2 == 0 { 5.0 } else { -5.0 });
            let (mut xq, mut scales) = (Vec::new(), Vec::new());
            quantize_rows(&x, rows, in_dim, layer.padded_in(), false, None, &mut xq, &mut scales);
            let expected = reference(&layer, &xq, rows);
            // Unit scales leave the integer sums, exact in f32 below 2²⁴.
            let (unit_rows, unit_channels) = (vec![1.0; rows], vec![1.0; out_dim]);
            for kernel in Int8Kernel::available() {
                quantize_rows(&x, rows, in_dim, layer.padded_in(), kernel.shifted_inputs(), None, &mut xq, &mut scales);
                let mut out = vec![f32::NAN; rows * out_dim];
                layer.accumulate(kernel, &xq, rows, &unit_rows, &unit_channels, &mut out);
                for (i, (&got, &want)) in out.iter().zip(&expected).enumerate() {
                    assert_eq!(
                        got as f64,
                        want,
                        "{} kernel, {in_dim}→{out_dim}, row {}, output {}",
                        kernel.name(),
                        i / out_dim,
                        i % out_dim
                    );
                }
                // With the real scales, every kernel stores the same floats.
                let mut scaled = vec![f32::NAN; rows * out_dim];
                layer.accumulate(kernel, &xq, rows, &scales, &layer.scales, &mut scaled);
                for (i, &got) in scaled.iter().enumerate() {
                    let want = (expected[i] as f32) * (scales[i / out_dim] * layer.scales[i % out_dim]);
                    assert_eq!(got, want, "{} kernel, scaled output {i}", kernel.name());
                }
            }
        }
    }

    #[test]
    fn simd_and_portable_quantization_agree_bit_for_bit() {
        let mut rng = Pcg64Mcg::seed_from_u64(11);
        for &(width, padded, rows) in &[(4, 4, 7), (64, 64, 33), (37, 40, 5), (17, 20, 3)] {
            let mut x: Vec<f32> = (0..rows * width).map(|_| rng.random_range(-4.0..4.0)).collect();
            x[..width].fill(0.0);
            // Ties at ±0.5 steps, to check rounding to even.
            x[width] = 2.5 * 4.0 / 127.0;
            for shifted in [false, true] {
                for fixed in [None, Some(1.0 / 127.0), Some(0.03)] {
                    let (mut a, mut sa) = (Vec::new(), Vec::new());
                    quantize_rows(&x, rows, width, padded, shifted, fixed, &mut a, &mut sa);
                    let (mut b, mut sb) = (vec![0i8; rows * padded], vec![0.0f32; rows]);
                    quantize_rows_portable(&x, rows, width, padded, shifted, fixed, &mut b, &mut sb);
                    assert_eq!((a, sa), (b, sb), "width {width}, shifted {shifted}, fixed {fixed:?}");
                }
            }
        }
    }

    #[test]
    fn quantized_values_are_symmetric_rounded_to_even_and_clamped() {
        assert_eq!(quantize_value(0.5, 1.0), 0);
        assert_eq!(quantize_value(1.5, 1.0), 2);
        assert_eq!(quantize_value(-2.5, 1.0), -2);
        assert_eq!(quantize_value(300.0, 1.0), 127);
        assert_eq!(quantize_value(-300.0, 1.0), -127);
        let layer = QuantizedLinear::new(&[0.0, 0.0, 2.54, -1.27], &[0.0, 0.0], 2, 2);
        assert_eq!(layer.scales, [1.0, 0.02]);
        assert_eq!(layer.weights, [0, 0, 127, -64]);
    }

    #[test]
    fn an_int8_mlp_stays_within_a_few_quantization_steps_of_f32() {
        for (activation, sizes) in [
            (Activation::Tanh, &[4, 64, 64, 3][..]),
            (Activation::Relu, &[4, 64, 64, 3][..]),
            (Activation::Tanh, &[6, 48, 40, 33, 2][..]),
            (Activation::Relu, &[5, 7][..]),
        ] {
            let mut layout = ParamLayout::new();
            let mlp = Mlp::new(&mut layout, "pi", sizes, activation, false);
            let mut rng = Pcg64Mcg::seed_from_u64(3);
            let mut params = vec![0.0f32; layout.len()];
            mlp.init(&mut params, 2f64.sqrt(), 1.0, &mut rng);
            params.iter_mut().for_each(|p| *p += rng.random_range(-0.05..0.05));
            let (rows, width) = (301, sizes[0]);
            let x: Vec<f32> = (0..rows * width).map(|_| rng.random_range(-2.0..2.0)).collect();
            let mut ws = MlpWorkspace::default();
            mlp.forward(&params, &x, rows, &mut ws);
            let exact = ws.output().to_vec();
            let range = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let out = *sizes.last().unwrap();
            for kernel in Int8Kernel::available() {
                let mut q = QuantizedMlp::new(&mlp, &params).with_kernel(kernel);
                let approx = q.forward(&x, rows).to_vec();
                let worst = exact.iter().zip(&approx).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    worst < 0.03 * range,
                    "{activation:?} {sizes:?} {}: error {worst} of range {range}",
                    kernel.name()
                );
                // A second, smaller batch reuses the buffers and gives the same rows.
                assert_eq!(q.forward(&x[..2 * width], 2), &approx[..2 * out]);
            }
        }
    }
}
