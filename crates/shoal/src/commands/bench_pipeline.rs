//! `shoal bench pipeline`: model parallelism across two processes against one process. For MLPs
//! of growing width it trains the same network (regression to random targets, Adam, the same
//! batches) in one piece in this process, and cut in the middle into two pipeline stages —
//! the first here, the second in a child `shoal` process over gRPC on loopback — and prints
//! the time per training step of each, the parameters each process holds, and whether the two
//! trainings ended on the same parameters (they must: bit for bit).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_dist::pipeline::{spawn_stage, split_point, RemoteStage, Stage};
use shoal_dist::{ClientOptions, Encoding, Token, TOKEN_ENV};
use shoal_nn::mlp::Mlp;
use shoal_nn::{Activation, Adam, ParamLayout};

/// Arguments of `shoal bench pipeline`.
#[derive(clap::Args)]
pub struct PipelineArgs {
    /// Hidden widths to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024,2048")]
    widths: Vec<usize>,
    /// Hidden layers (the cut is after half of them).
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Rows per training step.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Training steps per width (the same steps for both ways).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Serve the second stage of width W for a parent `shoal bench pipeline` (internal).
    #[arg(long, hide = true)]
    serve_stage: Option<usize>,
}

const OBS: usize = 64;
const OUT: usize = 16;
const LR: f32 = 1e-3;

/// The layer widths of the measured network, and where it is cut.
fn sizes(args: &PipelineArgs, width: usize) -> (Vec<usize>, usize) {
    let sizes = [vec![OBS], vec![width; args.layers.max(2)], vec![OUT]].concat();
    let cut = args.layers.max(2) / 2;
    (sizes, cut)
}

/// The network's initial parameters (seeded, so both processes start from the same ones).
fn init(sizes: &[usize]) -> Vec<f32> {
    let mut layout = ParamLayout::new();
    let mlp = Mlp::new(&mut layout, "net", sizes, Activation::Tanh, false);
    let mut params = vec![0.0; layout.len()];
    mlp.init(&mut params, 2f64.sqrt(), 1.0, &mut Pcg64Mcg::seed_from_u64(0));
    params
}

fn stage(sizes: &[usize], activate_output: bool, params: &[f32]) -> Result<Stage> {
    let adam = Box::new(Adam::new(params.len(), 0.9, 0.999, 1e-8));
    Ok(Stage::new(sizes, Activation::Tanh, activate_output, params.to_vec(), adam)?)
}

/// The child's side: serve stage 2 and print its address, until the parent closes stdin.
fn serve(args: &PipelineArgs, width: usize) -> Result<()> {
    let (sizes, cut) = sizes(args, width);
    let params = init(&sizes);
    let second = stage(&sizes[cut..], false, &params[split_point(&sizes, cut)..])?;
    let server = spawn_stage("127.0.0.1:0", second, Token::from_file_or_env(None)?)?;
    println!("{}", server.addr());
    std::io::stdout().flush()?;
    let _ = std::io::stdin().lines().count();
    Ok(())
}

/// ½·mean squared error's gradient for `target`.
fn grad(y: &[f32], target: &[f32], rows: usize) -> Vec<f32> {
    y.iter().zip(target).map(|(y, t)| (y - t) / rows as f32).collect()
}

pub fn run(args: &PipelineArgs) -> Result<()> {
    if let Some(width) = args.serve_stage {
        return serve(args, width);
    }
    let token = super::launch::fresh_token()?;
    for &width in &args.widths {
        let (sizes, cut) = sizes(args, width);
        let params = init(&sizes);
        let split = split_point(&sizes, cut);
        let mut child = Command::new(std::env::current_exe()?)
            .args(["bench", "pipeline", "--layers", &args.layers.to_string(), "--serve-stage", &width.to_string()])
            .env(TOKEN_ENV, token.secret())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut addr = String::new();
        BufReader::new(child.stdout.take().context("the stage process has no stdout")?).read_line(&mut addr)?;
        let options = ClientOptions {
            tls: None,
            token: token.clone(),
            encoding: Encoding::F32Le,
            retry_for: Duration::from_secs(10),
        };
        let remote = RemoteStage::connect(addr.trim(), options)?;
        let mut whole = stage(&sizes, false, &params)?;
        let mut first = stage(&sizes[..=cut], true, &params[..split])?;

        let mut rng = Pcg64Mcg::seed_from_u64(1);
        let rows = args.batch;
        let (mut one, mut piped) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..args.steps {
            let x: Vec<f32> = (0..rows * OBS).map(|_| rng.random_range(-1.0..1.0)).collect();
            let target: Vec<f32> = (0..rows * OUT).map(|_| rng.random_range(-1.0..1.0)).collect();
            let start = Instant::now();
            let y = whole.forward(&x, rows, true)?.to_vec();
            whole.backward(&grad(&y, &target, rows), LR)?;
            one += start.elapsed();
            let start = Instant::now();
            let hidden = first.forward(&x, rows, true)?.to_vec();
            let y = remote.forward(&hidden, rows, true)?;
            let d_hidden = remote.backward(&grad(&y, &target, rows), rows, LR)?;
            first.backward(&d_hidden, LR)?;
            piped += start.elapsed();
        }
        let joined = [first.params(), &remote.params()?[..]].concat();
        drop(child.stdin.take());
        let _ = child.wait();
        ensure!(joined == whole.params(), "width {width}: the pipeline's parameters differ from one process's");
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / args.steps as f64;
        println!("pipeline_width_{width}_params: {} ({} + {})", params.len(), split, params.len() - split);
        println!("one_process_width_{width}_step_ms: {:.3}", ms(one));
        println!("two_stage_pipeline_width_{width}_step_ms: {:.3}", ms(piped));
        println!("pipeline_vs_one_process_width_{width}: {}", significant(ms(one) / ms(piped)));
        println!("pipeline_width_{width}_params_equal: true");
    }
    Ok(())
}

/// `x` with three significant digits (at least two decimals): a debug build's pipeline can be
/// 200× slower than one process, and `{:.2}` printed that ratio as 0.00.
fn significant(x: f64) -> String {
    let decimals = (2.0 - x.abs().log10().floor()).clamp(2.0, 12.0) as usize;
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::significant;

    #[test]
    fn ratios_keep_three_significant_digits() {
        assert_eq!(significant(0.004_659), "0.00466");
        assert_eq!(significant(0.29), "0.290");
        assert_eq!(significant(2.5), "2.50");
        assert_eq!(significant(123.4), "123.40");
    }
}
