//! A real `softadastra run` process on 127.0.0.1, with its log lines.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{bin, run};

pub struct Node {
    pub home: tempfile::TempDir,
    pub id: String,
    pub port: u16,
    pub child: Option<Child>,
    lines: Option<mpsc::Receiver<String>>,
    /// Log lines received and not yet matched by a `wait_for`.
    unmatched: std::cell::RefCell<Vec<String>>,
}

pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    pub fn new(name: &str) -> Node {
        Node::with_home(name, tempfile::tempdir().unwrap())
    }
    /// A node whose home is a new directory inside `dir`.
    pub fn new_in(name: &str, dir: &std::path::Path) -> Node {
        let home = tempfile::Builder::new()
            .prefix("home-")
            .tempdir_in(dir)
            .unwrap();
        Node::with_home(name, home)
    }
    fn with_home(name: &str, home: tempfile::TempDir) -> Node {
        let out = run(home.path(), &["init", "--name", name]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Node {
            home,
            id,
            port: free_port(),
            child: None,
            lines: None,
            unmatched: Default::default(),
        }
    }
    /// Trust `other` and share every folder this node has with it.
    pub fn trust(&self, other: &Node) {
        let addr = format!("127.0.0.1:{}", other.port);
        assert!(
            run(
                self.home.path(),
                &["peer", "add", &other.id, "--addr", &addr]
            )
            .status
            .success()
        );
        self.share_all_with(other);
    }
    /// Share every folder this node has with `other` (already trusted).
    pub fn share_all_with(&self, other: &Node) {
        let out = run(self.home.path(), &["folder", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for f in rows.as_array().unwrap() {
            let id = f["id"].as_str().unwrap();
            let o = run(self.home.path(), &["folder", "share", id, &other.id]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }
    pub fn start(&mut self) {
        let mut cmd = Command::new(bin());
        cmd.arg("--home")
            .arg(self.home.path())
            .args(["run", "--listen", &format!("127.0.0.1:{}", self.port)])
            // Network safety: no LAN multicast outside a test's namespaces.
            .env("SOFTADASTRA_NO_DISCOVERY", "1");
        self.spawn(cmd);
    }
    /// Run the node inside network namespace `netns` (which the test
    /// created), listening on every address, with `extra` arguments.
    pub fn start_in_netns(&mut self, netns: &str, extra: &[&str]) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, bin(), "--home"])
            .arg(self.home.path())
            .args(["run", "--listen", &format!("0.0.0.0:{}", self.port)])
            .args(extra);
        self.spawn(cmd);
    }
    fn spawn(&mut self, mut cmd: Command) {
        let mut child = cmd
            // SOFTADASTRA_TEST_LOG sets the nodes' level when chasing a
            // failure (e.g. "info,softadastra::sync=debug").
            .env(
                "SOFTADASTRA_LOG",
                std::env::var("SOFTADASTRA_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("SOFTADASTRA_HOME")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .for_each(|l| drop(tx.send(l)))
        });
        self.child = Some(child);
        self.lines = Some(rx);
    }
    /// Wait until a log line contains every needle. Each match consumes
    /// that one line; lines that match nothing are kept for later waits.
    pub fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let rx = self.lines.as_ref().unwrap();
        loop {
            let mut unmatched = self.unmatched.borrow_mut();
            if let Some(pos) = unmatched
                .iter()
                .position(|l| needles.iter().all(|n| l.contains(n)))
            {
                return unmatched.remove(pos);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => unmatched.push(line),
                Err(_) => panic!(
                    "{}: no line with {needles:?} within 20 s; unmatched: {unmatched:#?}",
                    self.id
                ),
            }
        }
    }
    /// Every log line not matched by a wait so far (kept for later waits).
    pub fn log_so_far(&self) -> Vec<String> {
        let mut unmatched = self.unmatched.borrow_mut();
        if let Some(rx) = &self.lines {
            unmatched.extend(rx.try_iter());
        }
        unmatched.clone()
    }
    /// Forget every log line so far: later waits see only newer lines.
    pub fn clear_log(&self) {
        self.unmatched.borrow_mut().clear();
        if let Some(rx) = &self.lines {
            while rx.try_recv().is_ok() {}
        }
    }
    pub fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        self.child = None;
        status
    }
    pub fn connected_to(&self, other: &Node) -> String {
        self.wait_for(&[": connected", &format!("peer={}", other.id)])
    }
}

/// A node sharing folder `docs` at `<home>/docs`, with `files` in it.
pub fn sharing(name: &str, files: &[(&str, &[u8])]) -> (Node, std::path::PathBuf) {
    let n = Node::new(name);
    let dir = n.home.path().join("docs");
    std::fs::create_dir(&dir).unwrap();
    for (rel, bytes) in files {
        std::fs::write(dir.join(rel), bytes).unwrap();
    }
    let out = run(
        n.home.path(),
        &["folder", "add", dir.to_str().unwrap(), "--id", "docs"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (n, dir)
}

/// A conflict on `name` between two running nodes sharing `da` (the
/// first's folder) and `db` (`b`'s): `b` stops, both edit the file apart —
/// the first's edit the later one — and `b` starts again; returns once the
/// conflict copy is in both folders.
pub fn conflict_apart(b: &mut Node, da: &std::path::Path, db: &std::path::Path, name: &str) {
    b.signal("-TERM");
    super::drop_in(db, name, b"the second's edit\n");
    std::thread::sleep(Duration::from_millis(1100));
    super::drop_in(da, name, b"the first's edit\n");
    std::thread::sleep(Duration::from_millis(300));
    b.start();
    super::wait("the conflict copy on both", Duration::from_secs(30), || {
        [da, db].iter().all(|d| {
            super::entries(d, false)
                .keys()
                .any(|k| k.contains(".sync-conflict-") && !k.contains(".softadastra-tmp-"))
        })
    });
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failing test shows what each node said.
        if std::thread::panicking() {
            let mut lines = std::mem::take(&mut *self.unmatched.borrow_mut());
            if let Some(rx) = &self.lines {
                lines.extend(rx.try_iter());
            }
            eprintln!("---- log of node {} ----", self.id);
            for l in lines {
                eprintln!("{l}");
            }
        }
    }
}
