//! Step-for-step parity with Gymnasium 1.4, from fixtures recorded by
//! `scripts/gen_env_fixtures.sh` (committed, so these tests need no Python).
//!
//! - Classic control: every recorded episode is replayed from Gymnasium's exact internal start
//!   state with the same actions; observations must agree within 1e-5 and rewards, terminated
//!   and truncated flags at every step.
//! - Reset distributions (Gymnasium's RNG stream cannot be reproduced): the statistics of the
//!   first observation over 4000 seeds must agree with Gymnasium's.
//! - Toy text: the full transition tables and start distributions must be identical, the
//!   deterministic variants are replayed step by step, and the sampled frequencies of slippery
//!   transitions must pass a chi-square test against the table.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use shoal_env::envs::tabular::TabularModel;
use shoal_env::envs::{frozen_lake, Taxi};
use shoal_env::{make_vec, make_with, Action, Actions, Env, EnvOptions, OptionValue};

const OBS_TOLERANCE: f64 = 1e-5;

#[derive(Deserialize)]
struct Episode {
    seed: u64,
    state: Vec<f64>,
    #[serde(default)]
    reset_obs: Vec<f64>,
    actions: Vec<Value>,
    obs: Vec<Vec<f64>>,
    rewards: Vec<f64>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
}

#[derive(Deserialize)]
struct ObsStats {
    n: usize,
    min: Vec<f64>,
    max: Vec<f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
}

#[derive(Deserialize)]
struct Fixture {
    id: String,
    #[serde(default)]
    options: serde_json::Map<String, Value>,
    #[serde(default)]
    episodes: Vec<Episode>,
    reset_obs_stats: Option<ObsStats>,
    model: Option<ModelFixture>,
}

#[derive(Deserialize)]
struct ModelFixture {
    n_states: usize,
    n_actions: usize,
    /// Per (state, action): `[prob, next_state, reward, terminated]` outcomes.
    transitions: Vec<Vec<(f64, usize, f64, bool)>>,
    initial: Vec<f64>,
}

fn load(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn options(fixture: &Fixture) -> Vec<(&str, OptionValue)> {
    fixture
        .options
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Bool(b) => OptionValue::Bool(*b),
                Value::String(s) => OptionValue::Str(s.clone()),
                Value::Number(n) if n.is_i64() => OptionValue::Int(n.as_i64().unwrap()),
                Value::Number(n) => OptionValue::Float(n.as_f64().unwrap()),
                other => panic!("unsupported option value {other}"),
            };
            (k.as_str(), value)
        })
        .collect()
}

/// Replays every episode of the fixture and returns how many steps were compared.
fn replay(name: &str) -> usize {
    let fixture = load(name);
    assert!(fixture.episodes.len() >= 50, "{name}: fixture needs at least 50 episodes");
    let mut env = make_with(&fixture.id, &options(&fixture)).unwrap();
    let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
    let mut steps = 0;
    for ep in &fixture.episodes {
        let ctx = |t: usize| format!("{name} episode seed {} step {t}", ep.seed);
        env.reset_to_state(&ep.state, &mut obs).unwrap();
        if !ep.reset_obs.is_empty() {
            assert_close(&obs, &ep.reset_obs, &ctx(0));
        }
        for (t, action) in ep.actions.iter().enumerate() {
            let continuous: Vec<f32>;
            let action = match action {
                Value::Array(values) => {
                    continuous = values.iter().map(|v| v.as_f64().unwrap() as f32).collect();
                    Action::Continuous(&continuous)
                }
                v => Action::Discrete(v.as_i64().unwrap()),
            };
            let result = env.step(action, &mut obs).unwrap();
            assert_close(&obs, &ep.obs[t], &ctx(t + 1));
            let reward_diff = (result.reward - ep.rewards[t]).abs();
            assert!(
                reward_diff <= 1e-5 * ep.rewards[t].abs().max(1.0),
                "{}: reward {} vs {}",
                ctx(t + 1),
                result.reward,
                ep.rewards[t]
            );
            assert_eq!(result.terminated, ep.terminated[t], "{}: terminated", ctx(t + 1));
            assert_eq!(result.truncated, ep.truncated[t], "{}: truncated", ctx(t + 1));
            steps += 1;
        }
    }
    steps
}

/// The same episodes through a vector env built by `make_vec` (for CartPole, its structure of
/// arrays): each episode in a lane of its own, started from Gymnasium's state through a
/// single env's snapshot, all lanes stepped together; returns how many steps were compared.
fn replay_vectorized(name: &str) -> usize {
    let fixture = load(name);
    let options = options(&fixture);
    let n = fixture.episodes.len();
    let mut vec_env = make_vec(&fixture.id, &options, n, 2).unwrap();
    vec_env.reset(Some(0)).unwrap();
    let mut snapshot = vec_env.snapshot().unwrap();
    for (i, ep) in fixture.episodes.iter().enumerate() {
        let mut env = make_with(&fixture.id, &options).unwrap();
        env.reset_to_state(&ep.state, &mut vec![0.0; env.observation_space().flat_dim()]).unwrap();
        snapshot["envs"][i] = env.snapshot().unwrap();
    }
    vec_env.restore(&snapshot).unwrap();
    let longest = fixture.episodes.iter().map(|ep| ep.actions.len()).max().unwrap_or(0);
    let mut steps = 0;
    for t in 0..longest {
        // Lanes whose episode is over get action 0 and are not compared.
        let actions: Vec<i64> =
            fixture.episodes.iter().map(|ep| ep.actions.get(t).map_or(0, |a| a.as_i64().unwrap())).collect();
        vec_env.step(Actions::Discrete(&actions)).unwrap();
        let batch = vec_env.batch();
        for (i, ep) in fixture.episodes.iter().enumerate().filter(|(_, ep)| t < ep.actions.len()) {
            let context = format!("{name} vectorized, episode seed {} step {}", ep.seed, t + 1);
            assert_close(batch.final_obs(i).unwrap_or(batch.obs_row(i)), &ep.obs[t], &context);
            assert_eq!(batch.rewards[i] as f64, ep.rewards[t], "{context}: reward");
            assert_eq!((batch.terminated[i], batch.truncated[i]), (ep.terminated[t], ep.truncated[t]), "{context}");
            steps += 1;
        }
    }
    steps
}

fn assert_close(got: &[f32], want: &[f64], context: &str) {
    assert_eq!(got.len(), want.len(), "{context}: observation length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() <= OBS_TOLERANCE, "{context}: obs[{i}] = {g}, Gymnasium {w}");
    }
}

/// The first observations over many seeds must be distributed like Gymnasium's.
fn reset_distribution(name: &str) {
    let fixture = load(name);
    let stats = fixture.reset_obs_stats.expect("classic fixtures record reset statistics");
    let mut env = make_with(&fixture.id, &[]).unwrap();
    let dim = env.observation_space().flat_dim();
    let mut obs = vec![0.0f32; dim];
    let mut samples = vec![Vec::with_capacity(stats.n); dim];
    for seed in 0..stats.n as u64 {
        env.reset(Some(seed), &mut obs).unwrap();
        for (column, &x) in samples.iter_mut().zip(&obs) {
            column.push(x as f64);
        }
    }
    for (i, column) in samples.iter().enumerate() {
        let n = column.len() as f64;
        let mean = column.iter().sum::<f64>() / n;
        let std = (column.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let min = column.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = column.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let spread = (stats.max[i] - stats.min[i]).max(1e-12);
        let ctx = format!("{name} reset obs[{i}]");
        // Same support: extremes within 2% of the range (4000 uniform draws reach within ~0.1%).
        assert!((min - stats.min[i]).abs() <= 0.02 * spread, "{ctx}: min {min} vs Gymnasium {}", stats.min[i]);
        assert!((max - stats.max[i]).abs() <= 0.02 * spread, "{ctx}: max {max} vs Gymnasium {}", stats.max[i]);
        // Same location and scale: two independent sample means differ by < 5 standard errors.
        let se = (stats.std[i].powi(2) / n + std.powi(2) / n).sqrt().max(1e-12);
        assert!((mean - stats.mean[i]).abs() <= 5.0 * se, "{ctx}: mean {mean} vs Gymnasium {}", stats.mean[i]);
        assert!(
            (std - stats.std[i]).abs() <= 0.05 * stats.std[i].max(1e-12),
            "{ctx}: std {std} vs Gymnasium {}",
            stats.std[i]
        );
    }
}

fn assert_same_model(name: &str, model: &TabularModel) {
    let want = load(name).model.expect("tabular fixtures record the model");
    assert_eq!((model.n_states, model.n_actions), (want.n_states, want.n_actions), "{name}: table size");
    for (i, (got, want)) in model.transitions.iter().zip(&want.transitions).enumerate() {
        let (s, a) = (i / want_n_actions(model), i % want_n_actions(model));
        assert_eq!(got.len(), want.len(), "{name}: outcome count of state {s} action {a}");
        for (g, &(prob, next, reward, terminated)) in got.iter().zip(want) {
            assert!((g.prob - prob).abs() < 1e-12, "{name}: P[{s}][{a}] prob {} vs {prob}", g.prob);
            assert_eq!((g.next_state, g.reward, g.terminated), (next, reward, terminated), "{name}: P[{s}][{a}]");
        }
    }
    for (s, (g, w)) in model.initial.iter().zip(&want.initial).enumerate() {
        assert!((g - w).abs() < 1e-12, "{name}: initial[{s}] {g} vs {w}");
    }
}

fn want_n_actions(model: &TabularModel) -> usize {
    model.n_actions
}

fn frozen_lake_model(options: &[(&str, OptionValue)]) -> TabularModel {
    let mut opts = EnvOptions::new("FrozenLake");
    for (k, v) in options {
        opts.set(k, v.clone());
    }
    frozen_lake(&mut opts).unwrap().model().clone()
}

fn taxi_model(is_rainy: bool) -> TabularModel {
    Taxi::new(&mut EnvOptions::new("Taxi").with("is_rainy", is_rainy)).unwrap().model().clone()
}

/// Pearson chi-square statistic of observed next-state counts against the table's probabilities.
fn chi_square(counts: &std::collections::BTreeMap<usize, usize>, expected: &[(usize, f64)], n: usize) -> f64 {
    expected
        .iter()
        .map(|&(state, p)| {
            let e = p * n as f64;
            let o = *counts.get(&state).unwrap_or(&0) as f64;
            (o - e).powi(2) / e
        })
        .sum()
}

/// Steps `(state, action)` many times from `reset_to_state` and checks the outcome frequencies.
fn sampled_frequencies_match(env: &mut dyn Env, model: &TabularModel, pairs: &[(usize, usize)]) {
    let n = 20_000;
    let mut obs = [0.0f32];
    env.reset(Some(3), &mut obs).unwrap();
    for &(s, a) in pairs {
        let mut expected: Vec<(usize, f64)> = Vec::new();
        for t in model.outcomes(s, a) {
            match expected.iter_mut().find(|(state, _)| *state == t.next_state) {
                Some(entry) => entry.1 += t.prob,
                None => expected.push((t.next_state, t.prob)),
            }
        }
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            env.reset_to_state(&[s as f64], &mut obs).unwrap();
            env.step(Action::Discrete(a as i64), &mut obs).unwrap();
            *counts.entry(obs[0] as usize).or_insert(0) += 1;
        }
        assert!(
            counts.keys().all(|k| expected.iter().any(|(s, _)| s == k)),
            "state {s} action {a}: impossible outcome in {counts:?}"
        );
        // 99.9% quantile of chi-square with ≤ 2 degrees of freedom is 13.8.
        let stat = chi_square(&counts, &expected, n);
        assert!(stat < 13.8, "state {s} action {a}: chi-square {stat} for counts {counts:?} vs {expected:?}");
    }
}

#[test]
fn cartpole_matches_gymnasium() {
    let steps = replay("CartPole-v1");
    assert!(steps > 500);
    assert_eq!(replay_vectorized("CartPole-v1"), steps, "the lanes replay every step");
    reset_distribution("CartPole-v1");
}

#[test]
fn mountain_car_matches_gymnasium() {
    assert!(replay("MountainCar-v0") > 5000);
    reset_distribution("MountainCar-v0");
}

#[test]
fn mountain_car_continuous_matches_gymnasium() {
    assert!(replay("MountainCarContinuous-v0") > 5000);
    reset_distribution("MountainCarContinuous-v0");
}

#[test]
fn pendulum_matches_gymnasium() {
    assert!(replay("Pendulum-v1") >= 50 * 200);
    reset_distribution("Pendulum-v1");
}

#[test]
fn acrobot_matches_gymnasium() {
    assert!(replay("Acrobot-v1") > 5000);
    reset_distribution("Acrobot-v1");
}

#[test]
fn frozen_lake_matches_gymnasium() {
    replay("FrozenLake-v1-4x4");
    replay("FrozenLake-v1-8x8");
    let slippery4 = frozen_lake_model(&[("map_name", "4x4".into()), ("is_slippery", true.into())]);
    assert_same_model("FrozenLake-v1-4x4-slippery", &slippery4);
    assert_same_model("FrozenLake-v1-4x4", &frozen_lake_model(&[("is_slippery", false.into())]));
    assert_same_model("FrozenLake-v1-8x8-slippery", &frozen_lake_model(&[("map_name", "8x8".into())]));
    assert_same_model(
        "FrozenLake-v1-8x8",
        &frozen_lake_model(&[("map_name", "8x8".into()), ("is_slippery", false.into())]),
    );
    assert_same_model("FrozenLake8x8-v1", &frozen_lake_model(&[("map_name", "8x8".into())]));
    let mut env = make_with("FrozenLake-v1", &[]).unwrap();
    sampled_frequencies_match(env.as_mut(), &slippery4, &[(0, 0), (0, 2), (6, 1), (14, 2), (9, 3)]);
}

#[test]
fn cliff_walking_matches_gymnasium() {
    replay("CliffWalking-v1");
    let mut obs = [0.0];
    let mut env = make_with("CliffWalkingSlippery-v1", &[]).unwrap();
    env.reset(Some(0), &mut obs).unwrap();
    let model = shoal_env::envs::cliff_walking(&mut EnvOptions::new("CliffWalking").with("is_slippery", true)).unwrap();
    assert_same_model("CliffWalkingSlippery-v1", model.model());
    let plain = shoal_env::envs::cliff_walking(&mut EnvOptions::new("CliffWalking")).unwrap();
    assert_same_model("CliffWalking-v1", plain.model());
    sampled_frequencies_match(env.as_mut(), model.model(), &[(36, 1), (24, 2), (25, 1), (0, 0)]);
}

#[test]
fn taxi_matches_gymnasium() {
    replay("Taxi-v4");
    assert_same_model("Taxi-v4", &taxi_model(false));
    let rainy = taxi_model(true);
    assert_same_model("Taxi-v4-rainy", &rainy);
    let mut env = make_with("Taxi-v4", &[("is_rainy", true.into())]).unwrap();
    sampled_frequencies_match(env.as_mut(), &rainy, &[(0, 0), (123, 2), (321, 3), (250, 1)]);
}

#[test]
fn taxi_reset_distribution_matches_gymnasium() {
    let model = taxi_model(false);
    let mut env = make_with("Taxi-v4", &[]).unwrap();
    let mut obs = [0.0];
    let n = 60_000;
    let mut counts = std::collections::BTreeMap::new();
    for seed in 0..n {
        env.reset(Some(seed), &mut obs).unwrap();
        *counts.entry(obs[0] as usize).or_insert(0) += 1;
    }
    let support: Vec<(usize, f64)> =
        model.initial.iter().enumerate().filter(|(_, &p)| p > 0.0).map(|(s, &p)| (s, p)).collect();
    assert_eq!(support.len(), 300);
    assert!(counts.keys().all(|s| model.initial[*s] > 0.0));
    // 299 degrees of freedom: mean 299, sd 24.5; 99.9% quantile ≈ 383.
    let stat = chi_square(&counts, &support, n as usize);
    assert!(stat < 383.0, "chi-square {stat}");
}
