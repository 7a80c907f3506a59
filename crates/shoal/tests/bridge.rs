//! The Gymnasium bridge (feature `python`): Python envs inside Shoal. Needs a Python with
//! `gymnasium` (and `minatar` for the DQN test) — `.ci/run` makes the venv and points
//! `VIRTUAL_ENV` at it.

use std::path::Path;
use std::process::Command;

use shoal_env::{make_vec, make_with, Action, Actions, Env, OptionValue, Space};

/// Makes `tests/python/bridge_envs.py` importable; every test calls it first, since whichever
/// test starts the interpreter fixes its path.
fn test_modules_importable() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
        // SAFETY: set once, before any thread of this test binary starts Python or reads it.
        std::env::set_var("PYTHONPATH", dir);
    });
}

/// Gymnasium's own CartPole through the bridge, started from the state Shoal's native CartPole
/// drew, takes the same trajectory as the native env, step for step and bit for bit.
#[test]
fn bridged_cartpole_matches_native_cartpole_step_for_step() {
    test_modules_importable();
    let mut steps_compared = 0;
    for seed in 0..8u64 {
        let mut native = shoal_env::make("CartPole-v1").unwrap();
        let mut native_obs = [0.0f32; 4];
        native.reset(Some(seed), &mut native_obs).unwrap();
        let snapshot = native.snapshot().unwrap();
        // TimeLimit(CartPole): [[state, steps_beyond_terminated, rng], elapsed]
        let state: Vec<String> =
            snapshot[0][0].as_array().unwrap().iter().map(|v| format!("{:.17e}", v.as_f64().unwrap())).collect();
        let mut bridged = make_with(
            "python:bridge_envs:CartPoleFrom",
            &[("state", OptionValue::List(state)), ("max_episode_steps", OptionValue::Int(500))],
        )
        .unwrap();
        assert_eq!(bridged.observation_space(), native.observation_space());
        assert_eq!(bridged.action_space(), native.action_space());
        let mut bridged_obs = [0.0f32; 4];
        bridged.reset(Some(seed), &mut bridged_obs).unwrap();
        assert_eq!(bridged_obs, native_obs);
        for t in 0..500 {
            let action = Action::Discrete(((t * 7 + seed as usize) / 3 % 2) as i64);
            let a = native.step(action, &mut native_obs).unwrap();
            let b = bridged.step(action, &mut bridged_obs).unwrap();
            assert_eq!((a, native_obs), (b, bridged_obs), "seed {seed} step {t}");
            steps_compared += 1;
            if a.done() {
                break;
            }
        }
    }
    assert!(steps_compared > 80, "{steps_compared}");
}

/// The state CartPole-v1 draws for `seed`, as strings for the `CartPoleFrom` option.
fn native_start(seed: u64) -> (Box<dyn Env>, Vec<f64>, Vec<String>) {
    let mut native = shoal_env::make("CartPole-v1").unwrap();
    native.reset(Some(seed), &mut [0.0; 4]).unwrap();
    // TimeLimit(CartPole): [[state, steps_beyond_terminated, rng], elapsed]
    let state: Vec<f64> =
        native.snapshot().unwrap()[0][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let text = state.iter().map(|v| format!("{v:.17e}")).collect();
    (native, state, text)
}

/// A vector of Python envs (Gymnasium's SyncVectorEnv, stepped in one call per batch) fills
/// Shoal's batch exactly as native envs started from the same states do, same-step auto-reset
/// and final observations included.
#[test]
fn a_vector_of_python_envs_matches_native_envs_batch_for_batch() {
    test_modules_importable();
    let (_, state, text) = native_start(4);
    let n = 3;
    let mut bridged = make_vec(
        "python:bridge_envs:CartPoleFrom",
        &[("state", OptionValue::List(text)), ("max_episode_steps", OptionValue::Int(500))],
        n,
        1,
    )
    .unwrap();
    let mut native: Vec<Box<dyn Env>> = (0..n).map(|_| shoal_env::make("CartPole-v1").unwrap()).collect();
    let mut obs = vec![[0.0f32; 4]; n];
    for (env, o) in native.iter_mut().zip(&mut obs) {
        env.reset_to_state(&state, o).unwrap();
    }
    bridged.reset(Some(0)).unwrap();
    let mut episodes = 0;
    for t in 0..400usize {
        let actions: Vec<i64> = (0..n).map(|i| ((t * 5 + i * 3) / 4 % 2) as i64).collect();
        bridged.step(Actions::Discrete(&actions)).unwrap();
        let batch = bridged.batch();
        for i in 0..n {
            let step = native[i].step(Action::Discrete(actions[i]), &mut obs[i]).unwrap();
            assert_eq!(
                (batch.rewards[i], batch.terminated[i], batch.truncated[i]),
                (1.0, step.terminated, step.truncated)
            );
            if step.done() {
                episodes += 1;
                assert_eq!(batch.final_obs(i).unwrap(), obs[i], "final obs, step {t} env {i}");
                assert_eq!(batch.finished_length[i] as f64, batch.finished_return[i]);
                native[i].reset_to_state(&state, &mut obs[i]).unwrap();
            }
            assert_eq!(batch.obs_row(i), obs[i], "step {t} env {i}");
        }
    }
    assert!(episodes >= 6, "{episodes}");
}

/// Atari through ale-py's own vector env: its preprocessing (84×84 grayscale, 4 frames
/// stacked) lands in Shoal's batch as `[num_envs, 4·84·84]` rows of a `[4, 84, 84]` Box, the
/// shape a CNN takes.
#[test]
fn atari_pong_steps_frame_stacked_observations_into_the_batch() {
    test_modules_importable();
    let mut pong = make_vec("gymnasium:ALE/Pong-v5", &[], 2, 2).unwrap();
    let Space::Box { shape, low, high } = pong.single_observation_space().clone() else { panic!("not a Box") };
    assert_eq!(shape, vec![4, 84, 84]);
    assert!(low.iter().all(|&l| l == 0.0) && high.iter().all(|&h| h == 255.0));
    assert_eq!(pong.single_action_space().n(), Some(6));
    pong.reset(Some(0)).unwrap();
    let frame = 84 * 84;
    let (mut reward, mut moving) = (0.0f32, false);
    for t in 0..300 {
        pong.step(Actions::Discrete(&[(t % 6) as i64, ((t / 3) % 6) as i64])).unwrap();
        let batch = pong.batch();
        assert_eq!(batch.obs.len(), 2 * 4 * frame);
        assert!(batch.obs.iter().all(|&x| (0.0..=255.0).contains(&x) && x.fract() == 0.0));
        // Consecutive frames of a stack differ once the ball moves.
        let row = batch.obs_row(0);
        moving |= row[2 * frame..3 * frame] != row[3 * frame..];
        reward += batch.rewards.iter().sum::<f32>();
    }
    assert!(moving, "the stacked frames never differed");
    assert!(reward < 0.0, "random play in Pong should concede points, got a total reward of {reward}");
    // ale-py's C++ vector keeps its games out of a checkpoint's reach: restoring starts new
    // episodes (with a warning) instead of failing the run.
    let snapshot = pong.snapshot().unwrap();
    pong.restore(&snapshot).unwrap();
    assert!(pong.batch().episode_length.iter().all(|&l| l == 0));
    pong.step(Actions::Discrete(&[0, 0])).unwrap();
}

/// Atari preprocessing: Shoal trains Atari on ale-py's own vector env, whose C++ does the
/// preprocessing; against Gymnasium's wrappers (`atari_reference` in bridge_envs.py:
/// AtariPreprocessing, FrameStackObservation, sign-clipped rewards) on the same game, seed and
/// actions, both through the bridge, every step's stacked frames (4 frames skipped and
/// max-pooled, grayscale, 84×84, 4 stacked, zero-padded after a reset), reward and end flags
/// are equal, across episode ends. What each side samples from its own RNG — no-op starts,
/// sticky actions — is set off here (with sticky actions at 0.25 most steps differ).
#[test]
fn atari_preprocessing_matches_gymnasiums_wrappers_step_for_step() {
    test_modules_importable();
    use OptionValue::{Bool, Float, Int, Str};
    for game in ["Pong", "Breakout"] {
        let options = [
            ("noop_max", Int(0)),
            ("repeat_action_probability", Float(0.0)),
            ("use_fire_reset", Bool(false)),
            ("episodic_life", Bool(false)),
            ("reward_clipping", Bool(true)),
        ];
        let mut ale = make_vec(&format!("gymnasium:ALE/{game}-v5"), &options, 1, 1).unwrap();
        let mut gymnasium =
            make_vec("python:bridge_envs:atari_reference", &[("game", Str(game.into()))], 1, 1).unwrap();
        assert_eq!(ale.single_observation_space(), gymnasium.single_observation_space());
        assert_eq!(ale.single_action_space(), gymnasium.single_action_space());
        let actions = ale.single_action_space().n().unwrap() as u64;
        ale.reset(Some(5)).unwrap();
        gymnasium.reset(Some(5)).unwrap();
        assert!(ale.batch().obs == gymnasium.batch().obs, "{game}: reset frames differ");
        let (mut ends, mut nonzero_rewards, mut state) = (0, 0, 0x9e37_79b9_7f4a_7c15u64);
        for t in 0..1500u64 {
            // xorshift: actions that vary like a random policy's.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let action = [(state % actions) as i64];
            ale.step(Actions::Discrete(&action)).unwrap();
            gymnasium.step(Actions::Discrete(&action)).unwrap();
            let (a, g) = (ale.batch(), gymnasium.batch());
            assert!(a.obs == g.obs, "{game} step {t}: frames differ");
            assert_eq!(
                (&a.rewards, &a.terminated, &a.truncated),
                (&g.rewards, &g.terminated, &g.truncated),
                "{game} step {t}"
            );
            ends += a.done(0) as usize;
            nonzero_rewards += (a.rewards[0] != 0.0) as usize;
        }
        assert!(ends >= 1 && nonzero_rewards >= 3, "{game}: {ends} episode ends, {nonzero_rewards} rewards");
    }
}

/// MuJoCo through the bridge: HalfCheetah-v5's float64 observations and float32 actions,
/// and a snapshot (the pickled envs) that replays the same steps after a restore.
#[test]
fn mujoco_halfcheetah_steps_and_restores_exactly() {
    test_modules_importable();
    let mut cheetah = make_vec("gymnasium:HalfCheetah-v5", &[], 2, 1).unwrap();
    assert_eq!(cheetah.single_observation_space().flat_dim(), 17);
    assert_eq!(cheetah.single_action_space().to_string(), "Box(-1.0, 1.0, (6,), float32)");
    cheetah.reset(Some(0)).unwrap();
    let actions: Vec<Vec<f32>> =
        (0..40).map(|t| (0..12).map(|j| (((t * 12 + j) as f32) * 0.37).sin()).collect()).collect();
    for a in &actions[..10] {
        cheetah.step(Actions::Continuous(a)).unwrap();
    }
    let snapshot = cheetah.snapshot().unwrap();
    let run = |env: &mut Box<dyn shoal_env::VecEnv>| -> Vec<Vec<f32>> {
        actions[10..]
            .iter()
            .map(|a| {
                env.step(Actions::Continuous(a)).unwrap();
                env.batch().obs.iter().chain(&env.batch().rewards).copied().collect()
            })
            .collect()
    };
    let first = run(&mut cheetah);
    cheetah.restore(&snapshot).unwrap();
    assert!(first == run(&mut cheetah), "the restored envs took other steps");
    assert!(first.iter().all(|row| row.iter().all(|x| x.is_finite())));
}

#[test]
fn gymnasium_ids_build_with_their_spaces_and_errors_name_the_fix() {
    test_modules_importable();
    let mut env = make_with("gymnasium:Pendulum-v1", &[("g", OptionValue::Float(9.81))]).unwrap();
    assert_eq!(env.action_space().to_string(), shoal_env::make("Pendulum-v1").unwrap().action_space().to_string());
    let mut obs = [0.0f32; 3];
    env.reset(Some(1), &mut obs).unwrap();
    let step = env.step(Action::Continuous(&[0.5]), &mut obs).unwrap();
    assert!(step.reward < 0.0 && !step.done());
    // An action outside the space is caught before Python sees it.
    let err = env.step(Action::Continuous(&[f32::NAN]), &mut obs).unwrap_err().to_string();
    assert!(err.contains("must be finite"), "{err}");

    let err = make_with("gymnasium:CartPole-v9", &[]).unwrap_err().to_string();
    assert!(err.contains("Python env `gymnasium:CartPole-v9`") && err.contains("`v1`"), "{err}");
    let err = make_with("python:bridge_envs:dict_space_env", &[]).unwrap_err().to_string();
    assert!(err.contains("observation space is a Dict") && err.contains("FlattenObservation"), "{err}");
    let err = make_with("python:no_such_module:Env", &[]).unwrap_err().to_string();
    assert!(err.contains("No module named 'no_such_module'") && err.contains("VIRTUAL_ENV"), "{err}");
}

/// DQN (MinAtar's own network: a 16-filter 3×3 convolution over the 10×10×4 board, then 64
/// units) trains 10k steps on a bridged MinAtar env, and a run
/// stopped at 5k and resumed from its checkpoint (the env pickled in it) ends where the
/// uninterrupted run ends: same episodes, same weights.
#[test]
fn dqn_on_minatar_trains_checkpoints_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("minatar-dqn.toml");
    std::fs::write(
        &config,
        r#"algo = "dqn"
seed = 2
[env]
id = "gymnasium:MinAtar/Breakout-v1"
num_envs = 1
[stop]
env_steps = 10_000
[run]
checkpoint_every = 5_000
[dqn]
learning_starts = 1_000
buffer_size = 10_000
train_frequency = 4
target_network_frequency = 500
# ε constant, so a run stopped at 5k (a shorter budget) explores as the 10k run does.
start_e = 0.1
end_e = 0.1
net = { hidden = [64], activation = "relu", encoder = "minatar" }
"#,
    )
    .unwrap();
    let shoal = env!("CARGO_BIN_EXE_shoal");
    let train = |args: &[&str]| {
        let out = Command::new(shoal).arg("train").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let straight = dir.join("straight");
    train(&[config.to_str().unwrap(), "--out", straight.to_str().unwrap()]);
    let resumed = dir.join("resumed");
    train(&[config.to_str().unwrap(), "--out", resumed.to_str().unwrap(), "--set", "stop.env_steps=5000"]);
    train(&["--resume", resumed.to_str().unwrap(), "--set", "stop.env_steps=10000"]);
    let summary = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
    };
    let (a, b) = (summary(&straight), summary(&resumed));
    assert_eq!(a["env_steps"], 10_000);
    assert_eq!(b["env_steps"], 10_000);
    assert!(a["episodes"].as_u64().unwrap() > 20, "{a}");
    assert_eq!(a["final_episode_return_mean"], b["final_episode_return_mean"], "{a}\n{b}");
    assert_eq!(a["episodes"], b["episodes"]);
    // A safetensors file: header length, JSON header (its metadata map has no fixed key order),
    // tensor bytes.
    let weights = |run: &Path| {
        let bytes = std::fs::read(run.join("checkpoints/latest/model.safetensors")).unwrap();
        let end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..end]).unwrap();
        (header, bytes[end..].to_vec())
    };
    assert!(weights(&straight) == weights(&resumed), "the resumed run's final weights or optimizer state differ");
}

/// The algorithms and topologies see an ordinary vector env: PPO solves Gymnasium's own
/// CartPole through the bridge (judged by `shoal eval`, which steps the bridged env too), and
/// Ape-X (embedded actors) and A3C as worker processes (which start their own interpreters)
/// run over it.
#[test]
fn algorithms_and_cluster_modes_run_over_a_python_env() {
    test_modules_importable();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let dir = tempfile::tempdir().unwrap();
    let shoal = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_shoal")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let run = |config: &str, name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let config = configs.join(config);
        let mut args = vec!["train", config.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(&["--set", "env.id=gymnasium:CartPole-v1"]);
        for item in extra {
            args.extend_from_slice(&["--set", item]);
        }
        shoal(&args);
        out
    };
    let ppo = run("cartpole-ppo.toml", "ppo", &["stop.episode_return_mean=475"]);
    let report = shoal(&["eval", ppo.to_str().unwrap(), "--deterministic", "--episodes", "10", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(report["episode_return_mean"].as_f64().unwrap() >= 475.0, "{report}");

    let apex = run("cartpole-apex.toml", "apex", &["stop.env_steps=4000"]);
    let a3c =
        run("cartpole-a3c.toml", "a3c", &["stop.env_steps=4000", "cluster.topology=processes", "cluster.workers=2"]);
    for run in [apex, a3c] {
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
        assert!(
            summary["env_steps"].as_u64().unwrap() >= 4000 && summary["episodes"].as_u64().unwrap() > 10,
            "{summary}"
        );
    }
}
