//! # shoal-nn
//!
//! A native engine for the small networks reinforcement learning runs on CPU. General tensor
//! frameworks spend most of a 64-unit MLP's time in per-operation overhead; this crate fuses
//! each layer's matrix product, bias and activation, keeps every buffer between calls, and
//! stores parameters, gradients and optimizer moments as single flat `f32` vectors.
//!
//! - [`Model`]: the trait algorithms train through (batched forward, gradient of a named
//!   [`Loss`], flat params and grads). [`ActorCritic`] and [`QNetwork`] implement it.
//! - [`PolicyHead`]: categorical and diagonal-Gaussian action distributions.
//! - [`loss`]: PPO, A2C, TD (MSE/Huber, importance-weighted) and distillation losses.
//! - [`squashed`]: SAC's tanh-squashed Gaussian (sample, log-probability, gradients) and the
//!   loss of its entropy temperature.
//! - [`gsde`]: generalized state-dependent exploration for that policy (smooth noise from
//!   the features).
//! - [`optim`]: Adam, SGD, RMSProp with PyTorch's rules; gradient clipping; schedules.
//! - [`io`]: safetensors checkpoints with atomic writes (and pruning masks).
//! - [`prune`]: magnitude pruning masks and Zhu & Gupta's gradual schedule; an optimizer
//!   wrapper ([`optim::Masked`]) keeps pruned weights at zero while training goes on.
//! - [`conv`]: 2-D convolution layers (NHWC, im2col over the GEMM), the building block of
//!   pixel models.
//! - [`onnx`]: a policy network as an ONNX model, for runtimes without Shoal.
//! - [`sparse`]: inference of a pruned MLP over its non-zero weights.
//! - [`quant`]: int8 inference of a trained MLP (per-channel weights, per-row activations,
//!   exact `i32` products on AVX-512 VNNI, AVX2 or a portable loop, chosen at run time).
//!
//! Everything is generic over [`Scalar`] (`f32` to train, `f64` to check gradients against
//! finite differences).
//!
//! **Not covered here:** GPU training. Convolutional models for pixel observations are being
//! built from [`conv`] behind the same [`Model`] trait (issue 14): flat parameters in and
//! out, so algorithms, the parameter server and checkpoints stay unchanged.

pub mod activation;
pub mod conv;
pub mod error;
pub mod gemm;
pub mod gsde;
pub mod init;
pub mod io;
pub mod kernel;
pub mod layout;
pub mod loss;
pub mod mlp;
pub mod model;
pub mod models;
pub mod onnx;
pub mod optim;
pub mod parallel;
pub mod policy;
pub mod prune;
pub mod quant;
pub mod scalar;
pub mod sparse;
pub mod squashed;
pub mod tanh;

pub use activation::Activation;
pub use error::{NnError, Result};
pub use layout::{ParamLayout, TensorSpec};
pub use loss::{PolicyObjective, TdLoss};
pub use model::{DistillBatch, Loss, LossStats, Model, Outputs, PolicyGradientBatch, TdBatch};
pub use models::{ActorCritic, ActorCriticConfig, QNetwork, QNetworkConfig};
pub use optim::{clip_grad_norm, Adam, LinearSchedule, Optimizer, RmsProp, Sgd};
pub use policy::PolicyHead;
pub use scalar::Scalar;
