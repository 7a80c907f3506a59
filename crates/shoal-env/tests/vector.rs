//! Vector envs: identical results to stepping single envs by hand, same-step auto-reset with
//! final observations, per-env episode statistics, clear errors.

#![allow(clippy::needless_range_loop)] // env i is compared across several parallel arrays

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_env::envs::CartPoleLanes;
use shoal_env::{
    make, make_with, Action, Actions, AutoresetMode, Env, EnvError, EnvOptions, OptionValue, Space, StepResult,
    SyncVectorEnv, ThreadedVectorEnv, VecEnv,
};

/// Steps `n` envs of `id` one by one with the same seeds and actions as a vector env would.
struct Reference {
    envs: Vec<Box<dyn Env>>,
    obs: Vec<Vec<f32>>,
    returns: Vec<f64>,
    lengths: Vec<u64>,
}

impl Reference {
    fn new(id: &str, options: &[(&str, OptionValue)], n: usize, seed: u64) -> Self {
        let mut envs: Vec<Box<dyn Env>> = (0..n).map(|_| make_with(id, options).unwrap()).collect();
        let dim = envs[0].observation_space().flat_dim();
        let mut obs = vec![vec![0.0; dim]; n];
        for (i, (env, o)) in envs.iter_mut().zip(&mut obs).enumerate() {
            env.reset(Some(seed + i as u64), o).unwrap();
        }
        Reference { envs, obs, returns: vec![0.0; n], lengths: vec![0; n] }
    }
}

fn check_against_reference(vec_env: &mut dyn VecEnv, id: &str, steps: usize) -> usize {
    check_against_reference_with(vec_env, id, &[], steps)
}

/// [`check_against_reference`] for envs built with `options`.
fn check_against_reference_with(
    vec_env: &mut dyn VecEnv,
    id: &str,
    options: &[(&str, OptionValue)],
    steps: usize,
) -> usize {
    let n = vec_env.num_envs();
    let mut reference = Reference::new(id, options, n, 100);
    vec_env.reset(Some(100)).unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let actions_n = vec_env.single_action_space().n().unwrap();
    let mut episodes = 0;
    for t in 0..steps {
        let actions: Vec<i64> = (0..n).map(|_| rng.random_range(0..actions_n)).collect();
        vec_env.step(Actions::Discrete(&actions)).unwrap();
        let batch = vec_env.batch();
        for i in 0..n {
            let r: StepResult = reference.envs[i].step(Action::Discrete(actions[i]), &mut reference.obs[i]).unwrap();
            reference.returns[i] += r.reward;
            reference.lengths[i] += 1;
            assert_eq!(batch.rewards[i], r.reward as f32, "step {t} env {i}");
            assert_eq!((batch.terminated[i], batch.truncated[i]), (r.terminated, r.truncated), "step {t} env {i}");
            if r.done() {
                episodes += 1;
                assert_eq!(batch.final_obs(i).unwrap(), &reference.obs[i][..], "final obs, step {t} env {i}");
                assert_eq!(batch.finished_return[i], reference.returns[i]);
                assert_eq!(batch.finished_length[i], reference.lengths[i]);
                reference.envs[i].reset(None, &mut reference.obs[i]).unwrap();
                reference.returns[i] = 0.0;
                reference.lengths[i] = 0;
            } else {
                assert!(batch.final_obs(i).is_none());
            }
            assert_eq!(batch.obs_row(i), &reference.obs[i][..], "obs, step {t} env {i}");
            assert_eq!(batch.episode_length[i], reference.lengths[i]);
        }
    }
    episodes
}

#[test]
fn sync_vector_env_matches_single_envs_with_same_step_autoreset() {
    let envs: Vec<_> = (0..8).map(|_| make("CartPole-v1").unwrap()).collect();
    let mut v = SyncVectorEnv::new(envs).unwrap();
    assert!(check_against_reference(&mut v, "CartPole-v1", 600) > 50);
}

#[test]
fn threaded_vector_env_matches_single_envs_for_any_thread_count() {
    for threads in [1, 2, 3, 7] {
        let envs: Vec<_> = (0..7).map(|_| make("CartPole-v1").unwrap()).collect();
        let mut v = ThreadedVectorEnv::new(envs, threads).unwrap();
        assert_eq!(v.threads(), threads);
        assert!(check_against_reference(&mut v, "CartPole-v1", 400) > 30, "threads {threads}");
    }
}

/// Next-step mode: the ending step shows the episode's last observation, the env's next step
/// ignores its action and shows the reset observation with reward 0 and no flag, the same
/// stream of episodes as same-step mode otherwise.
#[test]
fn next_step_autoreset_resets_on_the_step_after_the_end() {
    for (threads, lanes) in [(1, false), (2, false), (1, true), (2, true)] {
        let mut v: Box<dyn VecEnv> = if lanes {
            Box::new(
                ThreadedVectorEnv::new(cartpole_lanes(&mut EnvOptions::new("CartPole"), Some(500), 5), threads)
                    .unwrap(),
            )
        } else {
            let envs: Vec<_> = (0..5).map(|_| make("CartPole-v1").unwrap()).collect();
            Box::new(ThreadedVectorEnv::new(envs, threads).unwrap())
        };
        v.set_autoreset_mode(AutoresetMode::NextStep).unwrap();
        let mut reference = Reference::new("CartPole-v1", &[], 5, 100);
        v.reset(Some(100)).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        let mut pending = [false; 5];
        let (mut episodes, mut skipped) = (0, 0);
        for t in 0..500 {
            let actions: Vec<i64> = (0..5).map(|_| rng.random_range(0..2)).collect();
            v.step(Actions::Discrete(&actions)).unwrap();
            let batch = v.batch();
            for i in 0..5 {
                if std::mem::take(&mut pending[i]) {
                    skipped += 1;
                    reference.envs[i].reset(None, &mut reference.obs[i]).unwrap();
                    assert_eq!((batch.rewards[i], batch.done(i)), (0.0, false), "step {t} env {i}");
                } else {
                    let r = reference.envs[i].step(Action::Discrete(actions[i]), &mut reference.obs[i]).unwrap();
                    assert_eq!(batch.rewards[i], r.reward as f32, "step {t} env {i}");
                    assert_eq!((batch.terminated[i], batch.truncated[i]), (r.terminated, r.truncated));
                    pending[i] = r.done();
                    episodes += usize::from(r.done());
                }
                assert_eq!(batch.obs_row(i), &reference.obs[i][..], "obs, step {t} env {i}");
            }
        }
        assert!(episodes > 30 && skipped + 5 >= episodes, "threads {threads}, lanes {lanes}: {episodes} episodes");
    }
}

fn cartpole_lanes(options: &mut EnvOptions, max_episode_steps: Option<u64>, n: usize) -> CartPoleLanes {
    CartPoleLanes::new(options, max_episode_steps, n).unwrap()
}

/// CartPole's structure of arrays (what `make_vec` builds for CartPole-v1) writes exactly what
/// single envs stepped one by one give — every reward, flag, observation bit and final
/// observation — on any thread count, with its options and another time limit.
#[test]
fn cartpole_lanes_step_bit_for_bit_like_single_envs() {
    for threads in [1, 2, 3] {
        let mut v = shoal_env::make_vec("CartPole-v1", &[], 21, threads).unwrap();
        assert!(check_against_reference(v.as_mut(), "CartPole-v1", 700) > 300, "threads {threads}");
    }
    let options = [("sutton_barto_reward", OptionValue::Bool(true)), ("max_episode_steps", OptionValue::Int(15))];
    let mut v = shoal_env::make_vec("CartPole-v1", &options, 17, 2).unwrap();
    assert!(check_against_reference_with(v.as_mut(), "CartPole-v1", &options, 300) > 200);
    let mut v = SyncVectorEnv::new(cartpole_lanes(&mut EnvOptions::new("CartPole"), Some(500), 1)).unwrap();
    assert!(check_against_reference(&mut v, "CartPole-v1", 300) > 5);
}

/// The lanes fail where single envs fail, with their messages: a step before the first reset,
/// an action outside the space or of the wrong kind, an unknown option, no envs at all, an
/// observation that is not finite.
#[test]
fn cartpole_lanes_report_the_errors_of_single_envs() {
    let mut v = SyncVectorEnv::new(cartpole_lanes(&mut EnvOptions::new("CartPole"), Some(500), 3)).unwrap();
    let err = v.step(Actions::Discrete(&[0, 1, 0])).unwrap_err();
    assert!(matches!(err, EnvError::NeedsReset { .. }), "{err}");
    v.reset(Some(1)).unwrap();
    let err = v.step(Actions::Discrete(&[0, -1, 0])).unwrap_err().to_string();
    assert!(err.contains("action -1 is outside the action space Discrete(2)"), "{err}");
    let err = v.step(Actions::Continuous(&[0.0, 1.0, 0.0])).unwrap_err().to_string();
    assert!(err.contains("Discrete(2)"), "{err}");
    let err = shoal_env::make_vec("CartPole-v1", &[("sutton_barto", OptionValue::Bool(true))], 2, 1).err().unwrap();
    let err = err.to_string();
    assert!(err.contains("sutton_barto"), "an unknown option is an error: {err}");
    let err = SyncVectorEnv::new(cartpole_lanes(&mut EnvOptions::new("CartPole"), None, 0)).err().unwrap();
    assert!(err.to_string().contains("at least one env"), "{err}");

    // A state whose observation overflows f32 is a non-finite observation, as in single envs.
    let mut single = make("CartPole-v1").unwrap();
    single.reset_to_state(&[1e39, 0.0, 0.0, 0.0], &mut [0.0; 4]).unwrap();
    let mut snapshot = v.snapshot().unwrap();
    snapshot["envs"][2] = single.snapshot().unwrap();
    v.restore(&snapshot).unwrap();
    let err = v.step(Actions::Discrete(&[0, 0, 0])).unwrap_err().to_string();
    assert!(err.contains("`CartPole` returned a non-finite observation (inf) at env index 2"), "{err}");
}

/// Snapshots of the lanes and of a `Vec` of `TimeLimit<CartPole>` are the same per env, so a
/// checkpoint restores into either and both continue identically.
#[test]
fn cartpole_lanes_and_single_envs_share_their_snapshots() {
    let mut lanes = shoal_env::make_vec("CartPole-v1", &[], 6, 2).unwrap();
    let singles: Vec<_> = (0..6).map(|_| make("CartPole-v1").unwrap()).collect();
    let mut singles = ThreadedVectorEnv::new(singles, 2).unwrap();
    lanes.reset(Some(3)).unwrap();
    run_steps(lanes.as_mut(), 77, 4);
    singles.restore(&lanes.snapshot().unwrap()).unwrap();
    assert_eq!(singles.snapshot().unwrap(), lanes.snapshot().unwrap());
    assert_eq!(run_steps(&mut singles, 200, 5), run_steps(lanes.as_mut(), 200, 5));
}

#[test]
fn truncated_episodes_expose_their_final_observation() {
    // MountainCar never terminates under random actions: every episode is truncated at 200.
    let envs: Vec<_> = (0..2).map(|_| make("MountainCar-v0").unwrap()).collect();
    let mut v = ThreadedVectorEnv::new(envs, 2).unwrap();
    assert_eq!(check_against_reference(&mut v, "MountainCar-v0", 450), 4);
}

#[test]
fn wrong_action_count_is_an_error() {
    let mut v = shoal_env::make_vec("CartPole-v1", &[], 4, 2).unwrap();
    v.reset(Some(0)).unwrap();
    let err = v.step(Actions::Discrete(&[0, 1, 0])).unwrap_err();
    assert_eq!(err, EnvError::ActionCount { got: 3, expected: 4, num_envs: 4, per_env: 1 });
    assert!(err.to_string().contains("got 3 action values for 4 envs, expected 4"));
    let err = v.step(Actions::Discrete(&[0, 1, 2, 0])).unwrap_err().to_string();
    assert!(err.contains("action 2 is outside the action space Discrete(2)"), "{err}");
}

#[test]
fn envs_with_different_spaces_cannot_share_a_vector_env() {
    let envs = vec![make("CartPole-v1").unwrap(), make("Acrobot-v1").unwrap()];
    let err = SyncVectorEnv::new(envs).err().unwrap().to_string();
    assert!(err.contains("must share their spaces"), "{err}");
}

/// An env that misbehaves on purpose.
struct Faulty {
    mode: &'static str,
    space: Space,
}

impl Env for Faulty {
    fn name(&self) -> &str {
        "Faulty"
    }
    fn observation_space(&self) -> &Space {
        &self.space
    }
    fn action_space(&self) -> &Space {
        &self.space
    }
    fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> shoal_env::Result<()> {
        obs[0] = 0.0;
        Ok(())
    }
    fn step(&mut self, _action: Action<'_>, obs: &mut [f32]) -> shoal_env::Result<StepResult> {
        match self.mode {
            "panic" => panic!("simulated bug"),
            "nan" => obs[0] = f32::NAN,
            _ => obs[0] = 1.0,
        }
        Ok(StepResult { reward: 0.0, terminated: false, truncated: false })
    }
}

#[test]
fn nan_from_an_env_is_an_error_naming_the_env() {
    let envs =
        vec![Faulty { mode: "ok", space: Space::discrete(2) }, Faulty { mode: "nan", space: Space::discrete(2) }];
    let mut v = SyncVectorEnv::new(envs).unwrap();
    v.reset(None).unwrap();
    let err = v.step(Actions::Discrete(&[0, 0])).unwrap_err().to_string();
    assert!(err.contains("`Faulty` returned a non-finite observation (NaN) at env index 1"), "{err}");
}

#[test]
fn a_panicking_env_fails_the_step_instead_of_hanging() {
    let envs =
        vec![Faulty { mode: "ok", space: Space::discrete(2) }, Faulty { mode: "panic", space: Space::discrete(2) }];
    let mut v = ThreadedVectorEnv::new(envs, 2).unwrap();
    v.reset(None).unwrap();
    let err = v.step(Actions::Discrete(&[0, 0])).unwrap_err().to_string();
    assert!(err.contains("simulated bug") && err.contains("rebuild the vector env"), "{err}");
    assert!(v.step(Actions::Discrete(&[0, 0])).is_err(), "a failed vector env stays failed");
}

/// Steps `v` with seeded random actions and returns everything it wrote.
fn run_steps(v: &mut dyn VecEnv, steps: usize, seed: u64) -> Vec<shoal_env::Batch> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let space = v.single_action_space().clone();
    (0..steps)
        .map(|_| {
            let actions: Vec<shoal_env::OwnedAction> = (0..v.num_envs()).map(|_| space.sample(&mut rng)).collect();
            match &actions[0] {
                shoal_env::OwnedAction::Discrete(_) => {
                    let a: Vec<i64> = actions
                        .iter()
                        .map(|a| if let shoal_env::OwnedAction::Discrete(x) = a { *x } else { 0 })
                        .collect();
                    v.step(Actions::Discrete(&a)).unwrap();
                }
                _ => {
                    let a: Vec<f32> = actions
                        .iter()
                        .flat_map(|a| if let shoal_env::OwnedAction::Continuous(x) = a { x.clone() } else { vec![] })
                        .collect();
                    v.step(Actions::Continuous(&a)).unwrap();
                }
            }
            v.batch().clone()
        })
        .collect()
}

#[test]
fn snapshot_and_restore_resume_bit_for_bit() {
    for id in ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCarContinuous-v0", "FrozenLake-v1", "Taxi-v4"] {
        for threads in [1, 2] {
            let mut original = shoal_env::make_vec(id, &[], 5, threads).unwrap();
            original.reset(Some(7)).unwrap();
            run_steps(original.as_mut(), 137, 1);
            let snapshot = original.snapshot().unwrap();
            let expected = run_steps(original.as_mut(), 300, 2);

            // A fresh vector env, reset with another seed, then restored.
            let mut resumed = shoal_env::make_vec(id, &[], 5, 3 - threads).unwrap();
            resumed.reset(Some(99)).unwrap();
            resumed.restore(&snapshot).unwrap();
            assert_eq!(run_steps(resumed.as_mut(), 300, 2), expected, "{id} with {threads} threads");
        }
    }
    let mut four = shoal_env::make_vec("CartPole-v1", &[], 4, 1).unwrap();
    let snapshot = shoal_env::make_vec("CartPole-v1", &[], 5, 1).unwrap().snapshot().unwrap();
    let err = four.restore(&snapshot).unwrap_err().to_string();
    assert!(err.contains("holds 5 envs, this vector env has 4"), "{err}");
}
