//! What the tests that run Shoal as processes share: network namespaces as hosts (for runs
//! across real network hops), the deterministic evaluation of a run directory, and reading a
//! figure out of a process's log.
#![allow(dead_code)] // each test crate uses its part

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The token every task of these tests shares.
pub const TOKEN: &str = "hosts-test-token-0123456789";

/// Namespaces on a bridge, removed on drop with every process started in them.
pub struct Hosts {
    tag: String,
    subnet: u32,
    count: usize,
    children: Vec<Child>,
}

pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("running ip (iproute2)");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

impl Hosts {
    /// `count` namespaces, host i at 10.77.N.i and the bridge at 10.77.N.254; `test` tells
    /// apart the tests of one process (they run at once).
    pub fn new(test: u32, count: usize) -> Option<Hosts> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { geteuid() } != 0 {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        let pid = std::process::id();
        let tag = format!("s{}t{test}", pid % 100_000);
        let hosts = Hosts { tag, subnet: 20 + (pid % 50) * 4 + test, count, children: Vec::new() };
        let bridge = hosts.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        // The bridge's own address first, so the host can reach the namespaces.
        ip(&["addr", "add", &format!("10.77.{}.254/24", hosts.subnet), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 1..=count {
            let (ns, outer, inner) = (hosts.namespace(i), hosts.link(i), format!("{}i{i}", hosts.tag));
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &bridge, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", hosts.addr(i)), "dev", &inner]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        Some(hosts)
    }

    pub fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    pub fn namespace(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    /// The host side of namespace i's cable.
    pub fn link(&self, i: usize) -> String {
        format!("{}o{i}", self.tag)
    }

    pub fn addr(&self, i: usize) -> String {
        format!("10.77.{}.{i}", self.subnet)
    }

    /// Starts `shoal args…` in namespace i, its output in `log`.
    pub fn spawn(&mut self, i: usize, args: &[String], log: &Path) -> usize {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.namespace(i)))
            .arg(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .env("SHOAL_TOKEN", TOKEN)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("starting nsenter");
        self.children.push(child);
        self.children.len() - 1
    }

    /// Waits for process `index` to exit, at most `limit`.
    pub fn wait(&mut self, index: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.children[index].try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for i in 1..=self.count {
            let _ = Command::new("ip").args(["netns", "del", &self.namespace(i)]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).output();
    }
}

extern "C" {
    pub fn geteuid() -> u32;
}

/// The deterministic evaluation of a run directory over 20 fresh episodes (`shoal eval`).
pub fn greedy_return(run: &Path) -> f64 {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["eval", "--deterministic", "--json", "--episodes", "20"])
        .arg(run)
        .output()
        .unwrap();
    assert!(output.status.success(), "shoal eval {}: {}", run.display(), String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    report["episode_return_mean"].as_f64().unwrap()
}

/// The whole number written right after the first `marker` in `log`.
pub fn number_after(log: &str, marker: &str) -> Option<u64> {
    let rest = log.split_once(marker)?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
