//! `shoal dashboard` in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them) loads the runs page, a finished
//! run's curves, a running embedded cluster's members and a small study, checks what the DOM
//! holds against the files the runs wrote, watches a metrics row written during the test appear
//! without a reload, and sees a corrupted metrics.csv and a directory that is not a run shown
//! as errors while the server goes on serving. Screenshots go to
//! `target/dashboard-screenshots/` (1280×800, and the runs page at a phone's width).
//!
//! Without Chromium the test says so and returns, unless `SHOAL_REQUIRE_BROWSER` is set (CI
//! sets it, so a missing browser fails there).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Child processes, killed by PID and reaped however the test ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn shoal(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal")).args(args).output().unwrap();
    assert!(output.status.success(), "shoal {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn browser_present() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("SHOAL_REQUIRE_BROWSER").is_none(),
            "SHOAL_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
        );
        eprintln!("skipped: the dashboard test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)");
    }
    present
}

/// Starts ChromeDriver on a free port and a headless Chromium session through it.
async fn browser(children: &mut Children, profile: &Path) -> Client {
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    children.0.push(driver);
    // Flags as the machine's notes give them: no sandbox as root, and no background
    // networking, which this machine's closed network would refuse.
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return client,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("no WebDriver session from chromedriver: {e}"),
        }
    }
}

/// Runs `script` (a function body returning a value) in the page until `done` accepts what it
/// returns; panics with the last value after 15 s.
async fn eventually(client: &Client, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: the page never showed it; last seen {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(client: &Client, name: &str) {
    let dir = repo().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

fn hash_of(page: &str, id: &Path) -> String {
    // As the page's own links encode it (encodeURIComponent of the path).
    let encoded: String = id
        .to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    format!("#/{page}/{encoded}")
}

fn number(value: &Value) -> f64 {
    value.as_str().and_then(|s| s.parse().ok()).or_else(|| value.as_f64()).unwrap_or(f64::NAN)
}

#[test]
fn the_dashboard_shows_runs_a_cluster_and_a_study_live_in_chromium() {
    if !browser_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let finished = runs.join("ppo");
    let study = runs.join("study");
    let broken = runs.join("broken");
    let cluster = runs.join("cluster");
    let impala = runs.join("impala");
    let not_a_run = dir.path().join("not-a-run");
    let configs = repo().join("configs");
    shoal(&[
        "train",
        &configs.join("cartpole-ppo.toml").to_string_lossy(),
        "--out",
        &finished.to_string_lossy(),
        "--set",
        "stop.env_steps=20000",
    ]);
    shoal(&[
        "tune",
        &configs.join("tune/cartpole-ppo-lr-grid.toml").to_string_lossy(),
        "--out",
        &study.to_string_lossy(),
    ]);
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(finished.join("config.toml"), broken.join("config.toml")).unwrap();
    std::fs::write(broken.join("metrics.csv"), "env_steps,episode_return_mean\n256,9.5\n512,abc\n").unwrap();
    std::fs::create_dir_all(not_a_run.join("empty")).unwrap();

    let mut children = Children(Vec::new());
    // A running embedded cluster: two async DQN workers around an in-process server, with a
    // budget the test never reaches (it is killed at the end).
    let run = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["train", &configs.join("cartpole-dqn-async.toml").to_string_lossy(), "--out"])
        .arg(&cluster)
        .args(["--set", "stop.env_steps=1000000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    children.0.push(run);
    // And an embedded actor–learner run: IMPALA's learner, trajectory queue and two actor threads.
    let run = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["train", &configs.join("cartpole-impala.toml").to_string_lossy(), "--out"])
        .arg(&impala)
        .args(["--set", "stop.env_steps=1000000000", "--set", "stop.eval_return_mean=1000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    children.0.push(run);
    let mut dashboard = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("dashboard")
        .args([&runs, &not_a_run])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(dashboard.stdout.take().unwrap()).read_line(&mut line).unwrap();
    children.0.push(dashboard);
    let url = line.split("listening on ").nth(1).expect("the dashboard printed its address").trim().to_string();

    let summary: Value = serde_json::from_slice(&std::fs::read(finished.join("summary.json")).unwrap()).unwrap();
    let final_return = summary["final_episode_return_mean"].as_f64().unwrap();
    let logged_rows = std::fs::read_to_string(finished.join("metrics.csv")).unwrap().lines().count() - 1;

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = browser(&mut children, &dir.path().join("chromium-profile")).await;

        // The runs page: every run with its numbers, the corrupted one and the stray directory as errors.
        client.goto(&url).await.unwrap();
        let row = |id: &Path, col: &str| {
            format!(
                "const r = [...document.querySelectorAll('#runs tr')].find(r => r.dataset.run === {:?}); \
                 return r ? r.querySelector('[data-col={col}]').dataset.value : null;",
                id.to_string_lossy()
            )
        };
        let shown = eventually(&client, "the finished run's return", &row(&finished, "return"), |v| v.is_string()).await;
        assert_eq!(number(&shown), final_return, "the runs table's return is summary.json's final_episode_return_mean");
        let badge = |id: &Path| {
            format!(
                "const r = [...document.querySelectorAll('#runs tr')].find(r => r.dataset.run === {:?}); \
                 return r ? r.querySelector('[data-col=state]').textContent : null;",
                id.to_string_lossy()
            )
        };
        eventually(&client, "the finished run's badge", &badge(&finished), |v| v == "finished").await;
        eventually(&client, "the cluster run's badge", &badge(&cluster), |v| v == "running").await;
        let error = eventually(
            &client,
            "the corrupted metrics.csv's error",
            &format!(
                "const r = [...document.querySelectorAll('#runs tr')].find(r => r.dataset.errorFor === {:?}); \
                 return r ? r.textContent : null;",
                broken.to_string_lossy()
            ),
            |v| v.is_string(),
        )
        .await;
        assert!(error.as_str().unwrap().contains("line 3: \"abc\" in column episode_return_mean"), "{error}");
        let problem = eventually(&client, "the stray directory", "return document.querySelector('#problems').textContent", |v| {
            v.as_str().is_some_and(|t| t.contains("not-a-run"))
        })
        .await;
        assert!(problem.as_str().unwrap().contains("not a run directory"), "{problem}");
        let trials = eventually(
            &client,
            "the study's row",
            "const r = document.querySelector('#studies tr[data-study]'); return r ? r.cells[2].textContent : null;",
            |v| v.is_string(),
        )
        .await;
        assert_eq!(trials, "3");
        screenshot(&client, "runs").await;

        // Two runs ticked and overlaid: one curve each, in the colours of their rows.
        for run in [&finished, &cluster] {
            let tick = format!(
                "[...document.querySelectorAll('#runs tr')].find(r => r.dataset.run === {:?}).querySelector('input').click(); return true;",
                run.to_string_lossy()
            );
            client.execute(&tick, vec![]).await.unwrap();
        }
        client.find(Locator::Css("#compare")).await.unwrap().click().await.unwrap();
        let overlaid = eventually(
            &client,
            "two curves overlaid",
            "return [...document.querySelectorAll('[data-chart=\"Return vs env steps\"] path.series')].map(p => p.getAttribute('stroke'))",
            |v| v.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
        let swatches = client
            .execute("return [...document.querySelectorAll('#facts .swatch')].map(s => s.style.background)", vec![])
            .await
            .unwrap();
        assert_eq!(swatches.as_array().unwrap().len(), 2, "{swatches}");
        assert_ne!(overlaid[0], overlaid[1], "each run its own colour");
        client.goto(&url).await.unwrap();

        // At a phone's width nothing overflows the page sideways (tables scroll in their panel).
        client.set_window_size(390, 844).await.unwrap();
        eventually(&client, "a page no wider than the phone", "return document.documentElement.scrollWidth", |v| {
            v.as_f64().is_some_and(|w| w <= 390.0)
        })
        .await;
        screenshot(&client, "runs-phone").await;
        client.set_window_size(1280, 800).await.unwrap();

        // A finished run's page: its curve holds every logged row; a row appended now shows up without a reload.
        client.goto(&format!("{url}{}", hash_of("run", &finished))).await.unwrap();
        let points = "const p = document.querySelector('[data-chart=\"Return vs env steps\"] path.series'); \
                      return p ? Number(p.dataset.points) : null;";
        eventually(&client, "the return curve", points, |v| v.as_f64() == Some(logged_rows as f64)).await;
        let summary_cell = eventually(
            &client,
            "summary.json's return",
            "const c = document.querySelector('#facts [data-col=summary_return]'); return c ? c.dataset.value : null;",
            |v| v.is_string(),
        )
        .await;
        assert_eq!(number(&summary_cell), final_return);
        eventually(&client, "a loss chart", "return document.querySelectorAll('.chart path.series').length", |v| {
            v.as_u64().is_some_and(|n| n >= 5)
        })
        .await;
        screenshot(&client, "run").await;
        let text = std::fs::read_to_string(finished.join("metrics.csv")).unwrap();
        let columns: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match *c {
                "env_steps" => "987654".to_string(),
                "episode_return_mean" => "432.5".to_string(),
                _ => String::new(),
            })
            .collect();
        let mut file = std::fs::OpenOptions::new().append(true).open(finished.join("metrics.csv")).unwrap();
        writeln!(file, "{}", cells.join(",")).unwrap();
        drop(file);
        eventually(
            &client,
            "the appended row",
            "const c = document.querySelector('#facts [data-col=env_steps]'); return c ? c.dataset.value : null;",
            |v| number(v) == 987654.0,
        )
        .await;
        eventually(&client, "the appended point", points, |v| v.as_f64() == Some(logged_rows as f64 + 1.0)).await;
        let return_cell = "return document.querySelector('#facts [data-col=return]').dataset.value";
        assert_eq!(number(&client.execute(return_cell, vec![]).await.unwrap()), 432.5);

        // The running cluster: its server and both workers alive, acting, pushing.
        client.goto(&format!("{url}{}", hash_of("cluster", &cluster))).await.unwrap();
        let members = eventually(
            &client,
            "the cluster's members",
            "return [...document.querySelectorAll('#members tr')].map(r => [r.dataset.member, \
             r.querySelector('[data-col=state]').textContent.trim(), Number(r.querySelector('[data-col=rate]').dataset.value)])",
            |v| {
                v.as_array().is_some_and(|rows| {
                    rows.len() == 3 && rows.iter().all(|r| r[1] == "alive" && r[2].as_f64().is_some_and(|x| x > 0.0))
                })
            },
        )
        .await;
        let names: Vec<&str> = members.as_array().unwrap().iter().map(|r| r[0].as_str().unwrap()).collect();
        assert_eq!(names, ["shard 0", "worker 0", "worker 1"]);
        let before = eventually(
            &client,
            "worker 0's env steps",
            "return Number(document.querySelector('#members tr[data-member=\"worker 0\"] [data-col=env_steps]').dataset.value)",
            |v| v.as_f64().is_some_and(|x| x > 0.0),
        )
        .await;
        eventually(
            &client,
            "worker 0 moving on",
            "return Number(document.querySelector('#members tr[data-member=\"worker 0\"] [data-col=env_steps]').dataset.value)",
            |v| v.as_f64() > before.as_f64(),
        )
        .await;
        screenshot(&client, "cluster").await;

        // The actor–learner run: server, learner, queue and actors, the learner updating.
        client.goto(&format!("{url}{}", hash_of("cluster", &impala))).await.unwrap();
        let roles = eventually(
            &client,
            "IMPALA's members",
            "return [...document.querySelectorAll('#members tr')].map(r => [r.cells[0].textContent, r.dataset.member, \
             r.querySelector('[data-col=state]').textContent.trim()])",
            |v| v.as_array().is_some_and(|rows| rows.len() == 5 && rows.iter().all(|r| r[2] == "alive")),
        )
        .await;
        assert_eq!(
            roles.as_array().unwrap().iter().map(|r| r[1].as_str().unwrap()).collect::<Vec<_>>(),
            ["shard 0", "learner", "trajectory queue", "actor 0", "actor 1"],
            "{roles}"
        );
        eventually(
            &client,
            "the learner's updates",
            "return document.querySelector('#members tr[data-member=learner]').cells[8].textContent",
            |v| v.as_str().and_then(|t| t.replace(',', "").parse::<f64>().ok()).is_some_and(|n| n > 0.0),
        )
        .await;
        screenshot(&client, "cluster-impala").await;

        // The study: every trial, sortable, with curves and the best config to copy.
        client.goto(&format!("{url}{}", hash_of("study", &study))).await.unwrap();
        let order = "return [...document.querySelectorAll('#trials tr[data-trial]')].map(r => Number(r.dataset.trial))";
        let ranked = eventually(&client, "the trials", order, |v| v.as_array().is_some_and(|a| a.len() == 3)).await;
        assert_eq!(ranked, json!([0, 1, 2]), "best first: the grid's learning rates 1e-3, 1e-4, 1e-5 rank in order");
        client.find(Locator::Css("th[data-sort=value]")).await.unwrap().click().await.unwrap();
        eventually(&client, "the trials sorted the other way", order, |v| v == &json!([2, 1, 0])).await;
        eventually(&client, "the trials' curves", "return document.querySelectorAll('[data-chart^=\"Metric of every\"] path.series').length", |v| {
            v.as_u64() == Some(3)
        })
        .await;
        let config = eventually(&client, "the best config", "return document.querySelector('#best-config').textContent", |v| {
            v.as_str().is_some_and(|t| t.contains("learning_rate"))
        })
        .await;
        assert!(config.as_str().unwrap().contains("learning_rate = 0.001"), "{config}");
        client.find(Locator::Css("#copy-best")).await.unwrap().click().await.unwrap();
        eventually(&client, "the copy confirmed", "return document.querySelector('#copy-status').textContent", |v| {
            v == "copied"
        })
        .await;
        screenshot(&client, "study").await;

        // A run the dashboard cannot read in full still has its page, with the reason.
        client.goto(&format!("{url}{}", hash_of("run", &broken))).await.unwrap();
        eventually(&client, "the broken run's error on its page", "return document.querySelector('#facts').textContent", |v| {
            v.as_str().is_some_and(|t| t.contains("is not a number"))
        })
        .await;
        // ... and the server still serves the rest.
        client.goto(&url).await.unwrap();
        eventually(&client, "the runs page again", &row(&finished, "return"), |v| v.is_string()).await;
        client.close().await.unwrap();
    });
}

/// The status line of a plain HTTP/1.1 GET of `path` from `addr`, with an `Authorization` header if given.
fn http_status(addr: &str, path: &str, bearer: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_string()
}

/// Beyond loopback the dashboard wants the run's token on every data request (header or
/// `?token=`), and refuses to start without one; its page itself is served to anyone.
#[test]
fn off_loopback_the_dashboard_wants_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .arg(dir.path())
        .env_remove("SHOAL_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("set SHOAL_TOKEN or pass --token-file"), "{err}");

    let token = "0123456789abcdef0123";
    let mut children = Children(Vec::new());
    let mut dashboard = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .arg(dir.path())
        .env("SHOAL_TOKEN", token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(dashboard.stdout.take().unwrap()).read_line(&mut line).unwrap();
    children.0.push(dashboard);
    let port = line.trim().trim_end_matches('/').rsplit(':').next().unwrap().to_string();
    let addr = format!("127.0.0.1:{port}");
    assert!(http_status(&addr, "/", None).contains("200"), "the page needs no token");
    assert!(http_status(&addr, "/api/overview", None).contains("401"));
    assert!(http_status(&addr, "/api/overview", Some("0123456789abcdef0124")).contains("401"));
    assert!(http_status(&addr, "/api/overview", Some(token)).contains("200"));
    assert!(http_status(&addr, &format!("/api/overview?token={token}"), None).contains("200"));
    assert!(http_status(&addr, "/api/run?id=/etc", Some(token)).contains("404"), "only runs it found are read");
}
