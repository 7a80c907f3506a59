//! Vector envs: identical results to stepping single envs by hand, same-step auto-reset with
//! final observations, per-env episode statistics, clear errors.

#![allow(clippy::needless_range_loop)] // env i is compared across several parallel arrays

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_env::{
    make, Action, Actions, AutoresetMode, Env, EnvError, Space, StepResult, SyncVectorEnv, ThreadedVectorEnv, VecEnv,
};

/// Steps `n` envs of `id` one by one with the same seeds and actions as a vector env would.
struct Reference {
    envs: Vec<Box<dyn Env>>,
    obs: Vec<Vec<f32>>,
    returns: Vec<f64>,
    lengths: Vec<u64>,
}

impl Reference {
    fn new(id: &str, n: usize, seed: u64) -> Self {
        let mut envs: Vec<Box<dyn Env>> = (0..n).map(|_| make(id).unwrap()).collect();
        let dim = envs[0].observation_space().flat_dim();
        let mut obs = vec![vec![0.0; dim]; n];
        for (i, (env, o)) in envs.iter_mut().zip(&mut obs).enumerate() {
            env.reset(Some(seed + i as u64), o).unwrap();
        }
        Reference { envs, obs, returns: vec![0.0; n], lengths: vec![0; n] }
    }
}

fn check_against_reference(vec_env: &mut dyn VecEnv, id: &str, steps: usize) -> usize {
    let n = vec_env.num_envs();
    let mut reference = Reference::new(id, n, 100);
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
    let envs = (0..8).map(|_| make("CartPole-v1").unwrap()).collect();
    let mut v = SyncVectorEnv::new(envs).unwrap();
    assert!(check_against_reference(&mut v, "CartPole-v1", 600) > 50);
}

#[test]
fn threaded_vector_env_matches_single_envs_for_any_thread_count() {
    for threads in [1, 2, 3, 7] {
        let envs = (0..7).map(|_| make("CartPole-v1").unwrap()).collect();
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
    for threads in [1, 2] {
        let envs = (0..5).map(|_| make("CartPole-v1").unwrap()).collect();
        let mut v = ThreadedVectorEnv::new(envs, threads).unwrap();
        v.set_autoreset_mode(AutoresetMode::NextStep).unwrap();
        let mut reference = Reference::new("CartPole-v1", 5, 100);
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
        assert!(episodes > 30 && skipped + 5 >= episodes, "threads {threads}: {episodes} episodes");
    }
}

#[test]
fn truncated_episodes_expose_their_final_observation() {
    // MountainCar never terminates under random actions: every episode is truncated at 200.
    let envs = (0..2).map(|_| make("MountainCar-v0").unwrap()).collect();
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
