//! `shoal`: the command-line face of Shoal.
//!
//! Each subcommand lives in its own module under `commands/`; this file only parses arguments
//! and dispatches, so `shoal --help` and the module list read as the same table of contents.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "shoal", version, about = "Distributed deep reinforcement learning in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an agent from a TOML config (see configs/) into a run directory.
    Train(commands::train::Args),
    /// Evaluate a trained agent: mean/std return, cumulative return, length, success rate.
    Eval(commands::eval::Args),
    /// Write a trained policy as an ONNX model (normalization, network, action).
    Export(commands::export::Args),
    /// Make a trained policy smaller or faster: prune, quantize to int8, or distill.
    Optimize(commands::optimize::Args),
    /// Plot learning curves of one or more runs to a PNG.
    Plot(commands::plot::Args),
    /// List every registered environment with its spaces, time limit and reward threshold.
    Envs(commands::envs::Args),
    /// Step one environment and print JSON lines: reset observations, then one line per step.
    Rollout(commands::rollout::Args),
    /// Serve one shard of a run's parameters over gRPC (a parameter server process).
    Ps(commands::ps::Args),
    /// Run one worker process against `shoal ps` servers (an Ape-X actor or learner with --replay).
    Worker(commands::worker::Args),
    /// Serve an Ape-X run's prioritized replay over gRPC.
    Replay(commands::replay::Args),
    /// One task of a run started by a cluster engine (srun, mpirun, a Kubernetes Indexed Job):
    /// its role comes from its rank, the servers' addresses from rank 0's rendezvous.
    Run(commands::run_task::Args),
    /// Search hyperparameters: a study of trials (grid, random; ASHA, median stopping), resumable.
    Tune(commands::tune::Args),
    /// Train trials of a study served by `shoal tune --serve`, until none are left.
    TuneWorker(commands::tune_worker::Args),
    /// Serve a live web view of runs, cluster runs and tuning studies (read-only).
    Dashboard(commands::dashboard::Args),
    /// Measure performance.
    #[command(subcommand)]
    Bench(commands::bench::Bench),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(&args),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Export(args) => commands::export::run(&args),
        Command::Optimize(args) => commands::optimize::run(&args),
        Command::Plot(args) => commands::plot::run(&args),
        Command::Envs(args) => commands::envs::run(&args),
        Command::Rollout(args) => commands::rollout::run(&args),
        Command::Ps(args) => commands::ps::run(&args),
        Command::Worker(args) => commands::worker::run(&args),
        Command::Replay(args) => commands::replay::run(&args),
        Command::Run(args) => commands::run_task::run(&args),
        Command::Tune(args) => commands::tune::run(&args),
        Command::TuneWorker(args) => commands::tune_worker::run(&args),
        Command::Dashboard(args) => commands::dashboard::run(&args),
        Command::Bench(bench) => commands::bench::run(&bench),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One write: tasks started together (mpirun, srun) share one stderr, where a
            // message written in pieces interleaves with another task's.
            let message = format!("error: {err:#}\n");
            eprint!("{message}");
            ExitCode::FAILURE
        }
    }
}
