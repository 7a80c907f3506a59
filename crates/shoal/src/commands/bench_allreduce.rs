//! `shoal bench allreduce`, started under `mpirun -np N` (a build with `--features mpi`): the
//! ways N ranks combine a gradient of 1 MB and 10 MB, timed in one run, interleaved:
//! - MPI_Allreduce of the vector (what `cluster.mode = "allreduce"` does every step);
//! - a synchronous parameter-server round: rank 0 serves, every rank pushes its gradient and
//!   pulls the update of the round's mean on the data plane (what `mode = "sync"` does);
//! - plain TCP, the physical reference for the same traffic: every other rank sends its
//!   vector to rank 0, which adds them up and sends the sum back.
//!
//! Collectives need every rank to make the same calls, so each measurement runs a count of
//! calls that rank 0 chose from a short calibration and broadcast, never a duration.

/// Arguments of `shoal bench allreduce`.
#[derive(clap::Args)]
pub struct AllreduceArgs {
    /// Seconds per method and size, split over interleaved rounds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// The address the other ranks reach rank 0 at (its host's, when ranks run on several).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

#[cfg(not(feature = "mpi"))]
pub fn run(_args: &AllreduceArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "`shoal bench allreduce` compares MPI_Allreduce with the parameter server: build with \
         `cargo build --release --features mpi` and start it as `mpirun -np 2 target/release/shoal bench allreduce`"
    )
}

#[cfg(feature = "mpi")]
pub use with_mpi::run;

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result};
    use shoal_dist::allreduce::MpiGroup;
    use shoal_dist::{
        AllReduce, ClientOptions, Encoding, GrpcStore, ParamServer, ParamStore, ServiceConfig, ShardInfo, Token,
        UpdateMode,
    };
    use shoal_nn::Sgd;

    use super::super::bench_timing::median;
    use super::AllreduceArgs;

    const SIZES: [(&str, usize); 2] = [("1MB", 1 << 20), ("10MB", 10 << 20)];
    const ROUNDS: usize = 3;

    /// One rank's ends of the plain-TCP reference: rank 0 holds a stream to every other rank.
    struct Tcp {
        peers: Vec<TcpStream>,
        buffer: Vec<u8>,
    }

    impl Tcp {
        /// Every rank sends `values` to rank 0, which sums them and sends the sum back.
        fn sum(&mut self, group: &dyn AllReduce, values: &mut [f32]) -> Result<()> {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(values);
            if group.rank() == 0 {
                let mut total: Vec<f32> = bytemuck::cast_slice(bytes).to_vec();
                self.buffer.resize(bytes.len(), 0);
                for peer in &mut self.peers {
                    peer.read_exact(&mut self.buffer)?;
                    let theirs: &[f32] = bytemuck::cast_slice(&self.buffer);
                    total.iter_mut().zip(theirs).for_each(|(t, v)| *t += v);
                }
                let sum: &[u8] = bytemuck::cast_slice(&total);
                for peer in &mut self.peers {
                    peer.write_all(sum)?;
                }
                bytes.copy_from_slice(sum);
            } else {
                let peer = &mut self.peers[0];
                peer.write_all(bytes)?;
                peer.read_exact(bytes)?;
            }
            Ok(())
        }
    }

    /// Rank 0's `value` on every rank.
    fn broadcast(group: &dyn AllReduce, value: f64) -> Result<f64> {
        let mut values = [if group.rank() == 0 { value } else { 0.0 }];
        group.sum_f64(&mut values)?;
        Ok(values[0])
    }

    /// Mean seconds per call of `f` over a count of calls rank 0 picks to fill `seconds`.
    fn timed(group: &dyn AllReduce, seconds: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
        let start = Instant::now();
        for _ in 0..3 {
            f()?;
        }
        let calibration = start.elapsed().as_secs_f64() / 3.0;
        let calls = broadcast(group, (seconds / calibration).clamp(3.0, 100_000.0).floor())? as usize;
        let start = Instant::now();
        for _ in 0..calls {
            f()?;
        }
        let mine = [start.elapsed().as_secs_f64() / calls as f64];
        // The slowest rank's time is the group's.
        let mut all = vec![0.0; group.size()];
        all[group.rank()] = mine[0];
        group.sum_f64(&mut all)?;
        Ok(all.iter().copied().fold(0.0, f64::max))
    }

    /// The TCP reference's connections: rank 0 accepts one from every other rank.
    fn connect_tcp(group: &dyn AllReduce, host: &str) -> Result<Tcp> {
        let listener = if group.rank() == 0 { Some(TcpListener::bind("0.0.0.0:0")?) } else { None };
        let port = listener.as_ref().map_or(Ok(0), |l| l.local_addr().map(|a| a.port()))?;
        let port = broadcast(group, f64::from(port))? as u16;
        let mut peers = Vec::new();
        if let Some(listener) = listener {
            for _ in 1..group.size() {
                peers.push(listener.accept()?.0);
            }
        } else {
            peers.push(
                TcpStream::connect((host, port)).with_context(|| format!("connecting to rank 0 at {host}:{port}"))?,
            );
        }
        for peer in &peers {
            peer.set_nodelay(true)?;
        }
        Ok(Tcp { peers, buffer: Vec::new() })
    }

    pub fn run(args: &AllreduceArgs) -> Result<()> {
        let group = MpiGroup::init()?;
        let (rank, size) = (group.rank(), group.size());
        anyhow::ensure!(size >= 2, "start it under `mpirun -np 2` (or more): this is rank 0 of 1");
        let token = Token::new("bench-token-0123456789")?;
        let seconds = args.seconds / ROUNDS as f64;
        let mut tcp = connect_tcp(&group, &args.host)?;
        for (label, bytes) in SIZES {
            let len = bytes / 4;
            // Rank 0 serves a synchronous round of all ranks; everyone connects to it.
            let server = if rank == 0 {
                let store = ParamServer::new(
                    vec![0.0; len],
                    Box::new(Sgd::new(len, 0.0, false)),
                    1e-3,
                    UpdateMode::Sync { workers: size, timeout: Duration::from_secs(60) },
                );
                let config = ServiceConfig::new(token.clone(), 0, ShardInfo::WHOLE);
                Some(shoal_dist::spawn("0.0.0.0:0", Arc::new(store), None, config)?)
            } else {
                None
            };
            let port = broadcast(&group, server.as_ref().map_or(0.0, |s| f64::from(s.addr().port())))? as u16;
            let options = ClientOptions {
                tls: None,
                token: token.clone(),
                encoding: Encoding::F32Le,
                retry_for: Duration::from_secs(10),
            };
            let store = GrpcStore::connect(&format!("{}:{port}", args.host), 0, 0, 1, options)?;
            let (mut grad, mut params) = (vec![1e-3f32 * (rank + 1) as f32; len], vec![0.0f32; len]);
            let mut version = None;
            let mut times: [Vec<f64>; 3] = Default::default();
            for _ in 0..ROUNDS {
                times[0].push(timed(&group, seconds, || Ok(group.sum(&mut grad)?))?);
                times[1].push(timed(&group, seconds, || {
                    let base = version.unwrap_or(0);
                    let (_, pulled) = store.push_gradient_and_pull(rank, base, &grad, version, &mut params)?;
                    version = pulled.or(version);
                    Ok(())
                })?);
                times[2].push(timed(&group, seconds, || tcp.sum(&group, &mut grad))?);
            }
            let [mpi, ps, plain] = times.map(|mut t| median(&mut t));
            if rank == 0 {
                println!("mpi_allreduce_{label}_us: {:.1}", mpi * 1e6);
                println!("sync_ps_round_{label}_us: {:.1}", ps * 1e6);
                println!("tcp_sum_at_rank_0_{label}_us: {:.1}", plain * 1e6);
                println!("mpi_allreduce_vs_tcp_{label}: {:.2}", plain / mpi);
                println!("sync_ps_vs_tcp_{label}: {:.2}", plain / ps);
            }
            // Everyone is done with the server before rank 0 stops it.
            group.sum(&mut [0.0])?;
            drop(store);
            drop(server);
        }
        Ok(())
    }
}
