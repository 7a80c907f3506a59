//! Hidden-layer activations, applied fused with the bias add.

use crate::scalar::Scalar;

/// The nonlinearity between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `tanh` (the fast approximation in `f32`): CleanRL's and SB3's default for PPO/A2C.
    Tanh,
    /// `max(0, x)`: the usual choice for DQN.
    Relu,
}

impl Activation {
    /// Parses `"tanh"` or `"relu"`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tanh" => Some(Activation::Tanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }

    /// Adds `bias` to every row of `z` (`[rows, bias.len()]`) and applies the activation in place.
    pub(crate) fn bias_activate<T: Scalar>(self, z: &mut [T], bias: &[T]) {
        let width = bias.len();
        match self {
            Activation::Tanh => T::bias_tanh(z, bias),
            Activation::Relu => {
                for row in z.chunks_exact_mut(width) {
                    for (x, &b) in row.iter_mut().zip(bias) {
                        *x = (*x + b).max(T::zero());
                    }
                }
            }
        }
    }

    /// Turns `∂L/∂y` into `∂L/∂z` in place, using the outputs `y = f(z)`.
    pub(crate) fn backprop<T: Scalar>(self, grad: &mut [T], outputs: &[T]) {
        match self {
            Activation::Tanh => grad.iter_mut().zip(outputs).for_each(|(g, &y)| *g = Activation::Tanh.through(*g, y)),
            Activation::Relu => grad.iter_mut().zip(outputs).for_each(|(g, &y)| *g = Activation::Relu.through(*g, y)),
        }
    }

    /// `∂L/∂z` of one unit from its `∂L/∂y` and output `y = f(z)`. Callers loop over one
    /// variant at a time (named as a constant), so each loop compiles to straight-line SIMD.
    #[inline(always)]
    fn through<T: Scalar>(self, grad: T, y: T) -> T {
        match self {
            Activation::Tanh => grad * (T::one() - y * y),
            // A select, not a branch: half the units are off, at random.
            Activation::Relu => {
                if y > T::zero() {
                    grad
                } else {
                    T::zero()
                }
            }
        }
    }
}

/// Turns `∂L/∂y` into `∂L/∂z` in place through `activation` (none: an output layer, `∂z = ∂y`)
/// and adds each row of `∂L/∂z` into `gb` (the bias gradient), in one pass over the rows
/// instead of two: the same sums in the same order as [`Activation::backprop`] followed by a
/// row sum.
pub(crate) fn backprop_and_bias_grad<T: Scalar>(
    activation: Option<Activation>,
    grad: &mut [T],
    outputs: &[T],
    gb: &mut [T],
) {
    let width = gb.len();
    for (g_row, y_row) in grad.chunks_exact_mut(width).zip(outputs.chunks_exact(width)) {
        match activation {
            Some(Activation::Tanh) => {
                for ((g, &y), b) in g_row.iter_mut().zip(y_row).zip(gb.iter_mut()) {
                    *g = Activation::Tanh.through(*g, y);
                    *b += *g;
                }
            }
            Some(Activation::Relu) => {
                for ((g, &y), b) in g_row.iter_mut().zip(y_row).zip(gb.iter_mut()) {
                    *g = Activation::Relu.through(*g, y);
                    *b += *g;
                }
            }
            None => gb.iter_mut().zip(g_row.iter()).for_each(|(b, &g)| *b += g),
        }
    }
}

/// Adds `bias` to every row of `z` and applies `activation`, or only adds it without one (an
/// output layer): what every layer does after its product.
pub(crate) fn add_bias_and_activate<T: Scalar>(z: &mut [T], bias: &[T], activation: Option<Activation>) {
    match activation {
        Some(activation) => activation.bias_activate(z, bias),
        None => {
            for row in z.chunks_exact_mut(bias.len()) {
                for (x, &b) in row.iter_mut().zip(bias) {
                    *x += b;
                }
            }
        }
    }
}
