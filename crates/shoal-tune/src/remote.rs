//! Trials on other processes: [`RemoteTrials`] is a [`TrialRunner`] that, instead of training,
//! puts each job on a queue that `shoal tune-worker` processes take from over the network
//! (`shoal_dist::jobs`), wherever they run — other hosts, Slurm tasks, Kubernetes pods, with
//! the study directory on storage they all see. The slot that handed the job out relays the
//! worker's progress to the tuner and the tuner's answer back, exactly as for a local trial.
//! A worker silent for `timeout` is taken for dead: its job goes back on the queue under a
//! new id (the old worker, if it wakes up, is refused and drops it), and the next worker
//! continues the trial from its last checkpoint — only the running trial's progress since
//! then is lost.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shoal_dist::jobs::{JobEnd as WorkerEnd, JobSource, Take};

use crate::scheduler::Decision;
use crate::tuner::{JobEnd, Report, TrialJob, TrialRunner};

/// A job as it travels to a worker: TOML with the trial, its config and where to train it.
pub fn encode_job(job: &TrialJob<'_>) -> Vec<u8> {
    let mut table = toml::Table::new();
    table.insert("trial".into(), toml::Value::Integer(job.trial as i64));
    table.insert("until".into(), toml::Value::Integer(job.until.min(i64::MAX as u64) as i64));
    table.insert("resume".into(), toml::Value::Boolean(job.resume));
    table.insert("dir".into(), toml::Value::String(job.dir.display().to_string()));
    table.insert("config".into(), toml::Value::String(job.config.to_toml()));
    table.to_string().into_bytes()
}

/// What a worker reads from a job: (trial, until, resume, dir, config text).
pub fn decode_job(payload: &[u8]) -> Result<(usize, u64, bool, std::path::PathBuf, String), String> {
    let text = std::str::from_utf8(payload).map_err(|e| format!("a job that is not text: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e| format!("an unreadable job: {e}"))?;
    let int = |k: &str| table.get(k).and_then(toml::Value::as_integer).ok_or_else(|| format!("a job without `{k}`"));
    let string = |k: &str| table.get(k).and_then(toml::Value::as_str).ok_or_else(|| format!("a job without `{k}`"));
    Ok((
        int("trial")? as usize,
        int("until")? as u64,
        table.get("resume").and_then(toml::Value::as_bool).unwrap_or(false),
        string("dir")?.into(),
        string("config")?.to_string(),
    ))
}

enum Event {
    Progress { step: u64, metrics: Vec<(String, f64)> },
    Finish(WorkerEnd),
}

struct Entry {
    payload: Vec<u8>,
    /// Who took it (`None`: waiting on the queue).
    worker: Option<String>,
    events: VecDeque<Event>,
    /// The slot's answer to the latest progress report: stop?
    answer: Option<bool>,
    last_heard: Instant,
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    waiting: VecDeque<u64>,
    jobs: BTreeMap<u64, Entry>,
    /// Ids taken back from silent workers, with the id that replaced them.
    requeued: BTreeMap<u64, u64>,
}

/// The coordinator's queue of trials (see the module doc).
pub struct RemoteTrials {
    queue: Mutex<Queue>,
    changed: Condvar,
    timeout: Duration,
    done: AtomicBool,
    /// Copies checkpoints for population-based training (the study directory is shared).
    local: Box<dyn TrialRunner + Send>,
    /// Who took which trial, a line each, for whoever watches.
    log: Box<dyn Fn(String) + Send + Sync>,
}

impl RemoteTrials {
    /// A queue whose workers are taken for dead after `timeout` of silence; `local` copies
    /// checkpoints (population-based training), `log` hears who took which trial.
    pub fn new(
        timeout: Duration,
        local: Box<dyn TrialRunner + Send>,
        log: impl Fn(String) + Send + Sync + 'static,
    ) -> Self {
        RemoteTrials {
            queue: Mutex::new(Queue { next_id: 1, ..Queue::default() }),
            changed: Condvar::new(),
            timeout,
            done: AtomicBool::new(false),
            local,
            log: Box::new(log),
        }
    }

    /// No job will come any more: workers that ask are told to exit.
    pub fn close(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `payload` on the queue under a new id.
    fn enqueue(q: &mut Queue, payload: Vec<u8>) -> u64 {
        let id = q.next_id;
        q.next_id += 1;
        q.jobs.insert(
            id,
            Entry { payload, worker: None, events: VecDeque::new(), answer: None, last_heard: Instant::now() },
        );
        q.waiting.push_back(id);
        id
    }

    /// The entry a worker's call names, or why it is not that worker's any more.
    fn entry(q: &mut Queue, id: u64) -> Result<&mut Entry, String> {
        if let Some(new) = q.requeued.get(&id) {
            return Err(format!(
                "job {id} was given to another worker (as job {new}) after its worker fell silent: drop it"
            ));
        }
        q.jobs.get_mut(&id).ok_or_else(|| format!("no job {id}: drop it"))
    }
}

impl TrialRunner for RemoteTrials {
    fn run(&self, job: &TrialJob<'_>, report: &mut Report<'_>) -> Result<JobEnd, String> {
        let payload = encode_job(job);
        let mut q = self.lock();
        let mut id = Self::enqueue(&mut q, payload.clone());
        self.changed.notify_all();
        loop {
            let entry = q.jobs.get_mut(&id).ok_or("the job left the queue")?;
            match entry.events.pop_front() {
                Some(Event::Progress { step, metrics }) => {
                    drop(q);
                    let metrics: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                    let stop = report(step, &metrics) == Decision::Stop;
                    q = self.lock();
                    if let Some(entry) = q.jobs.get_mut(&id) {
                        entry.answer = Some(stop);
                    }
                    self.changed.notify_all();
                }
                Some(Event::Finish(end)) => {
                    q.jobs.remove(&id);
                    self.changed.notify_all();
                    end.outcome?;
                    return Ok(JobEnd { env_steps: end.steps, stopped_by_tuner: end.stopped });
                }
                None if entry.worker.is_some() && entry.last_heard.elapsed() > self.timeout => {
                    let worker = entry.worker.take().unwrap_or_default();
                    q.jobs.remove(&id);
                    let new = Self::enqueue(&mut q, payload.clone());
                    q.requeued.insert(id, new);
                    (self.log)(format!(
                        "trial {}: worker {worker} silent for {:?}, the trial goes back on the queue",
                        job.trial, self.timeout
                    ));
                    id = new;
                    self.changed.notify_all();
                }
                None => {
                    q = self
                        .changed
                        .wait_timeout(q, Duration::from_millis(200))
                        .map_or_else(|p| p.into_inner().0, |r| r.0);
                }
            }
        }
    }

    fn copy_checkpoint(&self, from: &Path, to: &Path) -> Result<(), String> {
        self.local.copy_checkpoint(from, to)
    }
}

impl JobSource for RemoteTrials {
    fn take(&self, worker: &str) -> Take {
        let mut q = self.lock();
        let Some(id) = q.waiting.pop_front() else {
            return if self.done.load(Ordering::SeqCst) { Take::Done } else { Take::Wait };
        };
        let Some(entry) = q.jobs.get_mut(&id) else { return Take::Wait };
        entry.worker = Some(worker.to_string());
        entry.last_heard = Instant::now();
        let payload = entry.payload.clone();
        if let Ok((trial, ..)) = decode_job(&payload) {
            (self.log)(format!("trial {trial} taken by worker {worker}"));
        }
        Take::Job { id, payload }
    }

    fn progress(&self, id: u64, step: u64, metrics: Vec<(String, f64)>) -> Result<bool, String> {
        let mut q = self.lock();
        let entry = Self::entry(&mut q, id)?;
        entry.last_heard = Instant::now();
        entry.answer = None;
        entry.events.push_back(Event::Progress { step, metrics });
        self.changed.notify_all();
        loop {
            let entry = Self::entry(&mut q, id)?;
            if let Some(stop) = entry.answer.take() {
                entry.last_heard = Instant::now();
                return Ok(stop);
            }
            q = self.changed.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finish(&self, id: u64, end: WorkerEnd) -> Result<(), String> {
        let mut q = self.lock();
        let entry = Self::entry(&mut q, id)?;
        entry.events.push_back(Event::Finish(end));
        self.changed.notify_all();
        Ok(())
    }
}
