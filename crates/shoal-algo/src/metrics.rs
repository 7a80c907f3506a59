//! Named scalars an iteration reports (`loss/policy`, `charts/learning_rate`, …), the
//! vocabulary between algorithms, updaters, clusters and the loggers.

/// Named scalars of one training iteration (`loss/policy`, `charts/learning_rate`, …).
pub type Metrics = Vec<(&'static str, f64)>;

/// Averages each metric over the workers that reported it.
pub(crate) fn mean_metrics(all: &[Metrics]) -> Metrics {
    let Some(first) = all.first() else { return Vec::new() };
    first
        .iter()
        .map(|&(key, _)| {
            let values: Vec<f64> =
                all.iter().filter_map(|m| m.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)).collect();
            (key, values.iter().sum::<f64>() / values.len().max(1) as f64)
        })
        .collect()
}
