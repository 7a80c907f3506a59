//! Simulated workers for `shoal bench load`: each is a thread that speaks the real protocol
//! through the real clients ([`ShardedStore`] of [`GrpcStore`]s over the data plane,
//! [`GrpcReplay`]) — push a gradient and pull the parameters after it, insert a batch of
//! transitions — at a set rate, without an env or a network to compute. Threads, not async
//! tasks, because the data plane and the clients are blocking by design (a worker is a plain
//! thread); a simulated worker sleeps between its calls, so hundreds fit on two cores.
//!
//! Every call's latency lands in the worker's [`Tally`], which a reporter swaps out per
//! measuring window.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use shoal_dist::replay::Row;
use shoal_dist::{
    ClientOptions, Encoding, GrpcReplay, GrpcStore, ParamStore, ReplayStore, Sample, ShardedStore, Token,
};

/// Rows per actor insert and per learner sample: an Ape-X actor's batch and learner's batch.
pub const INSERT_ROWS: usize = 64;
pub const SAMPLE_ROWS: usize = 512;

/// What the simulated workers talk to.
#[derive(Clone)]
pub struct Targets {
    /// One address per parameter-server shard (empty: no parameter-server calls).
    pub shards: Vec<String>,
    /// Parameters of the whole model.
    pub len: usize,
    /// The replay's address and observation width (`None`: no inserts).
    pub replay: Option<(String, usize)>,
    pub token: Token,
    /// Each worker's calls per second (0: as fast as the servers answer).
    pub rate: f64,
}

impl Targets {
    fn options(&self) -> ClientOptions {
        ClientOptions {
            tls: None,
            token: self.token.clone(),
            encoding: Encoding::F32Le,
            retry_for: Duration::from_secs(60),
        }
    }
}

/// Latencies (µs) and failures of one kind of call since the last swap.
#[derive(Default, Clone)]
pub struct Calls {
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    /// The last error's message, to print when something failed.
    pub last_error: Option<String>,
}

impl Calls {
    fn record<T>(&mut self, started: Instant, result: Result<T, shoal_dist::DistError>) -> Option<T> {
        match result {
            Ok(value) => {
                self.latencies_us.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                Some(value)
            }
            Err(e) => {
                self.errors += 1;
                self.last_error = Some(e.to_string());
                None
            }
        }
    }

    /// Adds `other`'s calls to these.
    pub fn merge(&mut self, other: Calls) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}

/// One worker's calls since the last swap, by kind.
#[derive(Default, Clone)]
pub struct Tally {
    /// Push + pull of the parameters.
    pub push_pull: Calls,
    /// Replay inserts (actors) and samples with their priority updates (the learner).
    pub insert: Calls,
    pub sample: Calls,
    /// Calls the servers answered busy (each retried).
    pub refusals: u64,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.push_pull.merge(other.push_pull);
        self.insert.merge(other.insert);
        self.sample.merge(other.sample);
        self.refusals += other.refusals;
    }
}

/// Running simulated workers, each with its tally.
pub struct Workers {
    stop: Arc<AtomicBool>,
    /// Workers connected to every server.
    connected: Arc<AtomicUsize>,
    tallies: Vec<Arc<Mutex<Tally>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers numbered from `first`, and with `learner` one replay learner
    /// that samples and updates priorities as fast as it can.
    pub fn start(targets: &Targets, first: usize, count: usize, learner: bool) -> Workers {
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicUsize::new(0));
        let mut workers = Workers { stop, connected, tallies: Vec::new(), threads: Vec::new() };
        for worker in first..first + count {
            workers.spawn(targets, move |targets, tally, running| act(targets, worker, tally, running));
        }
        if learner && targets.replay.is_some() {
            workers.spawn(targets, learn);
        }
        workers
    }

    fn spawn(
        &mut self,
        targets: &Targets,
        body: impl FnOnce(&Targets, &Mutex<Tally>, &Running) -> Result<()> + Send + 'static,
    ) {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let running = Running { stop: Arc::clone(&self.stop), connected: Arc::clone(&self.connected) };
        let (targets, mine) = (targets.clone(), Arc::clone(&tally));
        self.threads.push(std::thread::spawn(move || {
            if let Err(e) = body(&targets, &mine, &running) {
                let mut tally = lock(&mine);
                tally.push_pull.errors += 1;
                tally.push_pull.last_error = Some(format!("could not start: {e:#}"));
            }
        }));
        self.tallies.push(tally);
    }

    /// Waits until `count` workers have connected to every server (at most `within`).
    pub fn wait_connected(&self, count: usize, within: Duration) {
        let start = Instant::now();
        while self.connected.load(Ordering::Relaxed) < count && start.elapsed() < within {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything recorded since the last call, all workers together.
    pub fn swap(&self) -> Tally {
        let mut total = Tally::default();
        for tally in &self.tallies {
            total.merge(std::mem::take(&mut *lock(tally)));
        }
        total
    }

    /// Stops the workers and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// What a worker's thread shares with the others: the stop flag, the count of connected ones.
struct Running {
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicUsize>,
}

impl Running {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}

/// Paces a worker at `rate` calls per second from a random phase (0: no pacing).
struct Pace {
    period: Option<Duration>,
    next: Instant,
}

impl Pace {
    fn new(rate: f64, worker: usize) -> Self {
        let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        // Spread the workers' phases over one period so they do not call in lockstep.
        let phase = period.map_or(Duration::ZERO, |p| p.mul_f64((worker as f64 * 0.618_034) % 1.0));
        Pace { period, next: Instant::now() + phase }
    }

    fn wait(&mut self, running: &Running) {
        let Some(period) = self.period else { return };
        let now = Instant::now();
        if self.next > now {
            // Sleep in slices, so a stop is heard soon.
            let mut left = self.next - now;
            while !left.is_zero() && !running.stopped() {
                let slice = left.min(Duration::from_millis(100));
                std::thread::sleep(slice);
                left -= slice;
            }
        }
        // A worker that fell behind does not burst to catch up.
        self.next = (self.next + period).max(Instant::now());
    }
}

/// One simulated worker: push+pull a gradient on every shard, insert a batch into the replay.
fn act(targets: &Targets, worker: usize, tally: &Mutex<Tally>, running: &Running) -> Result<()> {
    let options = targets.options();
    let store = match targets.shards.is_empty() {
        true => None,
        false => Some(ShardedStore::<GrpcStore>::connect(&targets.shards, 0, targets.len, &options)?),
    };
    let replay = match &targets.replay {
        Some((addr, obs_dim)) => Some((GrpcReplay::connect(addr, *obs_dim, options.clone())?, *obs_dim)),
        None => None,
    };
    let batch = replay.as_ref().map(|(_, obs_dim)| transitions(*obs_dim, worker));
    running.connected.fetch_add(1, Ordering::Relaxed);
    let grad = vec![1e-6f32; targets.len];
    let mut params = vec![0.0f32; targets.len];
    let mut version = None;
    let mut pace = Pace::new(targets.rate, worker);
    let mut refused = 0;
    while !running.stopped() {
        if let Some(store) = &store {
            let started = Instant::now();
            let result = store.push_gradient_and_pull(worker, version.unwrap_or(0), &grad, version, &mut params);
            if let Some((_, pulled)) = lock(tally).push_pull.record(started, result) {
                version = pulled.or(version);
            }
            let now_refused: u64 = store.shards().iter().map(GrpcStore::refusals).sum();
            lock(tally).refusals += now_refused - refused;
            refused = now_refused;
        }
        if let (Some((replay, _)), Some((rows, priorities))) = (&replay, &batch) {
            let started = Instant::now();
            let result = replay.insert(rows, Some(priorities));
            lock(tally).insert.record(started, result);
        }
        pace.wait(running);
    }
    Ok(())
}

/// The replay's learner: samples a batch and updates its priorities, back to back.
fn learn(targets: &Targets, tally: &Mutex<Tally>, running: &Running) -> Result<()> {
    let Some((addr, obs_dim)) = &targets.replay else { return Ok(()) };
    let replay = GrpcReplay::connect(addr, *obs_dim, targets.options())?;
    // As a learner waits for its first batch (an empty replay refuses samples).
    while !running.stopped() && replay.stats()?.len < SAMPLE_ROWS as u64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sample = Sample::default();
    while !running.stopped() {
        let started = Instant::now();
        let result = replay.sample(SAMPLE_ROWS, 0.4, &mut sample).and_then(|()| {
            let priorities: Vec<f32> = sample.weights.iter().map(|w| w + 0.1).collect();
            replay.update_priorities(&sample.keys, &priorities)
        });
        lock(tally).sample.record(started, result);
    }
    Ok(())
}

/// A batch of CartPole-sized transitions with priorities, different per worker.
fn transitions(obs_dim: usize, worker: usize) -> (shoal_dist::Transitions, Vec<f32>) {
    let mut rows = shoal_dist::Transitions::new(obs_dim);
    let mut priorities = Vec::with_capacity(INSERT_ROWS);
    for i in 0..INSERT_ROWS {
        let obs: Vec<f32> = (0..obs_dim).map(|d| ((worker * 31 + i * 7 + d) % 97) as f32 / 97.0).collect();
        rows.push(Row { obs: &obs, action: &[(i % 2) as f32], reward: 1.0, next_obs: &obs, done: 0.0, discount: 0.99 });
        priorities.push(0.5 + (i % 5) as f32 / 5.0);
    }
    (rows, priorities)
}

/// The `q`-quantile of `sorted` (nearest rank; 0 when empty).
pub fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
