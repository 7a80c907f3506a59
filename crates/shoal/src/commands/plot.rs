//! `shoal plot`: learning curves of one or more runs as a PNG — `episode_return_mean` against
//! env steps (left) and against wall-clock time (right), runs overlaid for comparison.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::FontStyle;

/// Arguments of `shoal plot`.
#[derive(clap::Args)]
pub struct Args {
    /// Run directories (as `shoal train` writes them).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output image.
    #[arg(long, default_value = "learning-curves.png")]
    out: PathBuf,
}

/// One run's curve: (env steps, wall seconds, return mean) per iteration.
struct Curve {
    name: String,
    points: Vec<(f64, f64, f64)>,
}

/// A run's `metrics.csv`; a multi-process run's metrics are its parameter server's
/// (`ps/metrics.csv`, shard 0's, with the whole run's env steps and returns).
fn metrics_path(run: &Path) -> std::path::PathBuf {
    let own = run.join("metrics.csv");
    let server = run.join("ps").join("metrics.csv");
    if !own.exists() && server.exists() {
        server
    } else {
        own
    }
}

fn read_curve(run: &Path) -> Result<Curve> {
    let path = metrics_path(run);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|c| *c == name).with_context(|| format!("{} has no `{name}` column", path.display()))
    };
    let (steps, wall, ret) = (column("env_steps")?, column("wall_seconds")?, column("episode_return_mean")?);
    let points = lines
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let get = |i: usize| cells.get(i).and_then(|c| c.parse::<f64>().ok());
            Some((get(steps)?, get(wall)?, get(ret)?))
        })
        .collect();
    let name = run.file_name().map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Curve { name, points })
}

pub fn run(args: &Args) -> Result<()> {
    let curves = args.runs.iter().map(|r| read_curve(r)).collect::<Result<Vec<_>>>()?;
    if curves.iter().all(|c| c.points.is_empty()) {
        bail!("no finished episodes in these runs yet: nothing to plot");
    }
    register_bundled_font()?;
    let root = BitMapBackend::new(&args.out, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let (min_ret, max_ret) = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.2))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let pad = ((max_ret - min_ret) * 0.05).max(1e-6);
    for (panel, (x_of, label)) in panels.iter().zip([(0usize, "env steps"), (1usize, "wall-clock seconds")]) {
        let x_max = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| if x_of == 0 { p.0 } else { p.1 }))
            .fold(0.0, f64::max)
            .max(1e-9);
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("episode_return_mean vs {label}"), ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, (min_ret - pad)..(max_ret + pad))?;
        chart
            .configure_mesh()
            .x_desc(label)
            .y_desc("episode_return_mean")
            .x_label_formatter(&|x| short_number(*x))
            .label_style(("sans-serif", 14))
            .draw()?;
        for (i, curve) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let series = curve.points.iter().map(|p| (if x_of == 0 { p.0 } else { p.1 }, p.2));
            chart
                .draw_series(LineSeries::new(series, color.stroke_width(2)))?
                .label(curve.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present().with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Registers the font that ships with the binary, so plotting needs no system font library.
pub fn register_bundled_font() -> Result<()> {
    register_font("sans-serif", FontStyle::Normal, include_bytes!("../../assets/DejaVuSans.ttf"))
        .map_err(|_| anyhow::anyhow!("the bundled font could not be loaded"))
}

/// `150000` → `150k`, `2.5` → `2.5`: axis labels that stay short.
pub fn short_number(x: f64) -> String {
    match x.abs() {
        v if v >= 1e6 => format!("{:.1}M", x / 1e6),
        v if v >= 1e3 => format!("{:.0}k", x / 1e3),
        _ => format!("{x:.1}"),
    }
}
