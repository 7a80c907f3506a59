//! Wrappers behave as Gymnasium defines them; bad input gets a typed error naming the problem.

use shoal_env::envs::CartPole;
use shoal_env::wrappers::{
    ClipAction, NormalizeObservation, NormalizeReward, RecordEpisodeStatistics, RunningMeanStd, TimeLimit,
    TransformObservation, TransformReward,
};
use shoal_env::{make, make_with, Action, Env, EnvError, EnvOptions};

fn cartpole() -> CartPole {
    CartPole::new(&mut EnvOptions::new("CartPole")).unwrap()
}

#[test]
fn time_limit_truncates_at_the_limit() {
    let mut env = TimeLimit::new(make_with("Pendulum-v1", &[("max_episode_steps", 0i64.into())]).unwrap(), 7);
    let mut obs = [0.0; 3];
    env.reset(Some(0), &mut obs).unwrap();
    for t in 1..=7 {
        let r = env.step(Action::Continuous(&[0.0]), &mut obs).unwrap();
        assert_eq!(r.truncated, t == 7, "step {t}");
        assert!(!r.terminated);
    }
    env.reset(None, &mut obs).unwrap();
    assert_eq!(env.elapsed_steps(), 0);
}

#[test]
fn record_episode_statistics_sums_rewards_and_counts_steps() {
    let mut env = RecordEpisodeStatistics::new(TimeLimit::new(cartpole(), 500), 100);
    let mut obs = [0.0; 4];
    for episode in 0..5 {
        env.reset(Some(episode), &mut obs).unwrap();
        let mut total = 0.0;
        let mut length = 0;
        loop {
            let r = env.step(Action::Discrete((length % 2) as i64), &mut obs).unwrap();
            total += r.reward;
            length += 1;
            if r.done() {
                break;
            }
            assert!(env.finished_episode().is_none());
        }
        let stats = env.finished_episode().unwrap();
        assert_eq!((stats.episode_return, stats.length), (total, length));
    }
    assert_eq!(env.recent_episodes().count(), 5);
    assert!(env.mean_return().unwrap() > 0.0);
}

#[test]
fn clip_action_clips_to_the_bounds() {
    let mut clipped = ClipAction::new(make_with("Pendulum-v1", &[]).unwrap()).unwrap();
    let mut reference = make_with("Pendulum-v1", &[]).unwrap();
    let (mut a, mut b) = ([0.0; 3], [0.0; 3]);
    clipped.reset(Some(3), &mut a).unwrap();
    reference.reset(Some(3), &mut b).unwrap();
    for _ in 0..20 {
        let r1 = clipped.step(Action::Continuous(&[7.5]), &mut a).unwrap();
        let r2 = reference.step(Action::Continuous(&[2.0]), &mut b).unwrap();
        assert_eq!((a, r1), (b, r2));
    }
    assert!(clipped.step(Action::Continuous(&[f32::NAN]), &mut a).is_err());
    let err = ClipAction::new(make("CartPole-v1").unwrap()).err().unwrap().to_string();
    assert!(err.contains("ClipAction needs a Box action space"), "{err}");
}

#[test]
fn normalize_observation_uses_running_statistics() {
    let mut env = NormalizeObservation::new(cartpole(), 1e-8);
    let mut raw_env = cartpole();
    let (mut obs, mut raw) = ([0.0; 4], [0.0; 4]);
    env.reset(Some(1), &mut obs).unwrap();
    raw_env.reset(Some(1), &mut raw).unwrap();
    let mut rms = RunningMeanStd::new(4);
    rms.update_one(raw.iter().map(|&x| x as f64));
    for _ in 0..30 {
        env.step(Action::Discrete(1), &mut obs).unwrap();
        raw_env.step(Action::Discrete(1), &mut raw).unwrap();
        rms.update_one(raw.iter().map(|&x| x as f64));
        for i in 0..4 {
            let want = rms.normalize(i, raw[i] as f64, 1e-8) as f32;
            assert!((obs[i] - want).abs() < 1e-6, "{} vs {want}", obs[i]);
        }
    }
    assert_eq!(env.stats(), &rms);
}

#[test]
fn normalize_reward_scales_by_discounted_return_std() {
    let mut env = NormalizeReward::new(TimeLimit::new(cartpole(), 500), 0.99, 1e-8);
    let mut obs = [0.0; 4];
    env.reset(Some(2), &mut obs).unwrap();
    let (mut g, mut rms) = (0.0, RunningMeanStd::new(1));
    for _ in 0..50 {
        let r = env.step(Action::Discrete(0), &mut obs).unwrap();
        g = g * 0.99 * if r.terminated { 0.0 } else { 1.0 } + 1.0;
        rms.update_one([g]);
        assert!((r.reward - 1.0 / (rms.var[0] + 1e-8).sqrt()).abs() < 1e-12);
        if r.done() {
            env.reset(None, &mut obs).unwrap();
        }
    }
}

#[test]
fn transform_wrappers_apply_their_functions() {
    let inner = TransformObservation::new(cartpole(), |obs: &mut [f32]| obs.iter_mut().for_each(|x| *x *= 10.0), None);
    let mut env = TransformReward::new(inner, |r| r * -2.0);
    let (mut obs, mut raw) = ([0.0; 4], [0.0; 4]);
    let mut reference = cartpole();
    env.reset(Some(4), &mut obs).unwrap();
    reference.reset(Some(4), &mut raw).unwrap();
    let r = env.step(Action::Discrete(1), &mut obs).unwrap();
    reference.step(Action::Discrete(1), &mut raw).unwrap();
    assert_eq!(r.reward, -2.0);
    assert_eq!(obs, raw.map(|x| x * 10.0));
}

#[test]
fn step_before_reset_is_an_error() {
    for id in ["CartPole-v1", "MountainCar-v0", "Acrobot-v1", "FrozenLake-v1", "Taxi-v4", "CliffWalking-v1"] {
        let mut env = make(id).unwrap();
        let mut obs = vec![0.0; env.observation_space().flat_dim()];
        let err = env.step(Action::Discrete(0), &mut obs).unwrap_err();
        assert!(matches!(err, EnvError::NeedsReset { .. }), "{id}: {err}");
        assert!(err.to_string().contains("call `reset` first"), "{id}: {err}");
    }
    for id in ["Pendulum-v1", "MountainCarContinuous-v0"] {
        let mut env = make(id).unwrap();
        let mut obs = vec![0.0; env.observation_space().flat_dim()];
        assert!(matches!(env.step(Action::Continuous(&[0.0]), &mut obs), Err(EnvError::NeedsReset { .. })));
    }
}

#[test]
fn actions_outside_the_space_are_errors() {
    let mut env = make("CartPole-v1").unwrap();
    let mut obs = [0.0; 4];
    env.reset(Some(0), &mut obs).unwrap();
    let err = env.step(Action::Discrete(2), &mut obs).unwrap_err().to_string();
    assert_eq!(err, "action 2 is outside the action space Discrete(2); valid actions are 0 to 1");
    let err = env.step(Action::Continuous(&[1.0]), &mut obs).unwrap_err().to_string();
    assert!(err.contains("this space takes one integer"), "{err}");

    let mut env = make("Pendulum-v1").unwrap();
    let mut obs = [0.0; 3];
    env.reset(Some(0), &mut obs).unwrap();
    for bad in [f32::NAN, f32::INFINITY] {
        let err = env.step(Action::Continuous(&[bad]), &mut obs).unwrap_err().to_string();
        assert!(err.contains("actions must be finite numbers"), "{err}");
    }
    let err = env.step(Action::Continuous(&[2.5]), &mut obs).unwrap_err().to_string();
    assert!(err.contains("outside [-2, 2]"), "{err}");
}

#[test]
fn wrong_observation_buffer_is_an_error_not_a_panic() {
    let mut env = make("CartPole-v1").unwrap();
    let mut obs = [0.0; 3];
    assert_eq!(env.reset(Some(0), &mut obs).unwrap_err(), EnvError::ObsBuffer { got: 3, expected: 4 });
}
