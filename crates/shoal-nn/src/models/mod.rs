//! Ready-made models: actor-critic (PPO, A2C, A3C) and Q-networks (DQN, Ape-X).

mod actor_critic;
mod q_network;

pub use actor_critic::{ActorCritic, ActorCriticConfig};
pub use q_network::{QNetwork, QNetworkConfig};

use rand::SeedableRng;

use crate::activation::Activation;
use crate::conv::{ConvEncoder, EncoderConfig, EncoderWorkspace};
use crate::error::{NnError, Result};
use crate::layout::ParamLayout;
use crate::scalar::Scalar;

/// The initialization RNG: a seed fixes the initial parameters exactly.
pub(crate) fn init_rng(seed: u64) -> rand_pcg::Pcg64Mcg {
    rand_pcg::Pcg64Mcg::seed_from_u64(seed)
}

/// Rejects empty layers and zero-sized inputs before any buffer is sized from them.
pub(crate) fn check_sizes(what: &str, sizes: &[usize]) -> Result<()> {
    if sizes.contains(&0) {
        return Err(NnError::Config(format!("{what} sizes {sizes:?} contain a zero")));
    }
    Ok(())
}

/// `√2`: the hidden-layer gain CleanRL uses with orthogonal init.
pub(crate) const HIDDEN_GAIN: f64 = std::f64::consts::SQRT_2;

/// The convolutional encoder `image` describes (tensors `encoder.*`), checked against the
/// observation width; `None` without one.
pub(crate) fn build_encoder(
    layout: &mut ParamLayout,
    image: Option<&EncoderConfig>,
    obs_dim: usize,
) -> Result<Option<ConvEncoder>> {
    match image {
        Some(image) if image.in_len() != obs_dim => Err(NnError::Config(format!(
            "the encoder reads {}×{}×{} images ({} values) but observations have {obs_dim}",
            image.height,
            image.width,
            image.channels,
            image.in_len()
        ))),
        Some(image) => Ok(Some(ConvEncoder::new(layout, "encoder", image, Activation::Relu)?)),
        None => Ok(None),
    }
}

/// What a model's MLPs read: the encoder's features of `obs` if the model has an encoder, else
/// `obs` itself.
pub(crate) fn encode<'a, T: Scalar>(
    encoder: Option<&ConvEncoder>,
    params: &[T],
    obs: &'a [T],
    rows: usize,
    ws: &'a mut EncoderWorkspace<T>,
) -> &'a [T] {
    match encoder {
        Some(encoder) => encoder.forward(params, obs, rows, ws),
        None => obs,
    }
}
