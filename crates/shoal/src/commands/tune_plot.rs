//! A study's pictures, written when it ends: `curves.png` — every trial's metric against env
//! steps, the best trial drawn thick — and `params.png` — each trial's last metric against
//! each tuned key's value (log scale for `loguniform`, positions for listed values), one panel
//! per key, the best trial marked.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use shoal_tune::{Domain, Study, TrialRow};

use super::plot::{register_bundled_font, short_number};

/// Writes `curves.png` and `params.png` into `dir`; `results` holds each trial's
/// intermediate (env steps, metric) results.
pub fn plot_study(
    study: &Study,
    dir: &Path,
    trials: &[TrialRow],
    results: &BTreeMap<usize, Vec<(u64, f64)>>,
    best: Option<usize>,
) -> Result<()> {
    register_bundled_font()?;
    curves(study, &dir.join("curves.png"), results, best)?;
    params(study, &dir.join("params.png"), trials, best)
}

/// The range of `values`, padded by 5% (and never empty).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

fn curves(study: &Study, path: &Path, results: &BTreeMap<usize, Vec<(u64, f64)>>, best: Option<usize>) -> Result<()> {
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (y_lo, y_hi) = padded(results.values().flatten().map(|p| p.1));
    let x_max = results.values().flatten().map(|p| p.0 as f64).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{} of every trial", study.metric), ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("env steps")
        .y_desc(study.metric.as_str())
        .x_label_formatter(&|x| short_number(*x))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (&trial, points) in results {
        let series = points.iter().map(|&(s, v)| (s as f64, v));
        let style = match Some(trial) == best {
            true => BLACK.stroke_width(3),
            false => Palette99::pick(trial).mix(0.6).stroke_width(1),
        };
        chart.draw_series(LineSeries::new(series, style))?;
    }
    root.present().with_context(|| format!("writing {}", path.display()))
}

fn params(study: &Study, path: &Path, trials: &[TrialRow], best: Option<usize>) -> Result<()> {
    let keys = &study.space.keys;
    let columns = keys.len().clamp(1, 3);
    let rows = keys.len().div_ceil(columns).max(1);
    let root = BitMapBackend::new(path, (420 * columns as u32, 340 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (y_lo, y_hi) = padded(trials.iter().filter_map(|t| t.value));
    for (panel, (key, domain)) in root.split_evenly((rows, columns)).iter().zip(keys) {
        let points: Vec<(usize, f64, f64)> =
            trials.iter().filter_map(|t| Some((t.id, domain.axis_position(t.params.get(key)?)?, t.value?))).collect();
        let (x_lo, x_hi) = padded(points.iter().map(|p| p.1));
        let log = matches!(domain, Domain::LogUniform { .. });
        let labels: Vec<String> =
            domain.values().map(|v| v.iter().map(|x| x.to_string()).collect()).unwrap_or_default();
        let mut chart = ChartBuilder::on(panel)
            .caption(key.as_str(), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| match (log, labels.is_empty()) {
                (true, _) => format!("1e{x:.1}"),
                (false, false) => labels
                    .get(x.round().max(0.0) as usize)
                    .filter(|_| (x - x.round()).abs() < 0.01)
                    .cloned()
                    .unwrap_or_default(),
                (false, true) => short_number(*x),
            })
            .label_style(("sans-serif", 12))
            .draw()?;
        chart.draw_series(points.iter().map(|&(_, x, y)| Circle::new((x, y), 4, BLUE.mix(0.6).filled())))?;
        chart.draw_series(
            points.iter().filter(|p| Some(p.0) == best).map(|&(_, x, y)| Circle::new((x, y), 7, RED.stroke_width(2))),
        )?;
    }
    root.present().with_context(|| format!("writing {}", path.display()))
}
