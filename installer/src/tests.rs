//! The generated files for each OS, idempotent apply, and (on Linux, where
//! `systemd-analyze` exists) systemd's own verdict on the unit.

use super::*;

fn target(home: &Path) -> Target {
    Target {
        exe: PathBuf::from("/opt/soft adastra/bin/softadastra"),
        user_home: home.to_path_buf(),
        node_home: Some(home.join("node \"one\"")),
        uid: 1000,
    }
}

#[test]
fn linux_unit_and_autostart_entry() {
    let t = target(Path::new("/home/ann"));
    let p = plan(Os::Linux, &t, true);
    assert_eq!(p.files.len(), 2);
    let unit = &p.files[0];
    assert_eq!(
        unit.path,
        Path::new("/home/ann/.config/systemd/user/softadastra.service")
    );
    let c = &unit.contents;
    assert!(c.contains("Restart=on-failure"), "{c}");
    assert!(c.contains("WantedBy=default.target"), "{c}");
    assert!(
        c.contains(
            r#"ExecStart="/opt/soft adastra/bin/softadastra" --home "/home/ann/node \"one\"" run --log-file"#
        ),
        "{c}"
    );
    let desktop = &p.files[1];
    assert_eq!(
        desktop.path,
        Path::new("/home/ann/.config/autostart/softadastra-tray.desktop")
    );
    assert!(
        desktop
            .contents
            .contains("Exec=\"/opt/soft adastra/bin/softadastra\"")
    );
    assert!(
        desktop
            .contents
            .trim_end()
            .ends_with("X-GNOME-Autostart-enabled=true")
    );
    assert!(desktop.contents.contains(" tray\n"));
    let lines: Vec<String> = p.commands.iter().map(Cmd::line).collect();
    assert_eq!(
        lines,
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now softadastra.service"
        ]
    );
    // Without --tray: the unit only.
    assert_eq!(plan(Os::Linux, &t, false).files.len(), 1);
    let un = uninstall_plan(Os::Linux, &t);
    assert_eq!(un.files.len(), 2, "uninstall removes the tray entry too");
    assert!(un.commands.iter().all(|c| c.may_fail));
}

#[test]
fn macos_launch_agents() {
    let t = target(Path::new("/Users/ann"));
    let p = plan(Os::MacOs, &t, true);
    let agent = &p.files[0];
    assert_eq!(
        agent.path,
        Path::new("/Users/ann/Library/LaunchAgents/dev.softadastra.agent.plist")
    );
    let c = &agent.contents;
    assert!(c.starts_with("<?xml"));
    assert!(c.contains("<string>dev.softadastra.agent</string>"));
    assert!(c.contains("<string>/opt/soft adastra/bin/softadastra</string>"));
    assert!(
        c.contains("<string>/Users/ann/node &quot;one&quot;</string>"),
        "{c}"
    );
    assert!(c.contains("<key>RunAtLoad</key>"));
    assert!(c.contains("<key>SuccessfulExit</key>"));
    assert_eq!(c.matches("<dict>").count(), c.matches("</dict>").count());
    assert!(p.files[1].contents.contains("<string>tray</string>"));
    assert!(!p.files[1].contents.contains("KeepAlive"));
    let lines: Vec<String> = p.commands.iter().map(Cmd::line).collect();
    assert_eq!(lines[0], "launchctl bootout gui/1000/dev.softadastra.agent");
    assert!(p.commands[0].may_fail && !p.commands[1].may_fail);
    assert!(lines[1].starts_with("launchctl bootstrap gui/1000 /Users/ann/Library/LaunchAgents/"));
}

#[test]
fn windows_run_entries() {
    let t = target(Path::new(r"C:\Users\ann"));
    let p = plan(Os::Windows, &t, true);
    assert!(p.files.is_empty());
    let lines: Vec<String> = p.commands.iter().map(Cmd::line).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with(
        r"reg add HKCU\Software\Microsoft\Windows\CurrentVersion\Run /v Softadastra /t REG_SZ /d "
    ));
    assert!(lines[0].contains(r#""/opt/soft adastra/bin/softadastra" "--home""#));
    assert!(lines[0].ends_with(r#" "run" "--log-file" /f"#));
    assert!(lines[1].contains("/v SoftadastraTray"));
    let un = uninstall_plan(Os::Windows, &t);
    assert_eq!(un.commands.len(), 2);
}

#[test]
fn apply_is_idempotent_and_uninstall_leaves_data_alone() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("Documents/notes.txt");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, b"mine").unwrap();
    let t = target(home.path());
    // Files only: the commands (systemctl) are not for a test to run.
    let files_only = |p: Plan| Plan {
        commands: Vec::new(),
        ..p
    };
    let p = files_only(plan(Os::Linux, &t, true));
    let first = apply(&p, false).unwrap();
    assert_eq!(first.written.len(), 2);
    let second = apply(&p, false).unwrap();
    assert!(
        second.written.is_empty(),
        "installing twice rewrites nothing"
    );
    assert_eq!(second.unchanged.len(), 2);
    let un = files_only(uninstall_plan(Os::Linux, &t));
    assert_eq!(apply(&un, true).unwrap().removed.len(), 2);
    assert!(
        apply(&un, true).unwrap().removed.is_empty(),
        "twice is fine"
    );
    assert_eq!(std::fs::read(&data).unwrap(), b"mine");
}

#[test]
fn a_failing_command_is_reported_unless_allowed() {
    let p = Plan {
        files: Vec::new(),
        commands: vec![
            Cmd::may(strings(&["false"])),
            Cmd::must(strings(&["sh", "-c", "echo nope >&2; exit 3"])),
        ],
    };
    match apply(&p, false) {
        Err(InstallError::Command { command, output }) => {
            assert!(command.contains("exit 3"));
            assert!(output.contains("nope"), "{output}");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
}

/// systemd's own check of the generated unit (Linux machines with
/// systemd-analyze; the executable must exist, so the unit names `/bin/true`).
#[test]
fn systemd_analyze_accepts_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Target {
        exe: PathBuf::from("/bin/true"),
        user_home: dir.path().to_path_buf(),
        node_home: Some(dir.path().join("node home")),
        uid: 0,
    };
    let unit = &plan(Os::Linux, &t, false).files[0];
    let path = dir.path().join(UNIT);
    std::fs::write(&path, &unit.contents).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains(UNIT), "warnings about the unit: {said}");
}
