//! `shoal tune-worker --study ADDR`: trains trials of a study served by `shoal tune --serve`,
//! one after another, until the study says there are none left. Each trial trains as under
//! `shoal tune`, into its directory in the study directory (which this process must see at
//! the same path: a shared filesystem, a volume), reporting every iteration to the coordinator
//! and stopping when it answers so. A job the coordinator gave to another worker meanwhile
//! (this one fell silent for too long) is dropped without writing anything more.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use shoal_algo::{Agent, AlgoError, Callback, Control, Progress, TrainConfig};
use shoal_dist::jobs::{JobClient, JobEnd, Take};
use shoal_dist::{ClientOptions, Encoding};
use shoal_tune::remote::decode_job;
use shoal_tune::TrialJob;

use super::tune::{train_trial, trial_metrics};
use super::worker::ClientSecurity;

/// Arguments of `shoal tune-worker`.
#[derive(clap::Args)]
pub struct Args {
    /// The coordinator: the address `shoal tune --serve` prints.
    #[arg(long)]
    study: String,
    /// This worker's name in the coordinator's log (default: host name and process id).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    security: ClientSecurity,
    /// Seconds to keep retrying an unreachable coordinator.
    #[arg(long, default_value_t = 60.0)]
    retry_seconds: f64,
}

pub fn run(args: &Args) -> Result<()> {
    let (token, tls) = args.security.load()?;
    let retry_for = Duration::from_secs_f64(args.retry_seconds.max(0.0));
    let options = ClientOptions { tls, token, encoding: Encoding::F32Le, retry_for };
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}:{}", host.trim(), std::process::id())
    });
    let client = JobClient::new(&args.study, &name, options)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut trained = 0;
    loop {
        match client.take()? {
            Take::Done => break,
            Take::Wait => std::thread::sleep(Duration::from_millis(100)),
            Take::Job { id, payload } => {
                let end = train(&client, id, &payload, &interrupted);
                if let Some(refused) =
                    end.as_ref().map_err(|e| format!("{e:#}")).err().filter(|e| e.contains("drop it"))
                {
                    eprintln!("job {id} dropped: {refused}");
                    continue;
                }
                let end = match end {
                    Ok(end) => end,
                    Err(e) => JobEnd { outcome: Err(format!("{e:#}")), steps: 0, stopped: false },
                };
                client.finish(id, &end)?;
                trained += 1;
            }
        }
    }
    eprintln!("the study has no trial left; {trained} job(s) trained here");
    Ok(())
}

/// Trains job `id` described by `payload`, relaying progress to the coordinator.
fn train(client: &JobClient, id: u64, payload: &[u8], interrupted: &Arc<AtomicBool>) -> Result<JobEnd> {
    let (trial, until, resume, dir, config) = decode_job(payload).map_err(anyhow::Error::msg)?;
    let config = TrainConfig::parse(&config, &[]).with_context(|| format!("trial {trial}'s config"))?;
    let job = TrialJob { trial, config: &config, dir, until, resume };
    let mut relay = Relay { client, id };
    let end = train_trial(&job, interrupted, &mut relay)?;
    Ok(JobEnd { outcome: Ok(()), steps: end.env_steps, stopped: end.stopped_by_tuner })
}

/// Reports every iteration to the coordinator; its refusal aborts the job before anything
/// more is written (the trial is another worker's now).
struct Relay<'a> {
    client: &'a JobClient,
    id: u64,
}

impl Callback for Relay<'_> {
    fn on_iteration(&mut self, _: &mut dyn Agent, p: &Progress<'_>) -> shoal_algo::Result<Control> {
        match self.client.progress(self.id, p.env_steps, &trial_metrics(p)) {
            Ok(true) => Ok(Control::Stop),
            Ok(false) => Ok(Control::Continue),
            Err(e) => Err(AlgoError::Dist(e)),
        }
    }
}
