//! Folder sync benchmark: two real `softadastra run` nodes on 127.0.0.1.
//!
//! `cargo bench -p softadastra-agent --bench sync` prints: initial sync of
//! 20,000 small files (1–8 KiB in 200 directories), of a ~300 MiB
//! source-tree-like mix and of 8 × 128 MiB random files (wall time,
//! files/s, MB/s, with `cp -a` and `rsync -a` of the same data as
//! floors), propagation latency of one 4 KiB file (p50/p99 over 20
//! writes), bytes fetched after a 1-byte insert at offset 0 of a 128 MiB
//! synced file, after appending 1 MiB, and after a rename, and each node's
//! peak RSS. `SOFTADASTRA_BENCH_SKIP_LARGE=1` skips the 1 GiB dataset;
//! `SOFTADASTRA_BENCH_ONLY_LARGE=1` runs it alone;
//! `SOFTADASTRA_BENCH_ONLY_SMALL=1` runs the 20,000 small files alone.
//! `SOFTADASTRA_BENCH_BIN=PATH` measures another build of the agent (to
//! compare builds in interleaved runs).
//!
//! On ext4 without a journal (as on the CI machines), creating files soon
//! after tens of thousands were deleted is several times slower (the
//! allocator skips recently freed inodes for a minute or more), so run it
//! on a quiet file system, not right after a previous run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> std::ffi::OsString {
    std::env::var_os("SOFTADASTRA_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_softadastra").into())
}

fn cli(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("SOFTADASTRA_HOME")
        .output()
        .expect("run softadastra")
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(17999)
}

struct Node {
    home: PathBuf,
    dir: PathBuf,
    id: String,
    port: u16,
    child: Option<Child>,
}

impl Node {
    fn new(root: &Path, name: &str) -> Node {
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
    fn share(&self) {
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
    }
    fn trust(&self, other: &Node) {
        let addr = format!("127.0.0.1:{}", other.port);
        assert!(
            cli(&self.home, &["peer", "add", &other.id, "--addr", &addr])
                .status
                .success()
        );
    }
    fn start(&mut self) {
        let child = Command::new(bin())
            .arg("--home")
            .arg(&self.home)
            .args(["run", "--listen", &format!("127.0.0.1:{}", self.port)])
            .env("SOFTADASTRA_LOG", "warn")
            // Network safety: no LAN multicast from a benchmark.
            .env("SOFTADASTRA_NO_DISCOVERY", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.home.join("control.sock").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fn status(&self) -> serde_json::Value {
        let out = cli(&self.home, &["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
    fn fetched(&self) -> u64 {
        self.status()["sync_bytes_fetched"].as_u64().unwrap_or(0)
    }
    fn peak_rss_mb(&self) -> f64 {
        let Some(c) = &self.child else { return 0.0 };
        std::fs::read_to_string(format!("/proc/{}/status", c.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }
    fn stop(&mut self) {
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

fn random_bytes(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// Files and bytes under `dir` (the `.softadastra` directory aside).
fn count(dir: &Path) -> (u64, u64) {
    walk(dir, true)
}

fn walk(dir: &Path, sizes: bool) -> (u64, u64) {
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
fn list(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
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
fn layout(dir: &Path) -> HashMap<PathBuf, usize> {
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
fn arrived(dir: &Path, want: &mut HashMap<PathBuf, usize>) -> bool {
    want.retain(|rel, n| list(&dir.join(rel)).0.len() < *n);
    want.is_empty()
}

/// Poll `done` until it holds. Checking is not free (counting 20,000
/// files takes tens of ms of a core the nodes need), so the pause between
/// checks is four times the last check, at least 5 ms: checking takes at
/// most a fifth of one core, and the figure is late by at most a pause.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
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

fn floors(src: &Path, scratch: &Path) -> String {
    let mut out = Vec::new();
    let cp_dst = scratch.join("cp-floor");
    let t = Instant::now();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(&cp_dst)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        out.push(format!("cp -a {:.2} s", t.elapsed().as_secs_f64()));
    }
    let _ = std::fs::remove_dir_all(&cp_dst);
    let rs_dst = scratch.join("rsync-floor");
    let t = Instant::now();
    match Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(&rs_dst)
        .status()
    {
        Ok(s) if s.success() => out.push(format!("rsync -a {:.2} s", t.elapsed().as_secs_f64())),
        _ => out.push("rsync -a: not installed".into()),
    }
    let _ = std::fs::remove_dir_all(&rs_dst);
    out.join(", ")
}

fn pair(root: &Path) -> (Node, Node) {
    let (a, b) = (Node::new(root, "alpha"), Node::new(root, "beta"));
    a.trust(&b);
    b.trust(&a);
    (a, b)
}

fn initial_sync(root: &Path, label: &str, fill: impl FnOnce(&Path)) -> (Node, Node) {
    let (mut a, mut b) = pair(root);
    fill(&a.dir);
    let (files, bytes) = count(&a.dir);
    // Start from a quiet disk: the generated data and the previous
    // dataset's writes are flushed first, not during the measurement.
    let _ = Command::new("sync").status();
    a.share();
    b.share();
    a.start();
    b.start();
    let mut want = layout(&a.dir);
    let took = wait_for(label, Duration::from_secs(600), || {
        arrived(&b.dir, &mut want) && count(&b.dir) == (files, bytes)
    });
    let secs = took.as_secs_f64();
    // The floors run after the sync: on ext4, creating files right after
    // tens of thousands were deleted is several times slower, and the
    // floors' own copies are deleted when they are done.
    let floor = floors(&a.dir, root);
    println!(
        "{label}: {files} files, {:.1} MB in {secs:.2} s = {:.0} files/s, {:.0} MB/s  (floors: {floor})",
        bytes as f64 / 1e6,
        files as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    println!(
        "  peak RSS: alpha {:.1} MB, beta {:.1} MB",
        a.peak_rss_mb(),
        b.peak_rss_mb()
    );
    (a, b)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    println!("softadastra sync benchmark (two nodes on 127.0.0.1, same machine)");
    if std::env::var_os("SOFTADASTRA_BENCH_ONLY_LARGE").is_none() {
        // 20,000 small files.
        let root = scratch.path().join("small");
        let (mut a, mut b) = initial_sync(&root, "20,000 small files", |dir| {
            let mut rng = fastrand::Rng::with_seed(1);
            for i in 0..20_000 {
                let d = dir.join(format!("d{:03}", i % 200));
                std::fs::create_dir_all(&d).expect("mkdir");
                let len = rng.usize(1024..=8192);
                std::fs::write(d.join(format!("f{i:05}.txt")), random_bytes(&mut rng, len))
                    .expect("write");
            }
        });

        if std::env::var_os("SOFTADASTRA_BENCH_ONLY_SMALL").is_some() {
            return;
        }

        // Propagation latency of one 4 KiB file.
        let mut rng = fastrand::Rng::with_seed(2);
        let mut lat = Vec::new();
        for i in 0..20 {
            let name = format!("latency-{i}.bin");
            let body = random_bytes(&mut rng, 4096);
            std::fs::write(a.dir.join(&name), &body).expect("write");
            let target = b.dir.join(&name);
            let t = wait_for("propagation", Duration::from_secs(30), || {
                std::fs::read(&target).is_ok_and(|v| v == body)
            });
            lat.push(t);
            std::thread::sleep(Duration::from_millis(100));
        }
        lat.sort();
        println!(
            "propagation of one 4 KiB file: p50 {:.1} ms, p99 {:.1} ms (over {} writes)",
            lat[lat.len() / 2].as_secs_f64() * 1e3,
            lat[lat.len() - 1].as_secs_f64() * 1e3,
            lat.len()
        );
        a.stop();
        b.stop();
        drop((a, b));

        // A source-tree-like mix, ~300 MiB: many small files, some medium,
        // a few large, three directory levels.
        let root = scratch.path().join("mix");
        let (mut a, mut b) = initial_sync(&root, "~300 MiB source-tree mix", |dir| {
            let mut rng = fastrand::Rng::with_seed(4);
            for i in 0..6000u32 {
                let d = dir.join(format!(
                    "src/m{:02}/s{:02}/{}",
                    i % 40,
                    (i / 40) % 8,
                    if i % 3 == 0 { "gen" } else { "lib" }
                ));
                std::fs::create_dir_all(&d).expect("mkdir");
                let len = match i % 100 {
                    0 => rng.usize(1 << 20..=6 << 20),
                    1..=14 => rng.usize(40 << 10..=160 << 10),
                    _ => rng.usize(1 << 10..=16 << 10),
                };
                std::fs::write(d.join(format!("f{i:04}.rs")), random_bytes(&mut rng, len))
                    .expect("write");
            }
        });
        a.stop();
        b.stop();
        drop((a, b));
    }
    if std::env::var_os("SOFTADASTRA_BENCH_SKIP_LARGE").is_some() {
        return;
    }
    let root = scratch.path().join("large");
    let (mut a, mut b) = initial_sync(&root, "8 x 128 MiB files", |dir| {
        let mut rng = fastrand::Rng::with_seed(3);
        for i in 0..8 {
            std::fs::write(
                dir.join(format!("big-{i}.bin")),
                random_bytes(&mut rng, 128 << 20),
            )
            .expect("write");
        }
    });
    let file = a.dir.join("big-0.bin");
    let target = b.dir.join("big-0.bin");
    let delta = |label: &str, change: &dyn Fn(), check: &dyn Fn() -> bool| {
        let before = b.fetched();
        change();
        wait_for(label, Duration::from_secs(120), check);
        std::thread::sleep(Duration::from_millis(300));
        let moved = b.fetched() - before;
        println!(
            "{label}: {moved} bytes fetched ({:.3} % of 128 MiB)",
            moved as f64 * 100.0 / (128u64 << 20) as f64
        );
    };
    delta(
        "insert 1 byte at offset 0 of a 128 MiB file",
        &|| {
            let mut v = std::fs::read(&file).expect("read");
            v.insert(0, b'!');
            std::fs::write(&file, v).expect("write");
        },
        &|| std::fs::metadata(&target).is_ok_and(|m| m.len() == (128 << 20) + 1),
    );
    delta(
        "append 1 MiB",
        &|| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .expect("open");
            f.write_all(&vec![7u8; 1 << 20]).expect("append");
        },
        &|| std::fs::metadata(&target).is_ok_and(|m| m.len() == (128 << 20) + 1 + (1 << 20)),
    );
    let renamed = b.dir.join("renamed.bin");
    delta(
        "rename",
        &|| std::fs::rename(a.dir.join("big-1.bin"), a.dir.join("renamed.bin")).expect("rename"),
        &|| renamed.exists() && !b.dir.join("big-1.bin").exists(),
    );
    a.stop();
    b.stop();
}
