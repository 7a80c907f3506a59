//! Who a task is, told by the cluster engine that started it. Shoal never places processes
//! itself: Slurm's `srun`, `mpirun`, a Kubernetes Indexed Job or a person starts the same
//! `shoal run CONFIG` once per task, and each task reads its rank, the world size and the
//! address of rank 0's rendezvous from its environment.
//!
//! | engine | rank | world | rendezvous host |
//! | --- | --- | --- | --- |
//! | flags / plain env | `--rank` / `SHOAL_RANK` | `--world` / `SHOAL_WORLD` | `--coordinator` / `SHOAL_COORDINATOR` |
//! | Slurm (`srun`) | `SLURM_PROCID` | `SLURM_NTASKS` | first node of `SLURM_JOB_NODELIST` |
//! | Open MPI (`mpirun`) | `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `SHOAL_COORDINATOR` |
//! | MPICH / Intel MPI | `PMI_RANK` | `PMI_SIZE` | `SHOAL_COORDINATOR` |
//! | Kubernetes Indexed Job | `JOB_COMPLETION_INDEX` | `SHOAL_WORLD` | `SHOAL_COORDINATOR` (pod 0 behind the headless Service) |
//!
//! Flags win over the environment, and `SHOAL_COORDINATOR` over the Slurm node list (an
//! sbatch script may set it to the first node's address). A coordinator without a port gets
//! [`DEFAULT_RENDEZVOUS_PORT`].

use crate::error::{DistError, Result};

/// The port of rank 0's rendezvous when the coordinator address names none (the port
/// PyTorch's elastic launcher uses too, so cluster firewalls often have it open).
pub const DEFAULT_RENDEZVOUS_PORT: u16 = 29400;

/// The engine a task's identity came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Flags,
    Slurm,
    OpenMpi,
    Pmi,
    Kubernetes,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Flags => "flags/SHOAL_* variables",
            Engine::Slurm => "Slurm",
            Engine::OpenMpi => "Open MPI",
            Engine::Pmi => "MPICH/PMI",
            Engine::Kubernetes => "Kubernetes Indexed Job",
        }
    }
}

/// One task of a run: its rank in `0..world` and where rank 0's rendezvous listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    pub rank: usize,
    pub world: usize,
    /// `host:port` of rank 0's rendezvous.
    pub coordinator: String,
    pub engine: Engine,
}

/// What the command line says, before the environment is asked.
#[derive(Debug, Clone, Default)]
pub struct IdentityFlags {
    pub rank: Option<usize>,
    pub world: Option<usize>,
    pub coordinator: Option<String>,
}

/// The rank variables each engine sets, in the order they are tried.
const RANK_VARS: [(&str, Engine); 5] = [
    ("SLURM_PROCID", Engine::Slurm),
    ("OMPI_COMM_WORLD_RANK", Engine::OpenMpi),
    ("PMI_RANK", Engine::Pmi),
    ("JOB_COMPLETION_INDEX", Engine::Kubernetes),
    ("SHOAL_RANK", Engine::Flags),
];

/// The world-size variable of each engine (a Kubernetes Job has none: the chart sets
/// `SHOAL_WORLD`).
fn world_var(engine: Engine) -> &'static str {
    match engine {
        Engine::Slurm => "SLURM_NTASKS",
        Engine::OpenMpi => "OMPI_COMM_WORLD_SIZE",
        Engine::Pmi => "PMI_SIZE",
        Engine::Kubernetes | Engine::Flags => "SHOAL_WORLD",
    }
}

impl TaskIdentity {
    /// This process's identity, from `flags` and the process environment.
    pub fn discover(flags: &IdentityFlags) -> Result<Self> {
        Self::from_env(flags, |name| std::env::var(name).ok())
    }

    /// The same, reading variables through `var` (tests pass a map).
    pub fn from_env(flags: &IdentityFlags, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let found = RANK_VARS.iter().find_map(|&(name, engine)| var(name).map(|value| (name, value, engine)));
        let engine = match (flags.rank, &found) {
            (Some(_), _) | (None, None) => found.as_ref().map_or(Engine::Flags, |f| f.2),
            (None, Some((_, _, engine))) => *engine,
        };
        let rank = match (flags.rank, &found) {
            (Some(rank), _) => rank,
            (None, Some((name, value, _))) => parse_count(name, value)?,
            (None, None) => {
                return Err(DistError::Setup(
                    "no rank: start `shoal run` under srun, mpirun or a Kubernetes Indexed Job, or pass --rank (or set SHOAL_RANK)".into(),
                ))
            }
        };
        let world = match flags.world {
            Some(world) => world,
            None => {
                let name = world_var(engine);
                let value = var(name).or_else(|| var("SHOAL_WORLD")).ok_or_else(|| {
                    DistError::Setup(format!(
                        "no world size: {} sets no {name}; pass --world or set SHOAL_WORLD",
                        engine.name()
                    ))
                })?;
                parse_count(name, &value)?
            }
        };
        if rank >= world {
            return Err(DistError::Setup(format!("rank {rank} is out of range for a world of {world} tasks")));
        }
        let coordinator = match (&flags.coordinator, var("SHOAL_COORDINATOR")) {
            (Some(addr), _) => addr.clone(),
            (None, Some(addr)) => addr,
            (None, None) => match var("SLURM_JOB_NODELIST").or_else(|| var("SLURM_NODELIST")) {
                Some(list) => first_slurm_host(&list)?,
                None => {
                    return Err(DistError::Setup(format!(
                        "no coordinator: {} names no rendezvous host; pass --coordinator HOST[:PORT] or set SHOAL_COORDINATOR (rank 0's address)",
                        engine.name()
                    )))
                }
            },
        };
        Ok(TaskIdentity { rank, world, coordinator: with_default_port(&coordinator), engine })
    }
}

fn parse_count(name: &str, value: &str) -> Result<usize> {
    value.trim().parse().map_err(|_| DistError::Setup(format!("{name} = {value:?} is not a non-negative whole number")))
}

/// `host` or `host:port` (also `[v6]:port`), with the default rendezvous port added when
/// none is given.
pub fn with_default_port(addr: &str) -> String {
    let has_port = match addr.rsplit_once(':') {
        Some((host, port)) => port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']')),
        None => false,
    };
    if has_port {
        addr.to_string()
    } else if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]:{DEFAULT_RENDEZVOUS_PORT}")
    } else {
        format!("{addr}:{DEFAULT_RENDEZVOUS_PORT}")
    }
}

/// The first host of a Slurm node list: `n[1-3,7],gpu05` → `n1`, `node[007-009]` →
/// `node007` (zero padding kept), `login` → `login`. Task 0 of a job step runs there.
pub fn first_slurm_host(list: &str) -> Result<String> {
    let list = list.trim();
    let bad = || DistError::Setup(format!("cannot read the Slurm node list {list:?}"));
    let first_entry_end = list.find(',').filter(|&comma| list.find('[').is_none_or(|bracket| comma < bracket));
    let entry = &list[..first_entry_end.unwrap_or(list.len())];
    match entry.split_once('[') {
        None if !entry.is_empty() => Ok(entry.to_string()),
        None => Err(bad()),
        Some((prefix, ranges)) => {
            let first = ranges.split([',', ']']).next().ok_or_else(bad)?;
            let start = first.split('-').next().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
            let start = start.ok_or_else(bad)?;
            let suffix = ranges.split_once(']').map_or("", |(_, rest)| rest);
            let suffix = &suffix[..suffix.find(',').unwrap_or(suffix.len())];
            Ok(format!("{prefix}{start}{suffix}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn identity(flags: IdentityFlags, vars: &[(&str, &str)]) -> Result<TaskIdentity> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TaskIdentity::from_env(&flags, |name| vars.get(name).cloned())
    }

    #[test]
    fn slurm_rank_world_and_first_node() {
        let id = identity(
            IdentityFlags::default(),
            &[("SLURM_PROCID", "2"), ("SLURM_NTASKS", "4"), ("SLURM_JOB_NODELIST", "n[1-3]")],
        )
        .unwrap();
        assert_eq!(id, TaskIdentity { rank: 2, world: 4, coordinator: "n1:29400".into(), engine: Engine::Slurm });
    }

    #[test]
    fn open_mpi_and_kubernetes_need_a_coordinator_and_flags_win() {
        let err = identity(IdentityFlags::default(), &[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SHOAL_COORDINATOR"), "{err}");
        let id = identity(
            IdentityFlags::default(),
            &[("JOB_COMPLETION_INDEX", "1"), ("SHOAL_WORLD", "3"), ("SHOAL_COORDINATOR", "shoal-0.shoal:7000")],
        )
        .unwrap();
        assert_eq!(
            (id.rank, id.world, id.coordinator.as_str(), id.engine),
            (1, 3, "shoal-0.shoal:7000", Engine::Kubernetes)
        );
        let flags = IdentityFlags { rank: Some(0), world: Some(5), coordinator: Some("10.77.0.1".into()) };
        let id = identity(flags, &[("SLURM_PROCID", "3"), ("SLURM_NTASKS", "4")]).unwrap();
        assert_eq!((id.rank, id.world, id.coordinator.as_str()), (0, 5, "10.77.0.1:29400"));
    }

    #[test]
    fn bad_identities_are_named() {
        let err = identity(IdentityFlags::default(), &[]).unwrap_err().to_string();
        assert!(err.contains("--rank"), "{err}");
        let err = identity(
            IdentityFlags::default(),
            &[("SLURM_PROCID", "4"), ("SLURM_NTASKS", "4"), ("SHOAL_COORDINATOR", "h")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rank 4 is out of range"), "{err}");
        let err = identity(IdentityFlags::default(), &[("PMI_RANK", "x"), ("PMI_SIZE", "2")]).unwrap_err().to_string();
        assert!(err.contains("PMI_RANK"), "{err}");
    }

    #[test]
    fn slurm_node_lists() {
        for (list, first) in [
            ("n[1-3,7],gpu05", "n1"),
            ("node[007-009]", "node007"),
            ("login", "login"),
            ("a1,b[2-3]", "a1"),
            ("rack[4]-x", "rack4-x"),
        ] {
            assert_eq!(first_slurm_host(list).unwrap(), first, "{list}");
        }
        assert!(first_slurm_host("n[x-y]").is_err());
    }

    #[test]
    fn default_port() {
        assert_eq!(with_default_port("host"), "host:29400");
        assert_eq!(with_default_port("host:1234"), "host:1234");
        assert_eq!(with_default_port("::1"), "[::1]:29400");
        assert_eq!(with_default_port("[::1]:80"), "[::1]:80");
    }
}
