//! What the instruction-set builds of the kernel share: a product's operands as raw pointers,
//! how a block of `C` is finished, and the row stripes a product is cut into.

use crate::tanh::fast_tanh_fma;

/// The nonlinearity of a [`super::Store::Bias`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// None: an output layer.
    Identity,
    /// [`crate::tanh::fast_tanh_fma`].
    Tanh,
    /// `max(x, 0)`.
    Relu,
}

/// `super::Store` without its borrow: the bias is `Operands::bias`.
#[derive(Clone, Copy)]
pub(super) enum Finish {
    Overwrite,
    Accumulate,
    Bias(Unit),
}

/// Where one product's operands live (as `super::product` describes them), `c` with rows
/// `ldc` apart, and the bias of a `Finish::Bias` (else null): the pointers move together
/// from block to block.
#[derive(Clone, Copy)]
pub(super) struct Operands {
    pub(super) a: *const f32,
    pub(super) ars: usize,
    pub(super) acs: usize,
    pub(super) b: *const f32,
    pub(super) ldb: usize,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    pub(super) finish: Finish,
    pub(super) bias: *const f32,
}

impl Operands {
    /// The operands of the block whose first output is row `i`, column `j` of `C`.
    ///
    /// # Safety
    /// `(i, j)` lies within `C` (and so its row of `A` and column of `B` within theirs).
    #[inline(always)]
    pub(super) unsafe fn at(self, i: usize, j: usize) -> Self {
        // SAFETY: in bounds by the caller's contract.
        unsafe {
            Operands {
                a: self.a.add(i * self.ars),
                b: self.b.add(j),
                c: self.c.add(i * self.ldc + j),
                bias: self.bias.wrapping_add(j),
                ..self
            }
        }
    }
}

/// `C[m×n]` computed in stripes of up to `rows_per_stripe` rows: `stripe(rows, operands at
/// the stripe's first row)` computes one, and a `Finish::Bias`'s activation then runs over its
/// rows while they are still in L1 — per stripe rather than per block: called for each
/// block's 16-value rows it gained nothing over a separate pass. Per stripe (256 rows, one
/// thread, AVX2, min of 200 rounds): `4→64` tanh 9.1–9.4 µs separate, 8.1–8.3 fused; `64→64`
/// 32.8–34.4 vs 31.4–33.2 (the product alone 25.7–27.1).
///
/// Inlined into each instruction set's build, so `stripe` and `activate` are compiled for it.
///
/// # Safety
/// `ops` addresses an `m×n` product with `ops.ldc = n` (checked by `super::product`).
#[inline(always)]
pub(super) unsafe fn by_stripes(
    m: usize,
    n: usize,
    rows_per_stripe: usize,
    ops: Operands,
    mut stripe: impl FnMut(usize, Operands),
    activate: impl Fn(Unit, &mut [f32]),
) {
    let mut i = 0;
    while i < m {
        let rows = rows_per_stripe.min(m - i);
        // SAFETY: row i < m; the stripe's rows i..i + rows lie within `C`.
        unsafe {
            let at = ops.at(i, 0);
            stripe(rows, at);
            if let Finish::Bias(unit) = ops.finish {
                activate(unit, std::slice::from_raw_parts_mut(at.c, rows * n));
            }
        }
        i += rows;
    }
}

/// A `Finish::Bias`'s activation on values of `C` just stored, written as the separate pass
/// ([`crate::scalar::Scalar::bias_tanh`]) writes them, so the same bits. Inlined into each
/// instruction set's build, where it vectorizes to that set's width.
#[inline(always)]
pub(super) fn apply_unit(unit: Unit, out: &mut [f32]) {
    match unit {
        Unit::Identity => {}
        Unit::Tanh => out.iter_mut().for_each(|x| *x = fast_tanh_fma(*x)),
        Unit::Relu => out.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}
