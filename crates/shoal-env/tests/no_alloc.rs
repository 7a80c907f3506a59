//! Stepping a vector env allocates nothing after warm-up (counted by a global allocator).
//! Its own test binary, so no other test's allocations are counted. The counter is global, so
//! the test harness's own threads can add a stray allocation now and then on a loaded machine:
//! each case measures three windows of 2000 steps and requires one of them to be clean (an
//! allocation per step, or per episode, would show in every window).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_env::{make_vec, Actions};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn vector_env_steps_allocate_nothing() {
    for (id, threads) in [("CartPole-v1", 1), ("CartPole-v1", 2), ("Pendulum-v1", 2), ("Taxi-v4", 2)] {
        let mut v = make_vec(id, &[], 16, threads).unwrap();
        v.reset(Some(0)).unwrap();
        let discrete = vec![0i64; 16];
        let continuous = vec![0.5f32; 16];
        let actions = if id == "Pendulum-v1" { Actions::Continuous(&continuous) } else { Actions::Discrete(&discrete) };
        for _ in 0..10 {
            v.step(actions).unwrap();
        }
        let during = (0..3)
            .map(|_| {
                let before = ALLOCATIONS.load(Ordering::SeqCst);
                for _ in 0..2000 {
                    v.step(actions).unwrap();
                }
                ALLOCATIONS.load(Ordering::SeqCst) - before
            })
            .min()
            .unwrap();
        assert_eq!(during, 0, "{id} with {threads} threads allocated {during} times in 2000 steps");
    }
}
