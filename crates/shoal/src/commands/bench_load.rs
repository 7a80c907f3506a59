//! `shoal bench load`: how many workers one server serves. N simulated workers
//! ([`super::load_workers`]) push a gradient and pull the parameters after it, as fast as the
//! servers answer or at `--rate`, against 1, 2 or 4 parameter-server shards in processes of
//! their own (the same server code as `shoal ps`: [`shoal_dist::spawn`] of an async
//! [`ParamServer`]), for 10 KB, 1 MB and 10 MB models and N = 1, 8, 64, 256; then N actors
//! insert into a replay process while a learner samples. Each row: completed calls per second,
//! megabytes per second, p50/p95/p99 latency, calls answered busy, errors, and the servers'
//! resident memory and open sockets read from `/proc`. `--soak` runs the long test instead
//! ([`super::bench_soak`]).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shoal_dist::{
    shard_range, spawn, spawn_replay, Limits, LocalReplay, ParamServer, PrioritizedReplay, ServerHandle, ServiceConfig,
    ShardInfo, Token, UpdateMode,
};
use shoal_nn::{ParamLayout, Sgd};

use super::launch::{fresh_token, start_listener, Children};
use super::load_workers::{quantile, Calls, Targets, Workers};

/// Arguments of `shoal bench load`.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// Parameter-server shards the model is split over.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub shards: Vec<usize>,
    /// Model sizes in bytes of f32 parameters (suffixes KB, MB).
    #[arg(long, value_delimiter = ',', default_value = "10KB,1MB,10MB")]
    pub sizes: Vec<String>,
    /// Simulated workers.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    pub clients: Vec<usize>,
    /// Push+pull calls per second of each worker (0: as fast as the servers answer).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Measured seconds per row, after a second of warm-up.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Which tables: `ps` (parameter server), `replay` (actors inserting, a learner sampling).
    #[arg(long, value_delimiter = ',', default_value = "ps,replay")]
    pub tables: Vec<String>,
    /// Also write the rows as CSV files: PREFIX-ps.csv, PREFIX-replay.csv.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Async pushes in flight per shard, in MB (the servers' cluster.max_pending_mb).
    #[arg(long, default_value_t = 256.0)]
    pub max_pending_mb: f64,
    /// Instead of the tables: a soak of this many seconds against the first of --shards and
    /// --sizes and a replay, with --soak-clients workers at --rate.
    #[arg(long)]
    pub soak: Option<f64>,
    #[arg(long, default_value_t = 64)]
    pub soak_clients: usize,
    /// Soak: kill one worker process (by PID) and start it again every this many seconds
    /// (0: never).
    #[arg(long, default_value_t = 0.0)]
    pub kill_every: f64,
    /// Soak: seconds between two checkpoints of every server.
    #[arg(long, default_value_t = 30.0)]
    pub checkpoint_seconds: f64,
    /// Soak: seconds between two samples of the servers' memory and the workers' calls.
    #[arg(long, default_value_t = 5.0)]
    pub sample_seconds: f64,
    /// Soak: where soak.csv, soak.png and the servers' checkpoints go.
    #[arg(long, default_value = "soak")]
    pub out: PathBuf,
    /// Start the servers in this network namespace (`nsenter --net=/run/netns/NS`, root), so
    /// that calls cross a veth link instead of loopback: `bench/load_netns.py` makes one.
    #[arg(long, requires = "server_ip")]
    pub server_netns: Option<String>,
    /// The address the servers listen on (in `--server-netns`).
    #[arg(long, default_value = "127.0.0.1")]
    pub server_ip: String,
}

/// Arguments of the hidden `shoal bench load-server`: one server for the load benchmarks.
#[derive(clap::Args)]
pub struct LoadServerArgs {
    /// Parameters this shard holds.
    #[arg(long, default_value_t = 0)]
    len: usize,
    #[arg(long, default_value_t = 0)]
    index: u32,
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// Serve a prioritized replay of this capacity instead of a parameter shard.
    #[arg(long)]
    replay_capacity: Option<usize>,
    #[arg(long, default_value_t = 4)]
    obs_dim: usize,
    /// Save the server's state to this file every --checkpoint-seconds (atomically).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long, default_value_t = 30.0)]
    checkpoint_seconds: f64,
    #[arg(long, default_value_t = 256.0)]
    max_pending_mb: f64,
    /// The address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

/// Arguments of the hidden `shoal bench load-clients`: simulated workers in a process of
/// their own (the soak kills and restarts one), printing a JSON line of their calls every
/// --report-every seconds until killed or until stdin closes.
#[derive(clap::Args)]
pub struct LoadClientsArgs {
    /// Parameter-server shard addresses, in shard order.
    #[arg(long, value_delimiter = ',')]
    shards: Vec<String>,
    /// Parameters of the whole model.
    #[arg(long)]
    len: usize,
    /// The replay's address.
    #[arg(long)]
    replay: Option<String>,
    #[arg(long, default_value_t = 4)]
    obs_dim: usize,
    #[arg(long)]
    workers: usize,
    /// The first worker's number.
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Also run the replay's learner.
    #[arg(long)]
    learner: bool,
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[arg(long, default_value_t = 5.0)]
    report_every: f64,
}

/// `10KB` → 10240, `1MB` → 1048576, `4096` → 4096.
pub fn parse_size(text: &str) -> Result<usize> {
    let upper = text.trim().to_ascii_uppercase();
    let (digits, unit) = match upper.strip_suffix("KB") {
        Some(d) => (d, 1 << 10),
        None => match upper.strip_suffix("MB") {
            Some(d) => (d, 1 << 20),
            None => (upper.as_str(), 1),
        },
    };
    let value: f64 = digits.trim().parse().with_context(|| format!("bad size {text:?}: use e.g. 10KB, 1MB, 4096"))?;
    Ok((value * unit as f64) as usize)
}

/// What `/proc` says of a server process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessUse {
    pub rss_mb: f64,
    pub fds: usize,
    pub sockets: usize,
    /// CPU time used so far, user and system.
    pub cpu_seconds: f64,
}

/// The unit of `/proc/PID/stat`'s times: USER_HZ, which Linux fixes at 100 for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads a process's resident memory and open file descriptors (and which are sockets).
pub fn process_use(pid: u32) -> ProcessUse {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let (mut fds, mut sockets) = (0, 0);
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            fds += 1;
            if std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")) {
                sockets += 1;
            }
        }
    }
    // Fields 14 and 15 of /proc/PID/stat (after the parenthesised name): utime, stime.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after_name.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<f64>().ok()).sum();
    ProcessUse { rss_mb: rss_kb / 1024.0, fds, sockets, cpu_seconds: ticks / TICKS_PER_SECOND }
}

/// Started server processes: their PIDs and addresses.
pub struct Servers {
    pub children: Children,
    pub addrs: Vec<String>,
}

impl Servers {
    /// The use of each server process, in start order.
    pub fn usage(&self) -> Vec<ProcessUse> {
        self.children.0.iter().map(|c| process_use(c.id())).collect()
    }
}

/// How the load benchmark's servers are started: where, and with what push gate.
pub struct ServerOptions<'a> {
    /// A network namespace to start them in (`None`: this one).
    pub netns: Option<&'a str>,
    /// The address they listen on.
    pub ip: &'a str,
    pub max_pending_mb: f64,
}

impl<'a> ServerOptions<'a> {
    pub fn of(args: &'a LoadArgs) -> Self {
        ServerOptions { netns: args.server_netns.as_deref(), ip: &args.server_ip, max_pending_mb: args.max_pending_mb }
    }

    /// The command that starts `shoal bench load-server` there.
    fn command(&self, exe: &Path) -> Command {
        let mut command = match self.netns {
            Some(ns) => {
                let mut command = Command::new("nsenter");
                command.arg(format!("--net=/run/netns/{ns}")).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        command.args(["bench", "load-server", "--listen", &format!("{}:0", self.ip)]);
        command.args(["--max-pending-mb", &self.max_pending_mb.to_string()]);
        command
    }
}

/// Starts `shards` parameter-server processes for a model of `len` parameters (and, with
/// `replay`, a replay process of that capacity last), checkpointing into `checkpoints`.
pub fn start_servers(
    token: &Token,
    len: usize,
    shards: usize,
    replay: Option<usize>,
    checkpoints: Option<(&Path, f64)>,
    options: &ServerOptions<'_>,
) -> Result<Servers> {
    let exe = std::env::current_exe()?;
    let mut servers = Servers { children: Children(Vec::new()), addrs: Vec::new() };
    let roles = (0..shards).map(Some).chain(replay.map(|_| None));
    for role in roles {
        let mut command = options.command(&exe);
        let name = match role {
            Some(i) => {
                let shard_len = shard_range(len, i, shards).len();
                command.args(["--len", &shard_len.to_string(), "--index", &i.to_string()]);
                command.args(["--shards", &shards.to_string()]);
                format!("ps-shard{i}")
            }
            None => {
                command.args(["--replay-capacity", &replay.unwrap_or(0).to_string()]);
                "replay".to_string()
            }
        };
        if let Some((dir, seconds)) = checkpoints {
            command.arg("--checkpoint").arg(dir.join(format!("{name}.safetensors")));
            command.args(["--checkpoint-seconds", &seconds.to_string()]);
        }
        // The server exits when its stdin closes, so it never outlives this process.
        command.stdin(std::process::Stdio::piped());
        let (child, addr) = start_listener(command, token, &format!("load server {name}"))?;
        servers.children.0.push(child);
        servers.addrs.push(addr);
    }
    Ok(servers)
}

/// Writes a server's state to a file.
type Saver = Box<dyn Fn(&Path) -> Result<()>>;

/// `shoal bench load-server`.
pub fn serve(args: &LoadServerArgs) -> Result<()> {
    let token = Token::from_file_or_env(None)?;
    let limits = Limits { max_pending_bytes: (args.max_pending_mb * (1 << 20) as f64) as usize, ..Limits::default() };
    let (handle, save): (ServerHandle, Saver) = match args.replay_capacity {
        Some(capacity) => {
            let replay = Arc::new(LocalReplay::new(PrioritizedReplay::new(capacity, args.obs_dim, 0.6)?, 1));
            let handle = spawn_replay(&args.listen, Arc::clone(&replay), token, None, limits)?;
            (handle, Box::new(move |path| Ok(replay.save(path)?)))
        }
        None => {
            let server = Arc::new(ParamServer::new(
                vec![0.0; args.len],
                Box::new(Sgd::new(args.len, 0.0, false)),
                1e-3,
                UpdateMode::Async { max_staleness: None },
            ));
            let shard = ShardInfo { index: args.index, count: args.shards, offset: 0 };
            let config = ServiceConfig { limits, ..ServiceConfig::new(token, 0, shard) };
            let handle = spawn(&args.listen, Arc::clone(&server), None, config)?;
            let mut layout = ParamLayout::new();
            layout.push("params", &[args.len]);
            (handle, Box::new(move |path| Ok(server.save(path, &layout)?)))
        }
    };
    println!("shoal bench load-server listening on {}", handle.addr());
    std::io::stdout().flush()?;
    // Serve until stdin closes (the benchmark ended or died), saving every interval.
    let closed = stdin_closed();
    let every = Duration::from_secs_f64(args.checkpoint_seconds.max(0.1));
    while closed.recv_timeout(every).is_err() {
        if let Some(path) = &args.checkpoint {
            let started = std::time::Instant::now();
            save(path).with_context(|| format!("checkpointing to {}", path.display()))?;
            eprintln!("load-server: checkpoint {} in {:.0} ms", path.display(), started.elapsed().as_secs_f64() * 1e3);
        }
    }
    handle.shutdown()?;
    Ok(())
}

/// A channel that hears when stdin closes: the parent that started this helper process ended
/// or died, so the helper stops too.
fn stdin_closed() -> std::sync::mpsc::Receiver<()> {
    let (closed_tx, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    closed
}

/// `shoal bench load-clients`.
pub fn clients(args: &LoadClientsArgs) -> Result<()> {
    let targets = Targets {
        shards: args.shards.clone(),
        len: args.len,
        replay: args.replay.clone().map(|addr| (addr, args.obs_dim)),
        token: Token::from_file_or_env(None)?,
        rate: args.rate,
    };
    let workers = Workers::start(&targets, args.first, args.workers, args.learner);
    let closed = stdin_closed();
    let every = Duration::from_secs_f64(args.report_every.max(0.1));
    let mut stdout = std::io::stdout();
    while closed.recv_timeout(every).is_err() {
        let tally = workers.swap();
        let line = serde_json::json!({
            "push_pull": summary(&tally.push_pull, every.as_secs_f64()),
            "insert": summary(&tally.insert, every.as_secs_f64()),
            "sample": summary(&tally.sample, every.as_secs_f64()),
            "refusals": tally.refusals,
        });
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    workers.stop();
    Ok(())
}

/// Calls per second, latency quantiles (µs), errors and the last error of `calls` over
/// `seconds`.
pub fn summary(calls: &Calls, seconds: f64) -> serde_json::Value {
    let mut sorted = calls.latencies_us.clone();
    sorted.sort_unstable();
    serde_json::json!({
        "calls_per_sec": sorted.len() as f64 / seconds,
        "p50_us": quantile(&sorted, 0.5),
        "p95_us": quantile(&sorted, 0.95),
        "p99_us": quantile(&sorted, 0.99),
        "errors": calls.errors,
        "last_error": calls.last_error,
    })
}

/// Runs `workers` against `targets` for a warm-up second and `seconds` more; what the
/// measured seconds recorded, and the servers' use at their end.
fn measure(
    targets: &Targets,
    count: usize,
    learner: bool,
    seconds: f64,
    servers: &Servers,
) -> (super::load_workers::Tally, Vec<ProcessUse>) {
    let workers = Workers::start(targets, 0, count, learner);
    workers.wait_connected(count, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(1));
    workers.swap();
    let before = servers.usage();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let tally = workers.swap();
    let mut usage = servers.usage();
    for (after, before) in usage.iter_mut().zip(before) {
        after.cpu_seconds -= before.cpu_seconds;
    }
    workers.stop();
    (tally, usage)
}

/// A table printed as aligned columns and, with `csv`, written as CSV.
struct Table {
    header: Vec<&'static str>,
    csv: Option<std::fs::File>,
}

impl Table {
    fn new(header: Vec<&'static str>, csv: Option<PathBuf>) -> Result<Self> {
        println!("{}", header.iter().map(|h| format!("{h:>12}")).collect::<String>());
        let csv = match csv {
            Some(path) => {
                let mut file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                writeln!(file, "{}", header.join(","))?;
                Some(file)
            }
            None => None,
        };
        Ok(Table { header, csv })
    }

    fn row(&mut self, values: &[String]) -> Result<()> {
        debug_assert_eq!(values.len(), self.header.len());
        println!("{}", values.iter().map(|v| format!("{v:>12}")).collect::<String>());
        if let Some(file) = &mut self.csv {
            writeln!(file, "{}", values.join(","))?;
        }
        Ok(())
    }
}

fn csv_path(prefix: &Option<PathBuf>, table: &str) -> Option<PathBuf> {
    prefix.as_ref().map(|p| PathBuf::from(format!("{}-{table}.csv", p.display())))
}

/// Quantiles of one kind of call, as table cells.
fn latency_cells(calls: &Calls) -> [String; 3] {
    let mut sorted = calls.latencies_us.clone();
    sorted.sort_unstable();
    [0.5, 0.95, 0.99].map(|q| quantile(&sorted, q).to_string())
}

fn report_errors(what: &str, calls: &Calls) {
    if let Some(error) = &calls.last_error {
        eprintln!("  {what}: {} errors, the last: {error}", calls.errors);
    }
}

/// The tables (`--soak` runs [`super::bench_soak::run`] instead, from `shoal bench`).
pub fn run(args: &LoadArgs) -> Result<()> {
    let token = fresh_token()?;
    let sizes = args.sizes.iter().map(|s| parse_size(s)).collect::<Result<Vec<_>>>()?;
    for table in &args.tables {
        match table.as_str() {
            "ps" => ps_table(args, &token, &sizes)?,
            "replay" => replay_table(args, &token)?,
            other => bail!("unknown table {other:?}: --tables takes ps and replay"),
        }
    }
    Ok(())
}

fn ps_table(args: &LoadArgs, token: &Token, sizes: &[usize]) -> Result<()> {
    println!("parameter server: async push of a gradient + pull of the parameters, rate {} per worker", rate(args));
    let header = vec![
        "shards",
        "model",
        "workers",
        "calls/s",
        "MB/s",
        "p50_us",
        "p95_us",
        "p99_us",
        "busy",
        "errors",
        "rss_MB",
        "sockets",
        "cpu_us/call",
    ];
    let mut table = Table::new(header, csv_path(&args.csv, "ps"))?;
    for &shards in &args.shards {
        for &bytes in sizes {
            let len = bytes / 4;
            let servers = start_servers(token, len, shards, None, None, &ServerOptions::of(args))?;
            let targets =
                Targets { shards: servers.addrs.clone(), len, replay: None, token: token.clone(), rate: args.rate };
            for &count in &args.clients {
                let (tally, usage) = measure(&targets, count, false, args.seconds, &servers);
                let calls = &tally.push_pull;
                let per_sec = calls.latencies_us.len() as f64 / args.seconds;
                let [p50, p95, p99] = latency_cells(calls);
                let rss = usage.iter().map(|u| u.rss_mb).fold(0.0, f64::max);
                let sockets: usize = usage.iter().map(|u| u.sockets).sum();
                // The servers' CPU per completed call, all shards together.
                let cpu: f64 = usage.iter().map(|u| u.cpu_seconds).sum();
                let cpu_per_call = cpu / (per_sec * args.seconds).max(1.0) * 1e6;
                table.row(&[
                    shards.to_string(),
                    human_size(bytes),
                    count.to_string(),
                    format!("{per_sec:.0}"),
                    format!("{:.1}", per_sec * 2.0 * bytes as f64 / 1e6),
                    p50,
                    p95,
                    p99,
                    tally.refusals.to_string(),
                    calls.errors.to_string(),
                    format!("{rss:.0}"),
                    sockets.to_string(),
                    format!("{cpu_per_call:.1}"),
                ])?;
                report_errors("push+pull", calls);
            }
        }
    }
    Ok(())
}

fn replay_table(args: &LoadArgs, token: &Token) -> Result<()> {
    println!(
        "replay: each actor inserts {} rows (obs_dim 4) per call, rate {} per actor; one learner samples {} and updates their priorities",
        super::load_workers::INSERT_ROWS,
        rate(args),
        super::load_workers::SAMPLE_ROWS
    );
    let header = vec![
        "actors",
        "inserts/s",
        "rows/s",
        "ins_p50_us",
        "ins_p99_us",
        "samples/s",
        "smp_p50_us",
        "smp_p99_us",
        "busy",
        "errors",
        "rss_MB",
        "sockets",
    ];
    let mut table = Table::new(header, csv_path(&args.csv, "replay"))?;
    for &count in &args.clients {
        let servers = start_servers(token, 0, 0, Some(1 << 20), None, &ServerOptions::of(args))?;
        let replay = Some((servers.addrs[0].clone(), 4));
        let targets = Targets { shards: Vec::new(), len: 0, replay, token: token.clone(), rate: args.rate };
        let (tally, usage) = measure(&targets, count, true, args.seconds, &servers);
        let inserts = tally.insert.latencies_us.len() as f64 / args.seconds;
        let [ins_p50, _, ins_p99] = latency_cells(&tally.insert);
        let [smp_p50, _, smp_p99] = latency_cells(&tally.sample);
        table.row(&[
            count.to_string(),
            format!("{inserts:.0}"),
            format!("{:.0}", inserts * super::load_workers::INSERT_ROWS as f64),
            ins_p50,
            ins_p99,
            format!("{:.0}", tally.sample.latencies_us.len() as f64 / args.seconds),
            smp_p50,
            smp_p99,
            tally.refusals.to_string(),
            (tally.insert.errors + tally.sample.errors).to_string(),
            format!("{:.0}", usage[0].rss_mb),
            usage[0].sockets.to_string(),
        ])?;
        report_errors("insert", &tally.insert);
        report_errors("sample", &tally.sample);
    }
    Ok(())
}

fn rate(args: &LoadArgs) -> String {
    match args.rate > 0.0 {
        true => format!("{}/s", args.rate),
        false => "unbounded (each worker calls again as soon as answered)".into(),
    }
}

/// 10240 → `10KB`, 1048576 → `1MB`.
pub fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KB", b >> 10),
        b => format!("{b}B"),
    }
}

/// Reads JSON lines a child prints, on a thread, into a channel.
pub fn json_lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                if tx.send(value).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_back() {
        for (text, bytes) in [("10KB", 10 << 10), ("1MB", 1 << 20), ("10mb", 10 << 20), ("4096", 4096)] {
            assert_eq!(parse_size(text).unwrap(), bytes);
        }
        assert_eq!(human_size(10 << 10), "10KB");
        assert_eq!(human_size(10 << 20), "10MB");
        assert!(parse_size("ten").unwrap_err().to_string().contains("10KB"));
    }
}
