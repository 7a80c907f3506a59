//! A second thread for work that splits into two independent halves: an actor-critic's actor
//! and critic, whose forward and backward passes share nothing but the (read-only) parameters.
//!
//! [`Helper::join`] hands one half to a persistent thread and runs the other on the caller, so
//! a PPO update uses both cores of a small machine without a per-call spawn. Each half does
//! exactly the arithmetic it does alone, in the same order: results are bit-identical to one
//! thread, whatever the timing.
//!
//! Why not rayon: a thread outside a rayon pool that calls `join` or `scope` sleeps on a
//! condition variable until the pool's half is done, and both halves of an update take about
//! as long as each other — so nearly every update would pay a sleep and a wake-up (tens of
//! µs on a VM) on a ~200 µs call. Here the caller spins for the few microseconds the halves
//! differ by; the helper spins briefly between calls (an update's minibatches follow each
//! other closely), then parks, so an idle helper costs no CPU while the envs step.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// Spins of a waiting thread before it parks (helper) or yields (caller): about 0.5–1 ms,
/// longer than the gap between two minibatch updates, far shorter than a rollout.
const SPIN_LIMIT: u32 = 1 << 14;

/// A job the caller lent the helper, its lifetime erased (see [`Helper::join`]'s safety).
struct Job(*mut (dyn FnMut() + Send));

/// State the caller and the helper share.
struct Shared {
    /// Jobs posted so far; the helper runs job `n` when it sees `posted = n`.
    posted: AtomicU64,
    /// The last job the helper finished.
    finished: AtomicU64,
    /// The posted job: written by the caller before `posted` moves, taken by the helper after.
    job: UnsafeCell<Option<Job>>,
    /// A panic of the helper's half, to resume on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    stop: AtomicBool,
}

// SAFETY: `job` is written only by the caller while no job is outstanding (`finished ==
// posted`) and read only by the helper between seeing `posted` move and storing `finished`;
// the Release/Acquire pairs on those counters order the accesses. The job itself is `Send`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced by the helper while the caller waits.
unsafe impl Send for Shared {}

/// One persistent helper thread: `join(a, b)` runs `b` on it and `a` on the caller.
pub struct Helper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// Starts the helper thread (named `shoal-nn-helper`).
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            posted: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            panic: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let for_thread = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("shoal-nn-helper".into())
            .spawn(move || serve(&for_thread))
            .expect("spawning a thread (the OS is out of threads or memory)");
        Helper { shared, thread: Some(thread) }
    }

    /// Runs `a` on this thread and `b` on the helper, and returns both results once both are
    /// done. A panic in either half is resumed here (after the other half has finished).
    pub fn join<RA, RB: Send>(&mut self, a: impl FnOnce() -> RA, b: impl FnOnce() -> RB + Send) -> (RA, RB) {
        let mut b = Some(b);
        let mut rb = None;
        let mut job = || {
            if let Some(b) = b.take() {
                rb = Some(b());
            }
        };
        let job_ptr: *mut (dyn FnMut() + Send + '_) = &mut job;
        // SAFETY: only the lifetime is erased. The helper calls the job before storing
        // `finished = seq`, and `Wait` (below) does not let this function return or unwind
        // until it has seen that store, so `job` and what it borrows outlive every use.
        let job_ptr: *mut (dyn FnMut() + Send + 'static) = unsafe { std::mem::transmute(job_ptr) };
        // SAFETY: no job is outstanding (every `join` waits for its own), so the helper is not
        // reading the slot.
        unsafe { *self.shared.job.get() = Some(Job(job_ptr)) };
        let seq = self.shared.posted.fetch_add(1, Ordering::Release) + 1;
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        let wait = Wait { shared: &self.shared, seq };
        let ra = a();
        drop(wait);
        if let Some(panic) = self.shared.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(panic);
        }
        (ra, rb.expect("the helper ran the job before reporting it finished"))
    }
}

/// Runs `a` and `b` side by side on `helper` if there is one, else one after the other: how a
/// model with an optional second thread (`net.threads`) writes its split passes once.
pub fn run_pair<RA, RB: Send>(
    helper: Option<&mut Helper>,
    a: impl FnOnce() -> RA,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    match helper {
        Some(helper) => helper.join(a, b),
        None => (a(), b()),
    }
}

impl Default for Helper {
    fn default() -> Self {
        Self::new()
    }
}

/// A clone is a new helper thread: two models never share one (their jobs would interleave).
impl Clone for Helper {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").field("jobs", &self.shared.posted.load(Ordering::Relaxed)).finish()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The helper catches its jobs' panics, so joining cannot fail on one.
            let _ = thread.join();
        }
    }
}

/// Blocks (spinning, then yielding) until the helper has finished job `seq` — on drop, so an
/// unwinding caller waits too before the job's borrows die.
struct Wait<'a> {
    shared: &'a Shared,
    seq: u64,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while self.shared.finished.load(Ordering::Acquire) < self.seq {
            if spins < SPIN_LIMIT {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }
}

/// The helper thread's loop: wait for a job, run it, report it finished.
fn serve(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let posted = shared.posted.load(Ordering::Acquire);
            if posted != seen {
                seen = posted;
                break;
            }
            if spins < SPIN_LIMIT {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::park();
            }
        }
        // SAFETY: the caller wrote the slot before the `posted` store this thread acquired,
        // and does not touch it again until `finished` says this job is done.
        let job = unsafe { (*shared.job.get()).take() };
        if let Some(Job(job)) = job {
            // SAFETY: the caller keeps the job alive until it sees `finished = seen` (`Wait`).
            let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)() }));
            if let Err(panic) = result {
                *shared.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(panic);
            }
        }
        shared.finished.store(seen, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_and_return_their_results() {
        let mut helper = Helper::new();
        let data: Vec<u64> = (0..1000).collect();
        for round in 0..200u64 {
            let (lo, hi) = data.split_at(500);
            let (a, b) = helper.join(
                || lo.iter().map(|x| x * round).sum::<u64>(),
                || (hi.iter().map(|x| x * round).sum::<u64>(), thread::current().name().map(String::from)),
            );
            assert_eq!(a + b.0, data.iter().sum::<u64>() * round);
            assert_eq!(b.1.as_deref(), Some("shoal-nn-helper"), "b runs on the helper");
        }
    }

    #[test]
    fn halves_write_disjoint_buffers() {
        let mut helper = Helper::new();
        let mut buf = vec![0u32; 64];
        let (left, right) = buf.split_at_mut(32);
        helper.join(|| left.fill(1), || right.fill(2));
        assert_eq!(&buf[..32], &[1; 32]);
        assert_eq!(&buf[32..], &[2; 32]);
    }

    #[test]
    fn a_panic_on_the_helper_reaches_the_caller_and_the_helper_goes_on() {
        let mut helper = Helper::new();
        let caught = catch_unwind(AssertUnwindSafe(|| helper.join(|| 1, || -> u32 { panic!("in the helper") })));
        let message = caught.expect_err("the panic is resumed on the caller");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"in the helper"));
        assert_eq!(helper.join(|| 1, || 2), (1, 2));
    }

    #[test]
    fn an_idle_helper_wakes_up_for_the_next_job() {
        let mut helper = Helper::new();
        assert_eq!(helper.join(|| 1, || 2), (1, 2));
        thread::sleep(std::time::Duration::from_millis(50)); // long enough to park
        assert_eq!(helper.join(|| 3, || 4), (3, 4));
    }
}
