//! `EnvSpec`: how to build one environment id — its factory, and the metadata Gymnasium keeps
//! in its own `EnvSpec` (time limit, reward threshold, default options). The registry of ids
//! is in `registry.rs`; the Gymnasium bridge builds specs of its own.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::env::Env;
use crate::error::Result;
use crate::options::{EnvOptions, OptionValue};
use crate::vector::{EnvSlice, SyncVectorEnv, ThreadedVectorEnv, VecEnv};
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
fn vectorize<S: EnvSlice>(envs: S, threads: usize) -> Result<Box<dyn VecEnv>> {
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

/// A [`Builder`] for an env type with an [`EnvSlice`] of its own (CartPole's lanes): vector
/// envs step that slice, single envs come from the plain builder.
struct Sliced<F, S> {
    single: Arc<dyn Builder>,
    slice: F,
    _slice: PhantomData<fn() -> S>,
}

impl<F, S> Builder for Sliced<F, S>
where
    F: Fn(&mut EnvOptions, Option<u64>, usize) -> Result<S> + Send + Sync,
    S: EnvSlice,
{
    fn one(&self, options: &mut EnvOptions, max_episode_steps: Option<u64>) -> Result<Box<dyn Env>> {
        self.single.one(options, max_episode_steps)
    }

    fn vector(
        &self,
        options: &EnvOptions,
        max_episode_steps: Option<u64>,
        num_envs: usize,
        threads: usize,
    ) -> Result<Box<dyn VecEnv>> {
        let mut opts = options.clone();
        let envs = (self.slice)(&mut opts, max_episode_steps, num_envs)?;
        opts.finish()?;
        vectorize(envs, threads)
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

    /// Vector envs of this id step `slice(options, max_episode_steps, num_envs)`, the env
    /// type's own [`EnvSlice`] (e.g. [`crate::envs::CartPoleLanes::new`]), instead of a `Vec`
    /// of single envs; it must step exactly like them.
    pub fn vector_slice<F, S>(mut self, slice: F) -> Self
    where
        F: Fn(&mut EnvOptions, Option<u64>, usize) -> Result<S> + Send + Sync + 'static,
        S: EnvSlice,
    {
        self.builder = Arc::new(Sliced { single: self.builder, slice, _slice: PhantomData });
        self
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
