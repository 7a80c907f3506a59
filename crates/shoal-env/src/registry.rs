//! `make("CartPole-v1")`: the registry of environment ids, like Gymnasium's.
//!
//! Each id maps to a factory plus the metadata Gymnasium keeps in its `EnvSpec` (time limit,
//! reward threshold, default options). Users add their own env types with [`register`].

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock, RwLock};

use crate::env::Env;
use crate::envs;
use crate::error::{EnvError, Result};
use crate::options::{EnvOptions, OptionValue};
use crate::vector::{SyncVectorEnv, ThreadedVectorEnv, VecEnv};
use crate::wrappers::TimeLimit;

/// Builds one env, or a vector of them, from options and an optional time limit; the options
/// the env does not ask for are reported as unknown.
///
/// Both keep the concrete env type until the last moment: a single env is boxed once around
/// `TimeLimit<E>`, and a vector env is built over `Vec<TimeLimit<E>>` itself, so stepping it
/// inlines the env into the vector env's loop with no dynamic call per env step at all.
pub(crate) trait Builder: Send + Sync {
    fn one(&self, options: &mut EnvOptions, max_episode_steps: Option<u64>) -> Result<Box<dyn Env>>;
    fn vector(
        &self,
        options: &EnvOptions,
        max_episode_steps: Option<u64>,
        num_envs: usize,
        threads: usize,
    ) -> Result<Box<dyn VecEnv>>;
}

/// A [`Builder`] from a constructor of the concrete env type `E`.
struct Typed<F, E>(F, PhantomData<fn() -> E>);

/// Builds `num_envs` envs of one type, each from its own copy of the options.
fn build_all<E, F: Fn(&mut EnvOptions) -> Result<E>>(options: &EnvOptions, num_envs: usize, make: F) -> Result<Vec<E>> {
    (0..num_envs)
        .map(|_| {
            let mut opts = options.clone();
            let env = make(&mut opts)?;
            opts.finish()?;
            Ok(env)
        })
        .collect()
}

/// A synchronous vector env for one thread, a threaded one otherwise.
fn vectorize<E: Env + 'static>(envs: Vec<E>, threads: usize) -> Result<Box<dyn VecEnv>> {
    Ok(if threads <= 1 {
        Box::new(SyncVectorEnv::new(envs)?)
    } else {
        Box::new(ThreadedVectorEnv::new(envs, threads)?)
    })
}

impl<F, E> Builder for Typed<F, E>
where
    F: Fn(&mut EnvOptions) -> Result<E> + Send + Sync,
    E: Env + 'static,
{
    fn one(&self, options: &mut EnvOptions, max_episode_steps: Option<u64>) -> Result<Box<dyn Env>> {
        let env = (self.0)(options)?;
        Ok(match max_episode_steps {
            Some(n) => Box::new(TimeLimit::new(env, n)),
            None => Box::new(env),
        })
    }

    fn vector(
        &self,
        options: &EnvOptions,
        max_episode_steps: Option<u64>,
        num_envs: usize,
        threads: usize,
    ) -> Result<Box<dyn VecEnv>> {
        match max_episode_steps {
            Some(n) => vectorize(build_all(options, num_envs, |o| Ok(TimeLimit::new((self.0)(o)?, n)))?, threads),
            None => vectorize(build_all(options, num_envs, &self.0)?, threads),
        }
    }
}

/// How to build one registered environment id.
#[derive(Clone)]
pub struct EnvSpec {
    pub id: String,
    /// Episodes are truncated after this many steps (the `TimeLimit` that `make` adds).
    pub max_episode_steps: Option<u64>,
    /// The return at which the task counts as solved.
    pub reward_threshold: Option<f64>,
    /// Options applied before the caller's (e.g. `map_name = "8x8"` for FrozenLake8x8-v1).
    pub default_options: Vec<(String, OptionValue)>,
    builder: Arc<dyn Builder>,
}

impl EnvSpec {
    /// A spec for `id` built by `factory`; add limits with the builder methods.
    pub fn new<F, E>(id: &str, factory: F) -> Self
    where
        F: Fn(&mut EnvOptions) -> Result<E> + Send + Sync + 'static,
        E: Env + 'static,
    {
        EnvSpec {
            id: id.to_string(),
            max_episode_steps: None,
            reward_threshold: None,
            default_options: Vec::new(),
            builder: Arc::new(Typed(factory, PhantomData)),
        }
    }

    /// A spec built by its own builder (the Gymnasium bridge's).
    #[cfg(feature = "python")]
    pub(crate) fn with_builder(id: &str, builder: Arc<dyn Builder>) -> Self {
        EnvSpec {
            id: id.to_string(),
            max_episode_steps: None,
            reward_threshold: None,
            default_options: Vec::new(),
            builder,
        }
    }

    pub fn max_episode_steps(mut self, steps: u64) -> Self {
        self.max_episode_steps = Some(steps);
        self
    }

    pub fn reward_threshold(mut self, threshold: f64) -> Self {
        self.reward_threshold = Some(threshold);
        self
    }

    pub fn default_option(mut self, key: &str, value: impl Into<OptionValue>) -> Self {
        self.default_options.push((key.to_string(), value.into()));
        self
    }

    /// The spec's default options overridden by `options`, and the time limit they imply.
    ///
    /// The option `max_episode_steps` overrides the spec's time limit (0 removes it).
    fn resolve(&self, options: &[(&str, OptionValue)]) -> Result<(EnvOptions, Option<u64>)> {
        let mut opts = EnvOptions::new(&self.id);
        for (key, value) in &self.default_options {
            opts.set(key, value.clone());
        }
        for (key, value) in options {
            opts.set(key, value.clone());
        }
        let max_steps = opts.count("max_episode_steps")?.or(self.max_episode_steps).filter(|&n| n > 0);
        Ok((opts, max_steps))
    }

    /// Builds the env: defaults, then `options`, then the time limit.
    pub fn make(&self, options: &[(&str, OptionValue)]) -> Result<Box<dyn Env>> {
        let (mut opts, max_steps) = self.resolve(options)?;
        let env = self.builder.one(&mut opts, max_steps)?;
        opts.finish()?;
        Ok(env)
    }

    /// Builds `num_envs` copies as one vector env on `threads` threads (1 = synchronous).
    pub fn make_vec(
        &self,
        options: &[(&str, OptionValue)],
        num_envs: usize,
        threads: usize,
    ) -> Result<Box<dyn VecEnv>> {
        let (opts, max_steps) = self.resolve(options)?;
        self.builder.vector(&opts, max_steps, num_envs, threads)
    }
}

impl std::fmt::Debug for EnvSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSpec")
            .field("id", &self.id)
            .field("max_episode_steps", &self.max_episode_steps)
            .field("reward_threshold", &self.reward_threshold)
            .field("default_options", &self.default_options)
            .finish_non_exhaustive()
    }
}

/// The ids Gymnasium 1.4 registers for the built-in envs, with its limits and thresholds.
fn builtin_specs() -> Vec<EnvSpec> {
    vec![
        EnvSpec::new("CartPole-v1", envs::CartPole::new).max_episode_steps(500).reward_threshold(475.0),
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
