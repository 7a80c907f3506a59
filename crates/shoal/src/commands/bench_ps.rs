//! `shoal bench ps`: moving parameter vectors. For 10 KB, 1 MB and 10 MB vectors it times a
//! push (gradient applied by SGD) plus a pull three ways, in interleaved rounds of the same
//! run: through the in-process parameter server; over gRPC on loopback (a `shoal ps`-style
//! server in this process, a client as a worker uses it); and, as the physical reference, the
//! same bytes sent to a loopback TCP peer and back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use anyhow::Result;
use std::sync::Arc;

use shoal_dist::{
    ClientOptions, Encoding, GrpcStore, ParamServer, ParamStore, ServiceConfig, ShardInfo, Token, UpdateMode,
};
use shoal_nn::Sgd;

use super::bench_timing::{median, per_call};

/// Arguments of `shoal bench ps`.
#[derive(clap::Args)]
pub struct PsArgs {
    /// Seconds per transport and size, split over interleaved rounds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// The A3C config whose env-steps/s is measured with 1 and 2 worker processes (skipped
    /// when the file is missing).
    #[arg(long, default_value = "configs/cartpole-a3c.toml")]
    a3c_config: std::path::PathBuf,
    /// Env steps of each A3C measurement.
    #[arg(long, default_value_t = 200_000)]
    a3c_steps: u64,
}

/// Env steps per second of A3C with `workers` worker processes: a `shoal train` run with
/// `topology = "processes"` into a temporary directory, read from its summary (start-up
/// included).
fn a3c_processes(args: &PsArgs, workers: usize) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!("shoal-bench-a3c-{}-{workers}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("train")
        .arg(&args.a3c_config)
        .args(["--set", "cluster.topology=processes", "--set", &format!("cluster.workers={workers}")])
        .args(["--set", &format!("stop.env_steps={}", args.a3c_steps), "--out"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "the A3C run with {workers} worker processes failed");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json"))?)?;
    let _ = std::fs::remove_dir_all(&dir);
    summary["env_steps_per_sec"].as_f64().ok_or_else(|| anyhow::anyhow!("no env_steps_per_sec in the summary"))
}

const SIZES: [(&str, usize); 3] = [("10KB", 10 * 1024), ("1MB", 1 << 20), ("10MB", 10 << 20)];

/// A loopback peer that echoes every buffer of `bytes` back.
fn echo_peer(bytes: usize) -> Result<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut buf = vec![0u8; bytes];
        loop {
            conn.read_exact(&mut buf)?;
            conn.write_all(&buf)?;
        }
    });
    let client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    Ok(client)
}

fn async_server(len: usize) -> ParamServer {
    ParamServer::new(
        vec![0.0; len],
        Box::new(Sgd::new(len, 0.0, false)),
        1e-3,
        UpdateMode::Async { max_staleness: None },
    )
}

/// Mean seconds of one push of `grad` plus one pull of the result through `store`.
fn push_pull(seconds: f64, store: &dyn ParamStore, grad: &[f32], params: &mut [f32]) -> Result<f64> {
    let mut version = store.version();
    per_call(seconds, || {
        store.push_gradient(0, version, grad)?;
        version = store.pull(Some(version), params)?.unwrap_or(version);
        Ok(())
    })
}

/// Rounds per size: every transport is timed once per round, in turn, so a burst of load
/// from elsewhere on the machine lands on all of them; each figure is the median over rounds.
const ROUNDS: usize = 5;

pub fn run(args: &PsArgs) -> Result<()> {
    let token = Token::new("bench-token-0123456789")?;
    let seconds = args.seconds / ROUNDS as f64;
    for (label, bytes) in SIZES {
        let len = bytes / 4;
        let server = async_server(len);
        let grad = vec![1e-3f32; len];
        let mut params = vec![0.0f32; len];
        let config = ServiceConfig { tls: None, token: token.clone(), layout_hash: 0, shard: ShardInfo::WHOLE };
        let handle = shoal_dist::spawn("127.0.0.1:0", Arc::new(async_server(len)), None, config)?;
        let options = ClientOptions {
            tls: None,
            token: token.clone(),
            encoding: Encoding::F32Le,
            retry_for: Duration::from_secs(5),
        };
        let remote = GrpcStore::connect(&handle.addr().to_string(), 0, 0, 1, options)?;
        let mut socket = echo_peer(bytes)?;
        let mut send = vec![7u8; bytes];
        let mut recv = vec![0u8; bytes];
        // [in-process push+pull, in-process pull, gRPC push+pull, gRPC pull, TCP round trip]
        let mut times: [Vec<f64>; 5] = Default::default();
        for _ in 0..ROUNDS {
            times[0].push(push_pull(seconds, &server, &grad, &mut params)?);
            times[1].push(per_call(seconds, || server.pull(None, &mut params).map(drop).map_err(Into::into))?);
            times[2].push(push_pull(seconds, &remote, &grad, &mut params)?);
            times[3].push(per_call(seconds, || remote.pull(None, &mut params).map(drop).map_err(Into::into))?);
            times[4].push(per_call(seconds, || {
                socket.write_all(&send)?;
                socket.read_exact(&mut recv)?;
                std::mem::swap(&mut send, &mut recv);
                Ok(())
            })?);
        }
        drop(handle);
        let [round_trip, pull, grpc, grpc_pull, tcp] = times.map(|mut t| median(&mut t));
        let mb = |secs: f64| 2.0 * bytes as f64 / secs / 1e6;
        println!("inproc_push_pull_{label}_us: {:.1}", round_trip * 1e6);
        println!("inproc_push_pull_{label}_mb_per_sec: {:.0}", mb(round_trip));
        println!("inproc_pull_{label}_us: {:.1}", pull * 1e6);
        println!("grpc_push_pull_{label}_us: {:.1}", grpc * 1e6);
        println!("grpc_push_pull_{label}_mb_per_sec: {:.0}", mb(grpc));
        println!("grpc_pull_{label}_us: {:.1}", grpc_pull * 1e6);
        println!("tcp_loopback_roundtrip_{label}_us: {:.1}", tcp * 1e6);
        println!("tcp_loopback_{label}_mb_per_sec: {:.0}", mb(tcp));
        println!("grpc_vs_tcp_{label}: {:.2}", tcp / grpc);
    }
    if args.a3c_config.exists() {
        for workers in [1, 2] {
            println!("a3c_{workers}_worker_processes_env_steps_per_sec: {:.0}", a3c_processes(args, workers)?);
        }
    }
    Ok(())
}
