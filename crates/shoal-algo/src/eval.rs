//! Evaluating a trained agent: run whole episodes with its `predict` and report what RL
//! practitioners compare — mean and spread of returns, cumulative return, episode length,
//! success rate, and steps per second.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use shoal_env::{Action, Env, Space};

use crate::agent::{Agent, Callback, Control, Progress};
use crate::config::CommonConfig;
use crate::error::Result;

/// What counts as success in an env: reaching the goal, or surviving to the time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessRule {
    /// The episode terminated with a positive last reward (reached a goal, not a hole).
    ReachedGoal,
    /// The episode terminated (the task's end condition is the goal: swing-up, flag, drop-off).
    Terminated,
    /// The episode ran to its time limit without failing (CartPole's balance).
    Survived,
}

/// The success rule of a registered env id, if it has one (Pendulum does not).
pub fn success_rule(env_id: &str) -> Option<SuccessRule> {
    let name = env_id.split('-').next().unwrap_or(env_id);
    match name {
        "CartPole" => Some(SuccessRule::Survived),
        "FrozenLake" | "FrozenLake8x8" => Some(SuccessRule::ReachedGoal),
        "MountainCar" | "MountainCarContinuous" | "Acrobot" | "CliffWalking" | "CliffWalkingSlippery" | "Taxi" => {
            Some(SuccessRule::Terminated)
        }
        _ => None,
    }
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub episodes: usize,
    pub deterministic: bool,
    pub episode_return_mean: f64,
    pub episode_return_std: f64,
    pub episode_return_min: f64,
    pub episode_return_max: f64,
    /// Sum of all episodes' returns.
    pub cumulative_return: f64,
    pub episode_len_mean: f64,
    /// `None` for envs without a success notion.
    pub success_rate: Option<f64>,
    pub env_steps: u64,
    pub env_steps_per_sec: f64,
}

/// One env of the config's id and options (for evaluation and other single-env loops).
pub fn make_env(config: &CommonConfig) -> Result<Box<dyn Env>> {
    let options = config.env.options()?;
    let options: Vec<(&str, shoal_env::OptionValue)> = options.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    Ok(shoal_env::make_with(&config.env.id, &options)?)
}

/// An action row as the env takes it: a discrete index (written as a float) or the values.
pub fn env_action(discrete: bool, action: &[f32]) -> Action<'_> {
    if discrete {
        Action::Discrete(action[0] as i64)
    } else {
        Action::Continuous(action)
    }
}

/// Runs `episodes` episodes of the config's env (seeded `seed`, `seed + 1`, …) with `agent`.
pub fn evaluate(
    agent: &mut dyn Agent,
    config: &CommonConfig,
    episodes: usize,
    deterministic: bool,
    seed: u64,
) -> Result<EvalReport> {
    let mut env = make_env(config)?;
    let rule = success_rule(&config.env.id);
    let discrete = matches!(env.action_space(), Space::Discrete { .. });
    let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
    let mut action = vec![0.0f32; agent.action_dim()];
    let (mut returns, mut lengths, mut successes) = (Vec::new(), Vec::new(), 0usize);
    let start = Instant::now();
    for episode in 0..episodes {
        env.reset(Some(seed.wrapping_add(episode as u64)), &mut obs)?;
        let (mut total, mut length) = (0.0, 0u64);
        loop {
            agent.predict(&obs, 1, deterministic, &mut action)?;
            let step = env.step(env_action(discrete, &action), &mut obs)?;
            total += step.reward;
            length += 1;
            if step.done() {
                let success = match rule {
                    Some(SuccessRule::ReachedGoal) => step.terminated && step.reward > 0.0,
                    Some(SuccessRule::Terminated) => step.terminated,
                    Some(SuccessRule::Survived) => step.truncated && !step.terminated,
                    None => false,
                };
                successes += usize::from(success);
                break;
            }
        }
        returns.push(total);
        lengths.push(length);
    }
    let n = episodes.max(1) as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let steps: u64 = lengths.iter().sum();
    Ok(EvalReport {
        episodes,
        deterministic,
        episode_return_mean: mean,
        episode_return_std: (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt(),
        episode_return_min: returns.iter().cloned().fold(f64::INFINITY, f64::min),
        episode_return_max: returns.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        cumulative_return: returns.iter().sum(),
        episode_len_mean: steps as f64 / n,
        success_rate: rule.map(|_| successes as f64 / n),
        env_steps: steps,
        env_steps_per_sec: steps as f64 / start.elapsed().as_secs_f64().max(1e-9),
    })
}

/// `[stop] eval_return_mean`: a deterministic evaluation every `eval_every` env steps, and
/// stop once its mean return reaches the target. The evaluation episodes are seeded apart
/// from training's and from `shoal eval`'s defaults.
pub struct EvalStop {
    config: CommonConfig,
    next: u64,
}

impl EvalStop {
    /// Seed of the first evaluation episode.
    pub const SEED: u64 = 20_000;

    /// The evaluator the config asks for, if any.
    pub fn from_config(config: &CommonConfig) -> Option<Self> {
        config.stop.eval_return_mean.map(|_| EvalStop { config: config.clone(), next: config.stop.eval_every })
    }

    /// Evaluates `agent` when `env_steps` has passed the next evaluation point; returns the
    /// mean return when it did.
    pub fn maybe_evaluate(&mut self, agent: &mut dyn Agent, env_steps: u64) -> Result<Option<f64>> {
        if env_steps < self.next {
            return Ok(None);
        }
        self.next = env_steps + self.config.stop.eval_every;
        let report = evaluate(agent, &self.config, self.config.stop.eval_episodes, true, Self::SEED)?;
        Ok(Some(report.episode_return_mean))
    }

    /// True when `mean` reaches the target.
    pub fn reached(&self, mean: f64) -> bool {
        self.config.stop.eval_return_mean.is_some_and(|target| mean >= target)
    }
}

impl Callback for EvalStop {
    fn on_iteration(&mut self, agent: &mut dyn Agent, progress: &Progress<'_>) -> Result<Control> {
        match self.maybe_evaluate(agent, progress.env_steps)? {
            Some(mean) if self.reached(mean) => {
                eprintln!(
                    "deterministic evaluation at {} env steps: mean return {mean:.1} (target reached)",
                    progress.env_steps
                );
                Ok(Control::Solved)
            }
            _ => Ok(Control::Continue),
        }
    }
}

/// Runs `episodes` with a fresh env and returns only the mean return (for tests and tuning).
pub fn mean_return(agent: &mut dyn Agent, config: &CommonConfig, episodes: usize) -> Result<f64> {
    Ok(evaluate(agent, config, episodes, true, 10_000)?.episode_return_mean)
}

impl EvalReport {
    /// A human-readable table (what `shoal eval` prints without `--json`).
    pub fn table(&self) -> String {
        let mut lines = vec![
            format!("episodes:             {}", self.episodes),
            format!("deterministic:        {}", self.deterministic),
            format!("episode_return_mean:  {:.3}", self.episode_return_mean),
            format!("episode_return_std:   {:.3}", self.episode_return_std),
            format!("episode_return_min:   {:.3}", self.episode_return_min),
            format!("episode_return_max:   {:.3}", self.episode_return_max),
            format!("cumulative_return:    {:.3}", self.cumulative_return),
            format!("episode_len_mean:     {:.2}", self.episode_len_mean),
        ];
        if let Some(rate) = self.success_rate {
            lines.push(format!("success_rate:         {rate:.4}"));
        }
        lines.push(format!("env_steps_per_sec:    {:.0}", self.env_steps_per_sec));
        lines.join("\n")
    }
}
