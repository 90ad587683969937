//! What the agent's benchmarks share: real `softadastra` nodes on
//! 127.0.0.1 driven through the CLI, and ways to watch a copy fill
//! without taking the CPU the nodes being measured need. Each bench uses
//! a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> std::ffi::OsString {
    std::env::var_os("SOFTADASTRA_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_softadastra").into())
}

pub fn cli(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("SOFTADASTRA_HOME")
        .output()
        .expect("run softadastra")
}

pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(17999)
}

pub struct Node {
    pub home: PathBuf,
    pub dir: PathBuf,
    pub id: String,
    pub port: u16,
    pub child: Option<Child>,
}

impl Node {
    pub fn new(root: &Path, name: &str) -> Node {
        let home = root.join(name);
        let dir = root.join(format!("{name}-docs"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let out = cli(&home, &["init", "--name", name]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Node {
            home,
            dir,
            id,
            port: free_port(),
            child: None,
        }
    }
    pub fn share(&self) {
        let out = cli(
            &self.home,
            &[
                "folder",
                "add",
                self.dir.to_str().unwrap_or(""),
                "--id",
                "docs",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Shared with every trusted peer. Releases before folder membership
        // have no `folder share` (a folder synced with every trusted peer):
        // a build measured through `SOFTADASTRA_BENCH_BIN` may be one.
        let peers = cli(&self.home, &["peer", "list", "--json"]);
        let peers: serde_json::Value = serde_json::from_slice(&peers.stdout).unwrap_or_default();
        for p in peers.as_array().into_iter().flatten() {
            let id = p["id"].as_str().unwrap_or_default();
            let shared = cli(&self.home, &["folder", "share", "docs", id]);
            let said = String::from_utf8_lossy(&shared.stderr);
            assert!(
                shared.status.success() || said.contains("unrecognized subcommand"),
                "{said}"
            );
        }
    }
    pub fn trust(&self, other: &Node) {
        let addr = format!("127.0.0.1:{}", other.port);
        assert!(
            cli(&self.home, &["peer", "add", &other.id, "--addr", &addr])
                .status
                .success()
        );
    }
    /// Start the node and wait for its control socket to appear.
    pub fn start(&mut self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.home.join("control.sock").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    /// Start the node and return at once.
    /// Start the node. `SOFTADASTRA_BENCH_LOGS=DIR` keeps each node's log
    /// (at `info`, or `SOFTADASTRA_BENCH_LOG_LEVEL`) in `DIR/NAME.log`,
    /// appended to across restarts.
    pub fn spawn(&mut self) {
        let logs = std::env::var_os("SOFTADASTRA_BENCH_LOGS").map(PathBuf::from);
        let log = logs.as_ref().and_then(|dir| {
            let name = self.home.file_name()?.to_owned();
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name).with_extension("log"))
                .ok()
        });
        let child = Command::new(bin())
            .arg("--home")
            .arg(&self.home)
            .args(["run", "--listen", &format!("127.0.0.1:{}", self.port)])
            .env(
                "SOFTADASTRA_LOG",
                match &log {
                    // `SOFTADASTRA_BENCH_LOG_LEVEL`: a filter, e.g.
                    // "info,softadastra::runtime::exec=debug".
                    Some(_) => {
                        std::env::var("SOFTADASTRA_BENCH_LOG_LEVEL").unwrap_or("info".into())
                    }
                    None => "warn".into(),
                },
            )
            // Network safety: no LAN multicast from a benchmark.
            .env("SOFTADASTRA_NO_DISCOVERY", "1")
            .stdout(Stdio::null())
            .stderr(log.map_or_else(Stdio::null, Stdio::from))
            .spawn()
            .expect("start node");
        self.child = Some(child);
    }
    pub fn status(&self) -> serde_json::Value {
        let out = cli(&self.home, &["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
    pub fn fetched(&self) -> u64 {
        self.status()["sync_bytes_fetched"].as_u64().unwrap_or(0)
    }
    /// The node's peak resident memory so far, MB.
    pub fn peak_rss_mb(&self) -> f64 {
        self.memory_mb("VmHWM:")
    }
    /// The node's resident memory now, MB.
    pub fn rss_mb(&self) -> f64 {
        self.memory_mb("VmRSS:")
    }
    /// CPU time the node has used so far (user and system), in clock
    /// ticks (1/100 s on Linux).
    pub fn cpu_ticks(&self) -> u64 {
        let Some(c) = &self.child else { return 0 };
        std::fs::read_to_string(format!("/proc/{}/stat", c.id()))
            .ok()
            .and_then(|s| {
                // Fields after the command's name (which may hold spaces):
                // utime and stime are the 12th and 13th.
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    }
    fn memory_mb(&self, field: &str) -> f64 {
        let Some(c) = &self.child else { return 0.0 };
        std::fs::read_to_string(format!("/proc/{}/status", c.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait until every node of `nodes` has been idle (under 2 % of a core)
/// for `quiet` in a row, or `limit` has passed. Returns how long that
/// took and whether they went quiet.
pub fn wait_until_idle(nodes: &[&Node], quiet: Duration, limit: Duration) -> (Duration, bool) {
    let started = Instant::now();
    let step = Duration::from_millis(500);
    let ticks = |nodes: &[&Node]| nodes.iter().map(|n| n.cpu_ticks()).collect::<Vec<_>>();
    let mut calm_since = Instant::now();
    let mut last = ticks(nodes);
    while started.elapsed() < limit {
        std::thread::sleep(step);
        let now = ticks(nodes);
        // 2 % of a core over half a second is one tick.
        let busy = now.iter().zip(&last).any(|(n, l)| n.saturating_sub(*l) > 1);
        last = now;
        if busy {
            calm_since = Instant::now();
        } else if calm_since.elapsed() >= quiet {
            return (started.elapsed(), true);
        }
    }
    (started.elapsed(), false)
}

/// Sectors (512 bytes) written and discarded so far on every block
/// device (`/proc/diskstats`; 0 where it cannot be read).
fn sectors_written() -> u64 {
    let Ok(stats) = std::fs::read_to_string("/proc/diskstats") else {
        return 0;
    };
    stats
        .lines()
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(3)
                .filter_map(|v| v.parse().ok())
                .collect();
            // Fields after the name: 6 = sectors written, 13 = sectors
            // discarded (absent on older kernels).
            f.get(6).copied().unwrap_or(0) + f.get(13).copied().unwrap_or(0)
        })
        .sum()
}

/// Wait until the machine's disks have been quiet — under 4 MiB written
/// or discarded per second — for 2 s, or `limit` passed: a figure timed
/// next measures the agent, not the writeback of whatever ran before it
/// (a build, the test tree, the discard of a deleted image). How long it
/// waited, and whether the disks did go quiet.
pub fn wait_for_quiet_disks(limit: Duration) -> (Duration, bool) {
    const QUIET_SECTORS_PER_SEC: u64 = 8192;
    let start = Instant::now();
    let mut samples = vec![(Instant::now(), sectors_written())];
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = (Instant::now(), sectors_written());
        samples.push(now);
        samples.retain(|(at, _)| now.0.duration_since(*at) <= Duration::from_millis(2100));
        let (first_at, first) = samples[0];
        let span = now.0.duration_since(first_at).as_secs_f64();
        if span >= 2.0 && (now.1.saturating_sub(first) as f64) < QUIET_SECTORS_PER_SEC as f64 * span
        {
            return (start.elapsed(), true);
        }
        if start.elapsed() >= limit {
            return (start.elapsed(), false);
        }
    }
}

pub fn random_bytes(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// Files and bytes under `dir` (the `.softadastra` directory aside).
pub fn count(dir: &Path) -> (u64, u64) {
    walk(dir, true)
}

pub fn walk(dir: &Path, sizes: bool) -> (u64, u64) {
    let mut stack = vec![dir.to_path_buf()];
    let (mut n, mut b) = (0, 0);
    while let Some(d) = stack.pop() {
        let (files, subdirs) = list(&d);
        stack.extend(subdirs);
        n += files.len() as u64;
        if sizes {
            b += files
                .iter()
                .map(|f| std::fs::symlink_metadata(f).map_or(0, |m| m.len()))
                .sum::<u64>();
        }
    }
    (n, b)
}

/// The files (the agent's temporary files aside) and directories (its
/// `.softadastra` aside) directly in `dir`, by name alone: a directory
/// listing says which is which, nothing is opened or looked at.
pub fn list(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        if name == ".softadastra" {
            continue;
        }
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            dirs.push(e.path());
        } else if !name.to_string_lossy().starts_with(".softadastra-tmp-") {
            files.push(e.path());
        }
    }
    (files, dirs)
}

/// How many files each directory under a source tree holds (relative
/// paths): what a synced copy is checked against while it fills.
pub fn layout(dir: &Path) -> HashMap<PathBuf, usize> {
    let mut want = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (files, subdirs) = list(&dir.join(&rel));
        want.insert(rel.clone(), files.len());
        stack.extend(
            subdirs
                .iter()
                .filter_map(|d| d.file_name())
                .map(|n| rel.join(n)),
        );
    }
    want
}

/// Whether every directory of `want` (see [`layout`]) holds its files
/// under `dir`, by name alone. A directory found complete is dropped from
/// `want` and not listed again: watching a copy fill costs about one
/// listing of it in all, not one per check — a full walk of 20,000 files
/// per check took a share of the CPU the nodes being measured need. (The
/// files come whole — the agent renames them into place — and [`count`]
/// has the last word anyway.)
pub fn arrived(dir: &Path, want: &mut HashMap<PathBuf, usize>) -> bool {
    want.retain(|rel, n| list(&dir.join(rel)).0.len() < *n);
    want.is_empty()
}

/// Poll `done` until it holds. Checking is not free (counting 20,000
/// files takes tens of ms of a core the nodes need), so the pause between
/// checks is four times the last check, at least 5 ms: checking takes at
/// most a fifth of one core, and the figure is late by at most a pause.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let check = Instant::now();
        if done() {
            return t0.elapsed();
        }
        if t0.elapsed() > limit {
            println!("  {what}: did not finish within {} s", limit.as_secs());
            return t0.elapsed();
        }
        std::thread::sleep((check.elapsed() * 4).max(Duration::from_millis(5)));
    }
}

/// Two nodes, alpha and beta, under `root`, each trusting the other.
pub fn pair(root: &Path) -> (Node, Node) {
    let (a, b) = (Node::new(root, "alpha"), Node::new(root, "beta"));
    a.trust(&b);
    b.trust(&a);
    (a, b)
}

/// How long each of `writes` new 4 KiB files written in `from` takes to
/// appear, whole, in `to` (100 ms apart).
pub fn propagation(from: &Path, to: &Path, writes: usize) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(2);
    let mut lat = Vec::new();
    for i in 0..writes {
        let name = format!("latency-{i}.bin");
        let body = random_bytes(&mut rng, 4096);
        std::fs::write(from.join(&name), &body).expect("write");
        let target = to.join(&name);
        lat.push(wait_for("propagation", Duration::from_secs(60), || {
            std::fs::read(&target).is_ok_and(|v| v == body)
        }));
        std::thread::sleep(Duration::from_millis(100));
    }
    lat
}
