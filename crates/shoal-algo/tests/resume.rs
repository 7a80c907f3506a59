//! A run stopped at step k and resumed from its checkpoint reaches the same parameters as an
//! uninterrupted run with the same seed, bit for bit (single-threaded envs).

use std::path::PathBuf;

use shoal_algo::checkpoint::{load_checkpoint, save_checkpoint};
use shoal_algo::config::StopConfig;
use shoal_algo::Result;
use shoal_algo::{build_agent, learn, Agent, Callback, Control, LoopState, Progress, TrainConfig};

fn config(name: &str, overrides: &[&str]) -> TrainConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(name);
    TrainConfig::load(&path, &overrides.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn steps(n: u64) -> StopConfig {
    StopConfig { env_steps: Some(n), ..Default::default() }
}

/// Everything that must match, file by file: the state JSON as text, and every tensor of the
/// safetensors files (model, optimizer moments, target network, replay) as raw bytes.
fn saved_state(agent: &mut dyn Agent) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    save_checkpoint(agent, &LoopState::default(), &path).unwrap();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&path).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&file).unwrap();
        if name.ends_with(".safetensors") {
            let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            for (tensor, view) in tensors.tensors() {
                out.push((format!("{name}:{tensor}"), view.data().to_vec()));
            }
        } else {
            out.push((name, bytes));
        }
    }
    out.sort();
    out
}

/// Stops the loop once `env_steps` reaches `at`, as Ctrl-C would.
struct StopAt(u64);

impl Callback for StopAt {
    fn on_iteration(&mut self, _: &mut dyn Agent, progress: &Progress<'_>) -> Result<Control> {
        Ok(if progress.env_steps >= self.0 { Control::Stop } else { Control::Continue })
    }
}

fn check_resume(name: &str, overrides: &[&str], k: u64, total: u64) {
    let config = config(name, overrides);
    // The stop budget drives the schedules, so both runs plan for `total` steps.
    let budget = steps(total);

    let mut straight = build_agent(&config).unwrap();
    learn(straight.as_mut(), &budget, &mut LoopState::default(), &mut []).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint");
    let mut first = build_agent(&config).unwrap();
    let mut state = LoopState::default();
    learn(first.as_mut(), &budget, &mut state, &mut [&mut StopAt(k)]).unwrap();
    assert!(first.env_steps() < total);
    save_checkpoint(first.as_mut(), &state, &ckpt).unwrap();
    drop(first);
    let mut resumed = build_agent(&config).unwrap();
    let mut state = load_checkpoint(resumed.as_mut(), &ckpt).unwrap();
    learn(resumed.as_mut(), &budget, &mut state, &mut []).unwrap();

    assert_eq!(resumed.env_steps(), straight.env_steps());
    let (a, b) = (saved_state(resumed.as_mut()), saved_state(straight.as_mut()));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if x != y {
            let at = x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(x.len().min(y.len()));
            let context =
                |v: &[u8]| String::from_utf8_lossy(&v[at.saturating_sub(80)..(at + 80).min(v.len())]).into_owned();
            panic!(
                "{name}: resumed run differs from the uninterrupted one at byte {at}:\n{}\nvs\n{}",
                context(x),
                context(y)
            );
        }
    }
}

#[test]
fn ppo_resumes_bit_for_bit() {
    check_resume("cartpole-ppo.toml", &[], 2_048, 5_120);
}

#[test]
fn dqn_resumes_bit_for_bit_including_replay() {
    check_resume("cartpole-dqn.toml", &["dqn.learning_starts=500"], 1_500, 3_000);
}

#[test]
fn ppo_with_normalization_resumes_bit_for_bit() {
    check_resume("pendulum-ppo.toml", &["ppo.normalize={obs=true,reward=true}", "ppo.num_steps=128"], 1_024, 2_560);
}

/// The statistics travel with the model: a loaded agent acts exactly as the saved one on the
/// same observations (deterministic actions bit for bit, and the same evaluation), and saving
/// it again writes the same statistics.
#[test]
fn normalization_statistics_survive_save_load_and_eval() {
    let config = config("pendulum-ppo.toml", &["ppo.normalize={obs=true,reward=true}", "ppo.num_steps=256"]);
    let mut trained = build_agent(&config).unwrap();
    learn(trained.as_mut(), &steps(4_096), &mut LoopState::default(), &mut []).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    save_checkpoint(trained.as_mut(), &LoopState::default(), &path).unwrap();
    let stats = std::fs::read_to_string(path.join("normalizer.json")).unwrap();
    assert!(stats.contains("\"obs\"") && stats.contains("\"returns\""), "{stats}");
    let mut loaded = build_agent(&config).unwrap();
    load_checkpoint(loaded.as_mut(), &path).unwrap();
    let obs: Vec<f32> = (0..30).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.4).collect();
    let (mut a, mut b) = (vec![0.0; 10], vec![0.0; 10]);
    trained.predict(&obs, 10, true, &mut a).unwrap();
    loaded.predict(&obs, 10, true, &mut b).unwrap();
    assert_eq!(a, b);
    let mut fresh = build_agent(&config).unwrap();
    let mut c = vec![0.0; 10];
    fresh.predict(&obs, 10, true, &mut c).unwrap();
    assert_ne!(a, c, "an untrained agent acts the same: the test would not see lost statistics");
    let eval = |agent: &mut dyn Agent| shoal_algo::eval::evaluate(agent, &config.common, 3, true, 7).unwrap();
    assert_eq!(eval(trained.as_mut()).episode_return_mean, eval(loaded.as_mut()).episode_return_mean);
    let again = dir.path().join("again");
    save_checkpoint(loaded.as_mut(), &LoopState::default(), &again).unwrap();
    assert_eq!(std::fs::read_to_string(again.join("normalizer.json")).unwrap(), stats);
}

#[test]
fn a2c_and_q_learning_resume_bit_for_bit() {
    check_resume("cartpole-a2c.toml", &[], 400, 1_000);
    check_resume("taxi-q.toml", &[], 20_000, 50_000);
}

/// Ape-X's actors are threads, so two runs are not bit-for-bit alike; its checkpoint still
/// is: save, load into a fresh agent and save again gives the same files — learner, target
/// network, optimizer, every actor's envs and RNG, and (with `apex.checkpoint_replay`) the
/// prioritized replay with its keys and priorities.
#[test]
fn apex_checkpoint_restores_learner_actors_and_replay() {
    let config = config("cartpole-apex.toml", &["apex.checkpoint_replay=true", "apex.learning_starts=500"]);
    let mut agent = build_agent(&config).unwrap();
    learn(agent.as_mut(), &steps(3000), &mut LoopState::default(), &mut []).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    save_checkpoint(agent.as_mut(), &LoopState::default(), &path).unwrap();
    let mut restored = build_agent(&config).unwrap();
    load_checkpoint(restored.as_mut(), &path).unwrap();
    let (before, after) = (saved_state(agent.as_mut()), saved_state(restored.as_mut()));
    assert!(before.iter().any(|(name, _)| name.starts_with("replay.safetensors:priorities")));
    assert_eq!(before, after);
    learn(restored.as_mut(), &steps(4000), &mut LoopState::default(), &mut []).unwrap();
    assert!(restored.env_steps() >= 4000, "the restored run trains on");
}

/// IMPALA's actors are threads too; its checkpoint — the learner's model and Adam moments,
/// every actor's envs, RNG and episodes, the counters — saves, loads into a fresh agent and
/// saves again to the same files, and the restored run trains on (its trajectory queue
/// starts empty, as documented).
#[test]
fn impala_checkpoint_restores_learner_and_actors() {
    let config = config("cartpole-impala.toml", &[]);
    let mut agent = build_agent(&config).unwrap();
    learn(agent.as_mut(), &steps(5000), &mut LoopState::default(), &mut []).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    save_checkpoint(agent.as_mut(), &LoopState::default(), &path).unwrap();
    let mut restored = build_agent(&config).unwrap();
    load_checkpoint(restored.as_mut(), &path).unwrap();
    let (before, after) = (saved_state(agent.as_mut()), saved_state(restored.as_mut()));
    assert!(before.iter().any(|(name, _)| name == "actor-1.json"));
    assert!(before.iter().any(|(name, _)| name.starts_with("model.safetensors:optim.")));
    assert_eq!(before, after);
    let trained = restored.env_steps();
    learn(restored.as_mut(), &steps(trained + 5000), &mut LoopState::default(), &mut []).unwrap();
    assert!(restored.env_steps() >= trained + 5000, "the restored run trains on");
}

#[test]
fn sac_resumes_bit_for_bit_including_replay_and_temperature() {
    check_resume("pendulum-sac.toml", &["sac.net.hidden=[32, 32]", "sac.batch_size=64"], 700, 1_200);
}

/// gSDE redraws the envs' exploration matrices every 3 steps, so the stop falls between two
/// draws: the resumed run must act with the same matrices without having saved them.
#[test]
fn sac_with_gsde_resumes_bit_for_bit() {
    check_resume(
        "mountaincar-continuous-sac.toml",
        &["sac.net.hidden=[32, 32]", "sac.batch_size=64", "sac.train_frequency=8", "sac.sde_sample_freq=3"],
        700,
        1_200,
    );
}

#[test]
fn td3_resumes_bit_for_bit() {
    check_resume(
        "pendulum-td3.toml",
        &["td3.net.hidden=[32, 32]", "td3.batch_size=64", "td3.learning_starts=300"],
        700,
        1_200,
    );
}

/// `net.threads = 2` (actor and critic, or the twin critics, side by side) trains exactly the
/// run one thread trains: every tensor and the state, bit for bit.
#[test]
fn two_network_threads_train_bit_for_bit_like_one() {
    for (name, section, total) in
        [("cartpole-ppo.toml", "ppo", 3_000), ("pendulum-sac.toml", "sac", 1_500), ("pendulum-td3.toml", "td3", 1_500)]
    {
        let states: Vec<_> = ["1", "2"]
            .iter()
            .map(|threads| {
                let key = format!("{section}.net.threads={threads}");
                let mut agent = build_agent(&config(name, &[&key])).unwrap();
                learn(agent.as_mut(), &steps(total), &mut LoopState::default(), &mut []).unwrap();
                saved_state(agent.as_mut())
            })
            .collect();
        assert!(!states[0].is_empty());
        for ((file, one), (_, two)) in states[0].iter().zip(&states[1]) {
            assert!(one == two, "{name}: {file} differs between 1 and 2 network threads");
        }
    }
}
