//! `shoal run CONFIG`: one task of a run that a cluster engine started. Slurm's `srun`,
//! `mpirun`, a Kubernetes Indexed Job or a person starts the same command once per task; each
//! task reads its rank and the world size from the engine's environment (see
//! `shoal_dist::engine`), takes its role from the config's `[cluster]` layout, and finds the
//! servers through rank 0's rendezvous instead of hand-written address lists.
//!
//! Roles by rank, in this order (`world` must be their count):
//!
//! | ranks | role |
//! | --- | --- |
//! | `0 .. shards` | parameter-server shards; rank 0 also serves the rendezvous and writes the run's result |
//! | next (Ape-X, IMPALA) | the replay (IMPALA: the trajectory queue) |
//! | next (Ape-X, IMPALA) | the learner |
//! | the rest | workers `0 .. cluster.workers` (Ape-X, IMPALA: actors) |
//!
//! Every task shares `--out`, a directory on storage they all see (a shared filesystem, a
//! volume): the shards checkpoint into `ps/`, the replay into `replay/`, and rank 0 leaves a
//! run directory there (`config.toml`, `metrics.csv`, `checkpoints/latest/` with every shard
//! merged, `summary.json`) that `shoal eval`, `plot` and `train --resume` read. A task
//! restarted by its engine (a requeued job, a rescheduled pod) resumes from those checkpoints.
//!
//! With `cluster.mode = "allreduce"` (a build with `--features mpi`) there is no server and no
//! rendezvous: `mpirun -np N shoal run CONFIG --out DIR` starts N equal ranks that sum their
//! gradients with MPI_Allreduce (`shoal_algo::data_parallel`); rank 0 writes the run
//! directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use shoal_algo::checkpoint::{checkpoint_exists, load_checkpoint, save_checkpoint, write_json};
use shoal_algo::cluster::{ClusterConfig, Mode};
use shoal_algo::data_parallel::{join_group, rank_stop, GroupStop};
use shoal_algo::registry::{server_spec, worker_agent};
use shoal_algo::{learn, Agent, Callback, LoopState, TrainConfig};
use shoal_dist::{
    spawn_rendezvous, AllReduce, ClientOptions, Coordinator, IdentityFlags, RendezvousClient, RendezvousState,
    RunIdentity, ShardedStore, TaskIdentity, Token,
};

use super::launch::collect;
use super::ps::{self, Security, ShardServe};
use super::replay::{self, ReplayServe};
use super::worker::{self, WorkerRole};
use shoal::run::RunDir;
use shoal::training::{Checkpointer, MetricsLogger};

/// Arguments of `shoal run`.
#[derive(clap::Args)]
pub struct Args {
    /// The run's config (every task gives the same one, with the same --set overrides).
    config: PathBuf,
    /// Override a config key, repeatable (as `shoal train --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The run directory, on storage every task sees.
    #[arg(long)]
    out: PathBuf,
    /// This task's rank (default: from the engine's environment).
    #[arg(long)]
    rank: Option<usize>,
    /// The number of tasks (default: from the engine's environment).
    #[arg(long)]
    world: Option<usize>,
    /// Rank 0's rendezvous, HOST[:PORT] (default: $SHOAL_COORDINATOR, or the first node of a
    /// Slurm job; port 29400).
    #[arg(long)]
    coordinator: Option<String>,
    /// The interface a server task binds.
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// The port a server task listens on (0: any free port, published by the rendezvous).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The host other tasks reach this task's servers at (default: the address rank 0 sees
    /// its call come from; rank 0 itself: the coordinator's host).
    #[arg(long)]
    advertise: Option<String>,
    /// Seconds a task waits for every server of the run to register.
    #[arg(long, default_value_t = 300.0)]
    wait: f64,
    #[command(flatten)]
    security: Security,
    /// Connect to the servers over TLS, trusting this PEM certificate authority.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name the servers' certificates carry.
    #[arg(long, default_value = "localhost", requires = "tls_ca")]
    tls_domain: String,
}

/// What the task of one rank does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Shard(usize),
    Replay,
    Worker(WorkerRole),
}

/// The roles of a run, indexed by rank (the order in the module documentation).
fn layout(config: &TrainConfig, cluster: &ClusterConfig) -> Vec<Role> {
    let actor_learner = config.algo.has_learner();
    let mut roles: Vec<Role> = (0..cluster.shards).map(Role::Shard).collect();
    if actor_learner {
        roles.extend([Role::Replay, Role::Worker(WorkerRole::Learner)]);
    }
    roles.extend(
        (0..cluster.workers)
            .map(|i| Role::Worker(if actor_learner { WorkerRole::Actor(i) } else { WorkerRole::Worker(i) })),
    );
    roles
}

/// The rendezvous name of each server role.
fn server_name(role: Role) -> Option<String> {
    match role {
        Role::Shard(i) => Some(shard_name(i)),
        Role::Replay => Some("replay".into()),
        Role::Worker(_) => None,
    }
}

fn shard_name(shard: usize) -> String {
    format!("ps{shard}")
}

/// The parameter servers' addresses in shard order, from a complete rendezvous directory.
fn shard_addrs(directory: &BTreeMap<String, String>, shards: usize) -> Result<Vec<String>> {
    (0..shards)
        .map(|i| {
            directory.get(&shard_name(i)).cloned().with_context(|| format!("the rendezvous lists no {}", shard_name(i)))
        })
        .collect()
}

/// A fingerprint of the resolved config, which every task must share.
fn config_hash(config: &TrainConfig) -> u64 {
    crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182).checksum(config.to_toml().as_bytes())
}

pub fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    let config = TrainConfig::load(&args.config, &args.set)?;
    let cluster = config.cluster().unwrap_or_default();
    if cluster.mode == Mode::Allreduce {
        return run_rank(args, &config, &cluster, mpi_world()?);
    }
    let flags = IdentityFlags { rank: args.rank, world: args.world, coordinator: args.coordinator.clone() };
    let id = TaskIdentity::discover(&flags)?;
    let roles = layout(&config, &cluster);
    ensure!(
        id.world == roles.len(),
        "the config's [cluster] layout needs {} tasks ({} parameter-server shard(s){}, {} worker(s)), but this task was started as one of {} ({}); \
         start {} tasks or change cluster.workers / cluster.shards",
        roles.len(),
        cluster.shards,
        if config.algo.has_learner() { ", a replay, a learner" } else { "" },
        cluster.workers,
        id.world,
        id.engine.name(),
        roles.len()
    );
    let role = roles[id.rank];
    eprintln!(
        "shoal run: task {} of {} ({}): {role:?}; rendezvous at {}",
        id.rank,
        id.world,
        id.engine.name(),
        id.coordinator
    );
    let (token, tls) = args.security.load()?;
    let client_tls = worker::client_tls(args.tls_ca.as_deref(), &args.tls_domain)?;
    let mut options = worker::client_options(&cluster, client_tls, token.clone());
    // A task may start long before rank 0 (a pending pod, a slow node): wait for it as long
    // as for the servers.
    options.retry_for = options.retry_for.max(Duration::from_secs_f64(args.wait));
    let run = RunIdentity { world: id.world, config_hash: config_hash(&config) };
    let names: Vec<String> = roles.iter().filter_map(|&r| server_name(r)).collect();
    let task = Task { args, config: &config, cluster: &cluster, id: &id, options, token, start };
    let rank0 = match id.rank {
        0 => {
            let listen = format!("{}:{}", args.bind, host_and_port(&id.coordinator)?.1);
            args.security.check_exposure(&listen)?;
            let state = RendezvousState::new(run, task.token.clone(), names);
            let handle = spawn_rendezvous(&listen, Arc::clone(&state), tls.as_ref())
                .with_context(|| format!("serving the rendezvous on {listen}"))?;
            Some((state, handle))
        }
        _ => None,
    };
    let rendezvous = RendezvousClient::new(&id.coordinator, id.rank, run, task.options.clone())?;
    match role {
        Role::Shard(shard) => task.serve_shard(shard, tls, &rendezvous, rank0.as_ref().map(|(s, _)| s.as_ref())),
        Role::Replay => task.serve_replay(tls, &rendezvous),
        Role::Worker(worker_role) => {
            let addrs = rendezvous.wait_complete(Duration::from_secs_f64(args.wait))?;
            let ps = shard_addrs(&addrs, cluster.shards)?;
            worker::work(&config, worker_role, &ps, addrs.get("replay").map(String::as_str), task.options)
        }
    }
}

/// MPI_COMM_WORLD as an all-reduce group.
#[cfg(feature = "mpi")]
fn mpi_world() -> Result<Arc<dyn AllReduce>> {
    Ok(Arc::new(shoal_dist::allreduce::MpiGroup::init()?))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world() -> Result<Arc<dyn AllReduce>> {
    anyhow::bail!(
        "cluster.mode = \"allreduce\" runs over MPI: build with `cargo build --release --features mpi` \
         (Debian: apt-get install libopenmpi-dev openmpi-bin libclang-dev) and start `mpirun -np N shoal run CONFIG --out DIR`"
    )
}

/// One rank of an all-reduce group: the config's agent with its own envs, gradient steps
/// summed over the group; rank 0 logs and writes the run directory.
fn run_rank(args: &Args, config: &TrainConfig, cluster: &ClusterConfig, group: Arc<dyn AllReduce>) -> Result<()> {
    let (rank, size) = (group.rank(), group.size());
    ensure!(
        size == cluster.workers,
        "mpirun started {size} ranks but cluster.workers = {}; start `mpirun -np {}` or set cluster.workers = {size}",
        cluster.workers,
        cluster.workers
    );
    eprintln!("shoal run: rank {rank} of {size} (MPI all-reduce)");
    let mut agent = worker_agent(config, rank)?;
    join_group(agent.as_mut(), Arc::clone(&group))?;
    let run_dir = RunDir::shared(&args.out)?;
    let checkpoint = rank_checkpoint(&run_dir, rank);
    let mut state = resume_rank(agent.as_mut(), &checkpoint, group.as_ref())?;
    let mut group_stop = GroupStop::new(Arc::clone(&group), &config.common);
    let mut logger = None;
    if rank == 0 {
        run_dir.write_config(config)?;
        logger = Some(MetricsLogger::open(&run_dir, size as u64)?);
    }
    // Every rank checkpoints at the same iterations (they step in lockstep), so a requeued
    // job resumes all of them from one point. Ctrl-C is mpirun's to handle: the flag stays unset.
    let every = config.common.run.checkpoint_every.div_ceil(size as u64);
    let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut checkpointer = Checkpointer::new(checkpoint.clone(), every, agent.as_ref(), state, never);
    let mut callbacks: Vec<&mut dyn Callback> = vec![&mut group_stop, &mut checkpointer];
    if let Some(logger) = logger.as_mut() {
        callbacks.push(logger);
    }
    let mut summary = learn(agent.as_mut(), &rank_stop(&config.common.stop, size), &mut state, &mut callbacks)?;
    save_checkpoint(agent.as_mut(), &state, &checkpoint)?;
    if rank == 0 {
        // Every rank stepped as many env steps as rank 0; the episodes are rank 0's.
        summary.env_steps *= size as u64;
        summary.env_steps_per_sec *= size as f64;
        write_json(&run_dir.summary(), &summary)?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        eprintln!("shoal run: run saved in {}", run_dir.root.display());
    }
    Ok(())
}

/// Where rank `rank` of an all-reduce group checkpoints: rank 0 where any run does (what
/// `shoal eval` and `train --resume` read), the others beside it in `checkpoints/rank-R`
/// (each rank's envs and random streams are its own; the model and optimizer are equal).
fn rank_checkpoint(run_dir: &RunDir, rank: usize) -> PathBuf {
    match rank {
        0 => run_dir.checkpoint(),
        _ => run_dir.root.join("checkpoints").join(format!("rank-{rank}")),
    }
}

/// Resumes this rank from its checkpoint when the run has them (a requeued or resubmitted
/// job): all ranks or none, and all from the same iteration, or an error naming the fix.
fn resume_rank(agent: &mut dyn Agent, dir: &Path, group: &dyn AllReduce) -> Result<LoopState> {
    let state = if checkpoint_exists(dir) {
        Some(load_checkpoint(agent, dir).with_context(|| format!("resuming from {}", dir.display()))?)
    } else {
        None
    };
    let iteration = state.map_or(-1.0, |s| s.iteration as f64);
    // Rank 0's iteration on every rank, then the number of ranks that disagree with it.
    let mut rank0 = [if group.rank() == 0 { iteration } else { 0.0 }];
    group.sum_f64(&mut rank0)?;
    let mut disagree = [f64::from(u8::from(iteration != rank0[0]))];
    group.sum_f64(&mut disagree)?;
    ensure!(
        disagree[0] == 0.0,
        "{} of {} ranks hold no checkpoint, or one from another iteration than rank 0 ({}): a save was cut short \
         or the rank count changed; start over in a new --out directory, or remove {} to start this one afresh",
        disagree[0],
        group.size(),
        if rank0[0] < 0.0 { "none".to_string() } else { format!("iteration {}", rank0[0]) },
        dir.parent().unwrap_or(dir).display()
    );
    if let Some(state) = state {
        // One write per line: the ranks share mpirun's stderr, and a line written in pieces
        // interleaves with another rank's.
        let line = format!(
            "shoal run: rank {} resumed at {} env steps (iteration {})\n",
            group.rank(),
            agent.env_steps(),
            state.iteration
        );
        eprint!("{line}");
    }
    Ok(state.unwrap_or_default())
}

/// The host and port of the coordinator's `host:port` address.
fn host_and_port(addr: &str) -> Result<(&str, u16)> {
    addr.rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse().ok()?)))
        .with_context(|| format!("the coordinator address {addr:?} has no port"))
}

/// What every role of a task needs.
struct Task<'a> {
    args: &'a Args,
    config: &'a TrainConfig,
    cluster: &'a ClusterConfig,
    id: &'a TaskIdentity,
    options: ClientOptions,
    token: Token,
    start: Instant,
}

impl Task<'_> {
    fn listen(&self) -> Result<String> {
        let listen = format!("{}:{}", self.args.bind, self.args.port);
        self.args.security.check_exposure(&listen)?;
        Ok(listen)
    }

    /// Publishes a server of this task listening at `addr` under `name`: rank 0 writes its
    /// own directory, the others register with it.
    fn publish(
        &self,
        name: &str,
        addr: SocketAddr,
        rendezvous: &RendezvousClient,
        own: Option<&RendezvousState>,
    ) -> Result<()> {
        match own {
            Some(state) => {
                let host = match &self.args.advertise {
                    Some(host) => host.as_str(),
                    None => host_and_port(&self.id.coordinator)?.0,
                };
                state.register(name, format!("{host}:{}", addr.port())).map_err(|s| anyhow::anyhow!("{}", s.message()))
            }
            None => Ok(rendezvous.register(name, self.args.advertise.as_deref(), addr.port())?),
        }
    }

    /// A parameter-server shard; rank 0 then writes the run directory from every shard.
    fn serve_shard(
        &self,
        shard: usize,
        tls: Option<shoal_dist::ServerTls>,
        rendezvous: &RendezvousClient,
        own: Option<&RendezvousState>,
    ) -> Result<()> {
        let out = self.args.out.join("ps");
        let resume = out.join(format!("ps-shard{shard}.safetensors")).exists();
        if resume {
            eprintln!("shoal run: resuming shard {shard} from {}", out.display());
        }
        let run_dir = RunDir::shared(&self.args.out)?;
        if shard == 0 {
            run_dir.write_config(self.config)?;
        }
        let opts = ShardServe {
            listen: self.listen()?,
            shard,
            out: Some(out),
            metrics: (shard == 0).then(|| run_dir.metrics()),
            resume,
            token: self.token.clone(),
            tls,
            // Rank 0 collects every shard's parameters after its own linger: the other shards
            // stay up a while longer for it.
            linger: if shard == 0 { 5.0 } else { 35.0 },
        };
        let name = shard_name(shard);
        ps::serve(
            self.config,
            opts,
            |addr| self.publish(&name, addr, rendezvous, own),
            || {
                if shard != 0 {
                    return Ok(());
                }
                let addrs = rendezvous.wait_complete(Duration::from_secs(10))?;
                let ps = shard_addrs(&addrs, self.cluster.shards)?;
                let summary = collect(
                    self.config,
                    self.cluster,
                    &ps,
                    &self.options,
                    &run_dir,
                    self.start.elapsed().as_secs_f64(),
                )?;
                write_json(&run_dir.summary(), &summary)?;
                println!("{}", serde_json::to_string_pretty(&summary)?);
                eprintln!("shoal run: run saved in {}", run_dir.root.display());
                Ok(())
            },
        )
    }

    /// The Ape-X replay, until the parameter servers stop the run.
    fn serve_replay(&self, tls: Option<shoal_dist::ServerTls>, rendezvous: &RendezvousClient) -> Result<()> {
        let out = self.args.out.join("replay");
        let resume =
            self.config.apex.as_ref().is_some_and(|a| a.checkpoint_replay) && out.join("replay.safetensors").exists();
        let opts = ReplayServe {
            listen: self.listen()?,
            out: Some(out),
            resume,
            checkpoint_seconds: 30.0,
            token: self.token.clone(),
            tls,
        };
        let mut servers: Option<ShardedStore<shoal_dist::GrpcStore>> = None;
        let mut last_check = Instant::now();
        // After the stop, serve as long as the parameter server does (its linger), so that the
        // learner and the actors hear the stop from it instead of losing their replay first.
        let linger = Duration::from_secs_f64(ps::linger_seconds(0.0, self.cluster));
        let mut stopped_at: Option<Instant> = None;
        replay::serve(
            self.config,
            opts,
            |addr| self.publish("replay", addr, rendezvous, None),
            || {
                if let Some(at) = stopped_at {
                    return Ok(at.elapsed() >= linger);
                }
                if last_check.elapsed() < Duration::from_secs(1) {
                    return Ok(false);
                }
                last_check = Instant::now();
                if servers.is_none() {
                    let addrs = rendezvous.wait_complete(Duration::from_secs_f64(self.args.wait))?;
                    let ps = shard_addrs(&addrs, self.cluster.shards)?;
                    let spec = server_spec(self.config)?;
                    servers = Some(ShardedStore::connect(&ps, spec.layout_hash(), spec.params.len(), &self.options)?);
                }
                let store = servers.as_ref().context("connected above")?;
                if store.report(self.id.rank, 0, &[])?.stop {
                    stopped_at = Some(Instant::now());
                }
                Ok(false)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_the_documented_order() {
        let ppo = TrainConfig::parse(
            "algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 1\n[cluster]\nworkers = 2\nshards = 2\n",
            &[],
        )
        .unwrap();
        let roles = layout(&ppo, &ppo.cluster().unwrap());
        let expected =
            [Role::Shard(0), Role::Shard(1), Role::Worker(WorkerRole::Worker(0)), Role::Worker(WorkerRole::Worker(1))];
        assert_eq!(roles, expected);
        let apex = TrainConfig::parse(
            "algo = \"apex\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 1\n[cluster]\nworkers = 2\n",
            &[],
        )
        .unwrap();
        let roles = layout(&apex, &apex.cluster().unwrap());
        let expected = [
            Role::Shard(0),
            Role::Replay,
            Role::Worker(WorkerRole::Learner),
            Role::Worker(WorkerRole::Actor(0)),
            Role::Worker(WorkerRole::Actor(1)),
        ];
        assert_eq!(roles, expected);
    }
}
