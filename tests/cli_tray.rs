//! The tray icon against a live agent, on a virtual X display.
//!
//! Starts Xvfb and `trayer` (a system tray that hosts the icon through the
//! XEmbed fallback when no StatusNotifier host runs), then `softadastra
//! tray`: with no agent it shows "agent not running"; with the agent up
//! (a folder, no peer) "offline"; with the folder paused, "paused". Each
//! state is photographed (PNG under the test's output directory) and the
//! icon's pixels must change between states.
//!
//! Always built, so the README's plain `cargo test --workspace` passes on a
//! machine without GTK: skipped, saying why, when Xvfb, trayer, ImageMagick
//! or the GTK/AppIndicator development packages are missing — unless
//! `SOFTADASTRA_TRAY_TESTS=1` (set by `.ci/run`, which installs them), which
//! makes a missing one a failure. When this test binary was built without
//! the `tray` feature, it rebuilds the agent with it first (same target
//! directory: only the tray's crates and the binary are compiled).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::run;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The tray area (top right, where trayer sits) as raw RGB bytes, and a PNG
/// of the whole screen saved as `name`.
fn shoot(display: &str, out: &Path, name: &str) -> Vec<u8> {
    let png = out.join(name);
    let ok = Command::new("import")
        .args(["-display", display, "-window", "root"])
        .arg(&png)
        .status()
        .unwrap();
    assert!(ok.success(), "import failed");
    let raw = Command::new("convert")
        .arg(&png)
        .args(["-crop", "200x40+440+0", "rgb:-"])
        .output()
        .unwrap();
    assert!(raw.status.success());
    raw.stdout
}

fn differing(a: &[u8], b: &[u8]) -> usize {
    a.chunks(3).zip(b.chunks(3)).filter(|(x, y)| x != y).count()
}

/// What this machine lacks to run the tray test, if anything.
fn missing() -> Option<String> {
    if let Some(tool) = ["Xvfb", "trayer", "import", "convert"]
        .into_iter()
        .find(|t| !have(t))
    {
        return Some(format!("{tool} is not installed"));
    }
    let libs = "gtk+-3.0 ayatana-appindicator3-0.1";
    let found = Command::new("pkg-config")
        .args(["--exists"])
        .args(libs.split(' '))
        .status()
        .is_ok_and(|s| s.success());
    (!cfg!(feature = "tray") && !found).then(|| {
        format!("the tray's build packages ({libs}: pkg-config libgtk-3-dev libayatana-appindicator3-dev) are not installed")
    })
}

/// The agent binary with the tray: this one if it was built with it, else
/// the same binary rebuilt now with `--features tray`, in the same target
/// directory and profile (only the tray's own crates and the binary are
/// compiled; the next plain build relinks it without).
fn tray_binary() -> PathBuf {
    let bin = PathBuf::from(common::bin());
    if cfg!(feature = "tray") {
        return bin;
    }
    // <target>/<profile>/softadastra
    let profile_dir = bin.parent().expect("the binary's directory");
    let target = profile_dir.parent().expect("the target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "softadastra-agent",
            "--features",
            "tray",
        ])
        .args(["--bin", "softadastra", "--target-dir"])
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let t0 = Instant::now();
    let built = build.status().expect("run cargo");
    assert!(
        built.success(),
        "cannot build the agent with the tray feature"
    );
    eprintln!(
        "built the agent with the tray in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    bin
}

#[test]
fn the_tray_follows_the_agent_through_its_states() {
    let required = std::env::var_os("SOFTADASTRA_TRAY_TESTS").is_some();
    if let Some(why) = missing() {
        assert!(!required, "SOFTADASTRA_TRAY_TESTS=1 but {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let tray_bin = tray_binary();
    let bin = || tray_bin.as_path();
    let out: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tray");
    std::fs::create_dir_all(&out).unwrap();
    let display = format!(":{}", 50 + std::process::id() % 200);
    let _x = Killed(
        Command::new("Xvfb")
            .args([&display, "-screen", "0", "640x200x24", "-nolisten", "tcp"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(700));
    let _tray_host = Killed(
        Command::new("trayer")
            .args([
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "pixel",
                "--width",
                "200",
                "--height",
                "40",
                "--transparent",
                "false",
                "--tint",
                "0xffffff",
            ])
            .env("DISPLAY", &display)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(700));

    let home = tempfile::tempdir().unwrap();
    let docs = home.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    assert!(
        run(home.path(), &["init", "--name", "traytest"])
            .status
            .success()
    );
    assert!(
        run(
            home.path(),
            &["folder", "add", docs.to_str().unwrap(), "--id", "docs"]
        )
        .status
        .success()
    );

    let mut tray = Command::new(bin())
        .arg("--home")
        .arg(home.path())
        .args(["tray", "--exit-after", "60"])
        .env("DISPLAY", &display)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = tray.stderr.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    let _tray = Killed(tray);
    let said = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("the tray never said {needle:?}"),
            }
        }
    };
    said("tray: Softadastra: agent not running");
    std::thread::sleep(Duration::from_millis(800));
    let not_running = shoot(&display, &out, "1-not-running.png");

    let _agent = Killed(
        Command::new(bin())
            .arg("--home")
            .arg(home.path())
            .args(["run", "--listen", "127.0.0.1:0"])
            .env("SOFTADASTRA_NO_DISCOVERY", "1")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    said("tray: Offline · no peer connected");
    std::thread::sleep(Duration::from_millis(800));
    let offline = shoot(&display, &out, "2-offline.png");

    assert!(
        run(home.path(), &["folder", "pause", "docs"])
            .status
            .success()
    );
    said("tray: Paused");
    std::thread::sleep(Duration::from_millis(800));
    let paused = shoot(&display, &out, "3-paused.png");

    let (a, b) = (
        differing(&not_running, &offline),
        differing(&offline, &paused),
    );
    eprintln!(
        "tray screenshots in {}: {a} and {b} pixels changed",
        out.display()
    );
    assert!(
        a > 50,
        "the icon did not change when the agent came up ({a} pixels)"
    );
    assert!(b > 50, "the icon did not change when paused ({b} pixels)");
    let _ = run(home.path(), &["shutdown"]);
}
