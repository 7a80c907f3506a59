//! Checkpoint directories: written beside the target and renamed into place, so a crash at any
//! moment leaves either the previous checkpoint or the new one, never a mix.
//!
//! Layout: `model.safetensors` (parameters and optimizer state, by tensor name), `state.json`
//! (counters, RNG, env snapshots, episode statistics), plus algorithm extras (`target.safetensors`,
//! `replay.safetensors`, `q_table.safetensors`).

use std::fs;
use std::path::{Path, PathBuf};

use rand_pcg::Pcg64Mcg;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_env::{Snapshot, VecEnv};

use crate::agent::{Agent, LoopState};
use crate::episodes::EpisodeTracker;
use crate::error::{io_err, AlgoError, Result};

/// The state every agent keeps besides its model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommonState {
    pub env_steps: u64,
    pub rng: Pcg64Mcg,
    pub episodes: EpisodeTracker,
    pub env: Snapshot,
}

impl CommonState {
    /// Captures the counters, RNG, episode window and vector env.
    pub fn capture(env_steps: u64, rng: &Pcg64Mcg, episodes: &EpisodeTracker, env: &mut dyn VecEnv) -> Result<Self> {
        Ok(CommonState { env_steps, rng: rng.clone(), episodes: episodes.clone(), env: env.snapshot()? })
    }
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| AlgoError::Io { path: path.display().to_string(), message: e.to_string() })?;
    shoal_nn::io::atomic_write(path, text.as_bytes())?;
    Ok(())
}

/// Reads JSON written by [`write_json`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| AlgoError::Io { path: path.display().to_string(), message: e.to_string() })
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!(".{name}.{suffix}"))
}

/// Saves `agent` and the training loop's counters into the directory `dir`, replacing any
/// previous checkpoint there atomically.
pub fn save_checkpoint(agent: &mut dyn Agent, loop_state: &LoopState, dir: &Path) -> Result<()> {
    let tmp = sibling(dir, "tmp");
    let old = sibling(dir, "old");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    agent.save(&tmp)?;
    write_json(&tmp.join("loop.json"), loop_state)?;
    if dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        fs::rename(dir, &old).map_err(io_err(dir))?;
    }
    fs::rename(&tmp, dir).map_err(io_err(dir))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(())
}

/// Whether `dir` holds a checkpoint [`load_checkpoint`] can read (itself, or the previous one
/// left under its `.old` name by a save interrupted between its two renames).
pub fn checkpoint_exists(dir: &Path) -> bool {
    dir.join("state.json").exists() || sibling(dir, "old").join("state.json").exists()
}

/// Loads a checkpoint directory into `agent` and returns the loop's counters. If a crash
/// interrupted a save between its two renames, the previous checkpoint is still complete
/// under its `.old` name and is used.
pub fn load_checkpoint(agent: &mut dyn Agent, dir: &Path) -> Result<LoopState> {
    let old = sibling(dir, "old");
    let source = if !dir.exists() && old.exists() { old } else { dir.to_path_buf() };
    if !source.join("state.json").exists() {
        return Err(AlgoError::Io {
            path: dir.display().to_string(),
            message: "no checkpoint here (state.json missing)".into(),
        });
    }
    agent.load(&source)?;
    read_json(&source.join("loop.json"))
}
