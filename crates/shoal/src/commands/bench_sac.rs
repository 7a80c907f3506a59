//! `shoal bench sac`: one SAC (or TD3) gradient step — soft targets, both critics' step, the
//! actor's and the temperature's, the Polyak update — on a synthetic replay batch of MuJoCo's
//! HalfCheetah shapes (17 observations, 6 actions, 256-256 relu, batch 256) by default. The
//! update is what a MuJoCo run spends its time in (`bench/mujoco_bench.sh` measures the whole
//! run beside SB3), so this is where its speed is worked on: one figure per thread count, in
//! alternating rounds.

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_algo::sac::{SacConfig, SacLearner};
use shoal_algo::td3::{Td3Config, Td3Learner};
use shoal_algo::ContinuousLearner;
use shoal_dist::replay::Transitions;

use super::bench_nn::time_per_call;
use super::bench_timing::median;

/// Arguments of `shoal bench sac`.
#[derive(clap::Args)]
pub struct SacArgs {
    /// `sac` or `td3`.
    #[arg(long, default_value = "sac")]
    algo: String,
    #[arg(long, default_value_t = 17)]
    obs_dim: usize,
    #[arg(long, default_value_t = 6)]
    act_dim: usize,
    #[arg(long, default_value = "256,256", value_delimiter = ',')]
    hidden: Vec<usize>,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Thread counts to time (`net.threads`), alternating.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Alternating rounds per thread count; the median is printed.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per round.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

pub fn run(args: &SacArgs) -> Result<()> {
    if args.rounds == 0 || args.threads.is_empty() {
        bail!("--rounds and --threads need at least one value");
    }
    let batch = synthetic_batch(args.obs_dim, args.act_dim, args.batch);
    let mut learners = args
        .threads
        .iter()
        .map(|&threads| learner(args, threads))
        .collect::<Result<Vec<Box<dyn ContinuousLearner>>>>()?;
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let mut rounds = vec![Vec::new(); learners.len()];
    for _ in 0..args.rounds {
        for (learner, times) in learners.iter_mut().zip(&mut rounds) {
            let mut failure = None;
            times.push(time_per_call(args.seconds, || {
                if let Err(e) = learner.update(&batch, None, &mut rng) {
                    failure.get_or_insert(e);
                }
            }));
            if let Some(e) = failure {
                bail!("the update failed on synthetic data: {e}");
            }
        }
    }
    let hidden = args.hidden.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("-");
    println!(
        "{}: obs {}, actions {}, hidden {hidden} relu, batch {}",
        args.algo, args.obs_dim, args.act_dim, args.batch
    );
    for (threads, times) in args.threads.iter().zip(&mut rounds) {
        println!("{}_update_threads{threads}_us: {:.1}", args.algo, median(times));
    }
    Ok(())
}

/// A learner of `args`' shapes on `threads` threads.
fn learner(args: &SacArgs, threads: usize) -> Result<Box<dyn ContinuousLearner>> {
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let (obs, act) = (args.obs_dim, args.act_dim);
    Ok(match args.algo.as_str() {
        "sac" => {
            let mut cfg = SacConfig::default();
            cfg.net.hidden = args.hidden.clone();
            cfg.net.threads = threads;
            Box::new(SacLearner::new(obs, act, &cfg, &mut rng)?)
        }
        "td3" => {
            let mut cfg = Td3Config::default();
            cfg.net.hidden = args.hidden.clone();
            cfg.net.threads = threads;
            Box::new(Td3Learner::new(obs, act, &cfg, &mut rng)?)
        }
        other => bail!("--algo must be sac or td3, got `{other}`"),
    })
}

/// `rows` transitions of random observations, actions in [−1, 1] and rewards.
fn synthetic_batch(obs_dim: usize, act_dim: usize, rows: usize) -> Transitions {
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    let mut batch = Transitions::with_act_dim(obs_dim, act_dim);
    let mut uniform = |n: usize, low: f32, high: f32| (0..n).map(|_| rng.random_range(low..high)).collect::<Vec<_>>();
    batch.obs = uniform(rows * obs_dim, -1.0, 1.0);
    batch.next_obs = uniform(rows * obs_dim, -1.0, 1.0);
    batch.actions = uniform(rows * act_dim, -1.0, 1.0);
    batch.rewards = uniform(rows, -1.0, 1.0);
    batch.dones = vec![0.0; rows];
    batch.discounts = vec![0.99; rows];
    batch
}
