//! Model parallelism: an MLP cut by layers into two stages, the second served over gRPC on
//! loopback (as another process serves it), trains to exactly the parameters and outputs of
//! the same network in one piece — bit for bit, since each stage runs the same kernels in the
//! same order and Adam is elementwise. Misuse is a named error.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_dist::pipeline::{spawn_stage, split_point, RemoteStage, Stage};
use shoal_dist::{ClientOptions, DistError, Encoding, Token};
use shoal_nn::mlp::Mlp;
use shoal_nn::{Activation, Adam, ParamLayout};
use std::time::Duration;

const SIZES: [usize; 5] = [8, 32, 24, 16, 3];
const CUT: usize = 2;

fn token() -> Token {
    Token::new("pipeline-token-0123456789").unwrap()
}

fn adam(len: usize) -> Box<Adam<f32>> {
    Box::new(Adam::new(len, 0.9, 0.999, 1e-8))
}

fn options(token: Token) -> ClientOptions {
    ClientOptions { tls: None, token, encoding: Encoding::F32Le, retry_for: Duration::from_secs(5) }
}

#[test]
fn two_stages_over_grpc_train_exactly_like_one_network() {
    let mut rng = Pcg64Mcg::seed_from_u64(7);
    let mut layout = ParamLayout::new();
    let whole_mlp = Mlp::new(&mut layout, "net", &SIZES, Activation::Tanh, false);
    let mut init = vec![0.0f32; layout.len()];
    whole_mlp.init(&mut init, 2f64.sqrt(), 1.0, &mut rng);
    let cut = split_point(&SIZES, CUT);

    let mut whole = Stage::new(&SIZES, Activation::Tanh, false, init.clone(), adam(init.len())).unwrap();
    let mut first = Stage::new(&SIZES[..=CUT], Activation::Tanh, true, init[..cut].to_vec(), adam(cut)).unwrap();
    let second =
        Stage::new(&SIZES[CUT..], Activation::Tanh, false, init[cut..].to_vec(), adam(init.len() - cut)).unwrap();
    let server = spawn_stage("127.0.0.1:0", second, token()).unwrap();
    let remote = RemoteStage::connect(&server.addr().to_string(), options(token())).unwrap();

    let (rows, out) = (16, SIZES[4]);
    for step in 0..25 {
        let x: Vec<f32> = (0..rows * SIZES[0]).map(|_| rng.random_range(-1.0..1.0)).collect();
        let target: Vec<f32> = (0..rows * out).map(|_| rng.random_range(-1.0..1.0)).collect();
        // ½·mean squared error: ∂L/∂y = (y − t) / rows.
        let grad = |y: &[f32]| -> Vec<f32> { y.iter().zip(&target).map(|(y, t)| (y - t) / rows as f32).collect() };

        let y_whole = whole.forward(&x, rows, true).unwrap().to_vec();
        whole.backward(&grad(&y_whole), 1e-2).unwrap();

        let hidden = first.forward(&x, rows, true).unwrap().to_vec();
        let y = remote.forward(&hidden, rows, true).unwrap();
        assert_eq!(y, y_whole, "step {step}: the pipeline's output is the network's");
        let d_hidden = remote.backward(&grad(&y), rows, 1e-2).unwrap();
        first.backward(&d_hidden, 1e-2).unwrap();
    }
    let joined = [first.params(), &remote.params().unwrap()[..]].concat();
    assert_eq!(joined, whole.params(), "25 Adam steps: the stages' parameters are the network's");
    assert_ne!(joined, init, "and they moved");
}

#[test]
fn misuse_of_a_stage_is_a_named_error() {
    let sizes = [4, 8, 2];
    let params = vec![0.1f32; split_point(&sizes, 2)];
    let err = Stage::new(&sizes, Activation::Relu, false, params[..5].to_vec(), adam(5)).err().unwrap();
    assert!(err.to_string().contains("holds 58 parameters, got 5"), "{err}");

    let stage = Stage::new(&sizes, Activation::Relu, false, params.clone(), adam(params.len())).unwrap();
    let server = spawn_stage("127.0.0.1:0", stage, token()).unwrap();
    let addr = server.addr().to_string();
    let remote = RemoteStage::connect(&addr, options(token())).unwrap();
    let err = remote.backward(&[0.0; 4], 2, 0.1).unwrap_err();
    assert!(err.to_string().contains("needs a forward pass with keep = true first"), "{err}");
    let err = remote.forward(&[0.0; 7], 2, true).unwrap_err();
    assert!(err.to_string().contains("stage input has 7 values"), "{err}");
    remote.forward(&[0.0; 8], 2, true).unwrap();
    let err = remote.backward(&[0.0; 3], 2, 0.1).unwrap_err();
    assert!(err.to_string().contains("stage output gradient has 3 values"), "{err}");

    let stranger = RemoteStage::connect(&addr, options(Token::new("another-token-987654321").unwrap())).unwrap();
    let err = stranger.params().unwrap_err();
    assert!(matches!(err, DistError::Refused { .. }) && err.to_string().contains("wrong token"), "{err}");
}
