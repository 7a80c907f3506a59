use crate::env::{Env, Snapshot};
use crate::error::Result;
use crate::space::Space;

use super::{check_action_count, Actions, AutoresetMode, Batch, EnvSlice, VecEnv};

/// Steps its envs one after another on the calling thread (Gymnasium's `SyncVectorEnv`).
/// The right choice for cheap envs on few cores, and inside workers that own one core each.
/// Takes a `Vec` of envs or any other [`EnvSlice`] (CartPole's lanes).
pub struct SyncVectorEnv<S: EnvSlice = Vec<Box<dyn Env>>> {
    envs: S,
    batch: Batch,
    observation_space: Space,
    action_space: Space,
}

impl<S: EnvSlice> SyncVectorEnv<S> {
    /// Fails when `envs` is empty or the envs' spaces differ.
    pub fn new(envs: S) -> Result<Self> {
        let (observation_space, action_space) = envs.spaces()?;
        Ok(SyncVectorEnv {
            batch: Batch::new(envs.num_envs(), observation_space.flat_dim()),
            envs,
            observation_space,
            action_space,
        })
    }

    /// The envs, e.g. to read a wrapper's statistics.
    pub fn envs(&self) -> &S {
        &self.envs
    }
}

impl<S: EnvSlice> VecEnv for SyncVectorEnv<S> {
    fn num_envs(&self) -> usize {
        self.envs.num_envs()
    }
    fn single_observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn single_action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<()> {
        self.envs.reset(seed, 0, self.batch.all_rows())
    }

    fn step(&mut self, actions: Actions<'_>) -> Result<()> {
        let per_env = check_action_count(&actions, self.envs.num_envs(), &self.action_space)?;
        self.envs.step(actions, per_env, 0, self.batch.all_rows())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        super::pack_snapshot(self.envs.snapshots()?, &self.batch)
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let (envs, batch) = super::unpack_snapshot(snapshot, self.envs.num_envs())?;
        self.envs.restore(&envs)?;
        self.batch = batch;
        Ok(())
    }

    fn set_autoreset_mode(&mut self, mode: AutoresetMode) -> Result<()> {
        self.batch.autoreset = mode;
        Ok(())
    }

    fn batch(&self) -> &Batch {
        &self.batch
    }
}
