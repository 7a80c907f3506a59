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

use crate::activation::{add_bias, Activation};
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
    let max = lanes.iter().fold(tail, |m, &v| if v > m { v } else { m });
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

    /// `acc[r, o] = Σ_k xq[r,k]·q_w[o,k]` for `rows` rows of quantized inputs
    /// (`[rows, padded_in]`), written `[rows, blocks·LANES]`.
    fn accumulate(&self, kernel: Int8Kernel, xq: &[i8], rows: usize, acc: &mut [i32]) {
        let width = self.blocks() * LANES;
        debug_assert!(xq.len() >= rows * self.padded_in() && acc.len() >= rows * width);
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni if Int8Kernel::detect() == Int8Kernel::Avx512Vnni => {
                // SAFETY: the CPU supports the kernel's features (checked above); the buffer
                // bounds are asserted at the top of `accumulate_simd`.
                unsafe { x86::accumulate_vnni(self, xq, rows, acc) }
            }
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 | Int8Kernel::Avx512Vnni if is_x86_feature_detected!("avx2") => {
                // SAFETY: as above, for AVX2.
                unsafe { x86::accumulate_avx2(self, xq, rows, acc) }
            }
            _ => self.accumulate_portable(xq, rows, acc),
        }
    }

    fn accumulate_portable(&self, xq: &[i8], rows: usize, acc: &mut [i32]) {
        let (pin, width) = (self.padded_in(), self.blocks() * LANES);
        for r in 0..rows {
            let x = &xq[r * pin..r * pin + self.in_dim];
            for (o, w) in self.weights.chunks_exact(self.in_dim.max(1)).take(self.out_dim).enumerate() {
                acc[r * width + o] = x.iter().zip(w).map(|(&a, &b)| a as i32 * b as i32).sum();
            }
        }
    }
}

/// A whole [`Mlp`] in int8, with the buffers of its forward pass (no allocation once a batch
/// this large was seen).
#[derive(Debug, Clone)]
pub struct QuantizedMlp {
    layers: Vec<QuantizedLinear>,
    activation: Activation,
    activate_output: bool,
    kernel: Int8Kernel,
    xq: Vec<i8>,
    row_scales: Vec<f32>,
    acc: Vec<i32>,
    hidden: Vec<f32>,
    output: Vec<f32>,
}

impl QuantizedMlp {
    /// Quantizes `mlp`'s weights in `params`.
    pub fn new(mlp: &Mlp, params: &[f32]) -> Self {
        let layers = mlp
            .layers()
            .iter()
            .map(|l| QuantizedLinear::new(l.weight(params), l.bias(params), l.in_dim, l.out_dim))
            .collect();
        let n = mlp.layers().len();
        QuantizedMlp {
            layers,
            activation: mlp.activation(),
            activate_output: n > 0 && mlp.activated(n - 1),
            kernel: Int8Kernel::detect(),
            xq: Vec::new(),
            row_scales: Vec::new(),
            acc: Vec::new(),
            hidden: Vec::new(),
            output: Vec::new(),
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
        self.layers.first().map_or(0, |l| l.in_dim)
    }

    pub fn out_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    /// Bytes the quantized model takes: int8 weights, f32 scales and biases.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.weights.len() + 4 * (l.scales.len() + l.bias.len())).sum()
    }

    /// Runs `rows` inputs (`[rows, in_dim]`) forward; returns `[rows, out_dim]`.
    pub fn forward(&mut self, x: &[f32], rows: usize) -> &[f32] {
        let n = self.layers.len();
        let mut input = std::mem::take(&mut self.hidden);
        input.clear();
        input.extend_from_slice(&x[..rows * self.in_dim()]);
        let mut out = std::mem::take(&mut self.output);
        for i in 0..n {
            let layer = &self.layers[i];
            quantize_rows(&input, rows, layer.in_dim, layer.padded_in(), &mut self.xq, &mut self.row_scales);
            let width = layer.blocks() * LANES;
            self.acc.resize(rows * width, 0);
            layer.accumulate(self.kernel, &self.xq, rows, &mut self.acc);
            out.resize(rows * layer.out_dim, 0.0);
            for r in 0..rows {
                let sx = self.row_scales[r];
                let acc = &self.acc[r * width..r * width + layer.out_dim];
                let y = &mut out[r * layer.out_dim..(r + 1) * layer.out_dim];
                for ((y, &a), &sw) in y.iter_mut().zip(acc).zip(&layer.scales) {
                    *y = a as f32 * (sx * sw);
                }
            }
            if i + 1 < n || self.activate_output {
                self.activation.bias_activate(&mut out, &layer.bias);
            } else {
                add_bias(&mut out, &layer.bias);
            }
            std::mem::swap(&mut input, &mut out);
        }
        self.hidden = out;
        self.output = input;
        &self.output[..rows * self.out_dim()]
    }
}

/// Quantizes each of `rows` rows of `x` (`[rows, width]`) with its own symmetric scale into
/// `xq` (`[rows, padded]`, zero-padded).
pub fn quantize_rows(x: &[f32], rows: usize, width: usize, padded: usize, xq: &mut Vec<i8>, scales: &mut Vec<f32>) {
    xq.clear();
    xq.resize(rows * padded, 0);
    scales.resize(rows, 0.0);
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has the features the wider build is compiled for.
            return unsafe { x86::quantize_rows_avx512(x, rows, width, padded, xq, scales) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { x86::quantize_rows_avx2(x, rows, width, padded, xq, scales) };
        }
    }
    quantize_rows_into(x, rows, width, padded, xq, scales)
}

/// The body of [`quantize_rows`], inlined into builds for each SIMD width.
#[inline(always)]
fn quantize_rows_into(x: &[f32], rows: usize, width: usize, padded: usize, xq: &mut [i8], scales: &mut [f32]) {
    for r in 0..rows {
        let row = &x[r * width..(r + 1) * width];
        let scale = symmetric_scale(row);
        scales[r] = scale;
        let inv = 1.0 / scale;
        for (q, &v) in xq[r * padded..r * padded + width].iter_mut().zip(row) {
            *q = quantize_value(v, inv);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{quantize_rows_into, QuantizedLinear, GROUP, LANES, ROW_TILE};

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_rows_avx512(
        x: &[f32],
        rows: usize,
        width: usize,
        padded: usize,
        xq: &mut [i8],
        scales: &mut [f32],
    ) {
        quantize_rows_into(x, rows, width, padded, xq, scales)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_rows_avx2(
        x: &[f32],
        rows: usize,
        width: usize,
        padded: usize,
        xq: &mut [i8],
        scales: &mut [f32],
    ) {
        quantize_rows_into(x, rows, width, padded, xq, scales)
    }

    fn check_bounds(layer: &QuantizedLinear, xq: &[i8], rows: usize, acc: &[i32]) {
        assert!(xq.len() >= rows * layer.padded_in(), "int8 kernel: input buffer too short");
        assert!(acc.len() >= rows * layer.blocks() * LANES, "int8 kernel: output buffer too short");
        assert_eq!(layer.packed.len(), layer.blocks() * layer.groups() * LANES * GROUP);
    }

    /// The 4 input bytes of `row`'s group `g`, as one lane's worth.
    #[inline(always)]
    unsafe fn group_bytes(xq: &[i8], row: usize, pin: usize, g: usize) -> i32 {
        std::ptr::read_unaligned(xq.as_ptr().add(row * pin + g * GROUP) as *const i32)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn accumulate_vnni(layer: &QuantizedLinear, xq: &[i8], rows: usize, acc: &mut [i32]) {
        check_bounds(layer, xq, rows, acc);
        let (groups, blocks, pin, width) = (layer.groups(), layer.blocks(), layer.padded_in(), layer.blocks() * LANES);
        let shift = _mm512_set1_epi32(0x8080_8080u32 as i32);
        let mut r0 = 0;
        while r0 < rows {
            let tile = ROW_TILE.min(rows - r0);
            for b in 0..blocks {
                let mut sums = [_mm512_setzero_si512(); ROW_TILE];
                let weights = layer.packed.as_ptr().add(b * groups * LANES * GROUP);
                for g in 0..groups {
                    let w = _mm512_loadu_si512(weights.add(g * LANES * GROUP) as *const __m512i);
                    for (t, sum) in sums.iter_mut().enumerate().take(tile) {
                        // q + 128 as u8 is q with its top bit flipped.
                        let x = _mm512_xor_si512(_mm512_set1_epi32(group_bytes(xq, r0 + t, pin, g)), shift);
                        *sum = _mm512_dpbusd_epi32(*sum, x, w);
                    }
                }
                let correction = _mm512_loadu_si512(layer.shift_correction.as_ptr().add(b * LANES) as *const __m512i);
                for (t, sum) in sums.iter().enumerate().take(tile) {
                    let dst = acc.as_mut_ptr().add((r0 + t) * width + b * LANES);
                    _mm512_storeu_si512(dst as *mut __m512i, _mm512_sub_epi32(*sum, correction));
                }
            }
            r0 += tile;
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn accumulate_avx2(layer: &QuantizedLinear, xq: &[i8], rows: usize, acc: &mut [i32]) {
        check_bounds(layer, xq, rows, acc);
        let (groups, blocks, pin, width) = (layer.groups(), layer.blocks(), layer.padded_in(), layer.blocks() * LANES);
        let ones = _mm256_set1_epi16(1);
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
                for (t, sum) in sums.iter().enumerate().take(tile) {
                    let dst = acc.as_mut_ptr().add((r0 + t) * width + b * LANES);
                    _mm256_storeu_si256(dst as *mut __m256i, sum[0]);
                    _mm256_storeu_si256(dst.add(8) as *mut __m256i, sum[1]);
                }
            }
            r0 += tile;
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
            quantize_rows(&x, rows, in_dim, layer.padded_in(), &mut xq, &mut scales);
            let expected = reference(&layer, &xq, rows);
            for kernel in Int8Kernel::available() {
                let width = layer.blocks() * LANES;
                let mut acc = vec![i32::MIN; rows * width];
                layer.accumulate(kernel, &xq, rows, &mut acc);
                for r in 0..rows {
                    for o in 0..out_dim {
                        assert_eq!(
                            acc[r * width + o] as f64,
                            expected[r * out_dim + o],
                            "{} kernel, {in_dim}→{out_dim}, row {r}, output {o}",
                            kernel.name()
                        );
                    }
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
        let mut layout = ParamLayout::new();
        let mlp = Mlp::new(&mut layout, "pi", &[4, 64, 64, 3], Activation::Tanh, false);
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let mut params = vec![0.0f32; layout.len()];
        mlp.init(&mut params, 2f64.sqrt(), 1.0, &mut rng);
        params.iter_mut().for_each(|p| *p += rng.random_range(-0.05..0.05));
        let rows = 300;
        let x: Vec<f32> = (0..rows * 4).map(|_| rng.random_range(-2.0..2.0)).collect();
        let mut ws = MlpWorkspace::default();
        mlp.forward(&params, &x, rows, &mut ws);
        let exact = ws.output().to_vec();
        let range = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for kernel in Int8Kernel::available() {
            let mut q = QuantizedMlp::new(&mlp, &params).with_kernel(kernel);
            let approx = q.forward(&x, rows).to_vec();
            let worst = exact.iter().zip(&approx).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 0.03 * range, "{}: error {worst} of range {range}", kernel.name());
            // A second, smaller batch reuses the buffers and gives the same rows.
            assert_eq!(q.forward(&x[..8], 2), &approx[..6]);
        }
    }
}
