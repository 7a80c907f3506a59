//! Optimizers over flat vectors, with PyTorch's exact update rules (so hyperparameters from
//! papers and from CleanRL/SB3 transfer), global-norm gradient clipping and LR annealing.
//!
//! State is a few named flat vectors laid out like the parameters, plus a step count; that is
//! what checkpoints store and what a parameter server keeps per shard.

use crate::error::{NnError, Result};
use crate::parallel::Helper;
use crate::prune::PruneMask;
use crate::scalar::Scalar;

/// An update rule `params ← params − f(grads)` with internal state.
pub trait Optimizer<T: Scalar = f32>: Send {
    /// `adam`, `sgd` or `rmsprop`.
    fn name(&self) -> &'static str;

    /// Applies one update with learning rate `lr`.
    fn step(&mut self, params: &mut [T], grads: &[T], lr: T);

    /// Number of updates applied so far.
    fn steps(&self) -> u64;

    /// The named state vectors, each as long as the parameters.
    fn buffers(&self) -> Vec<(&'static str, &[T])>;

    /// Restores state saved from `steps()` and `buffers()`.
    fn load(&mut self, steps: u64, buffers: &[(&str, &[T])]) -> Result<()>;

    /// A fresh optimizer of the same kind and hyperparameters for `len` parameters (what each
    /// shard of a sharded parameter server optimizes with).
    fn fresh(&self, len: usize) -> Box<dyn Optimizer<T>>;

    /// The pruning mask its steps keep, if it keeps one ([`Masked`]).
    fn prune_mask_mut(&mut self) -> Option<&mut PruneMask> {
        None
    }
}

/// An optimizer whose steps keep pruned weights at zero: fine-tuning with the mask fixed.
/// It saves and loads as the optimizer it wraps (same name, same buffers), so a checkpoint
/// stays readable by an unmasked run.
pub struct Masked<T: Scalar> {
    inner: Box<dyn Optimizer<T>>,
    mask: PruneMask,
}

impl<T: Scalar> Masked<T> {
    pub fn new(inner: Box<dyn Optimizer<T>>, mask: PruneMask) -> Self {
        Masked { inner, mask }
    }

    pub fn mask(&self) -> &PruneMask {
        &self.mask
    }
}

impl<T: Scalar> Optimizer<T> for Masked<T> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn step(&mut self, params: &mut [T], grads: &[T], lr: T) {
        self.inner.step(params, grads, lr);
        self.mask.apply(params);
    }
    fn steps(&self) -> u64 {
        self.inner.steps()
    }
    fn buffers(&self) -> Vec<(&'static str, &[T])> {
        self.inner.buffers()
    }
    fn load(&mut self, steps: u64, buffers: &[(&str, &[T])]) -> Result<()> {
        self.inner.load(steps, buffers)
    }
    fn fresh(&self, len: usize) -> Box<dyn Optimizer<T>> {
        self.inner.fresh(len)
    }
    fn prune_mask_mut(&mut self) -> Option<&mut PruneMask> {
        Some(&mut self.mask)
    }
}

/// Copies saved buffers into `targets` by name, checking names and lengths.
fn load_buffers<T: Scalar>(
    optimizer: &str,
    targets: &mut [(&'static str, &mut Vec<T>)],
    saved: &[(&str, &[T])],
) -> Result<()> {
    for (name, target) in targets.iter_mut() {
        let Some((_, data)) = saved.iter().find(|(n, _)| n == name) else {
            return Err(NnError::Layout {
                tensor: format!("optim.{name}"),
                problem: format!("missing from the saved {optimizer} state"),
            });
        };
        if data.len() != target.len() {
            return Err(NnError::Layout {
                tensor: format!("optim.{name}"),
                problem: format!("saved {} values, the model has {}", data.len(), target.len()),
            });
        }
        target.copy_from_slice(data);
    }
    Ok(())
}

/// Adam (Kingma & Ba, 2015) as `torch.optim.Adam`: bias-corrected moments, `eps` added to
/// `√v̂` (outside the square root).
#[derive(Debug, Clone)]
pub struct Adam<T> {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    steps: u64,
    exp_avg: Vec<T>,
    exp_avg_sq: Vec<T>,
}

impl<T: Scalar> Adam<T> {
    /// PyTorch's defaults are `beta1 = 0.9`, `beta2 = 0.999`, `eps = 1e-8`; CleanRL's PPO uses `eps = 1e-5`.
    pub fn new(len: usize, beta1: f64, beta2: f64, eps: f64) -> Self {
        Adam { beta1, beta2, eps, steps: 0, exp_avg: vec![T::zero(); len], exp_avg_sq: vec![T::zero(); len] }
    }

    /// [`Optimizer::step`], with the elementwise update's second half on `helper` if there is
    /// one: each element is updated by the same arithmetic wherever it runs, so the bits are
    /// those of one thread. The update is memory-bound (seven streams over the parameters), so
    /// for SAC's 145k critic parameters the two cores' bandwidth halves a ~100 µs step.
    pub fn step_with(&mut self, helper: Option<&mut Helper>, params: &mut [T], grads: &[T], lr: T) {
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = (T::of(self.beta1), T::of(self.beta2));
        let (one_b1, one_b2) = (T::one() - b1, T::one() - b2);
        let step_size = lr / T::of(1.0 - self.beta1.powi(t));
        let bias2_sqrt = T::of((1.0 - self.beta2.powi(t)).sqrt());
        let eps = T::of(self.eps);
        let update = AdamUpdate { b1, b2, one_b1, one_b2, step_size, bias2_sqrt, eps };
        let (m, v) = (&mut self.exp_avg[..], &mut self.exp_avg_sq[..]);
        match helper {
            Some(helper) if params.len() >= 2 * SPLIT_LANES => {
                // A whole number of the widest vectors in the first half.
                let half = params.len() / 2 / SPLIT_LANES * SPLIT_LANES;
                let (p0, p1) = params.split_at_mut(half);
                let (g0, g1) = grads.split_at(half);
                let (m0, m1) = m.split_at_mut(half);
                let (v0, v1) = v.split_at_mut(half);
                helper.join(|| update.apply_here(p0, g0, m0, v0), || update.apply_here(p1, g1, m1, v1));
            }
            _ => update.apply_here(params, grads, m, v),
        }
    }
}

/// Lanes of the widest vector the update runs on: a split point of [`Adam::step_with`].
const SPLIT_LANES: usize = 16;

/// One Adam step's constants, and the elementwise update (PyTorch's formula, operation for
/// operation). Its square roots and divisions dominate an optimizer step; the loop compiled
/// for AVX-512 does 16 at a time instead of the baseline's 4, with the same results (both
/// are exactly rounded): a 132k-parameter MinAtar Q-network's step took 39 % of a DQN
/// update with the baseline loop.
#[derive(Clone, Copy)]
struct AdamUpdate<T> {
    b1: T,
    b2: T,
    one_b1: T,
    one_b2: T,
    step_size: T,
    bias2_sqrt: T,
    eps: T,
}

impl<T: Scalar> AdamUpdate<T> {
    #[inline(always)]
    fn apply(self, params: &mut [T], grads: &[T], exp_avg: &mut [T], exp_avg_sq: &mut [T]) {
        let AdamUpdate { b1, b2, one_b1, one_b2, step_size, bias2_sqrt, eps } = self;
        for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(exp_avg).zip(exp_avg_sq) {
            *m = b1 * *m + one_b1 * g;
            *v = b2 * *v + one_b2 * g * g;
            *p -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply_avx512(self, params: &mut [T], grads: &[T], exp_avg: &mut [T], exp_avg_sq: &mut [T]) {
        self.apply(params, grads, exp_avg, exp_avg_sq)
    }

    /// The update through the widest build this CPU runs.
    fn apply_here(self, params: &mut [T], grads: &[T], exp_avg: &mut [T], exp_avg_sq: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, the only feature the copy is compiled for.
                return unsafe { self.apply_avx512(params, grads, exp_avg, exp_avg_sq) };
            }
            if is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, the only feature the copy is compiled for.
                return unsafe { self.apply_avx2(params, grads, exp_avg, exp_avg_sq) };
            }
        }
        self.apply(params, grads, exp_avg, exp_avg_sq);
    }

    /// 8 lanes where AVX-512 is missing (AMD Zen 3: CartPole PPO's 9k-parameter step went
    /// from the baseline's 4 lanes to 8).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn apply_avx2(self, params: &mut [T], grads: &[T], exp_avg: &mut [T], exp_avg_sq: &mut [T]) {
        self.apply(params, grads, exp_avg, exp_avg_sq)
    }
}

impl<T: Scalar> Optimizer<T> for Adam<T> {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn fresh(&self, len: usize) -> Box<dyn Optimizer<T>> {
        Box::new(Adam::new(len, self.beta1, self.beta2, self.eps))
    }

    fn step(&mut self, params: &mut [T], grads: &[T], lr: T) {
        self.step_with(None, params, grads, lr);
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn buffers(&self) -> Vec<(&'static str, &[T])> {
        vec![("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)]
    }

    fn load(&mut self, steps: u64, buffers: &[(&str, &[T])]) -> Result<()> {
        load_buffers("adam", &mut [("exp_avg", &mut self.exp_avg), ("exp_avg_sq", &mut self.exp_avg_sq)], buffers)?;
        self.steps = steps;
        Ok(())
    }
}

/// SGD with (optionally Nesterov) momentum, as `torch.optim.SGD` with zero dampening.
#[derive(Debug, Clone)]
pub struct Sgd<T> {
    pub momentum: f64,
    pub nesterov: bool,
    steps: u64,
    momentum_buffer: Vec<T>,
}

impl<T: Scalar> Sgd<T> {
    pub fn new(len: usize, momentum: f64, nesterov: bool) -> Self {
        Sgd { momentum, nesterov, steps: 0, momentum_buffer: vec![T::zero(); len] }
    }
}

impl<T: Scalar> Optimizer<T> for Sgd<T> {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn fresh(&self, len: usize) -> Box<dyn Optimizer<T>> {
        Box::new(Sgd::new(len, self.momentum, self.nesterov))
    }

    fn step(&mut self, params: &mut [T], grads: &[T], lr: T) {
        self.steps += 1;
        if self.momentum == 0.0 {
            // Plain SGD: one fused multiply-add per value, the momentum buffer untouched (a
            // parameter server applying 10 MB gradients is bound by memory traffic).
            for (p, &g) in params.iter_mut().zip(grads) {
                *p -= lr * g;
            }
            return;
        }
        let mu = T::of(self.momentum);
        for ((p, &g), buf) in params.iter_mut().zip(grads).zip(&mut self.momentum_buffer) {
            *buf = mu * *buf + g;
            let update = if self.nesterov { g + mu * *buf } else { *buf };
            *p -= lr * update;
        }
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn buffers(&self) -> Vec<(&'static str, &[T])> {
        vec![("momentum_buffer", &self.momentum_buffer)]
    }

    fn load(&mut self, steps: u64, buffers: &[(&str, &[T])]) -> Result<()> {
        load_buffers("sgd", &mut [("momentum_buffer", &mut self.momentum_buffer)], buffers)?;
        self.steps = steps;
        Ok(())
    }
}

/// RMSProp as `torch.optim.RMSprop`; `centered` divides by the estimated standard deviation
/// of the gradient instead of its root mean square (the variant A3C used).
#[derive(Debug, Clone)]
pub struct RmsProp<T> {
    pub alpha: f64,
    pub eps: f64,
    pub centered: bool,
    pub momentum: f64,
    steps: u64,
    square_avg: Vec<T>,
    grad_avg: Vec<T>,
    momentum_buffer: Vec<T>,
}

impl<T: Scalar> RmsProp<T> {
    /// PyTorch's defaults are `alpha = 0.99`, `eps = 1e-8`; SB3's A2C uses `alpha = 0.99, eps = 1e-5`.
    pub fn new(len: usize, alpha: f64, eps: f64, centered: bool, momentum: f64) -> Self {
        let zeros = vec![T::zero(); len];
        RmsProp {
            alpha,
            eps,
            centered,
            momentum,
            steps: 0,
            square_avg: zeros.clone(),
            grad_avg: zeros.clone(),
            momentum_buffer: zeros,
        }
    }
}

impl<T: Scalar> Optimizer<T> for RmsProp<T> {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn fresh(&self, len: usize) -> Box<dyn Optimizer<T>> {
        Box::new(RmsProp::new(len, self.alpha, self.eps, self.centered, self.momentum))
    }

    fn step(&mut self, params: &mut [T], grads: &[T], lr: T) {
        self.steps += 1;
        let (alpha, one_alpha, eps, mu) =
            (T::of(self.alpha), T::of(1.0 - self.alpha), T::of(self.eps), T::of(self.momentum));
        for (i, (p, &g)) in params.iter_mut().zip(grads).enumerate() {
            let sq = &mut self.square_avg[i];
            *sq = alpha * *sq + one_alpha * g * g;
            let avg = if self.centered {
                let ga = &mut self.grad_avg[i];
                *ga = alpha * *ga + one_alpha * g;
                (*sq - *ga * *ga).sqrt() + eps
            } else {
                sq.sqrt() + eps
            };
            if self.momentum > 0.0 {
                let buf = &mut self.momentum_buffer[i];
                *buf = mu * *buf + g / avg;
                *p -= lr * *buf;
            } else {
                *p -= lr * g / avg;
            }
        }
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn buffers(&self) -> Vec<(&'static str, &[T])> {
        vec![("square_avg", &self.square_avg), ("grad_avg", &self.grad_avg), ("momentum_buffer", &self.momentum_buffer)]
    }

    fn load(&mut self, steps: u64, buffers: &[(&str, &[T])]) -> Result<()> {
        load_buffers(
            "rmsprop",
            &mut [
                ("square_avg", &mut self.square_avg),
                ("grad_avg", &mut self.grad_avg),
                ("momentum_buffer", &mut self.momentum_buffer),
            ],
            buffers,
        )?;
        self.steps = steps;
        Ok(())
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm` (`clip_grad_norm_`, same
/// `1e-6` guard); returns the norm before clipping.
pub fn clip_grad_norm<T: Scalar>(grads: &mut [T], max_norm: f64) -> f64 {
    let norm = sum_of_squares(grads).sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        let coef = T::of(coef);
        grads.iter_mut().for_each(|g| *g *= coef);
    }
    norm
}

/// `Σ g²` in `f64` over eight independent partial sums (element `i` into sum `i mod 8`): one
/// running sum is a chain of dependent additions the compiler may not reorder, ~4 cycles per
/// element; eight vectorize, in an order fixed by the code (not by the CPU), so the norm is
/// the same on every machine.
fn sum_of_squares<T: Scalar>(values: &[T]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|g| g.as_f64() * g.as_f64()).sum();
    for chunk in chunks {
        for (lane, g) in lanes.iter_mut().zip(chunk) {
            *lane += g.as_f64() * g.as_f64();
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// A value moving linearly from `start` to `end` over the first `fraction` of training, then
/// held: LR annealing (`fraction = 1`) and ε-greedy exploration schedules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    pub start: f64,
    pub end: f64,
    pub fraction: f64,
}

impl LinearSchedule {
    /// The value at `progress` ∈ [0, 1] of the training budget.
    pub fn value(&self, progress: f64) -> f64 {
        let t = if self.fraction > 0.0 { (progress / self.fraction).clamp(0.0, 1.0) } else { 1.0 };
        self.start * (1.0 - t) + self.end * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adam's step with its second half on a helper thread gives one thread's values, bit for
    /// bit, over several steps (an odd length: the split falls inside the vectors' tail).
    #[test]
    fn adam_split_across_a_helper_equals_one_thread() {
        let n = 1003;
        let mut helper = Helper::new();
        let (mut one, mut two) = (Adam::new(n, 0.9, 0.999, 1e-8), Adam::new(n, 0.9, 0.999, 1e-8));
        let start: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).cos()).collect();
        let (mut p1, mut p2) = (start.clone(), start.clone());
        for step in 0..5 {
            let grads: Vec<f32> = (0..n).map(|i| ((i * (step + 2)) as f32 * 0.17).sin()).collect();
            one.step(&mut p1, &grads, 1e-3);
            two.step_with(Some(&mut helper), &mut p2, &grads, 1e-3);
        }
        assert!(p1 != start);
        assert_eq!(p1, p2);
        assert!(one.exp_avg == two.exp_avg && one.exp_avg_sq == two.exp_avg_sq);
    }

    /// The AVX-512 and AVX2 copies of Adam's update give the baseline loop's values bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn adams_wide_loops_equal_the_baseline_bit_for_bit() {
        let n = 1003;
        let wave = |k: f32| (0..n).map(|i| ((i as f32) * k).sin()).collect::<Vec<f32>>();
        let (grads, m0, v0, p0) = (wave(0.37), wave(0.11), wave(0.07).iter().map(|x| x * x).collect(), wave(0.5));
        let update = AdamUpdate {
            b1: 0.9f32,
            b2: 0.999,
            one_b1: 0.1,
            one_b2: 0.001,
            step_size: 3e-4,
            bias2_sqrt: 0.3,
            eps: 1e-8,
        };
        let (mut p, mut m, mut v): (Vec<f32>, Vec<f32>, Vec<f32>) = (p0.clone(), m0.clone(), v0);
        let (p1, m1, v1) = (p.clone(), m.clone(), v.clone());
        update.apply(&mut p, &grads, &mut m, &mut v);
        let mut wide_loops = 0;
        if is_x86_feature_detected!("avx512f") {
            let (mut p2, mut m2, mut v2) = (p1.clone(), m1.clone(), v1.clone());
            // SAFETY: AVX-512F was detected.
            unsafe { update.apply_avx512(&mut p2, &grads, &mut m2, &mut v2) };
            assert!(p == p2 && m == m2 && v == v2, "AVX-512");
            wide_loops += 1;
        }
        if is_x86_feature_detected!("avx2") {
            let (mut p2, mut m2, mut v2) = (p1, m1, v1);
            // SAFETY: AVX2 was detected.
            unsafe { update.apply_avx2(&mut p2, &grads, &mut m2, &mut v2) };
            assert!(p == p2 && m == m2 && v == v2, "AVX2");
            wide_loops += 1;
        }
        eprintln!("{wide_loops} wide loop(s) checked");
        assert!(p != p0);
    }

    #[test]
    fn the_clipped_norm_is_the_l2_norm() {
        let mut grads: Vec<f64> = (0..37).map(|i| (i as f64 - 18.0) / 7.0).collect();
        let want = grads.iter().map(|g| g * g).sum::<f64>().sqrt();
        let norm = clip_grad_norm(&mut grads, 0.5);
        assert!((norm - want).abs() < 1e-12 * want);
        let after = grads.iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!((after - 0.5).abs() < 1e-6, "clipped to max_norm: {after}");
    }
}
