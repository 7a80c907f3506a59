//! `shoal train` / `shoal eval` as a user runs them: run directories, resume, Ctrl-C, and
//! config errors that name the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal")).args(args).output().expect("run shoal")
}

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn config(name: &str) -> String {
    configs().join(name).display().to_string()
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure, stdout: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn train_writes_a_run_directory_and_eval_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = ok(&shoal(&[
        "train",
        &config("cartpole-ppo.toml"),
        "--set",
        "stop.env_steps=4096",
        "--seed",
        "3",
        "--out",
        run.to_str().unwrap(),
    ]));
    assert!(out.contains("\"env_steps\": 4096"), "{out}");
    for file in [
        "config.toml",
        "metrics.csv",
        "summary.json",
        "checkpoints/latest/model.safetensors",
        "checkpoints/latest/state.json",
    ] {
        assert!(run.join(file).exists(), "missing {file}");
    }
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("seed = 3") && resolved.contains("env_steps = 4096"), "{resolved}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(csv.starts_with("iteration,env_steps,wall_seconds,episode_return_mean"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 16, "a header and 16 iterations of 256 steps");
    assert!(std::fs::read_dir(&run).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("events.out.tfevents.")));

    let report: serde_json::Value = serde_json::from_str(&ok(&shoal(&[
        "eval",
        run.to_str().unwrap(),
        "--episodes",
        "5",
        "--deterministic",
        "--json",
    ])))
    .unwrap();
    assert_eq!(report["episodes"], 5);
    assert!(report["episode_return_mean"].as_f64().unwrap() > 0.0);
    assert!(report["success_rate"].is_number());
    let table = ok(&shoal(&["eval", run.join("checkpoints/latest").to_str().unwrap(), "--episodes", "2"]));
    assert!(table.contains("episode_return_mean:") && table.contains("env: CartPole-v1"), "{table}");
}

#[test]
fn resume_continues_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    ok(&shoal(&["train", &config("cartpole-dqn.toml"), "--set", "stop.env_steps=2000", "--out", run_arg]));
    assert_eq!(summary(&run)["env_steps"], 2000);
    ok(&shoal(&["train", "--resume", run_arg, "--set", "stop.env_steps=4000"]));
    assert_eq!(summary(&run)["env_steps"], 4000);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let iterations: Vec<u64> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(iterations, (1..=1000).collect::<Vec<_>>(), "iterations continue across the resume");
    let err = err(&shoal(&["train", &config("cartpole-dqn.toml"), "--out", run_arg]));
    assert!(err.contains("already holds a run") && err.contains("--resume"), "{err}");
}

#[test]
fn ctrl_c_saves_a_checkpoint_to_resume_from() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["train", &config("cartpole-ppo.toml"), "--set", "stop.env_steps=100000000", "--out", run_arg])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(run.join("metrics.csv")).map_or(0, |t| t.lines().count()) < 5 {
        assert!(start.elapsed() < Duration::from_secs(60), "training did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = err_or_ok(&output);
    assert!(stderr.contains("interrupted: checkpoint saved"), "{stderr}");
    let steps = summary(&run)["env_steps"].as_u64().unwrap();
    assert!(steps > 0 && steps < 100_000_000);
    ok(&shoal(&["train", "--resume", run_arg, "--set", &format!("stop.env_steps={}", steps + 512)]));
    assert_eq!(summary(&run)["env_steps"].as_u64().unwrap(), steps + 512);
}

fn err_or_ok(output: &Output) -> String {
    assert!(output.status.success(), "Ctrl-C should end training cleanly: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_configs_fail_before_training_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cases = [
        (
            "algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n[ppo]\nlearnig_rate = 1e-3\n",
            "unknown field `learnig_rate`",
        ),
        (
            "algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n[ppo]\nlearning_rate = \"fast\"\n",
            "learning_rate",
        ),
        (
            "algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n[ppo]\nclip_coef = -1.0\n",
            "ppo.clip_coef = -1 is out of range",
        ),
        (
            "algo = \"dqn\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n",
            "dqn needs a Discrete action space, but Pendulum-v1 has Box",
        ),
        (
            "algo = \"q_learning\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n",
            "q_learning needs a Discrete observation space",
        ),
        (
            "algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n[dqn]\n",
            "section [dqn] is given but algo = \"ppo\"",
        ),
        ("algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n", "[stop] needs at least one of"),
        ("algo = \"sacc\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n", "unknown variant `sacc`"),
        (
            "algo = \"sac\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n",
            "sac needs a bounded Box action space, but CartPole-v1 has Discrete(2)",
        ),
        (
            "algo = \"sac\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n[cluster]\nworkers = 2\n",
            "its workers average parameters: set cluster.mode = \"average\" or \"easgd\"",
        ),
        (
            "algo = \"apex\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n[apex]\nlearner = \"sac\"\nlearning_rate = 0.1\n",
            "apex.learning_rate is the DQN learner's; with apex.learner = \"sac\" the learner's settings come from [sac]",
        ),
        (
            "algo = \"apex\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n[apex]\nlearner = \"sac\"\n[td3]\n",
            "section [td3] is given but apex.learner = \"sac\"",
        ),
        (
            "algo = \"apex\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n",
            "apex with a DQN learner needs a Discrete action space, but Pendulum-v1 has Box",
        ),
        ("algo = \"ppo\"\n[env]\nid = \"CartPole-v9\"\n[stop]\nenv_steps = 10\n", "did you mean `CartPole-v1`"),
        (
            "algo = \"ppo\"\n[env]\nid = \"FrozenLake-v1\"\noptions = { slippery = true }\n[stop]\nenv_steps = 10\n",
            "has no option `slippery`",
        ),
        (
            "algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n[inference]\nprecision = \"int8\"\nsparse = true\n",
            "both precision = \"int8\" and sparse = true",
        ),
        (
            "algo = \"dqn\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n[dqn]\nnet = { encoder = \"minatar\" }\n",
            "dqn.net.encoder = \"minatar\" needs image observations (a Box of shape [height, width, channels]), but CartPole-v1 has Box",
        ),
        (
            "algo = \"sac\"\n[env]\nid = \"Pendulum-v1\"\n[stop]\nenv_steps = 10\n[sac]\nnet = { encoder = \"nature\" }\n",
            "sac.net.encoder: sac builds no convolutional encoder yet",
        ),
        (
            "algo = \"ppo\"\n[env]\nid = \"CartPole-v1\"\n[stop]\nenv_steps = 10\n[ppo]\nnet = { encoder = \"nature\" }\n",
            "ppo.net.encoder = \"nature\" needs image observations",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = write(&format!("c{i}.toml"), text);
        let run = dir.path().join(format!("run{i}"));
        let message = err(&shoal(&["train", &path, "--out", run.to_str().unwrap()]));
        assert!(message.contains(expected), "case {i}: expected `{expected}` in: {message}");
        assert!(!run.join("metrics.csv").exists(), "case {i}: training must not start");
    }
    let message = err(&shoal(&["train", &config("cartpole-ppo.toml"), "--set", "ppo.num_minibatches=3"]));
    assert!(message.contains("ppo.num_minibatches = 3 must divide"), "{message}");
}

/// The multi-host entry points refuse what cannot work, saying what to do instead.
#[test]
fn cluster_commands_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let message = err(&shoal(&["train", &config("cartpole-ppo-allreduce.toml"), "--out", out]));
    assert!(message.contains("mpirun -np N shoal run"), "{message}");
    let sync = config("cartpole-ppo-sync.toml");
    let message = err(&shoal(&["train", &sync, "--set", "cluster.overlap_push=true", "--out", out]));
    assert!(message.contains("cluster.overlap_push needs mode = \"async\""), "{message}");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", &sync, "--out", out];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(&args)
            .env_remove("SLURM_PROCID")
            .env_remove("OMPI_COMM_WORLD_RANK")
            .env_remove("PMI_RANK")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SHOAL_RANK")
            .env("SHOAL_TOKEN", "cli-test-token-0123456789")
            .output()
            .unwrap()
    };
    let message = err(&run(&[]));
    assert!(message.contains("no rank") && message.contains("--rank"), "{message}");
    let message = err(&run(&["--rank", "0", "--world", "5", "--coordinator", "127.0.0.1:1"]));
    assert!(message.contains("needs 3 tasks") && message.contains("one of 5"), "{message}");
    let message = err(&run(&["--rank", "0", "--world", "3", "--coordinator", "127.0.0.1:29499"]));
    assert!(message.contains("without TLS") && message.contains("--insecure"), "{message}");
    let ps = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["ps", &config("cartpole-ppo-sync.toml"), "--listen", "0.0.0.0:0"])
        .env("SHOAL_TOKEN", "cli-test-token-0123456789")
        .output()
        .unwrap();
    let message = err(&ps);
    assert!(message.contains("clear text") && message.contains("--insecure"), "{message}");
}

#[test]
fn plot_draws_learning_curves_of_several_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (run, seed) in [(&a, "1"), (&b, "2")] {
        ok(&shoal(&[
            "train",
            &config("cartpole-a2c.toml"),
            "--set",
            "stop.env_steps=4000",
            "--seed",
            seed,
            "--out",
            run.to_str().unwrap(),
        ]));
    }
    let png = dir.path().join("curves.png");
    ok(&shoal(&["plot", a.to_str().unwrap(), b.to_str().unwrap(), "--out", png.to_str().unwrap()]));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{} bytes", bytes.len());
    let message = err(&shoal(&["plot", dir.path().to_str().unwrap()]));
    assert!(message.contains("metrics.csv"), "{message}");
}

fn report(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap()
}

fn returns(report: &serde_json::Value) -> (f64, f64) {
    let mean = |side: &str| report[side]["eval"]["episode_return_mean"].as_f64().unwrap();
    (mean("original"), mean("optimized"))
}

/// Trains a CartPole teacher from `config_file` into `dir/teacher` and optimizes it three
/// ways: 90 % pruning (Erdős–Rényi, fine-tuned, acting through the faster of the dense and
/// sparse paths), int8 and a 16-16 student, each keeping ≥ 98 %
/// of the teacher's deterministic return and loading in `shoal eval`. Returns the teacher.
fn optimize_three_ways(dir: &Path, config_file: &str) -> PathBuf {
    let teacher = dir.join("teacher");
    ok(&shoal(&["train", &config(config_file), "--out", teacher.to_str().unwrap()]));
    let optimize = |out: &str, method: &[&str]| {
        let out = dir.join(out);
        let mut args =
            vec!["optimize", teacher.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-return-drop", "0.02"];
        args.extend_from_slice(method);
        (ok(&shoal(&args)), out)
    };

    let (table, pruned) = optimize("pruned", &["--prune", "0.9"]);
    assert!(table.contains("weight sparsity"), "{table}");
    let r = report(&pruned);
    let (before, after) = returns(&r);
    assert!(before >= 475.0, "{config_file}: the teacher did not learn: {before}");
    assert!(after >= 0.98 * before, "{config_file} pruned: {after} of {before}");
    assert!((r["optimized"]["weight_sparsity"].as_f64().unwrap() - 0.9).abs() < 0.01, "{r}");
    assert!(pruned.join("checkpoints/latest/mask.safetensors").exists());
    // The faster of the two measured inference paths is the one the run acts with.
    let chosen = r["sparse_check"]["sparse_chosen"].as_bool().unwrap();
    let config_text = std::fs::read_to_string(pruned.join("config.toml")).unwrap();
    assert_eq!(config_text.contains("sparse = true"), chosen, "{config_text}");
    let eval = ok(&shoal(&["eval", pruned.to_str().unwrap(), "--deterministic", "--episodes", "3", "--json"]));
    let eval: serde_json::Value = serde_json::from_str(&eval).unwrap();
    assert!(eval["episode_return_mean"].as_f64().unwrap() >= 0.98 * before, "{eval}");

    let (_, int8) = optimize("int8", &["--quantize", "int8"]);
    let r = report(&int8);
    let (before, after) = returns(&r);
    assert!(after >= 0.98 * before, "{config_file} int8: {after} of {before}");
    // int8 hidden weights, f32 first and last layers: under 40 % of the f32 bytes.
    let bytes = |side: &str| r[side]["policy_bytes"].as_u64().unwrap();
    assert!(bytes("optimized") * 5 < bytes("original") * 2, "{r}");
    assert!(std::fs::read_to_string(int8.join("config.toml")).unwrap().contains("precision = \"int8\""));
    let sampled = err(&shoal(&["eval", int8.to_str().unwrap(), "--episodes", "1"]));
    assert!(sampled.contains("--deterministic"), "{sampled}");

    let (_, student) = optimize("student", &["--distill", "16,16"]);
    let r = report(&student);
    let (before, after) = returns(&r);
    assert!(after >= 0.98 * before, "{config_file} student: {after} of {before}");
    let params = |side: &str| r[side]["parameters"].as_u64().unwrap();
    assert!(params("optimized") * 10 <= params("original"), "{r}");
    teacher
}

/// `shoal optimize` on a CartPole PPO teacher, and bad input refused with nothing written.
#[test]
fn optimize_prunes_quantizes_and_distills_a_ppo_policy() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = optimize_three_ways(dir.path(), "cartpole-ppo-zoo.toml");
    let teacher = teacher.to_str().unwrap();
    for (method, expected) in [
        (&["--prune", "1.0"][..], "outside [0, 1)"),
        (&["--prune", "0.5", "--scope", "random"][..], "erdos-renyi"),
        (&["--distill", "128,128"][..], "not smaller than the teacher"),
        (&["--quantize", "int4"][..], "int8"),
    ] {
        let out = dir.path().join("refused");
        let mut args = vec!["optimize", teacher, "--out", out.to_str().unwrap()];
        args.extend_from_slice(method);
        let message = err(&shoal(&args));
        assert!(message.contains(expected), "{method:?}: {message}");
        assert!(!out.exists(), "{method:?} wrote {}", out.display());
    }
    let broken = dir.path().join("broken");
    copy_dir(Path::new(teacher), &broken);
    std::fs::write(broken.join("checkpoints/latest/model.safetensors"), b"not safetensors").unwrap();
    let message = err(&shoal(&["optimize", broken.to_str().unwrap(), "--quantize", "int8", "--out", "/nonexistent/x"]));
    assert!(message.contains("model.safetensors"), "{message}");
}

/// The same on a CartPole DQN teacher (Q-values: int8 keeps the output layer's weights in
/// f32, the student learns at τ = 0.01).
#[test]
fn optimize_prunes_quantizes_and_distills_a_dqn_policy() {
    let dir = tempfile::tempdir().unwrap();
    optimize_three_ways(dir.path(), "cartpole-dqn.toml");
}

/// `[prune]` while training: PPO reaches 500 at 90 % sparsity, and the mask is saved.
#[test]
fn a_prune_section_trains_a_sparse_policy() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("sparse");
    let run_arg = run.to_str().unwrap();
    ok(&shoal(&["train", &config("cartpole-ppo-zoo.toml"), "--set", "prune.sparsity=0.9", "--out", run_arg]));
    assert!(run.join("checkpoints/latest/mask.safetensors").exists());
    let eval = ok(&shoal(&["eval", run_arg, "--deterministic", "--episodes", "20", "--json"]));
    let eval: serde_json::Value = serde_json::from_str(&eval).unwrap();
    assert!(eval["episode_return_mean"].as_f64().unwrap() >= 475.0, "{eval}");
    let message = err(&shoal(&["train", &config("cartpole-ppo.toml"), "--set", "prune.sparsity=1.0"]));
    assert!(message.contains("prune.sparsity"), "{message}");
}

#[test]
fn optimize_refuses_a_tabular_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("q");
    ok(&shoal(&[
        "train",
        &config("frozenlake-q.toml"),
        "--set",
        "stop.env_steps=2000",
        "--out",
        run.to_str().unwrap(),
    ]));
    let out = dir.path().join("optimized");
    let message = err(&shoal(&["optimize", run.to_str().unwrap(), "--prune", "0.5", "--out", out.to_str().unwrap()]));
    assert!(message.contains("q_learning") && message.contains("ppo"), "{message}");
    assert!(!out.exists());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
