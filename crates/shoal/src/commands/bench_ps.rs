//! `shoal bench ps`: moving parameter vectors. For 10 KB, 1 MB and 10 MB vectors it times a
//! push (gradient applied by SGD) plus a pull of the result, in interleaved rounds of the same
//! run: through the in-process parameter server; to a `shoal ps`-style server on loopback (in
//! this process) with the tensors in gRPC messages, and on the server's data plane (how
//! workers send them); and, as the physical reference, the same bytes sent to a loopback TCP
//! peer and back, with blocking reads and with the data plane's polled reads. Then env
//! steps/s of A3C with one embedded worker and with 1 and 2 worker processes, each push
//! waiting for its reply or overlapped with the next rollout (`cluster.overlap_push`).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use anyhow::Result;
use std::sync::Arc;

use shoal_dist::{
    ClientOptions, Encoding, GrpcStore, ParamServer, ParamStore, PolledReads, ServiceConfig, ShardInfo, Token,
    UpdateMode,
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

/// Env steps per second of A3C with `workers` workers as threads (`embedded`) or processes,
/// pushes overlapped with acting or not (`cluster.overlap_push`): a `shoal train` run into a
/// temporary directory, read from its summary (start-up included).
fn a3c(args: &PsArgs, topology: &str, workers: usize, overlap: bool) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!("shoal-bench-a3c-{}-{topology}-{workers}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("train")
        .arg(&args.a3c_config)
        .args(["--set", &format!("cluster.topology={topology}"), "--set", &format!("cluster.workers={workers}")])
        .args(["--set", &format!("cluster.overlap_push={overlap}")])
        .args(["--set", &format!("stop.env_steps={}", args.a3c_steps), "--out"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "the A3C run with {workers} {topology} workers failed");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json"))?)?;
    let _ = std::fs::remove_dir_all(&dir);
    summary["env_steps_per_sec"].as_f64().ok_or_else(|| anyhow::anyhow!("no env_steps_per_sec in the summary"))
}

const SIZES: [(&str, usize); 3] = [("10KB", 10 * 1024), ("1MB", 1 << 20), ("10MB", 10 << 20)];

/// The polled reads' budget, the data plane client's default.
const POLL: Duration = Duration::from_micros(200);

/// How a TCP reference reads: blocking, or polled as the data plane reads.
fn reads(polled: bool) -> PolledReads {
    PolledReads::new(if polled { POLL } else { Duration::ZERO })
}

/// A loopback peer that echoes every buffer of `bytes` back, and the client's socket.
fn echo_peer(bytes: usize, polled: bool) -> Result<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut buf = vec![0u8; bytes];
        let mut reads = reads(polled);
        loop {
            reads.read_exact(&mut conn, &mut buf)?;
            conn.write_all(&buf)?;
        }
    });
    let client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    Ok(client)
}

/// Mean seconds of sending `bytes` bytes to an echo peer and reading them back.
fn echo(seconds: f64, socket: &mut TcpStream, buffers: &mut (Vec<u8>, Vec<u8>), polled: bool) -> Result<f64> {
    let mut reads = reads(polled);
    per_call(seconds, || {
        socket.write_all(&buffers.0)?;
        reads.read_exact(socket, &mut buffers.1)?;
        std::mem::swap(&mut buffers.0, &mut buffers.1);
        Ok(())
    })
}

fn async_server(len: usize) -> ParamServer {
    ParamServer::new(
        vec![0.0; len],
        Box::new(Sgd::new(len, 0.0, false)),
        1e-3,
        UpdateMode::Async { max_staleness: None },
    )
}

/// Mean seconds of one push of `grad` plus one pull of the result through `store`, as a worker
/// does them after each rollout.
fn push_pull(seconds: f64, store: &dyn ParamStore, grad: &[f32], params: &mut [f32]) -> Result<f64> {
    let mut version = store.version();
    per_call(seconds, || {
        let (_, pulled) = store.push_gradient_and_pull(0, version, grad, Some(version), params)?;
        version = pulled.unwrap_or(version);
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
        let config = ServiceConfig::new(token.clone(), 0, ShardInfo::WHOLE);
        let handle = shoal_dist::spawn("127.0.0.1:0", Arc::new(async_server(len)), None, config)?;
        let options = ClientOptions {
            tls: None,
            token: token.clone(),
            encoding: Encoding::F32Le,
            retry_for: Duration::from_secs(5),
        };
        let connect = || GrpcStore::connect(&handle.addr().to_string(), 0, 0, 1, options.clone());
        let (data_plane, grpc) = (connect()?, connect()?.without_data_plane());
        anyhow::ensure!(data_plane.uses_data_plane(), "the server offered no data plane");
        let (mut blocking, mut polled) = (echo_peer(bytes, false)?, echo_peer(bytes, true)?);
        let mut buffers = (vec![7u8; bytes], vec![0u8; bytes]);
        let mut times: [Vec<f64>; 8] = Default::default();
        for _ in 0..ROUNDS {
            times[0].push(push_pull(seconds, &server, &grad, &mut params)?);
            times[1].push(per_call(seconds, || server.pull(None, &mut params).map(drop).map_err(Into::into))?);
            times[2].push(push_pull(seconds, &grpc, &grad, &mut params)?);
            times[3].push(per_call(seconds, || grpc.pull(None, &mut params).map(drop).map_err(Into::into))?);
            times[4].push(push_pull(seconds, &data_plane, &grad, &mut params)?);
            times[5].push(per_call(seconds, || data_plane.pull(None, &mut params).map(drop).map_err(Into::into))?);
            times[6].push(echo(seconds, &mut blocking, &mut buffers, false)?);
            times[7].push(echo(seconds, &mut polled, &mut buffers, true)?);
        }
        drop(handle);
        let [inproc, inproc_pull, grpc, grpc_pull, data, data_pull, tcp, tcp_polled] =
            times.map(|mut t| median(&mut t));
        let mb = |secs: f64| 2.0 * bytes as f64 / secs / 1e6;
        let us = |name: &str, secs: f64| println!("{name}_{label}_us: {:.1}", secs * 1e6);
        us("inproc_push_pull", inproc);
        us("inproc_pull", inproc_pull);
        us("grpc_push_pull", grpc);
        us("grpc_pull", grpc_pull);
        us("data_plane_push_pull", data);
        println!("data_plane_push_pull_{label}_mb_per_sec: {:.0}", mb(data));
        us("data_plane_pull", data_pull);
        us("tcp_loopback_roundtrip", tcp);
        us("tcp_loopback_polled_roundtrip", tcp_polled);
        println!("tcp_loopback_{label}_mb_per_sec: {:.0}", mb(tcp));
        println!("grpc_vs_tcp_{label}: {:.2}", tcp / grpc);
        println!("data_plane_vs_tcp_{label}: {:.2}", tcp / data);
        println!("data_plane_vs_polled_tcp_{label}: {:.2}", tcp_polled / data);
    }
    if args.a3c_config.exists() {
        let embedded = a3c(args, "embedded", 1, false)?;
        println!("a3c_1_embedded_worker_env_steps_per_sec: {embedded:.0}");
        for (overlap, label) in [(false, ""), (true, "_overlapped")] {
            for workers in [1, 2] {
                let processes = a3c(args, "processes", workers, overlap)?;
                println!("a3c_{workers}_worker_processes{label}_env_steps_per_sec: {processes:.0}");
                if workers == 1 {
                    println!("a3c_1_worker_process{label}_vs_embedded: {:.2}", processes / embedded);
                }
            }
        }
    }
    Ok(())
}
