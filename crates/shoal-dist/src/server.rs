//! The in-process parameter server: every role a thread, parameters behind one mutex.
//!
//! Round-based modes (sync, average, EASGD) share one mechanism: workers join the current
//! round with their contribution, the last one to arrive — or the first to find the round's
//! timeout expired — closes it, and everyone waiting is woken with the new version.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use shoal_nn::{io, Optimizer, ParamLayout};

use crate::error::{check_len, DistError, Result};
use crate::store::{ParamStore, PushOutcome, UpdateMode};

/// Counters a server keeps for metrics (`ps/…` in a run's logs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStats {
    /// Parameter updates applied (= version).
    pub updates: u64,
    /// Gradients applied in async mode, and the sum and max of their staleness.
    pub gradients: u64,
    pub staleness_sum: u64,
    pub max_staleness: u64,
    /// Pushes rejected as too stale.
    pub rejected_stale: u64,
    /// Times a worker was dropped from the rounds for missing a round's timeout.
    pub dropped_workers: u64,
    /// Each worker's pushes, by worker index (what `shoal dashboard` shows per worker).
    pub workers: BTreeMap<usize, PushRecord>,
}

/// One worker's pushes as a server saw them.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRecord {
    pub pushes: u64,
    /// When the last one arrived.
    pub last: SystemTime,
    /// Versions the last one was behind (0 in the round-based modes).
    pub staleness: u64,
}

impl ServerStats {
    fn record_push(&mut self, worker: usize, staleness: u64) {
        let record = self.workers.entry(worker).or_insert(PushRecord { pushes: 0, last: SystemTime::now(), staleness });
        record.pushes += 1;
        record.last = SystemTime::now();
        record.staleness = staleness;
    }
}

/// One round of a round-based mode.
struct Round {
    number: u64,
    /// Sum of the contributions (gradients, parameters or EASGD differences), in f64.
    sum: Vec<f64>,
    arrived: Vec<bool>,
    /// Workers dropped by a timed-out round: later rounds do not wait for them until they push
    /// again, so a dead worker costs one timeout, not one per round.
    absent: Vec<bool>,
    count: usize,
    started: Option<Instant>,
}

struct State {
    /// Shared with the senders of pulls in flight ([`ParamServer::snapshot_if_newer`]): an
    /// update writes in place when no one holds them, and copies them only when someone does.
    params: Arc<Vec<f32>>,
    version: u64,
    optimizer: Box<dyn Optimizer<f32>>,
    lr: f32,
    round: Round,
    /// The mean gradient handed to the optimizer.
    scratch: Vec<f32>,
    stats: ServerStats,
    /// The run's result is fixed: pushes change nothing (see [`ParamServer::freeze`]).
    frozen: bool,
}

/// Where and how often a server writes its parameters and optimizer state.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// A safetensors file, replaced atomically (tensors named by `layout`).
    pub path: PathBuf,
    pub layout: ParamLayout,
    /// Every this many updates.
    pub every: u64,
}

const VERSION_KEY: &str = "shoal.ps_version";

/// A parameter server living in this process.
pub struct ParamServer {
    mode: UpdateMode,
    state: Mutex<State>,
    round_closed: Condvar,
    checkpoint: Option<CheckpointPolicy>,
}

impl ParamServer {
    /// A server holding `params`, updating them with `optimizer` at learning rate `lr`.
    pub fn new(params: Vec<f32>, optimizer: Box<dyn Optimizer<f32>>, lr: f32, mode: UpdateMode) -> Self {
        let len = params.len();
        let workers = Self::round_workers(&mode);
        ParamServer {
            mode,
            state: Mutex::new(State {
                params: Arc::new(params),
                version: 0,
                optimizer,
                lr,
                round: Round {
                    number: 0,
                    sum: vec![0.0; len],
                    arrived: vec![false; workers],
                    absent: vec![false; workers],
                    count: 0,
                    started: None,
                },
                scratch: vec![0.0; len],
                stats: ServerStats::default(),
                frozen: false,
            }),
            round_closed: Condvar::new(),
            checkpoint: None,
        }
    }

    /// Checkpoints the parameters, optimizer state and version every `policy.every` updates.
    pub fn with_checkpoints(mut self, policy: CheckpointPolicy) -> Self {
        self.checkpoint = Some(policy);
        self
    }

    /// Restores parameters, optimizer state and version from the checkpoint file (a server
    /// restarted with `--resume`); returns the restored version.
    pub fn resume(&self) -> Result<u64> {
        let policy =
            self.checkpoint.as_ref().ok_or(DistError::WrongMode { mode: "uncheckpointed", operation: "resume" })?;
        self.load(&policy.path, &policy.layout)
    }

    /// Writes parameters, optimizer state and version to `path` atomically. They are encoded
    /// under the lock and written after it: a soak (`shoal bench load --soak`) saw pushes pile
    /// up behind a checkpoint's fsync, and each pile-up grow the server's receive buffers.
    pub fn save(&self, path: &Path, layout: &ParamLayout) -> Result<()> {
        let bytes = Self::encode(&self.lock(), path, layout)?;
        io::atomic_write(path, &bytes)?;
        Ok(())
    }

    fn encode(state: &State, path: &Path, layout: &ParamLayout) -> Result<Vec<u8>> {
        let meta = HashMap::from([(VERSION_KEY.to_string(), state.version.to_string())]);
        Ok(io::encode_flat(path, layout, &state.params, Some(state.optimizer.as_ref()), &meta)?)
    }

    fn write(state: &State, path: &Path, layout: &ParamLayout) -> Result<()> {
        io::atomic_write(path, &Self::encode(state, path, layout)?)?;
        Ok(())
    }

    /// Restores what [`ParamServer::save`] wrote; returns the restored version.
    pub fn load(&self, path: &Path, layout: &ParamLayout) -> Result<u64> {
        let mut state = self.lock();
        let State { params, optimizer, .. } = &mut *state;
        let meta = io::load_flat(path, layout, Arc::make_mut(params).as_mut_slice(), Some(optimizer.as_mut()))?;
        state.version = meta.get(VERSION_KEY).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(state.version)
    }

    /// Counts an update and writes a checkpoint when one is due.
    fn updated(&self, state: &mut State) -> Result<()> {
        state.version += 1;
        state.stats.updates += 1;
        match &self.checkpoint {
            Some(policy) if policy.every > 0 && state.version.is_multiple_of(policy.every) => {
                Self::write(state, &policy.path, &policy.layout)
            }
            _ => Ok(()),
        }
    }

    fn round_workers(mode: &UpdateMode) -> usize {
        match *mode {
            UpdateMode::Sync { workers, .. }
            | UpdateMode::Average { workers, .. }
            | UpdateMode::Easgd { workers, .. } => workers,
            UpdateMode::Async { .. } => 0,
        }
    }

    pub fn mode(&self) -> UpdateMode {
        self.mode
    }

    /// Replaces the parameters with `params` and ignores every later push: the server has
    /// evaluated `params` and stopped the run on them, so what workers push while they hear
    /// the stop must not change the result. Gradients are answered as stale, parameter
    /// pushes with these parameters.
    pub fn freeze(&self, params: &[f32]) -> Result<()> {
        let mut state = self.lock();
        check_len("parameters", params.len(), state.params.len())?;
        Arc::make_mut(&mut state.params).copy_from_slice(params);
        state.frozen = true;
        Ok(())
    }

    /// [`ParamServer::freeze`] on the parameters it holds now.
    pub fn freeze_current(&self) {
        self.lock().frozen = true;
    }

    /// Changes the learning rate (for annealing driven by reported progress).
    pub fn set_lr(&self, lr: f32) {
        self.lock().lr = lr;
    }

    pub fn stats(&self) -> ServerStats {
        self.lock().stats.clone()
    }

    /// Runs `f` on the parameters, version and optimizer under the server's lock: how a
    /// checkpoint reads or restores the server's state consistently.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut Vec<f32>, &mut u64, &mut dyn Optimizer<f32>) -> R) -> R {
        let mut state = self.lock();
        let State { params, version, optimizer, .. } = &mut *state;
        f(Arc::make_mut(params), version, optimizer.as_mut())
    }

    /// Runs `f` on the parameters and version if they are newer than `have` (what a network
    /// server encodes straight from the store, without an intermediate copy).
    pub fn read_if_newer<R>(&self, have: Option<u64>, f: impl FnOnce(&[f32], u64) -> R) -> Option<R> {
        let state = self.lock();
        (have != Some(state.version)).then(|| f(&state.params, state.version))
    }

    /// The parameters and version if newer than `have`, without a copy: the server's own
    /// vector, shared until its next update (which then writes to a copy if this one is still
    /// held). A network server sends from it after releasing the lock, so a 10 MB pull costs
    /// neither a copy (~0.8 ms here) nor other workers' waiting while it is on the wire.
    pub fn snapshot_if_newer(&self, have: Option<u64>) -> Option<(Arc<Vec<f32>>, u64)> {
        let state = self.lock();
        (have != Some(state.version)).then(|| (Arc::clone(&state.params), state.version))
    }

    /// A copy of the current parameters.
    pub fn params(&self) -> Vec<f32> {
        self.lock().params.to_vec()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only mutated by complete, non-panicking updates; a poisoned lock means a
        // caller panicked while waiting, and the parameters are still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the current round: turns the summed contributions into new parameters.
    fn close_round(&self, state: &mut State) -> Result<()> {
        let count = state.round.count.max(1) as f64;
        match self.mode {
            UpdateMode::Sync { .. } => {
                for (g, &s) in state.scratch.iter_mut().zip(&state.round.sum) {
                    *g = (s / count) as f32;
                }
                let lr = state.lr;
                let State { optimizer, params, scratch, .. } = &mut *state;
                optimizer.step(Arc::make_mut(params).as_mut_slice(), scratch, lr);
            }
            UpdateMode::Average { .. } => {
                let State { params, round, .. } = &mut *state;
                for (p, &s) in Arc::make_mut(params).iter_mut().zip(&round.sum) {
                    *p = (s / count) as f32;
                }
            }
            UpdateMode::Easgd { alpha, .. } => {
                let State { params, round, .. } = &mut *state;
                for (p, &s) in Arc::make_mut(params).iter_mut().zip(&round.sum) {
                    *p = (*p as f64 + alpha * s) as f32;
                }
            }
            UpdateMode::Async { .. } => {}
        }
        let round = &mut state.round;
        for (absent, &arrived) in round.absent.iter_mut().zip(&round.arrived) {
            if !arrived && !*absent {
                *absent = true;
                state.stats.dropped_workers += 1;
            }
        }
        round.number += 1;
        round.sum.fill(0.0);
        round.arrived.fill(false);
        round.count = 0;
        round.started = None;
        self.round_closed.notify_all();
        self.updated(state)
    }

    /// Adds worker `worker`'s contribution to the current round and waits until the round
    /// closes (all workers arrived, or the timeout passed since its first arrival).
    fn join_round<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        worker: usize,
        timeout: Duration,
        contribute: impl FnOnce(&mut State),
    ) -> Result<MutexGuard<'a, State>> {
        // A worker that is already in this round (it was dropped and came back) waits for
        // the next one.
        while state.round.arrived[worker] {
            state = self.round_closed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        contribute(&mut state);
        let round = &mut state.round;
        round.arrived[worker] = true;
        round.absent[worker] = false;
        round.count += 1;
        let started = *round.started.get_or_insert_with(Instant::now);
        let my_round = round.number;
        let expected = round.absent.iter().filter(|&&a| !a).count();
        if round.count >= expected {
            self.close_round(&mut state)?;
            return Ok(state);
        }
        let deadline = started + timeout;
        while state.round.number == my_round {
            let now = Instant::now();
            if now >= deadline {
                self.close_round(&mut state)?;
                break;
            }
            state = self.round_closed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        Ok(state)
    }

    fn check_worker(&self, worker: usize) -> Result<()> {
        let workers = Self::round_workers(&self.mode);
        if worker >= workers {
            return Err(DistError::Worker { worker, workers });
        }
        Ok(())
    }
}

impl ParamStore for ParamServer {
    fn len(&self) -> usize {
        self.lock().params.len()
    }

    fn version(&self) -> u64 {
        self.lock().version
    }

    fn pull(&self, have: Option<u64>, out: &mut [f32]) -> Result<Option<u64>> {
        check_len("pull buffer", out.len(), self.len())?;
        Ok(self.read_if_newer(have, |params, version| {
            out.copy_from_slice(params);
            version
        }))
    }

    fn push_gradient(&self, worker: usize, base_version: u64, grad: &[f32]) -> Result<PushOutcome> {
        let mut state = self.lock();
        check_len("gradient", grad.len(), state.params.len())?;
        let staleness = state.version.saturating_sub(base_version);
        state.stats.record_push(worker, staleness);
        if state.frozen {
            return Ok(PushOutcome::Stale { version: state.version, staleness });
        }
        match self.mode {
            UpdateMode::Async { max_staleness } => {
                if max_staleness.is_some_and(|bound| staleness > bound) {
                    state.stats.rejected_stale += 1;
                    return Ok(PushOutcome::Stale { version: state.version, staleness });
                }
                let lr = state.lr;
                let State { optimizer, params, .. } = &mut *state;
                optimizer.step(Arc::make_mut(params).as_mut_slice(), grad, lr);
                self.updated(&mut state)?;
                state.stats.gradients += 1;
                state.stats.staleness_sum += staleness;
                state.stats.max_staleness = state.stats.max_staleness.max(staleness);
                Ok(PushOutcome::Applied { version: state.version, staleness })
            }
            UpdateMode::Sync { timeout, .. } => {
                self.check_worker(worker)?;
                if staleness > 0 {
                    // Computed before the last update (e.g. after being dropped): pull and redo.
                    state.stats.rejected_stale += 1;
                    return Ok(PushOutcome::Stale { version: state.version, staleness });
                }
                let state = self.join_round(state, worker, timeout, |s| {
                    s.round.sum.iter_mut().zip(grad).for_each(|(a, &g)| *a += g as f64);
                })?;
                Ok(PushOutcome::Applied { version: state.version, staleness: 0 })
            }
            _ => Err(DistError::WrongMode { mode: self.mode.name(), operation: "gradients" }),
        }
    }

    fn push_params(&self, worker: usize, params: &mut [f32]) -> Result<PushOutcome> {
        let mut state = self.lock();
        check_len("parameters", params.len(), state.params.len())?;
        state.stats.record_push(worker, 0);
        if state.frozen {
            params.copy_from_slice(&state.params);
            return Ok(PushOutcome::Applied { version: state.version, staleness: 0 });
        }
        match self.mode {
            UpdateMode::Average { timeout, .. } => {
                self.check_worker(worker)?;
                let state = self.join_round(state, worker, timeout, |s| {
                    s.round.sum.iter_mut().zip(params.iter()).for_each(|(a, &p)| *a += p as f64);
                })?;
                params.copy_from_slice(&state.params);
                Ok(PushOutcome::Applied { version: state.version, staleness: 0 })
            }
            UpdateMode::Easgd { alpha, timeout, .. } => {
                self.check_worker(worker)?;
                let state = self.join_round(state, worker, timeout, |s| {
                    // The center stays fixed until the round closes, so θᵢ moves against it now.
                    for ((a, p), &center) in s.round.sum.iter_mut().zip(params.iter_mut()).zip(s.params.iter()) {
                        let diff = *p as f64 - center as f64;
                        *a += diff;
                        *p = (*p as f64 - alpha * diff) as f32;
                    }
                })?;
                Ok(PushOutcome::Applied { version: state.version, staleness: 0 })
            }
            _ => Err(DistError::WrongMode { mode: self.mode.name(), operation: "parameter pushes" }),
        }
    }
}
