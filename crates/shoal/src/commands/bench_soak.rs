//! `shoal bench load --soak SECONDS`: the long test of the servers. Simulated workers (the
//! first of `--shards` and `--sizes`, `--soak-clients` of them at `--rate`) push+pull against
//! the parameter-server shards and insert into a replay while a learner samples; every
//! server checkpoints every `--checkpoint-seconds`. All workers but one run in one process;
//! the last runs alone, so that with `--kill-every` it can be killed (SIGKILL, by PID) and
//! started again while the others go on. Every `--sample-seconds` it records each server's
//! resident memory and open file descriptors and the workers' calls, then writes `soak.csv`
//! and `soak.png` into `--out` and prints the verdict: how much each server's memory moved
//! after the warm-up, whether descriptors leaked, and every error.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use plotters::prelude::*;
use shoal_dist::{Token, TOKEN_ENV};

use super::bench_load::{json_lines, parse_size, start_servers, LoadArgs, ProcessUse, ServerOptions};
use super::launch::fresh_token;
use super::plot::register_bundled_font;

/// A process of simulated workers and the JSON lines it prints.
struct ClientProcess {
    child: Child,
    lines: Receiver<serde_json::Value>,
}

impl ClientProcess {
    fn start(token: &Token, args: &[String]) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["bench", "load-clients"])
            .args(args)
            .env(TOKEN_ENV, token.secret())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a load-clients process")?;
        let stdout = child.stdout.take().context("no stdout from load-clients")?;
        Ok(ClientProcess { child, lines: json_lines(stdout) })
    }

    /// Kills the process by its PID and waits for it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the workers did in one sample interval, summed over their reports.
#[derive(Default, Clone)]
struct Calls {
    push_pull_per_sec: f64,
    /// The worst p50 and p99 (µs) any report gave.
    p50_us: f64,
    p99_us: f64,
    inserts_per_sec: f64,
    samples_per_sec: f64,
    errors: u64,
    refusals: u64,
    last_error: Option<String>,
}

impl Calls {
    fn add(&mut self, report: &serde_json::Value) {
        let num = |kind: &str, key: &str| report[kind][key].as_f64().unwrap_or(0.0);
        self.push_pull_per_sec += num("push_pull", "calls_per_sec");
        self.p50_us = self.p50_us.max(num("push_pull", "p50_us"));
        self.p99_us = self.p99_us.max(num("push_pull", "p99_us"));
        self.inserts_per_sec += num("insert", "calls_per_sec");
        self.samples_per_sec += num("sample", "calls_per_sec");
        for kind in ["push_pull", "insert", "sample"] {
            self.errors += num(kind, "errors") as u64;
            if let Some(error) = report[kind]["last_error"].as_str() {
                self.last_error = Some(error.to_string());
            }
        }
        self.refusals += report["refusals"].as_u64().unwrap_or(0);
    }

    /// Adds every report waiting in `lines`.
    fn drain(&mut self, lines: &Receiver<serde_json::Value>) {
        lines.try_iter().for_each(|report| self.add(&report));
    }
}

/// One sample of the soak.
struct Sample {
    seconds: f64,
    servers: Vec<ProcessUse>,
    calls: Calls,
    kills: usize,
}

pub fn run(args: &LoadArgs, seconds: f64) -> Result<()> {
    let token = fresh_token()?;
    let shards = *args.shards.first().context("--shards is empty")?;
    let bytes = parse_size(args.sizes.first().context("--sizes is empty")?)?;
    let len = bytes / 4;
    let workers = args.soak_clients.max(2);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let servers = start_servers(
        &token,
        len,
        shards,
        Some(1 << 20),
        Some((&args.out, args.checkpoint_seconds)),
        &ServerOptions::of(args),
    )?;
    let mut names: Vec<String> = (0..shards).map(|i| format!("ps-shard{i}")).collect();
    names.push("replay".into());
    println!(
        "soak: {seconds:.0} s, {workers} workers at {} push+pull and inserts per second each, {shards} shards of a {} model, a replay, checkpoints every {} s{}",
        args.rate,
        args.sizes[0],
        args.checkpoint_seconds,
        match args.kill_every > 0.0 {
            true => format!(", one worker killed and restarted every {} s", args.kill_every),
            false => String::new(),
        }
    );
    let common = |first: usize, count: usize| -> Vec<String> {
        let mut a = vec!["--shards".into(), servers.addrs[..shards].join(","), "--len".into(), len.to_string()];
        a.extend(["--replay".into(), servers.addrs[shards].clone(), "--rate".into(), args.rate.to_string()]);
        a.extend(["--report-every".into(), args.sample_seconds.to_string()]);
        a.extend(["--workers".into(), count.to_string(), "--first".into(), first.to_string()]);
        a
    };
    let mut steady_args = common(0, workers - 1);
    steady_args.push("--learner".into());
    let mut steady = ClientProcess::start(&token, &steady_args)?;
    let lone_args = common(workers - 1, 1);
    let mut lone = ClientProcess::start(&token, &lone_args)?;

    let start = Instant::now();
    let (mut samples, mut kills, mut last_kill) = (Vec::new(), 0, Instant::now());
    let every = Duration::from_secs_f64(args.sample_seconds);
    while start.elapsed().as_secs_f64() < seconds {
        // The steady workers' reports set the pace: one report, one sample.
        let mut calls = Calls::default();
        let reports = match steady.lines.recv_timeout(every * 3) {
            Ok(report) => {
                calls.add(&report);
                1
            }
            Err(_) => 0,
        };
        calls.drain(&lone.lines);
        if args.kill_every > 0.0 && last_kill.elapsed().as_secs_f64() >= args.kill_every {
            lone.kill();
            lone = ClientProcess::start(&token, &lone_args)?;
            (kills, last_kill) = (kills + 1, Instant::now());
        }
        if let Ok(Some(status)) = steady.child.try_wait() {
            anyhow::bail!("the workers' process exited early ({status})");
        }
        let sample = Sample { seconds: start.elapsed().as_secs_f64(), servers: servers.usage(), calls, kills };
        print_sample(&sample, &names, reports);
        samples.push(sample);
    }
    drop((steady, lone));
    write_csv(&args.out.join("soak.csv"), &samples, &names)?;
    plot(&args.out.join("soak.png"), &samples, &names)?;
    verdict(&samples, &names, seconds);
    println!("wrote {} and {}", args.out.join("soak.csv").display(), args.out.join("soak.png").display());
    Ok(())
}

fn print_sample(sample: &Sample, names: &[String], reports: usize) {
    let servers: String = names
        .iter()
        .zip(&sample.servers)
        .map(|(name, u)| format!("  {name} {:.0} MB {} fds", u.rss_mb, u.fds))
        .collect();
    let c = &sample.calls;
    println!(
        "{:>6.0}s{servers}  push+pull {:.0}/s p50 {:.0} µs p99 {:.0} µs  inserts {:.0}/s  samples {:.0}/s  busy {}  errors {}  kills {}{}",
        sample.seconds,
        c.push_pull_per_sec,
        c.p50_us,
        c.p99_us,
        c.inserts_per_sec,
        c.samples_per_sec,
        c.refusals,
        c.errors,
        sample.kills,
        if reports == 0 { "  (no report from the workers in three intervals)" } else { "" }
    );
    if let Some(error) = &c.last_error {
        println!("        last error: {error}");
    }
}

fn write_csv(path: &std::path::Path, samples: &[Sample], names: &[String]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let servers: Vec<String> = names.iter().flat_map(|n| [format!("{n}_rss_mb"), format!("{n}_fds")]).collect();
    writeln!(
        file,
        "seconds,{},push_pull_per_sec,p50_us,p99_us,inserts_per_sec,samples_per_sec,busy,errors,kills",
        servers.join(",")
    )?;
    for s in samples {
        let servers: Vec<String> =
            s.servers.iter().flat_map(|u| [format!("{:.1}", u.rss_mb), u.fds.to_string()]).collect();
        let c = &s.calls;
        writeln!(
            file,
            "{:.1},{},{:.1},{:.0},{:.0},{:.1},{:.1},{},{},{}",
            s.seconds,
            servers.join(","),
            c.push_pull_per_sec,
            c.p50_us,
            c.p99_us,
            c.inserts_per_sec,
            c.samples_per_sec,
            c.refusals,
            c.errors,
            s.kills
        )?;
    }
    Ok(())
}

/// The samples after the warm-up: the first tenth of the run, at least a minute when the run
/// is long enough to leave most of it.
fn after_warm_up(samples: &[Sample], seconds: f64) -> &[Sample] {
    let warm_up = (seconds * 0.1).max(60.0f64.min(seconds * 0.25));
    let first = samples.iter().position(|s| s.seconds >= warm_up).unwrap_or(samples.len());
    &samples[first..]
}

/// The lowest and highest resident memory of server `i` over `samples`.
fn rss_range(samples: &[Sample], i: usize) -> (f64, f64) {
    samples.iter().map(|s| s.servers[i].rss_mb).fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// The mean resident memory of server `i` over `samples`.
fn rss_mean(samples: &[Sample], i: usize) -> f64 {
    samples.iter().map(|s| s.servers[i].rss_mb).sum::<f64>() / samples.len().max(1) as f64
}

fn verdict(samples: &[Sample], names: &[String], seconds: f64) {
    let steady = after_warm_up(samples, seconds);
    let second_half = &samples[samples.len() / 2..];
    // The trend without single samples' bursts: the first and the last fifth after warm-up.
    let fifth = (steady.len() / 5).max(1).min(steady.len());
    let (early, late) = (&steady[..fifth], &steady[steady.len() - fifth..]);
    for (i, name) in names.iter().enumerate() {
        let (lo, hi) = rss_range(steady, i);
        let (late_lo, late_hi) = rss_range(second_half, i);
        let fds: Vec<usize> = steady.iter().map(|s| s.servers[i].fds).collect();
        println!(
            "soak_{name}: rss after warm-up {lo:.1}–{hi:.1} MB (spread {:.1}% of the lowest; second half {late_lo:.1}–{late_hi:.1} MB, {:.1}%; mean of the first fifth {:.1} MB, of the last {:.1} MB), fds {}–{} (first {}, last {})",
            (hi - lo) / lo.max(1e-9) * 100.0,
            (late_hi - late_lo) / late_lo.max(1e-9) * 100.0,
            rss_mean(early, i),
            rss_mean(late, i),
            fds.iter().min().unwrap_or(&0),
            fds.iter().max().unwrap_or(&0),
            fds.first().unwrap_or(&0),
            fds.last().unwrap_or(&0),
        );
    }
    let errors: u64 = samples.iter().map(|s| s.calls.errors).sum();
    let busy: u64 = samples.iter().map(|s| s.calls.refusals).sum();
    let calls: f64 = samples.iter().map(|s| s.calls.push_pull_per_sec).sum::<f64>() / samples.len().max(1) as f64;
    println!("soak_errors: {errors}");
    println!("soak_busy_answers: {busy}");
    println!("soak_push_pull_per_sec_mean: {calls:.0}");
    println!("soak_kills: {}", samples.last().map_or(0, |s| s.kills));
}

/// Memory and descriptors of every server over time, one colour per server.
fn plot(path: &std::path::Path, samples: &[Sample], names: &[String]) -> Result<()> {
    register_bundled_font()?;
    let root = BitMapBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    let x_max = samples.last().map_or(1.0, |s| s.seconds).max(1.0);
    let panels = [(&top, "resident memory (MB)", false), (&bottom, "open file descriptors", true)];
    for (area, title, fds) in panels {
        let value = |u: &ProcessUse| if fds { u.fds as f64 } else { u.rss_mb };
        let y_max = samples.iter().flat_map(|s| s.servers.iter().map(value)).fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("servers' {title} during the soak"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart.configure_mesh().x_desc("seconds").y_desc(title).label_style(("sans-serif", 13)).draw()?;
        for (i, name) in names.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.seconds, value(&s.servers[i]))),
                    colour.stroke_width(2),
                ))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present().with_context(|| format!("writing {}", path.display()))
}
