//! Learning tests: fixed seeds, real thresholds, evaluated on fresh episodes after training.
//! Each trains from the repository's own config files, so the configs are tested too.

use std::path::PathBuf;

use shoal_algo::eval::{evaluate, EvalStop};
use shoal_algo::{build_agent, learn, Callback, LoopState, TrainConfig};

fn config(name: &str, overrides: &[&str]) -> TrainConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(name);
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    TrainConfig::load(&path, &overrides).unwrap()
}

/// Trains with `seed` and returns (deterministic eval over `episodes`, env steps used).
fn train_and_eval(name: &str, seed: u64, episodes: usize, overrides: &[&str]) -> (shoal_algo::eval::EvalReport, u64) {
    let seed_override = format!("seed={seed}");
    let mut all: Vec<&str> = overrides.to_vec();
    all.push(&seed_override);
    let config = config(name, &all);
    let mut agent = build_agent(&config).unwrap();
    // `[stop] eval_return_mean` runs as a callback, as in `shoal train`.
    let mut eval_stop = EvalStop::from_config(&config.common);
    let mut callbacks: Vec<&mut dyn Callback> = eval_stop.iter_mut().map(|e| e as &mut dyn Callback).collect();
    let summary = learn(agent.as_mut(), &config.common.stop, &mut LoopState::default(), &mut callbacks).unwrap();
    let report = evaluate(agent.as_mut(), &config.common, episodes, true, 1_000_000 + seed).unwrap();
    eprintln!(
        "{name} seed {seed}: eval {:.1} after {} env steps ({:.1}s)",
        report.episode_return_mean, summary.env_steps, summary.wall_seconds
    );
    (report, summary.env_steps)
}

#[test]
fn ppo_solves_cartpole_for_5_of_5_seeds_within_150k_steps() {
    // Training stops once the last 100 training episodes average 475 (`shoal bench solve`'s
    // criterion; the config solved seeds 1-40 by a median of 83k steps), then the greedy
    // policy must hold it over 100 fresh episodes.
    for seed in 1..=5 {
        let (report, steps) = train_and_eval("cartpole-ppo.toml", seed, 100, &["stop.episode_return_mean=475"]);
        assert!(steps <= 150_000);
        assert!(report.episode_return_mean >= 475.0, "seed {seed}: {report:?}");
    }
}

/// Training stops once a 20-episode deterministic evaluation every 5000 env steps reaches
/// 500 (`shoal bench solve --criterion eval`'s way; DQN after solving can fall back, so a
/// fixed 100k-step run judged at its end depended on where the fall-backs landed: a change
/// of rounding in the engine moved seeds 1–5 from 5 to 3 solved). Seeds 1–20 stopped this way
/// held ≥ 475 on 100 fresh episodes for 18 of 20 (seeds 6 and 18 ran out of steps).
#[test]
fn dqn_solves_cartpole_for_4_of_5_seeds_within_150k_steps() {
    let mut solved = 0;
    for seed in 1..=5 {
        let stop = ["stop.eval_return_mean=500", "stop.eval_every=5000", "stop.eval_episodes=20"];
        let (report, steps) = train_and_eval("cartpole-dqn.toml", seed, 100, &stop);
        assert!(steps <= 150_000);
        solved += usize::from(report.episode_return_mean >= 475.0);
    }
    assert!(solved >= 4, "DQN solved CartPole for {solved} of 5 seeds");
}

/// rl-zoo3's SAC table gives −202 on Pendulum-v1 at 20k steps; the config's 256-256 networks
/// take ~3 minutes here, so CI runs 64-64 tanh ones (same algorithm and hyperparameters
/// otherwise; tanh is what these tests always ran: a partial `net` table used to take the
/// generic network's activation),
/// stopping once a 10-episode deterministic evaluation every 2k steps reaches −170; the
/// verdict is a fresh 20-episode evaluation.
#[test]
fn sac_balances_pendulum_for_3_of_3_seeds_within_20k_steps() {
    let overrides =
        ["sac.net.hidden=[64, 64]", "sac.net.activation=tanh", "stop.eval_return_mean=-170", "stop.eval_every=2000"];
    for seed in 1..=3 {
        let (report, steps) = train_and_eval("pendulum-sac.toml", seed, 20, &overrides);
        assert!(steps <= 20_000);
        assert!(report.episode_return_mean >= -200.0, "seed {seed}: {report:?}");
    }
}

/// PPO on Pendulum-v1 with reward normalization (configs/pendulum-ppo.toml): the issue's
/// target is −300 within 200k steps.
#[test]
fn ppo_swings_up_pendulum_within_200k_steps() {
    for seed in 1..=3 {
        let (report, steps) = train_and_eval("pendulum-ppo.toml", seed, 20, &[]);
        assert!(steps <= 200_000);
        assert!(report.episode_return_mean >= -300.0, "seed {seed}: {report:?}");
    }
}

/// TD3 and DDPG (TD3 with its tricks off) on Pendulum-v1, the same way as SAC above.
#[test]
fn td3_and_ddpg_balance_pendulum_within_20k_steps() {
    let overrides =
        ["td3.net.hidden=[64, 64]", "td3.net.activation=tanh", "stop.eval_return_mean=-170", "stop.eval_every=2000"];
    for seed in 1..=3 {
        let (report, steps) = train_and_eval("pendulum-td3.toml", seed, 20, &overrides);
        assert!(steps <= 20_000);
        assert!(report.episode_return_mean >= -200.0, "td3 seed {seed}: {report:?}");
    }
    let (report, _) = train_and_eval("pendulum-ddpg.toml", 1, 20, &overrides);
    assert!(report.episode_return_mean >= -200.0, "ddpg: {report:?}");
}

#[test]
fn q_learning_solves_frozen_lake_cliff_walking_and_taxi() {
    let (frozen, _) = train_and_eval("frozenlake-q.toml", 1, 1000, &[]);
    let rate = frozen.success_rate.unwrap();
    assert!(rate >= 0.70, "FrozenLake 4x4 slippery success rate {rate}");
    let (cliff, _) = train_and_eval("cliffwalking-q.toml", 1, 10, &[]);
    assert_eq!(cliff.episode_return_mean, -13.0, "CliffWalking greedy return");
    let (taxi, _) = train_and_eval("taxi-q.toml", 1, 1000, &[]);
    assert!(taxi.episode_return_mean >= 7.0, "Taxi mean return {}", taxi.episode_return_mean);
}

#[test]
fn a2c_solves_cartpole() {
    let (report, _) = train_and_eval("cartpole-a2c.toml", 1, 100, &[]);
    assert!(report.episode_return_mean >= 475.0, "{report:?}");
}

/// A3C embedded: 4 worker threads push 5-step gradients to an in-process asynchronous
/// parameter server, in whatever order the OS schedules them — a run is not bit-reproducible.
/// Stopped on its training return, the greedy policy varied from run to run (a CI run ended
/// at a best training mean of 371). Here it stops at a deterministic evaluation of 500 (10
/// episodes every 10k steps) within 1M steps (the learning rate anneals to 0 over the budget):
/// 40 of 40 runs here (seeds 1–10, twice idle and twice with a busy loop on one of the two
/// cores) evaluated 487.5–500 on 100 fresh episodes after 12k–300k env steps. With the
/// config's 500k budget, which anneals twice as fast, 3 of 20 never got there. At the old
/// learning rate 3e-4 a CI run's seed 1 never reached 500 (evaluated 135.9); ~1 % of runs did
/// that (6 of 650 here), 1 of 550 at the config's 5e-4.
#[test]
fn a3c_with_four_worker_threads_solves_cartpole() {
    for seed in 1..=3 {
        let overrides = ["stop.env_steps=1000000", "stop.eval_return_mean=500", "stop.eval_every=10000"];
        let (report, steps) = train_and_eval("cartpole-a3c.toml", seed, 100, &overrides);
        assert!(steps <= 1_000_000);
        assert!(report.episode_return_mean >= 475.0, "seed {seed}: {report:?}");
    }
}

/// Ape-X's DPG variant embedded, SAC and TD3 learners: 2 actor threads feed the prioritized
/// replay, the learner publishes the actor and critics. 64-64 networks as in the SAC test,
/// stopping once a 10-episode deterministic evaluation every 2k steps reaches −170; the
/// verdict is a fresh 20-episode evaluation.
#[test]
fn apex_with_sac_and_td3_learners_balances_pendulum() {
    for (file, section, seeds) in [("pendulum-apex-sac.toml", "sac", 1..=2), ("pendulum-apex-td3.toml", "td3", 1..=1)] {
        let (net, tanh) = (format!("{section}.net.hidden=[64, 64]"), format!("{section}.net.activation=tanh"));
        let overrides = [net.as_str(), tanh.as_str(), "stop.eval_return_mean=-170", "stop.eval_every=2000"];
        for seed in seeds {
            let (report, steps) = train_and_eval(file, seed, 20, &overrides);
            assert!(steps <= 20_000);
            assert!(report.episode_return_mean >= -200.0, "{file} seed {seed}: {report:?}");
        }
    }
}

/// SAC and TD3 as 2 embedded workers that each keep their envs, replay and optimizers and
/// average `[actor | critics]` through the parameter server every 100 updates — SAC in
/// rounds (`average`), TD3 elastically (`easgd`); 64-64 networks, 20k env steps per worker,
/// stopping once a 10-episode deterministic evaluation every 2k env steps reaches −170 (SAC
/// took 8k–10k in all, TD3 16k–18k, seeds 1–4); then 20 fresh episodes.
#[test]
fn sac_and_td3_averaging_workers_balance_pendulum() {
    for (file, section, mode) in [("pendulum-sac.toml", "sac", "average"), ("pendulum-td3.toml", "td3", "easgd")] {
        let (net, tanh) = (format!("{section}.net.hidden=[64, 64]"), format!("{section}.net.activation=tanh"));
        let mode = format!("cluster.mode=\"{mode}\"");
        let overrides = [
            net.as_str(),
            tanh.as_str(),
            mode.as_str(),
            "cluster.workers=2",
            "cluster.push_every=100",
            "stop.env_steps=40000",
            "stop.eval_return_mean=-170",
            "stop.eval_every=2000",
        ];
        let (report, steps) = train_and_eval(file, 1, 20, &overrides);
        assert!(steps <= 40_000);
        assert!(report.episode_return_mean >= -200.0, "{file} ({mode}): {report:?}");
    }
}

/// Ape-X embedded: 2 actor threads (ε 0.4 and 0.4⁸) and the learner thread, prioritized
/// replay, stopping at a deterministic evaluation of 500; then 100 fresh episodes. The
/// threads' interleaving makes runs differ: unloaded, seed 1 stopped after 60k–105k env
/// steps, but a loaded CI run had it at 401.6 when the config's 150k budget ran out, so the
/// test allows up to twice that.
#[test]
fn apex_with_two_actor_threads_solves_cartpole() {
    for seed in 1..=3 {
        let (report, steps) = train_and_eval("cartpole-apex.toml", seed, 100, &[APEX_BUDGET]);
        assert!(steps <= 300_000);
        assert!(report.episode_return_mean >= 475.0, "seed {seed}: {report:?}");
    }
}

/// IMPALA with 2 actor threads (8 envs each) and the learner on the test's thread, the
/// actors one parameter version behind on average: stopped once a 50-episode deterministic
/// evaluation every 10k env steps reaches 500, then judged on 100 fresh episodes. The
/// threads' interleaving makes runs differ, and a few get stuck: of 182 runs (seeds 1–60,
/// 100–160, 200–260) 178 stopped within the config's 2M env steps (median 174k), 4 spent
/// all of it at a training return of 150–350 with the policy's entropy near 0.5 (one of
/// them a CI failure of seed 1). γ 0.98, grad norm 5, entropy cost 0 or 0.003, an annealed
/// lr or 4 fragments per batch left 1–3 of 45–180 runs stuck as well, so the test asks 2 of
/// 3 seeds: with ~2 % stuck runs (3p²) it fails about once in 700 CI runs.
#[test]
fn impala_with_two_actor_threads_solves_cartpole_for_2_of_3_seeds() {
    let mut solved = 0;
    for seed in 1..=3 {
        let (report, _) = train_and_eval("cartpole-impala.toml", seed, 100, &[]);
        solved += usize::from(report.episode_return_mean >= 475.0);
    }
    assert!(solved >= 2, "IMPALA solved CartPole for {solved} of 3 seeds");
}

/// The Ape-X tests' env-step budget (see `apex_with_two_actor_threads_solves_cartpole`).
const APEX_BUDGET: &str = "stop.env_steps=300000";

/// The same with int8 actors (`apex.actor_precision = "int8"`): each pull of the learner's
/// f32 parameters is quantized, and the actors explore through the int8 network.
#[test]
fn apex_with_int8_actors_solves_cartpole() {
    for seed in 1..=2 {
        let (report, steps) =
            train_and_eval("cartpole-apex.toml", seed, 100, &["apex.actor_precision=\"int8\"", APEX_BUDGET]);
        assert!(steps <= 300_000);
        assert!(report.episode_return_mean >= 475.0, "seed {seed}: {report:?}");
    }
}
