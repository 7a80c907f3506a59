//! Pruning masks as the rest of the engine uses them: kept at zero through optimizer steps,
//! and saved beside a checkpoint.

use shoal_nn::io::{load_mask, save_mask};
use shoal_nn::optim::Masked;
use shoal_nn::prune::{PruneMask, PruneScope};
use shoal_nn::{Adam, Optimizer, ParamLayout};

fn layout() -> ParamLayout {
    let mut layout = ParamLayout::new();
    layout.push("a.0.weight", &[2, 3]);
    layout.push("a.0.bias", &[2]);
    layout.push("a.1.weight", &[1, 2]);
    layout.push("log_std", &[1]);
    layout
}

#[test]
fn a_masked_optimizer_keeps_pruned_weights_at_zero() {
    let layout = layout();
    let mut params: Vec<f64> = (0..layout.len()).map(|i| (i as f64 + 1.0) * 0.1).collect();
    let mut mask = PruneMask::dense(layout.len());
    mask.prune_to(&layout, &params, 0.5, PruneScope::Global).unwrap();
    mask.apply(&mut params);
    let mut adam = Masked::new(Box::new(Adam::new(layout.len(), 0.9, 0.999, 1e-8)), mask.clone());
    for _ in 0..5 {
        adam.step(&mut params, &vec![1.0; layout.len()], 0.01);
    }
    for (p, &keep) in params.iter().zip(mask.keeps()) {
        assert_eq!(*p == 0.0, !keep, "{p}");
    }
    // It saves as the optimizer it wraps, and its mask can be tightened in place.
    assert_eq!((adam.name(), adam.steps()), ("adam", 5));
    adam.prune_mask_mut().unwrap().prune_to(&layout, &params, 0.75, PruneScope::Global).unwrap();
    adam.step(&mut params, &vec![1.0; layout.len()], 0.01);
    assert_eq!(params.iter().take(6).chain(&params[8..10]).filter(|&&p| p == 0.0).count(), 6);
}

#[test]
fn masks_round_trip_through_a_file() {
    let layout = layout();
    let params: Vec<f32> = (0..layout.len()).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut mask = PruneMask::dense(layout.len());
    mask.prune_to(&layout, &params, 0.75, PruneScope::Global).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mask.safetensors");
    save_mask(&mask, &path, &layout).unwrap();
    assert_eq!(load_mask(&path, &layout).unwrap(), mask);
    let mut other = ParamLayout::new();
    other.push("a.0.weight", &[3, 2]);
    let err = load_mask(&path, &other).unwrap_err().to_string();
    assert!(err.contains("a.0.weight") && err.contains("[3, 2]"), "{err}");
}
