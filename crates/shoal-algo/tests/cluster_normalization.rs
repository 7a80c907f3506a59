//! Normalization statistics in a cluster: every worker normalizes with all workers'
//! experience, as one process seeing everything would.

use std::path::{Path, PathBuf};

use shoal_algo::checkpoint::save_checkpoint;
use shoal_algo::config::StopConfig;
use shoal_algo::{build_agent, learn, LoopState, TrainConfig};
use shoal_env::wrappers::RunningMeanStd;

/// A checkpoint's `normalizer.json`: the observation statistics it applies — its own merged
/// with its peers' — and its own alone.
fn applied_and_own(dir: &Path) -> (RunningMeanStd, RunningMeanStd) {
    let text = std::fs::read_to_string(dir.join("normalizer.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let own: RunningMeanStd = serde_json::from_value(json["obs"].clone()).unwrap();
    let peers: RunningMeanStd = serde_json::from_value(json["peer_obs"].clone()).expect("peers' statistics");
    let mut applied = own.clone();
    applied.merge(&peers);
    (applied, own)
}

/// Equal up to the priors (count 1e-4, variance 1) each merge of fresh statistics brings.
fn assert_close(a: &RunningMeanStd, b: &RunningMeanStd, what: &str) {
    assert!((a.count - b.count).abs() <= 1e-3, "{what}: count {} vs {}", a.count, b.count);
    for d in 0..a.mean.len() {
        assert!((a.mean[d] - b.mean[d]).abs() < 1e-6, "{what}: mean[{d}] {} vs {}", a.mean[d], b.mean[d]);
        assert!((a.var[d] - b.var[d]).abs() < 1e-6, "{what}: var[{d}] {} vs {}", a.var[d], b.var[d]);
    }
}

/// Sync PPO on 2 embedded workers with observation and reward normalization: after training,
/// both workers and the run's model (what `eval` loads) apply the same statistics, equal to
/// both workers' own merged — each worker's own covering only its half of the env steps.
#[test]
fn embedded_workers_and_the_saved_model_normalize_with_every_workers_statistics() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/pendulum-ppo.toml");
    let sets =
        ["ppo.normalize={obs=true,reward=true}", "ppo.num_steps=256", "cluster.workers=2", "cluster.mode=\"sync\""];
    let config = TrainConfig::load(&path, &sets.map(String::from)).unwrap();
    let mut agent = build_agent(&config).unwrap();
    let stop = StopConfig { env_steps: Some(4096), ..Default::default() };
    learn(agent.as_mut(), &stop, &mut LoopState::default(), &mut []).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_checkpoint(agent.as_mut(), &LoopState::default(), dir.path()).unwrap();

    let (applied0, own0) = applied_and_own(&dir.path().join("worker-0"));
    let (applied1, own1) = applied_and_own(&dir.path().join("worker-1"));
    let (applied_model, _) = applied_and_own(dir.path());
    let mut all = RunningMeanStd::new(own0.mean.len());
    all.merge(&own0);
    all.merge(&own1);
    assert_close(&applied0, &applied1, "worker 0 vs worker 1");
    assert_close(&applied0, &all, "worker 0 vs both workers' statistics");
    assert_close(&applied_model, &all, "the saved model vs both workers' statistics");
    let steps = agent.env_steps() as f64;
    assert!(own0.count < 0.6 * steps && all.count > 0.99 * steps, "own {} / all {} of {steps}", own0.count, all.count);
}
