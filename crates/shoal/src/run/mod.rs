//! A run directory: everything one training run leaves behind.
//!
//! ```text
//! runs/cartpole-ppo-s1/
//!   config.toml            the resolved config (after --set and --seed)
//!   metrics.csv            one row per iteration
//!   events.out.tfevents.*  the same scalars for TensorBoard (one file per session)
//!   checkpoints/latest/    the newest checkpoint (replaced atomically)
//!   summary.json           env steps, wall time, final and best return, steps/s
//!   cluster-status.json    an embedded cluster's servers and workers, now (`shoal dashboard`)
//!   ps/                    a multi-process run's servers: metrics.csv, ps-shard*.status.json
//! ```

pub mod csv;
pub mod tensorboard;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use shoal_algo::TrainConfig;

/// Paths inside a run directory.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    /// A new run directory: `out`, or `runs/<name>` (with `-2`, `-3`, … if taken).
    pub fn create(out: Option<&Path>, name: &str) -> Result<Self> {
        let root = match out {
            Some(path) => path.to_path_buf(),
            None => {
                let base = PathBuf::from("runs").join(name);
                let mut candidate = base.clone();
                let mut n = 2;
                while candidate.exists() {
                    candidate = PathBuf::from(format!("{}-{n}", base.display()));
                    n += 1;
                }
                candidate
            }
        };
        if root.join("config.toml").exists() {
            anyhow::bail!(
                "{} already holds a run; continue it with --resume {0} or pick another --out",
                root.display()
            );
        }
        std::fs::create_dir_all(root.join("checkpoints")).with_context(|| format!("creating {}", root.display()))?;
        Ok(RunDir { root })
    }

    /// The run directory every task of a multi-host run shares (`shoal run --out`): created
    /// if missing and reused as it is, since a restarted task continues in it.
    pub fn shared(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join("checkpoints")).with_context(|| format!("creating {}", root.display()))?;
        Ok(RunDir { root: root.to_path_buf() })
    }

    /// An existing run directory, for `--resume`.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("config.toml").exists() {
            anyhow::bail!(
                "{} is not a run directory (no config.toml); pass the directory `shoal train` created",
                root.display()
            );
        }
        Ok(RunDir { root: root.to_path_buf() })
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Records the resolved config (what `eval`, `plot` and `train --resume` read back).
    pub fn write_config(&self, config: &TrainConfig) -> Result<()> {
        std::fs::write(self.config(), config.to_toml()).with_context(|| format!("writing {}", self.config().display()))
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoints").join("latest")
    }

    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }

    pub fn cluster_status(&self) -> PathBuf {
        self.root.join(CLUSTER_STATUS)
    }
}

/// An embedded cluster run's status file (see [`shoal_dist::ClusterStatus`]).
pub const CLUSTER_STATUS: &str = "cluster-status.json";

/// Finds the `config.toml` that belongs to a checkpoint or run directory.
pub fn find_config(path: &Path) -> Result<PathBuf> {
    path.ancestors()
        .take(4)
        .map(|dir| dir.join("config.toml"))
        .find(|candidate| candidate.exists())
        .with_context(|| format!("no config.toml in {} or its parent directories", path.display()))
}
