//! `make("CartPole-v1")`: the registry of environment ids, like Gymnasium's.
//!
//! Each id maps to an [`EnvSpec`]: a factory plus the metadata Gymnasium keeps in its
//! `EnvSpec` (time limit, reward threshold, default options). Users add their own env types
//! with [`register`].

use std::sync::{OnceLock, RwLock};

use crate::env::Env;
use crate::envs;
use crate::error::{EnvError, Result};
use crate::options::OptionValue;
pub use crate::spec::EnvSpec;

/// The ids Gymnasium 1.4 registers for the built-in envs, with its limits and thresholds.
fn builtin_specs() -> Vec<EnvSpec> {
    vec![
        EnvSpec::new("CartPole-v1", envs::CartPole::new)
            .vector_slice(envs::CartPoleLanes::new)
            .max_episode_steps(500)
            .reward_threshold(475.0),
        EnvSpec::new("MountainCar-v0", envs::MountainCar::new).max_episode_steps(200).reward_threshold(-110.0),
        EnvSpec::new("MountainCarContinuous-v0", envs::MountainCarContinuous::new)
            .max_episode_steps(999)
            .reward_threshold(90.0),
        EnvSpec::new("Pendulum-v1", envs::Pendulum::new).max_episode_steps(200),
        EnvSpec::new("Acrobot-v1", envs::Acrobot::new).max_episode_steps(500).reward_threshold(-100.0),
        EnvSpec::new("FrozenLake-v1", envs::frozen_lake)
            .max_episode_steps(100)
            .reward_threshold(0.70)
            .default_option("map_name", "4x4"),
        EnvSpec::new("FrozenLake8x8-v1", envs::frozen_lake)
            .max_episode_steps(200)
            .reward_threshold(0.85)
            .default_option("map_name", "8x8"),
        EnvSpec::new("CliffWalking-v1", envs::cliff_walking),
        EnvSpec::new("CliffWalkingSlippery-v1", envs::cliff_walking).default_option("is_slippery", true),
        EnvSpec::new("Taxi-v4", envs::Taxi::new).max_episode_steps(200).reward_threshold(8.0),
    ]
}

fn registry() -> &'static RwLock<Vec<EnvSpec>> {
    static REGISTRY: OnceLock<RwLock<Vec<EnvSpec>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(builtin_specs()))
}

/// Adds a user environment to the global registry, so `make` and the CLI can build it.
pub fn register(spec: EnvSpec) -> Result<()> {
    let mut specs = registry().write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if specs.iter().any(|s| s.id == spec.id) {
        return Err(EnvError::AlreadyRegistered(spec.id));
    }
    specs.push(spec);
    Ok(())
}

/// Every registered spec, built-ins first.
pub fn specs() -> Vec<EnvSpec> {
    registry().read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// The spec registered under `id`, or an error suggesting close ids.
///
/// Ids starting with `gymnasium:` or `python:` are Python envs, built through the Gymnasium
/// bridge (feature `python`; see [`crate::gymnasium`]).
pub fn spec(id: &str) -> Result<EnvSpec> {
    if id.starts_with("gymnasium:") || id.starts_with("python:") {
        return python_spec(id);
    }
    let specs = specs();
    if let Some(spec) = specs.iter().find(|s| s.id == id) {
        return Ok(spec.clone());
    }
    let mut scored: Vec<(usize, &str)> = specs
        .iter()
        .map(|s| (strsim::levenshtein(&s.id.to_lowercase(), &id.to_lowercase()), s.id.as_str()))
        .filter(|(d, s)| *d <= 4 || s.split('-').next() == id.split('-').next())
        .collect();
    scored.sort();
    Err(EnvError::UnknownEnv {
        id: id.to_string(),
        suggestions: scored.into_iter().take(3).map(|(_, s)| s.to_string()).collect(),
    })
}

#[cfg(feature = "python")]
fn python_spec(id: &str) -> Result<EnvSpec> {
    Ok(crate::gymnasium::spec(id))
}

#[cfg(not(feature = "python"))]
fn python_spec(id: &str) -> Result<EnvSpec> {
    Err(EnvError::Python {
        env: id.to_string(),
        message: "Python envs need Shoal built with the `python` feature (cargo build --release --features python)"
            .into(),
    })
}

/// Builds a registered env with its default options and time limit.
pub fn make(id: &str) -> Result<Box<dyn Env>> {
    spec(id)?.make(&[])
}

/// Builds a registered env with keyword options, e.g. `[("is_slippery", false.into())]`.
pub fn make_with(id: &str, options: &[(&str, OptionValue)]) -> Result<Box<dyn Env>> {
    spec(id)?.make(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_builds_and_resets() {
        for spec in specs() {
            let mut env = spec.make(&[]).unwrap();
            let mut obs = vec![0.0; env.observation_space().flat_dim()];
            env.reset(Some(0), &mut obs).unwrap();
        }
    }

    #[test]
    fn unknown_id_suggests_close_matches() {
        let err = make("CartPole-v0").unwrap_err().to_string();
        assert!(err.contains("unknown environment id `CartPole-v0`"), "{err}");
        assert!(err.contains("`CartPole-v1`"), "{err}");
        let err = make("Taxi-v3").unwrap_err().to_string();
        assert!(err.contains("`Taxi-v4`"), "{err}");
    }

    #[test]
    fn unknown_option_is_an_error() {
        let err = make_with("FrozenLake-v1", &[("slippery", false.into())]).unwrap_err();
        assert!(matches!(err, EnvError::UnknownOption { ref key, .. } if key == "slippery"), "{err}");
        assert!(err.to_string().contains("is_slippery"), "{err}");
    }

    #[test]
    fn bad_option_value_is_an_error() {
        let err = make_with("FrozenLake-v1", &[("map_name", "5x5".into())]).unwrap_err().to_string();
        assert!(err.contains("`5x5` is not one of: 4x4, 8x8"), "{err}");
    }

    #[test]
    fn user_envs_can_be_registered() {
        register(EnvSpec::new("MyCartPole-v0", envs::CartPole::new).max_episode_steps(10)).unwrap();
        let mut env = make("MyCartPole-v0").unwrap();
        let mut obs = [0.0; 4];
        env.reset(Some(1), &mut obs).unwrap();
        let mut steps = 0;
        loop {
            steps += 1;
            let r = env.step(crate::Action::Discrete((steps % 2) as i64), &mut obs).unwrap();
            if r.done() {
                assert!(r.truncated && steps == 10);
                break;
            }
        }
        assert!(register(EnvSpec::new("MyCartPole-v0", envs::CartPole::new)).is_err());
    }
}
