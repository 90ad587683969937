//! The Linux packages, built and used as a person would: `installer/
//! package/build.sh` makes the .deb and the tarball (from the debug build,
//! to reuse the test build); the .deb is installed with `dpkg -i`, the
//! installed `/usr/bin/softadastra` answers `--version` and runs `demo
//! --once` (two nodes on loopback), its desktop entry and icon are in
//! place, and `dpkg -r` removes it all. The tarball's binary runs too.
//!
//! It installs into the system, so it runs only where asked:
//! `SOFTADASTRA_PACKAGE_TESTS=1` (set by `.ci/run`), as root, with dpkg;
//! elsewhere it says why it skipped.

mod common;

use std::path::Path;
use std::process::Command;

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_deb_installs_runs_and_goes_away() {
    if std::env::var_os("SOFTADASTRA_PACKAGE_TESTS").is_none() {
        eprintln!(
            "skipped: installs a package into the system; set SOFTADASTRA_PACKAGE_TESTS=1 (as root, with dpkg) to run it"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    // The same target directory and profile as this test's binary.
    let bin = Path::new(common::bin());
    let target = bin.parent().and_then(Path::parent).unwrap();
    let built = sh(Command::new("bash")
        .arg(root.join("installer/package/build.sh"))
        .args(["--debug", "--out"])
        .arg(out.path())
        .env("CARGO_TARGET_DIR", target));
    let mut files = built.lines();
    let (deb, tarball) = (files.next().unwrap(), files.next().unwrap());
    assert!(
        deb.ends_with(".deb") && tarball.ends_with(".tar.gz"),
        "{built}"
    );

    let fields = sh(Command::new("dpkg-deb").args(["--field", deb]));
    assert!(fields.contains("Package: softadastra"), "{fields}");
    assert!(fields.contains("libayatana-appindicator3-1"), "{fields}");

    sh(Command::new("dpkg").args(["-i", deb]));
    let removed = scopeguard(|| {
        let _ = Command::new("dpkg").args(["-r", "softadastra"]).status();
    });
    let version = sh(Command::new("/usr/bin/softadastra").arg("--version"));
    assert!(version.starts_with("softadastra "), "{version}");
    for f in [
        "/usr/share/applications/softadastra.desktop",
        "/usr/share/icons/hicolor/scalable/apps/softadastra.svg",
        "/usr/share/doc/softadastra/copyright",
    ] {
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    let demo_dir = tempfile::tempdir().unwrap();
    let demo = sh(Command::new("/usr/bin/softadastra")
        .args(["demo", "--once", "--dir"])
        .arg(demo_dir.path().join("demo"))
        .env("SOFTADASTRA_NO_DISCOVERY", "1"));
    assert!(demo.contains("Done (--once)"), "{demo}");
    // Installed with the tray: it does not say it was built without.
    let tray = Command::new("/usr/bin/softadastra")
        .args(["tray", "--exit-after", "0.1"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&tray.stderr);
    assert!(!said.contains("built without the tray"), "{said}");
    assert!(said.contains("no graphical session"), "{said}");
    drop(removed);
    assert!(
        !Path::new("/usr/bin/softadastra").exists(),
        "dpkg -r left the binary"
    );

    // The tarball: the same binary under softadastra-VERSION/bin.
    let unpacked = tempfile::tempdir().unwrap();
    sh(Command::new("tar")
        .args(["-xzf", tarball, "-C"])
        .arg(unpacked.path()));
    let dir = std::fs::read_dir(unpacked.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let v = sh(Command::new(dir.join("bin/softadastra")).arg("--version"));
    assert_eq!(v, version);
    assert!(dir.join("share/applications/softadastra.desktop").is_file());
}

/// Run `f` when dropped (also when the test fails half-way).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    Guard(Some(f))
}
