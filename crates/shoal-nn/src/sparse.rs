//! Sparse inference of a pruned [`Mlp`]: each weight matrix in compressed sparse rows (its
//! non-zero weights only), so that a 90 %-sparse network does a tenth of the multiply-adds.
//!
//! Dense products win on small matrices by using every SIMD lane; sparse rows have no
//! contiguous run to vectorize over — except the batch. So rows are taken 16 at a time and
//! transposed (`[features][16]`): each non-zero weight `w[o, k]` is one 16-lane multiply-add
//! of row `k` of the inputs into row `o` of the outputs. Batches of fewer than 16 rows (and a
//! batch's last few) go one row at a time, as plain sparse dot products. Whether this beats the
//! dense path depends on the sparsity and the machine: `shoal optimize --prune` measures both
//! and records the faster in the run's `[inference]` section.

use crate::activation::{add_bias_and_activate, Activation};
use crate::mlp::Mlp;

/// Rows per transposed tile (one AVX-512 register of f32).
const LANES: usize = 16;

/// One layer's non-zero weights, row by row (compressed sparse rows).
#[derive(Debug, Clone)]
struct SparseLayer {
    in_dim: usize,
    out_dim: usize,
    /// Output `o`'s weights are `values[starts[o]..starts[o + 1]]`, at inputs `columns[…]`.
    starts: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f32>,
    bias: Vec<f32>,
    activated: bool,
}

impl SparseLayer {
    fn new(weight: &[f32], bias: &[f32], in_dim: usize, out_dim: usize, activated: bool) -> Self {
        let mut layer = SparseLayer {
            in_dim,
            out_dim,
            starts: vec![0],
            columns: Vec::new(),
            values: Vec::new(),
            bias: bias.to_vec(),
            activated,
        };
        for row in weight.chunks_exact(in_dim.max(1)).take(out_dim) {
            for (k, &w) in row.iter().enumerate().filter(|(_, &w)| w != 0.0) {
                layer.columns.push(k as u32);
                layer.values.push(w);
            }
            layer.starts.push(layer.values.len());
        }
        layer
    }

    /// `activation(x·Wᵀ + b)` of one row (`activation` if the layer is activated).
    fn row(&self, x: &[f32], activation: Activation, out: &mut [f32]) {
        let out = &mut out[..self.out_dim];
        for (o, y) in out.iter_mut().enumerate() {
            let range = self.starts[o]..self.starts[o + 1];
            *y = self.columns[range.clone()].iter().zip(&self.values[range]).map(|(&k, &w)| w * x[k as usize]).sum();
        }
        add_bias_and_activate(out, &self.bias, self.activated.then_some(activation));
    }

    /// `x·Wᵀ + b` of 16 transposed rows (`xt` `[in_dim][16]` → `yt` `[out_dim][16]`).
    fn tile(&self, xt: &[f32], yt: &mut [f32]) {
        assert!(xt.len() >= self.in_dim * LANES && yt.len() >= self.out_dim * LANES);
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F; the column indices are below `in_dim` by
                // construction and the buffers' lengths are asserted above.
                return unsafe { self.tile_avx512(xt, yt) };
            }
        }
        for o in 0..self.out_dim {
            let mut acc = [self.bias[o]; LANES];
            for j in self.starts[o]..self.starts[o + 1] {
                let (w, k) = (self.values[j], self.columns[j] as usize);
                for (a, &x) in acc.iter_mut().zip(&xt[k * LANES..(k + 1) * LANES]) {
                    *a += w * x;
                }
            }
            yt[o * LANES..(o + 1) * LANES].copy_from_slice(&acc);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_avx512(&self, xt: &[f32], yt: &mut [f32]) {
        use std::arch::x86_64::*;
        for o in 0..self.out_dim {
            let mut acc = _mm512_set1_ps(self.bias[o]);
            for j in self.starts[o]..self.starts[o + 1] {
                let (w, k) = (*self.values.get_unchecked(j), *self.columns.get_unchecked(j) as usize);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(w), _mm512_loadu_ps(xt.as_ptr().add(k * LANES)), acc);
            }
            _mm512_storeu_ps(yt.as_mut_ptr().add(o * LANES), acc);
        }
    }
}

/// A pruned [`Mlp`] for inference over its non-zero weights, with the buffers of its forward
/// pass (no allocation once a batch this large was seen).
#[derive(Debug, Clone)]
pub struct SparseMlp {
    layers: Vec<SparseLayer>,
    activation: Activation,
    /// Two transposed tiles (or rows), alternating between layers.
    ping: Vec<f32>,
    pong: Vec<f32>,
    result: Vec<f32>,
}

impl SparseMlp {
    /// The non-zero weights of `mlp` in `params`.
    pub fn new(mlp: &Mlp, params: &[f32]) -> Self {
        let layers = mlp
            .layers()
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let (weight, bias) = (layer.weight(params), layer.bias(params));
                SparseLayer::new(weight, bias, layer.in_dim, layer.out_dim, mlp.activated(l))
            })
            .collect();
        SparseMlp { layers, activation: mlp.activation(), ping: Vec::new(), pong: Vec::new(), result: Vec::new() }
    }

    pub fn in_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.in_dim)
    }

    pub fn out_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    /// Non-zero weights (biases not counted).
    pub fn nonzero_weights(&self) -> usize {
        self.layers.iter().map(|l| l.values.len()).sum()
    }

    /// The network's outputs for `rows` rows of `x` (`[rows, in_dim]`).
    pub fn forward(&mut self, x: &[f32], rows: usize) -> &[f32] {
        let (in_dim, out_dim) = (self.in_dim(), self.out_dim());
        assert!(x.len() >= rows * in_dim, "sparse MLP: input buffer too short");
        self.result.resize(rows * out_dim, 0.0);
        let widest = self.layers.iter().map(|l| l.in_dim.max(l.out_dim)).max().unwrap_or(0);
        self.ping.resize(widest * LANES, 0.0);
        self.pong.resize(widest * LANES, 0.0);
        let tiled = rows - rows % LANES;
        for r0 in (0..tiled).step_by(LANES) {
            for (r, row) in x[r0 * in_dim..(r0 + LANES) * in_dim].chunks_exact(in_dim).enumerate() {
                for (k, &v) in row.iter().enumerate() {
                    self.ping[k * LANES + r] = v;
                }
            }
            for layer in &self.layers {
                layer.tile(&self.ping, &mut self.pong);
                if layer.activated {
                    // The bias is in already: activate with a zero one.
                    self.activation.bias_activate(&mut self.pong[..layer.out_dim * LANES], &[0.0; LANES]);
                }
                std::mem::swap(&mut self.ping, &mut self.pong);
            }
            for (r, out) in self.result[r0 * out_dim..(r0 + LANES) * out_dim].chunks_exact_mut(out_dim).enumerate() {
                for (o, y) in out.iter_mut().enumerate() {
                    *y = self.ping[o * LANES + r];
                }
            }
        }
        for r in tiled..rows {
            self.ping[..in_dim].copy_from_slice(&x[r * in_dim..(r + 1) * in_dim]);
            for layer in &self.layers {
                layer.row(&self.ping, self.activation, &mut self.pong);
                std::mem::swap(&mut self.ping, &mut self.pong);
            }
            self.result[r * out_dim..(r + 1) * out_dim].copy_from_slice(&self.ping[..out_dim]);
        }
        &self.result
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    use super::*;
    use crate::layout::ParamLayout;
    use crate::mlp::MlpWorkspace;

    #[test]
    fn a_sparse_mlp_computes_the_dense_outputs() {
        for (activation, sizes) in [(Activation::Tanh, &[4, 64, 64, 3][..]), (Activation::Relu, &[6, 40, 33, 2][..])] {
            let mut layout = ParamLayout::new();
            let mlp = Mlp::new(&mut layout, "pi", sizes, activation, false);
            let mut rng = Pcg64Mcg::seed_from_u64(5);
            let mut params = vec![0.0f32; layout.len()];
            mlp.init(&mut params, 2f64.sqrt(), 1.0, &mut rng);
            // Prune 90 % of the weights at random (biases too, which must still count).
            params.iter_mut().for_each(|p| *p = if rng.random_bool(0.1) { *p + 0.1 } else { 0.0 });
            let (rows, width) = (37, sizes[0]);
            let x: Vec<f32> = (0..rows * width).map(|_| rng.random_range(-2.0..2.0)).collect();
            let mut ws = MlpWorkspace::default();
            mlp.forward(&params, &x, rows, &mut ws);
            let mut sparse = SparseMlp::new(&mlp, &params);
            assert!(sparse.nonzero_weights() < layout.len() / 5);
            let got = sparse.forward(&x, rows).to_vec();
            let worst = ws.output().iter().zip(&got).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-5, "{activation:?}: {worst}");
            // The one-row path (batch 1) gives the tiles' first row.
            let one = sparse.forward(&x[..width], 1).to_vec();
            assert!(one.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-5), "{one:?} {got:?}");
        }
    }
}
