//! `shoal bench …`: throughput measurements. Benchmarks, not tests: they print figures that
//! `bench/` scripts compare against Python peers run on the same machine in the same session.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Subcommand;
use rand::SeedableRng;
use shoal_env::{Actions, OwnedAction};

/// The benchmarks.
#[derive(Subcommand)]
pub enum Bench {
    /// Batched env stepping: prints `env_steps_per_sec: <number>` last.
    Env(EnvArgs),
    /// The network engine: PPO minibatch update and batched inference of an actor-critic.
    Nn(super::bench_nn::NnArgs),
    /// A convolutional Q-network (Nature CNN or MinAtar's): TD update at batch 32, inference.
    Cnn(super::bench_cnn::CnnArgs),
    /// One SAC or TD3 gradient step on HalfCheetah's shapes, by thread count.
    Sac(super::bench_sac::SacArgs),
    /// Wall-clock time and env steps until a config's training return reaches a threshold.
    Solve(super::bench_learn::SolveArgs),
    /// Train the benchmark configs once each and evaluate them against their targets.
    Learn(super::bench_learn::LearnArgs),
    /// Parameter push+pull latency and throughput: in-process server and a loopback TCP copy.
    Ps(super::bench_ps::PsArgs),
    /// One Ape-X actor alone, acting in f32 and in int8: env steps/s of each.
    Actors(super::bench_actors::ActorsArgs),
    /// Prioritized replay: insert, sample(512) and priority-update rates, in process and gRPC.
    Replay(super::bench_replay::ReplayArgs),
    /// Under `mpirun -np N` (feature `mpi`): MPI_Allreduce against a sync parameter-server round
    /// and plain TCP, for 1 MB and 10 MB gradients.
    Allreduce(super::bench_allreduce::AllreduceArgs),
    /// Model parallelism: an MLP cut into two pipeline stages in two processes against one
    /// process, time per training step by width (and the parameters equal).
    Pipeline(super::bench_pipeline::PipelineArgs),
    /// The tuner's own cost per trial: empty trials and one-iteration trials, random and TPE.
    Tune(super::bench_tune::TuneArgs),
    /// Many simulated workers against parameter-server shards and a replay in processes of
    /// their own: calls/s, MB/s, p50/p95/p99 latency, busy answers, errors, server memory and
    /// sockets; `--soak SECONDS` for the long test (memory, descriptors, killed workers).
    Load(super::bench_load::LoadArgs),
    /// One server of `shoal bench load` (started by it).
    #[command(hide = true)]
    LoadServer(super::bench_load::LoadServerArgs),
    /// A process of simulated workers of `shoal bench load --soak` (started by it).
    #[command(hide = true)]
    LoadClients(super::bench_load::LoadClientsArgs),
}

/// Arguments of `shoal bench env`.
#[derive(clap::Args)]
pub struct EnvArgs {
    #[arg(long, default_value = "CartPole-v1")]
    env: String,
    #[arg(long, default_value_t = 256)]
    num_envs: usize,
    /// Threads stepping envs, the caller's included (1 = synchronous).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measured duration, after a short warm-up.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Env option as key=value, repeatable.
    #[arg(long = "opt")]
    options: Vec<String>,
}

pub fn run(bench: &Bench) -> Result<()> {
    match bench {
        Bench::Env(args) => bench_env(args),
        Bench::Nn(args) => super::bench_nn::run(args),
        Bench::Cnn(args) => super::bench_cnn::run(args),
        Bench::Sac(args) => super::bench_sac::run(args),
        Bench::Solve(args) => super::bench_learn::solve(args),
        Bench::Learn(args) => super::bench_learn::learn_table(args),
        Bench::Ps(args) => super::bench_ps::run(args),
        Bench::Replay(args) => super::bench_replay::run(args),
        Bench::Actors(args) => super::bench_actors::run(args),
        Bench::Allreduce(args) => super::bench_allreduce::run(args),
        Bench::Tune(args) => super::bench_tune::run(args),
        Bench::Pipeline(args) => super::bench_pipeline::run(args),
        Bench::Load(args) => match args.soak {
            Some(seconds) => super::bench_soak::run(args, seconds),
            None => super::bench_load::run(args),
        },
        Bench::LoadServer(args) => super::bench_load::serve(args),
        Bench::LoadClients(args) => super::bench_load::clients(args),
    }
}

/// A fixed pool of random action batches, cycled during the run so that drawing actions is not
/// what gets measured.
enum ActionPool {
    Discrete(Vec<Vec<i64>>),
    Continuous(Vec<Vec<f32>>),
    MultiDiscrete(Vec<Vec<i64>>),
}

impl ActionPool {
    const BATCHES: usize = 64;

    fn sample(space: &shoal_env::Space, num_envs: usize) -> Self {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
        let batches: Vec<Vec<OwnedAction>> =
            (0..Self::BATCHES).map(|_| (0..num_envs).map(|_| space.sample(&mut rng)).collect()).collect();
        match batches[0][0] {
            OwnedAction::Discrete(_) => ActionPool::Discrete(
                batches
                    .iter()
                    .map(|b| b.iter().map(|a| if let OwnedAction::Discrete(x) = a { *x } else { 0 }).collect())
                    .collect(),
            ),
            OwnedAction::Continuous(_) => ActionPool::Continuous(
                batches
                    .iter()
                    .map(|b| {
                        b.iter()
                            .flat_map(|a| if let OwnedAction::Continuous(v) = a { v.clone() } else { Vec::new() })
                            .collect()
                    })
                    .collect(),
            ),
            OwnedAction::MultiDiscrete(_) => ActionPool::MultiDiscrete(
                batches
                    .iter()
                    .map(|b| {
                        b.iter()
                            .flat_map(|a| if let OwnedAction::MultiDiscrete(v) = a { v.clone() } else { Vec::new() })
                            .collect()
                    })
                    .collect(),
            ),
        }
    }

    fn get(&self, i: usize) -> Actions<'_> {
        match self {
            ActionPool::Discrete(b) => Actions::Discrete(&b[i % b.len()]),
            ActionPool::Continuous(b) => Actions::Continuous(&b[i % b.len()]),
            ActionPool::MultiDiscrete(b) => Actions::MultiDiscrete(&b[i % b.len()]),
        }
    }
}

fn bench_env(args: &EnvArgs) -> Result<()> {
    let options = super::parse_env_options(&args.options)?;
    let mut vec_env = shoal_env::make_vec(&args.env, &options, args.num_envs, args.threads)?;
    let pool = ActionPool::sample(vec_env.single_action_space(), args.num_envs);
    vec_env.reset(Some(0))?;
    let run_for = |vec_env: &mut Box<dyn shoal_env::VecEnv>, duration: Duration| -> Result<(u64, f64)> {
        let start = Instant::now();
        let mut batches = 0u64;
        loop {
            for _ in 0..16 {
                vec_env.step(pool.get(batches as usize))?;
                batches += 1;
            }
            let elapsed = start.elapsed();
            if elapsed >= duration {
                return Ok((batches, elapsed.as_secs_f64()));
            }
        }
    };
    run_for(&mut vec_env, Duration::from_secs_f64(0.3))?;
    let (batches, seconds) = run_for(&mut vec_env, Duration::from_secs_f64(args.seconds))?;
    let steps = batches * args.num_envs as u64;
    println!("env: {}", args.env);
    println!("num_envs: {}", args.num_envs);
    println!("threads: {}", args.threads);
    println!("seconds: {seconds:.3}");
    println!("env_steps: {steps}");
    println!("env_steps_per_sec: {:.0}", steps as f64 / seconds);
    Ok(())
}
