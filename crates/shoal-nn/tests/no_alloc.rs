//! What inference allocates, counted by a global allocator (its own test binary, so no other
//! test's allocations are counted): nothing of the engine's own once a batch size has been
//! seen. Small batches (an actor's per-step call) allocate nothing at all; larger ones allocate
//! exactly one packing buffer per matrix product inside the GEMM crate, which offers no way to
//! pass one in (see `gemm::SMALL_ROWS`) — except the products `shoal_nn::kernel` takes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_nn::conv::EncoderConfig;
use shoal_nn::gemm::SMALL_ROWS;
use shoal_nn::kernel;
use shoal_nn::{Activation, ActorCritic, ActorCriticConfig, Model, PolicyHead, QNetwork, QNetworkConfig};

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

/// Allocations in 100 calls of `f` after a warm-up call: the least of three windows, because
/// the counter is global and the test harness's threads can add a stray allocation on a
/// loaded machine (what `f` itself allocates shows in every window).
fn count(mut f: impl FnMut()) -> usize {
    f();
    (0..3)
        .map(|_| {
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            for _ in 0..100 {
                f();
            }
            ALLOCATIONS.load(Ordering::SeqCst) - before
        })
        .min()
        .unwrap_or(0)
}

#[test]
fn inference_allocates_nothing_after_warm_up() {
    for shared_trunk in [false, true] {
        let mut ac: ActorCritic<f32> = ActorCritic::new(ActorCriticConfig {
            obs_dim: 4,
            head: PolicyHead::Categorical { n: 2 },
            hidden: vec![64, 64],
            activation: Activation::Tanh,
            shared_trunk,
            init_log_std: 0.0,
            encoder: None,
            seed: 0,
        })
        .unwrap();
        let obs = vec![0.1f32; 256 * 4];
        // (in, out) of every layer; those `kernel` takes (wide or narrow) allocate nothing.
        let layers: &[(usize, usize)] = if shared_trunk {
            &[(4, 64), (64, 64), (64, 2), (64, 1)]
        } else {
            &[(4, 64), (64, 64), (64, 2), (4, 64), (64, 64), (64, 1)]
        };
        let products =
            layers.iter().filter(|&&(k, n)| kernel::applies(n, k).is_none() && !kernel::applies_narrow(n, k)).count();
        for rows in [256, 64, SMALL_ROWS, 1] {
            let n = count(|| {
                ac.forward(&obs[..rows * 4], rows).unwrap();
            });
            let expected = if rows <= SMALL_ROWS { 0 } else { 100 * products };
            assert_eq!(n, expected, "actor-critic (shared {shared_trunk}) batch {rows}: {n} allocations in 100 calls");
        }
    }
    let mut q: QNetwork<f32> = QNetwork::new(QNetworkConfig {
        obs_dim: 4,
        n_actions: 2,
        hidden: vec![64, 64],
        activation: Activation::Relu,
        dueling: true,
        encoder: None,
        seed: 0,
    })
    .unwrap();
    let obs = vec![0.1f32; 4];
    assert_eq!(count(|| assert!(q.forward(&obs, 1).unwrap().q.is_some())), 0);
    // Over a conv encoder (MinAtar's 10×10×4 board): each convolution is one product over all
    // output positions — the GEMM crate's one packing buffer, or none where `kernel` takes
    // the product (16 channels from 3×3×4 patches) — and nothing else.
    let image = EncoderConfig::minatar(10, 10, 4);
    let mut q: QNetwork<f32> = QNetwork::new(QNetworkConfig {
        obs_dim: image.in_len(),
        n_actions: 3,
        hidden: vec![128],
        activation: Activation::Relu,
        dueling: false,
        encoder: Some(image),
        seed: 0,
    })
    .unwrap();
    let obs = vec![1.0f32; 400];
    let expected = if kernel::applies(16, 3 * 3 * 4).is_some() { 0 } else { 100 };
    assert_eq!(count(|| assert!(q.forward(&obs, 1).unwrap().q.is_some())), expected);
}
