//! A virtual desktop for the tray's tests: Xvfb, a system tray (`trayer`,
//! which hosts the icon through the XEmbed fallback when no
//! StatusNotifier host runs), screenshots, the tray built with its
//! feature, and its stderr read line by line.
//!
//! The tests are always built, so the README's plain `cargo test
//! --workspace` passes on a machine without GTK: [`skip`] says why they
//! cannot run — unless `SOFTADASTRA_TRAY_TESTS=1` (set by `.ci/run`, which
//! installs everything), which makes a missing piece a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);
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

/// What this machine lacks for a desktop test using `tools`, if anything.
fn missing(tools: &[&str]) -> Option<String> {
    if let Some(tool) = tools.iter().find(|t| !have(t)) {
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

/// True (after saying why) when the test cannot run here; panics instead
/// when `SOFTADASTRA_TRAY_TESTS=1` asks for it to run.
pub fn skip(tools: &[&str]) -> bool {
    let Some(why) = missing(tools) else {
        return false;
    };
    assert!(
        std::env::var_os("SOFTADASTRA_TRAY_TESTS").is_none(),
        "SOFTADASTRA_TRAY_TESTS=1 but {why}"
    );
    eprintln!("skipped: {why}");
    true
}

/// The agent binary with the tray: this one if it was built with it, else
/// the same binary rebuilt now with `--features tray`, in the same target
/// directory and profile (only the tray's own crates and the binary are
/// compiled; the next plain build relinks it without). Built once per
/// test process.
pub fn tray_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_tray_binary).clone()
}

fn build_tray_binary() -> PathBuf {
    let bin = PathBuf::from(super::bin());
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

/// A virtual X display (1024×480), with a system tray in its top right
/// corner when asked.
pub struct Desktop {
    pub display: String,
    _x: Killed,
    _tray_host: Option<Killed>,
}

/// Where the tray host sits: x, y, width, height.
pub const TRAY_AREA: (u32, u32, u32, u32) = (824, 0, 200, 40);

impl Desktop {
    /// Start one on display `:N`, N from the process id plus `offset` (so
    /// tests running at once take different ones).
    pub fn start(offset: u32, tray_host: bool) -> Desktop {
        let display = format!(":{}", 50 + (std::process::id() + offset * 7) % 400);
        let x = Killed(
            Command::new("Xvfb")
                .args([&display, "-screen", "0", "1024x480x24", "-nolisten", "tcp"])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(700));
        let host = tray_host.then(|| {
            let (_, _, w, h) = TRAY_AREA;
            Killed(
                Command::new("trayer")
                    .args(["--edge", "top", "--align", "right", "--widthtype", "pixel"])
                    .args(["--width", &w.to_string(), "--height", &h.to_string()])
                    .args(["--transparent", "false", "--tint", "0xffffff"])
                    .env("DISPLAY", &display)
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        });
        std::thread::sleep(Duration::from_millis(700));
        Desktop {
            display,
            _x: x,
            _tray_host: host,
        }
    }

    /// Save the whole screen as `name` under `out`; the tray area's pixels
    /// (raw RGB) back.
    pub fn shoot(&self, out: &Path, name: &str) -> Vec<u8> {
        let png = out.join(name);
        let ok = Command::new("import")
            .args(["-display", &self.display, "-window", "root"])
            .arg(&png)
            .status()
            .unwrap();
        assert!(ok.success(), "import failed");
        let (x, y, w, h) = TRAY_AREA;
        let raw = Command::new("convert")
            .arg(&png)
            .args(["-crop", &format!("{w}x{h}+{x}+{y}"), "rgb:-"])
            .output()
            .unwrap();
        assert!(raw.status.success());
        raw.stdout
    }

    /// `xdotool` with these arguments on this display.
    pub fn xdotool(&self, args: &[&str]) {
        let ok = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .status()
            .unwrap();
        assert!(ok.success(), "xdotool {args:?} failed");
    }
}

/// Pixels that differ between two RGB images of one size.
pub fn differing(a: &[u8], b: &[u8]) -> usize {
    a.chunks(3).zip(b.chunks(3)).filter(|(x, y)| x != y).count()
}

/// Where, in the tray area `rgb`, the pixels of `colour` are centred (on
/// the screen), if there are any: where the icon is.
pub fn find_colour(rgb: &[u8], colour: [u8; 3]) -> Option<(u32, u32)> {
    let (x0, y0, w, _) = TRAY_AREA;
    let (mut sx, mut sy, mut n) = (0u64, 0u64, 0u64);
    for (i, px) in rgb.chunks(3).enumerate() {
        if px == colour {
            sx += (i as u64) % u64::from(w);
            sy += (i as u64) / u64::from(w);
            n += 1;
        }
    }
    (n > 20).then(|| (x0 + (sx / n) as u32, y0 + (sy / n) as u32))
}

/// A process's stderr, line by line, to wait on.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn of(child: &mut Child) -> Lines {
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .for_each(|l| drop(tx.send(l)))
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait (up to `secs`) for a line containing `needle`; it is returned.
    pub fn wait_for(&mut self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "never said {needle:?} within {secs} s; said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Take in what was said so far without waiting.
    pub fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.seen.push(l);
        }
    }
}
