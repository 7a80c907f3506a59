//! A vector env whose envs are split over persistent worker threads.
//!
//! The calling thread steps the first slice of envs itself, straight into the shared batch;
//! each of the other `threads − 1` workers owns a slice of envs and a small batch of its own.
//! A step hands every worker its actions, runs the caller's slice, then copies each worker's
//! rows into the contiguous batch. That copy (a few KB) costs far less than the envs' stepping
//! and keeps the whole exchange in safe code: no buffer is ever shared mutably across threads.
//!
//! Workers wait for commands by spinning briefly, then parking; the caller wakes them with
//! `unpark`, so an idle vector env costs no CPU while the learner trains.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::space::Space;

use super::{check_action_count, common_spaces, reset_envs, step_envs, Actions, Batch, VecEnv};

/// Spins before a waiting thread parks (worker) or yields (caller): long enough to cover a
/// step of a cheap env batch, short enough not to burn a core while a learner trains.
const SPIN_LIMIT: u32 = 1 << 14;

#[derive(Debug, Clone, Copy)]
enum Command {
    Reset(Option<u64>),
    Step,
    Stop,
}

/// Actions copied into a worker's own buffer; keeps its capacity between steps.
#[derive(Debug)]
enum OwnedActions {
    Discrete(Vec<i64>),
    Continuous(Vec<f32>),
    MultiDiscrete(Vec<i64>),
}

impl OwnedActions {
    fn copy_from(&mut self, actions: Actions<'_>) {
        match (self, actions) {
            (OwnedActions::Discrete(buf), Actions::Discrete(v))
            | (OwnedActions::MultiDiscrete(buf), Actions::MultiDiscrete(v)) => {
                buf.clear();
                buf.extend_from_slice(v);
            }
            (OwnedActions::Continuous(buf), Actions::Continuous(v)) => {
                buf.clear();
                buf.extend_from_slice(v);
            }
            (this, Actions::Discrete(v)) => *this = OwnedActions::Discrete(v.to_vec()),
            (this, Actions::Continuous(v)) => *this = OwnedActions::Continuous(v.to_vec()),
            (this, Actions::MultiDiscrete(v)) => *this = OwnedActions::MultiDiscrete(v.to_vec()),
        }
    }

    fn as_actions(&self) -> Actions<'_> {
        match self {
            OwnedActions::Discrete(v) => Actions::Discrete(v),
            OwnedActions::Continuous(v) => Actions::Continuous(v),
            OwnedActions::MultiDiscrete(v) => Actions::MultiDiscrete(v),
        }
    }
}

/// What a worker owns and works on; the caller touches it only between commands.
struct Chunk<E> {
    envs: Vec<E>,
    first_index: usize,
    per_env: usize,
    batch: Batch,
    actions: OwnedActions,
    command: Command,
    result: Result<()>,
}

impl<E: Env> Chunk<E> {
    fn run(&mut self) -> Result<()> {
        match self.command {
            Command::Reset(seed) => {
                reset_envs(&mut self.envs, seed, self.first_index, &mut self.batch)
            }
            Command::Step => step_envs(
                &mut self.envs,
                self.actions.as_actions(),
                self.per_env,
                self.first_index,
                &mut self.batch,
            ),
            Command::Stop => Ok(()),
        }
    }
}

struct Shared<E> {
    chunk: Mutex<Chunk<E>>,
    /// Bumped by the caller for every command.
    issued: AtomicU64,
    /// Set by the worker to the command number it finished.
    completed: AtomicU64,
}

struct Worker<E> {
    shared: Arc<Shared<E>>,
    handle: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside an env is caught in the worker before the guard drops, so poisoning only
    // happens if the caller itself panicked mid-copy; the data is still consistent then.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker_loop<E: Env>(shared: Arc<Shared<E>>) {
    let mut seen = 0;
    loop {
        let mut spins = 0;
        let command_number = loop {
            let issued = shared.issued.load(Ordering::Acquire);
            if issued != seen {
                break issued;
            }
            if spins < SPIN_LIMIT {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::park();
            }
        };
        seen = command_number;
        let mut chunk = lock(&shared.chunk);
        if let Command::Stop = chunk.command {
            return;
        }
        chunk.result = catch_unwind(AssertUnwindSafe(|| chunk.run())).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(EnvError::WorkerFailed(format!(
                "an env panicked: {message}"
            )))
        });
        drop(chunk);
        shared.completed.store(command_number, Ordering::Release);
    }
}

/// Steps envs on `threads` threads: the caller's and `threads − 1` persistent workers.
pub struct ThreadedVectorEnv<E: Env + 'static = Box<dyn Env>> {
    local_envs: Vec<E>,
    workers: Vec<Worker<E>>,
    batch: Batch,
    command_number: u64,
    failed: Option<EnvError>,
    observation_space: Space,
    action_space: Space,
}

impl<E: Env + 'static> ThreadedVectorEnv<E> {
    /// Splits `envs` into `threads` contiguous slices (at most one per env).
    pub fn new(mut envs: Vec<E>, threads: usize) -> Result<Self> {
        let (observation_space, action_space) = common_spaces(&envs)?;
        let num_envs = envs.len();
        let obs_dim = observation_space.flat_dim();
        let threads = threads.clamp(1, num_envs);
        let sizes: Vec<usize> = (0..threads)
            .map(|t| num_envs / threads + usize::from(t < num_envs % threads))
            .collect();
        let mut rest = envs.split_off(sizes[0]);
        let mut workers = Vec::with_capacity(threads - 1);
        let mut first_index = sizes[0];
        for (t, &size) in sizes.iter().enumerate().skip(1) {
            let tail = rest.split_off(size);
            let chunk = Chunk {
                envs: std::mem::replace(&mut rest, tail),
                first_index,
                per_env: 0,
                batch: Batch::new(size, obs_dim),
                actions: OwnedActions::Discrete(Vec::new()),
                command: Command::Step,
                result: Ok(()),
            };
            first_index += size;
            let shared = Arc::new(Shared {
                chunk: Mutex::new(chunk),
                issued: AtomicU64::new(0),
                completed: AtomicU64::new(0),
            });
            let for_thread = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name(format!("shoal-vecenv-{t}"))
                .spawn(move || worker_loop(for_thread))
                .map_err(|e| {
                    EnvError::WorkerFailed(format!("could not start a worker thread: {e}"))
                })?;
            workers.push(Worker {
                shared,
                handle: Some(handle),
            });
        }
        Ok(ThreadedVectorEnv {
            local_envs: envs,
            workers,
            batch: Batch::new(num_envs, obs_dim),
            command_number: 0,
            failed: None,
            observation_space,
            action_space,
        })
    }

    /// Number of threads stepping envs, the caller's included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Sends `command` to every worker (preparing each chunk with `prepare`), runs the
    /// caller's slice with `local`, then gathers the workers' rows.
    fn run(
        &mut self,
        command: Command,
        mut prepare: impl FnMut(&mut Chunk<E>),
        local: impl FnOnce(&mut [E], &mut Batch) -> Result<()>,
    ) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.command_number += 1;
        for worker in &self.workers {
            let mut chunk = lock(&worker.shared.chunk);
            chunk.command = command;
            prepare(&mut chunk);
            drop(chunk);
            worker
                .shared
                .issued
                .store(self.command_number, Ordering::Release);
            if let Some(handle) = &worker.handle {
                handle.thread().unpark();
            }
        }
        let mut result = local(&mut self.local_envs, &mut self.batch);
        for worker in &self.workers {
            wait_for(worker, self.command_number)?;
            let chunk = lock(&worker.shared.chunk);
            if result.is_ok() {
                result = chunk.result.clone();
            }
            self.batch.copy_rows_from(&chunk.batch, chunk.first_index);
        }
        if let Err(err @ EnvError::WorkerFailed(_)) = &result {
            self.failed = Some(err.clone());
        }
        result
    }
}

/// Waits until `worker` finished command `number`; fails if its thread is gone.
fn wait_for<E>(worker: &Worker<E>, number: u64) -> Result<()> {
    let mut spins = 0u32;
    while worker.shared.completed.load(Ordering::Acquire) != number {
        if spins < SPIN_LIMIT {
            spins += 1;
            std::hint::spin_loop();
        } else {
            if worker.handle.as_ref().is_none_or(|h| h.is_finished()) {
                return Err(EnvError::WorkerFailed("a worker thread exited".into()));
            }
            thread::yield_now();
        }
    }
    Ok(())
}

impl<E: Env + 'static> VecEnv for ThreadedVectorEnv<E> {
    fn num_envs(&self) -> usize {
        self.batch.num_envs
    }
    fn single_observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn single_action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<()> {
        self.run(
            Command::Reset(seed),
            |_| {},
            |envs, batch| reset_envs(envs, seed, 0, batch),
        )
    }

    fn step(&mut self, actions: Actions<'_>) -> Result<()> {
        let per_env = check_action_count(&actions, self.batch.num_envs, &self.action_space)?;
        let local_count = self.local_envs.len();
        self.run(
            Command::Step,
            |chunk| {
                let end = chunk.first_index + chunk.envs.len();
                chunk.per_env = per_env;
                chunk
                    .actions
                    .copy_from(actions.slice(chunk.first_index, end, per_env));
            },
            |envs, batch| {
                step_envs(
                    envs,
                    actions.slice(0, local_count, per_env),
                    per_env,
                    0,
                    batch,
                )
            },
        )
    }

    fn batch(&self) -> &Batch {
        &self.batch
    }
}

impl<E: Env + 'static> Drop for ThreadedVectorEnv<E> {
    fn drop(&mut self) {
        self.command_number += 1;
        for worker in &mut self.workers {
            lock(&worker.shared.chunk).command = Command::Stop;
            worker
                .shared
                .issued
                .store(self.command_number, Ordering::Release);
            if let Some(handle) = worker.handle.take() {
                handle.thread().unpark();
                // A worker that panicked outside an env has nothing left to clean up.
                let _ = handle.join();
            }
        }
    }
}
