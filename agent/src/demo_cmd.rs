//! `softadastra demo`: two nodes on this machine keep two folders in sync,
//! and the demo says what happens — the product working, on one machine,
//! in a few seconds.
//!
//! Both nodes are real `softadastra run` processes (this same program)
//! with homes under the demo directory, listening on 127.0.0.1 only and
//! with LAN discovery off: the demo never talks to the network.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::control::{self, Request};
use crate::home::Home;

struct DemoNode {
    name: &'static str,
    home: Home,
    docs: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = control::call(&self.home, &Request::Shutdown);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn me() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find this program's own path")
}

fn cli(home: &Home, args: &[&str]) -> Result<String> {
    let out = Command::new(me()?)
        .arg("--home")
        .arg(&home.root)
        .args(args)
        .env("SOFTADASTRA_NO_DISCOVERY", "1")
        .output()?;
    if !out.status.success() {
        bail!(
            "`softadastra {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn setup(dir: &Path, name: &'static str) -> Result<DemoNode> {
    let home = Home::at(dir.join(name).join("home"));
    let docs = dir.join(name).join("Documents");
    std::fs::create_dir_all(&docs).with_context(|| format!("cannot create {}", docs.display()))?;
    cli(&home, &["init", "--name", name])?;
    cli(
        &home,
        &["folder", "add", &docs.to_string_lossy(), "--id", "demo"],
    )?;
    Ok(DemoNode {
        name,
        home,
        docs,
        port: free_port()?,
        child: None,
    })
}

fn start(n: &mut DemoNode) -> Result<()> {
    let log = std::fs::File::create(n.home.root.join("agent.log"))?;
    let child = Command::new(me()?)
        .arg("--home")
        .arg(&n.home.root)
        .args(["run", "--listen", &format!("127.0.0.1:{}", n.port)])
        .env("SOFTADASTRA_NO_DISCOVERY", "1")
        .env(
            "SOFTADASTRA_LOG",
            std::env::var("SOFTADASTRA_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start a demo node")?;
    n.child = Some(child);
    Ok(())
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<Duration> {
    let t0 = Instant::now();
    while !done() {
        if t0.elapsed() > limit {
            bail!("{what} did not happen within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(t0.elapsed())
}

fn fetched(n: &DemoNode) -> u64 {
    control::call(&n.home, &Request::Status)
        .ok()
        .flatten()
        .and_then(|s| s["sync_bytes_fetched"].as_u64())
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

pub fn run_demo(dir: Option<PathBuf>, once: bool) -> Result<ExitCode> {
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            if std::fs::read_dir(&d)?.next().is_some() {
                bail!(
                    "{} is not empty; give the demo an empty or new directory",
                    d.display()
                );
            }
            d
        }
        None => tempfile_dir()?,
    };
    println!("Softadastra demo in {}", dir.display());
    println!("  two nodes on this machine, \"alpha\" and \"beta\", each with a Documents folder");
    let mut a = setup(&dir, "alpha")?;
    let mut b = setup(&dir, "beta")?;
    let (a_id, b_id) = (cli(&a.home, &["id"])?, cli(&b.home, &["id"])?);
    cli(
        &a.home,
        &[
            "peer",
            "add",
            &b_id,
            "--addr",
            &format!("127.0.0.1:{}", b.port),
        ],
    )?;
    cli(
        &b.home,
        &[
            "peer",
            "add",
            &a_id,
            "--addr",
            &format!("127.0.0.1:{}", a.port),
        ],
    )?;
    cli(&a.home, &["folder", "share", "demo", &b_id])?;
    cli(&b.home, &["folder", "share", "demo", &a_id])?;
    println!("  they trust each other by id (QUIC, mutual TLS; loopback only)");
    println!("  and each shares its Documents folder with the other (and with no one else)");
    start(&mut a)?;
    start(&mut b)?;
    let connected = wait("the connection", Duration::from_secs(20), || {
        control::call(&a.home, &Request::Status)
            .ok()
            .flatten()
            .is_some_and(|s| s["peers_connected"] == 1)
    })?;
    println!("\n1. both agents running and connected ({})", ms(connected));

    let hello = a.docs.join("hello.txt");
    let body = b"Hello from alpha!\n";
    std::fs::write(&hello, body)?;
    let there = b.docs.join("hello.txt");
    let t = wait("hello.txt reaching beta", Duration::from_secs(20), || {
        std::fs::read(&there).is_ok_and(|v| v == body)
    })?;
    println!("2. wrote {} -> on beta {} later", rel(&dir, &hello), ms(t));

    let edit = b"Hello from alpha!\nAnd an edit made on beta.\n";
    std::fs::write(&there, edit)?;
    let t = wait(
        "beta's edit reaching alpha",
        Duration::from_secs(20),
        || std::fs::read(&hello).is_ok_and(|v| v == edit),
    )?;
    println!(
        "3. edited it on beta -> alpha has the edit {} later (its old content is in alpha's history)",
        ms(t)
    );

    let big = a.docs.join("photo.raw");
    let mut rng = fastrand::Rng::with_seed(7);
    let bytes: Vec<u8> = (0..4 << 20).map(|_| rng.u8(..)).collect();
    std::fs::write(&big, &bytes)?;
    let t = wait("photo.raw reaching beta", Duration::from_secs(30), || {
        std::fs::metadata(b.docs.join("photo.raw")).is_ok_and(|m| m.len() == bytes.len() as u64)
    })?;
    println!("4. a 4 MiB file on alpha -> on beta {} later", ms(t));

    let before = fetched(&b);
    std::fs::create_dir_all(a.docs.join("2026"))?;
    std::fs::rename(&big, a.docs.join("2026/photo.raw"))?;
    wait("the rename reaching beta", Duration::from_secs(20), || {
        b.docs.join("2026/photo.raw").exists() && !b.docs.join("photo.raw").exists()
    })?;
    println!(
        "5. moved it into 2026/ on alpha -> moved on beta, {} bytes sent (the content was already there)",
        fetched(&b).saturating_sub(before)
    );

    std::fs::remove_file(&there)?;
    wait(
        "the deletion reaching alpha",
        Duration::from_secs(20),
        || !hello.exists(),
    )?;
    println!(
        "6. deleted hello.txt on beta -> gone on alpha too, kept in its history (`softadastra history --deleted`)"
    );

    println!(
        "\nAgent logs: {} and {}",
        rel(&dir, &a.home.root.join("agent.log")),
        rel(&dir, &b.home.root.join("agent.log"))
    );
    if once {
        println!("Done (--once): stopping both nodes.");
        drop((a, b));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Both nodes keep running: change files in {} or {} and watch the other. Ctrl-C stops.",
        a.docs.display(),
        b.docs.display()
    );
    let names = [a.name, b.name];
    let stop = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    stop.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    println!("stopping {} and {}", names[0], names[1]);
    drop((a, b));
    Ok(ExitCode::SUCCESS)
}

fn rel(base: &Path, p: &Path) -> String {
    p.strip_prefix(base)
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

/// A fresh directory under the system temp dir, kept after the demo (so
/// its files can be looked at).
fn tempfile_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let d = base.join(format!("softadastra-demo-{:06x}", fastrand::u32(..1 << 24)));
        if std::fs::create_dir(&d).is_ok() {
            return Ok(d);
        }
    }
    bail!("cannot create a demo directory in {}", base.display())
}
