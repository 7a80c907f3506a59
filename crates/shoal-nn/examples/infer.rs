use shoal_nn::{Activation, ActorCritic, ActorCriticConfig, Model, PolicyHead};
use std::time::Instant;
fn main() {
    let mut model: ActorCritic<f32> = ActorCritic::new(ActorCriticConfig {
        obs_dim: 4,
        head: PolicyHead::Categorical { n: 2 },
        hidden: vec![64, 64],
        activation: Activation::Tanh,
        shared_trunk: false,
        init_log_std: 0.0,
        encoder: None,
        seed: 0,
    })
    .unwrap();
    let obs: Vec<f32> = (0..256 * 4).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect();
    let secs: f64 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(3.0);
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        for _ in 0..100 {
            std::hint::black_box(model.forward(&obs, 256).unwrap().policy);
        }
        n += 100;
    }
    println!("{:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
