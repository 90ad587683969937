//! `install` / `uninstall` through the real binary, with `HOME` pointed at a
//! temporary directory: what is written, idempotence, and that uninstall
//! leaves the node's home and synced data alone. Nothing is started: the
//! tests use `--dry-run` and `--no-start` (a test must not register a
//! service in the session of whoever runs it).

mod common;

use std::process::{Command, Output};

use common::{bin, stderr, stdout};

fn cli(home: &std::path::Path, user_home: &std::path::Path, args: &[&str]) -> Output {
    cli_in(home, user_home, args, None)
}

/// As [`cli`], in a graphical session on `display` if one is given.
fn cli_in(
    home: &std::path::Path,
    user_home: &std::path::Path,
    args: &[&str],
    display: Option<&str>,
) -> Output {
    let mut cmd = Command::new(bin());
    cmd.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    if let Some(d) = display {
        cmd.env("DISPLAY", d);
    }
    cmd.arg("--home")
        .arg(home)
        .args(args)
        .env("HOME", user_home)
        // No way to reach a real user manager: `uninstall` stops nothing of
        // the person running the tests.
        .env("XDG_RUNTIME_DIR", user_home.join("no-runtime"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("SOFTADASTRA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn install_writes_a_user_unit_once_and_uninstall_removes_only_it() {
    let user = tempfile::tempdir().unwrap();
    let home = user.path().join("node");
    let unit = user.path().join(".config/systemd/user/softadastra.service");

    let dry = cli(&home, user.path(), &["install", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let shown = stdout(&dry);
    assert!(
        shown.contains(&format!("would write {}", unit.display())),
        "{shown}"
    );
    assert!(shown.contains("Restart=on-failure"), "{shown}");
    assert!(shown.contains("would run   systemctl --user enable --now softadastra.service"));
    assert!(!unit.exists(), "a dry run writes nothing");

    let first = cli(&home, user.path(), &["install", "--no-start"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = std::fs::read_to_string(&unit).unwrap();
    let exe = std::fs::canonicalize(bin()).unwrap();
    assert!(
        text.contains(&format!(
            "ExecStart={} --home {} run --log-file",
            exe.display(),
            home.display()
        )),
        "{text}"
    );
    assert!(stderr(&first).contains("systemctl --user enable --now softadastra.service"));

    let again = cli(&home, user.path(), &["install", "--no-start"]);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("already installed"),
        "{}",
        stderr(&again)
    );

    let tray = cli(&home, user.path(), &["install", "--tray", "--dry-run"]);
    if cfg!(feature = "tray") {
        assert!(tray.status.success(), "{}", stderr(&tray));
        let shown = stdout(&tray);
        assert!(
            shown.contains(".config/autostart/softadastra-tray.desktop"),
            "{shown}"
        );
        assert!(shown.contains("tray"), "{shown}");
    } else {
        assert!(!tray.status.success());
        assert!(
            stderr(&tray).contains("built without the tray icon"),
            "{}",
            stderr(&tray)
        );
    }

    // In a graphical session the tray is set up without asking, when this
    // binary has it (the package's build); --no-tray leaves it out.
    let has_tray = !stderr(&cli(&home, user.path(), &["tray", "--exit-after", "0"]))
        .contains("built without the tray");
    let desktop = cli_in(&home, user.path(), &["install", "--dry-run"], Some(":99"));
    assert!(desktop.status.success(), "{}", stderr(&desktop));
    assert_eq!(
        stdout(&desktop).contains("softadastra-tray.desktop"),
        has_tray,
        "{}",
        stdout(&desktop)
    );
    let refused = cli_in(
        &home,
        user.path(),
        &["install", "--no-tray", "--dry-run"],
        Some(":99"),
    );
    assert!(!stdout(&refused).contains("softadastra-tray.desktop"));
    let headless = cli(&home, user.path(), &["install", "--dry-run"]);
    assert!(!stdout(&headless).contains("softadastra-tray.desktop"));

    // The node's data stays.
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("keep.txt"), b"mine").unwrap();
    let un_dry = cli(&home, user.path(), &["uninstall", "--dry-run"]);
    assert!(stdout(&un_dry).contains(&format!("would remove {}", unit.display())));
    assert!(unit.exists());
    let un = cli(&home, user.path(), &["uninstall"]);
    assert!(un.status.success(), "{}", stderr(&un));
    assert!(!unit.exists());
    assert!(stderr(&un).contains("untouched"));
    assert_eq!(std::fs::read(home.join("keep.txt")).unwrap(), b"mine");
    let twice = cli(&home, user.path(), &["uninstall"]);
    assert!(twice.status.success());
    assert!(stderr(&twice).contains("nothing was installed"));
}
