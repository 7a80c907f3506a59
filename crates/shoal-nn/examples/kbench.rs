use shoal_nn::gemm::{gemm, Mat};
use shoal_nn::kernel::{product, product_bt, Isa, Store};
use std::time::Instant;
fn best(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..40 {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / 40.0);
    }
    best
}
fn main() {
    let m = 256;
    for (k, n) in [(256usize, 256usize), (64, 256), (128, 256), (256, 64)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect(); // [n, k] as W
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect(); // [k, n]
        let mut c = vec![0.0f32; m * n];
        let crate_fwd = best(|| gemm(1.0, Mat::rows(&a, m, k), Mat::rows(&w, n, k).t(), 0.0, &mut c));
        let crate_nn = best(|| gemm(1.0, Mat::rows(&a, m, k), Mat::rows(&b, k, n), 0.0, &mut c));
        let crate_tn = best(|| gemm(1.0, Mat::rows(&a, k, m).t(), Mat::rows(&b, k, n), 1.0, &mut c)); // dW = dZᵀ X, m=out
        print!("k {k} n {n}: crate fwd {crate_fwd:.1} nn {crate_nn:.1} tn {crate_tn:.1}");
        for isa in Isa::ALL {
            if !isa.runs_here() {
                continue;
            }
            let f = best(|| product_bt(isa, m, n, k, &a, (k, 1), &w, &mut c, Store::Overwrite));
            let nn = best(|| product(isa, m, n, k, &a, (k, 1), &b, n, &mut c, Store::Overwrite));
            let tn = best(|| product(isa, m, n, k, &a, (1, m), &b, n, &mut c, Store::Accumulate));
            print!(" | {isa:?} fwd {f:.1} nn {nn:.1} tn {tn:.1}");
        }
        println!("  ({:.1} MFLOP)", 2.0 * (m * n * k) as f64 / 1e6);
    }
}
