use crate::env::{Env, Snapshot};
use crate::error::Result;
use crate::space::Space;

use super::{check_action_count, common_spaces, reset_envs, step_envs, Actions, AutoresetMode, Batch, VecEnv};

/// Steps its envs one after another on the calling thread (Gymnasium's `SyncVectorEnv`).
/// The right choice for cheap envs on few cores, and inside workers that own one core each.
pub struct SyncVectorEnv<E = Box<dyn Env>> {
    envs: Vec<E>,
    batch: Batch,
    observation_space: Space,
    action_space: Space,
}

impl<E: Env> SyncVectorEnv<E> {
    /// Fails when `envs` is empty or the envs' spaces differ.
    pub fn new(envs: Vec<E>) -> Result<Self> {
        let (observation_space, action_space) = common_spaces(&envs)?;
        Ok(SyncVectorEnv {
            batch: Batch::new(envs.len(), observation_space.flat_dim()),
            envs,
            observation_space,
            action_space,
        })
    }

    /// The envs, e.g. to read a wrapper's statistics.
    pub fn envs(&self) -> &[E] {
        &self.envs
    }
}

impl<E: Env> VecEnv for SyncVectorEnv<E> {
    fn num_envs(&self) -> usize {
        self.envs.len()
    }
    fn single_observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn single_action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<()> {
        reset_envs(&mut self.envs, seed, 0, self.batch.all_rows())
    }

    fn step(&mut self, actions: Actions<'_>) -> Result<()> {
        let per_env = check_action_count(&actions, self.envs.len(), &self.action_space)?;
        step_envs(&mut self.envs, actions, per_env, 0, self.batch.all_rows())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let envs = self.envs.iter().map(|env| env.snapshot()).collect::<Result<Vec<_>>>()?;
        super::pack_snapshot(envs, &self.batch)
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let (envs, batch) = super::unpack_snapshot(snapshot, self.envs.len())?;
        for (env, s) in self.envs.iter_mut().zip(&envs) {
            env.restore(s)?;
        }
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
