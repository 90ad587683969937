//! Login-service registration for the softadastra agent.
//!
//! [`plan`] works out — purely, for any OS on any OS — which files to write
//! and which commands to run so the agent (and, with `tray`, the tray icon)
//! starts when the user logs in; [`uninstall_plan`] the reverse. [`apply`]
//! carries a plan out: files are written only when their content differs
//! (installing twice is fine), commands are run in order and a failing one
//! is reported with what it printed. Nothing here touches synced data or
//! the node's home.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which service manager to write for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// systemd user unit + XDG autostart entry.
    Linux,
    /// launchd LaunchAgent.
    MacOs,
    /// Per-user `Run` registry value.
    Windows,
}

impl Os {
    /// The OS this program runs on (anything unix-like but macOS counts as
    /// Linux: systemd and XDG are what it most likely has).
    pub fn current() -> Os {
        if cfg!(target_os = "macos") {
            Os::MacOs
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        }
    }
}

/// Where things go for the current user.
#[derive(Debug, Clone)]
pub struct Target {
    /// The agent executable (absolute).
    pub exe: PathBuf,
    /// The user's home directory.
    pub user_home: PathBuf,
    /// The node's home (`--home`), if not the default.
    pub node_home: Option<PathBuf>,
    /// Numeric user id (launchd's `gui/<uid>` domain).
    pub uid: u32,
}

/// One file the plan writes (or removes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Where.
    pub path: PathBuf,
    /// What (empty when removing).
    pub contents: String,
}

/// One command of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Its failure is not an error (stopping what is not running).
    pub may_fail: bool,
}

impl Cmd {
    fn must(argv: Vec<String>) -> Cmd {
        Cmd {
            argv,
            may_fail: false,
        }
    }
    fn may(argv: Vec<String>) -> Cmd {
        Cmd {
            argv,
            may_fail: true,
        }
    }
    /// The command line, for people.
    pub fn line(&self) -> String {
        self.argv.join(" ")
    }
}

/// What installing or uninstalling does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files to write (install) or remove (uninstall).
    pub files: Vec<File>,
    /// Commands to run afterwards, in order.
    pub commands: Vec<Cmd>,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file could not be written or removed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// write, remove, create directory.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed (or why it could not start).
        output: String,
    },
}

/// The systemd unit's name.
pub const UNIT: &str = "softadastra.service";
/// launchd labels.
pub const LABEL: &str = "dev.softadastra.agent";
/// launchd label of the tray.
pub const TRAY_LABEL: &str = "dev.softadastra.tray";

fn args(t: &Target, sub: &str) -> Vec<String> {
    let mut v = vec![t.exe.display().to_string()];
    if let Some(h) = &t.node_home {
        v.push("--home".into());
        v.push(h.display().to_string());
    }
    v.push(sub.into());
    if sub == "run" {
        // The service logs to a rotated file too (`softadastra log`).
        v.push("--log-file".into());
    }
    v
}

/// Quote one argument for a systemd `ExecStart=` line or a desktop entry's
/// `Exec=` key (both take double quotes with backslash escapes).
fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:+,@".contains(c))
    {
        return arg.to_string();
    }
    let escaped: String = arg
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' | '$' | '`' => vec!['\\', c],
            '%' => vec!['%', '%'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn systemd_unit(t: &Target) -> String {
    let exec: Vec<String> = args(t, "run").iter().map(|a| quote(a)).collect();
    format!(
        "[Unit]\n\
         Description=Softadastra file sync agent\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         Environment=SOFTADASTRA_LOG=info\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exec.join(" ")
    )
}

fn desktop_entry(t: &Target) -> String {
    let exec: Vec<String> = args(t, "tray").iter().map(|a| quote(a)).collect();
    format!(
        "[Desktop Entry]\n\
         Type=Application\n\
         Name=Softadastra\n\
         Comment=Sync state of the softadastra agent\n\
         Exec={}\n\
         Icon=folder-sync\n\
         Terminal=false\n\
         X-GNOME-Autostart-enabled=true\n",
        exec.join(" ")
    )
}

fn launch_agent(t: &Target, label: &str, sub: &str, keep_alive: bool) -> String {
    let program: String = args(t, sub)
        .iter()
        .map(|a| format!("        <string>{}</string>\n", xml(a)))
        .collect();
    let log = t
        .user_home
        .join("Library/Logs/softadastra")
        .join(format!("{sub}.log"));
    let keep = if keep_alive {
        "    <key>KeepAlive</key>\n    <dict>\n        <key>SuccessfulExit</key>\n        <false/>\n    </dict>\n"
    } else {
        ""
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20   <key>Label</key>\n\
         \x20   <string>{label}</string>\n\
         \x20   <key>ProgramArguments</key>\n\
         \x20   <array>\n\
         {program}\
         \x20   </array>\n\
         \x20   <key>RunAtLoad</key>\n\
         \x20   <true/>\n\
         {keep}\
         \x20   <key>StandardErrorPath</key>\n\
         \x20   <string>{}</string>\n\
         </dict>\n\
         </plist>\n",
        xml(&log.display().to_string())
    )
}

fn windows_command_line(t: &Target, sub: &str) -> String {
    args(t, sub)
        .iter()
        .map(|a| format!("\"{}\"", a.replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

const RUN_KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Where the plan for `os` puts its files.
fn paths(os: Os, t: &Target) -> (Option<PathBuf>, Option<PathBuf>) {
    match os {
        Os::Linux => (
            Some(t.user_home.join(".config/systemd/user").join(UNIT)),
            Some(
                t.user_home
                    .join(".config/autostart/softadastra-tray.desktop"),
            ),
        ),
        Os::MacOs => {
            let dir = t.user_home.join("Library/LaunchAgents");
            (
                Some(dir.join(format!("{LABEL}.plist"))),
                Some(dir.join(format!("{TRAY_LABEL}.plist"))),
            )
        }
        Os::Windows => (None, None),
    }
}

/// What installing the agent (and the tray, with `tray`) for `os` takes.
pub fn plan(os: Os, t: &Target, tray: bool) -> Plan {
    let (service, tray_file) = paths(os, t);
    let mut p = Plan::default();
    match os {
        Os::Linux => {
            if let Some(path) = service {
                p.files.push(File {
                    path,
                    contents: systemd_unit(t),
                });
            }
            if let (true, Some(path)) = (tray, tray_file) {
                p.files.push(File {
                    path,
                    contents: desktop_entry(t),
                });
            }
            p.commands.push(Cmd::must(strings(&[
                "systemctl",
                "--user",
                "daemon-reload",
            ])));
            p.commands.push(Cmd::must(strings(&[
                "systemctl",
                "--user",
                "enable",
                "--now",
                UNIT,
            ])));
        }
        Os::MacOs => {
            let mut agents = vec![(service, LABEL, "run", true)];
            if tray {
                agents.push((tray_file, TRAY_LABEL, "tray", false));
            }
            for (path, label, sub, keep_alive) in agents {
                let Some(path) = path else { continue };
                p.files.push(File {
                    path: path.clone(),
                    contents: launch_agent(t, label, sub, keep_alive),
                });
                // Bootstrapping a loaded agent fails: out first (it may
                // not be loaded), then in — installing twice is fine.
                p.commands.push(Cmd::may(vec![
                    "launchctl".into(),
                    "bootout".into(),
                    format!("gui/{}/{label}", t.uid),
                ]));
                p.commands.push(Cmd::must(vec![
                    "launchctl".into(),
                    "bootstrap".into(),
                    format!("gui/{}", t.uid),
                    path.display().to_string(),
                ]));
            }
        }
        Os::Windows => {
            let mut add = |name: &str, sub: &str| {
                p.commands.push(Cmd::must(vec![
                    "reg".into(),
                    "add".into(),
                    RUN_KEY.into(),
                    "/v".into(),
                    name.into(),
                    "/t".into(),
                    "REG_SZ".into(),
                    "/d".into(),
                    windows_command_line(t, sub),
                    "/f".into(),
                ]));
            };
            add("Softadastra", "run");
            if tray {
                add("SoftadastraTray", "tray");
            }
        }
    }
    p
}

/// What removing the registration takes (both agent and tray entries; the
/// node's home and the synced folders are not touched).
pub fn uninstall_plan(os: Os, t: &Target) -> Plan {
    let (service, tray_file) = paths(os, t);
    let mut p = Plan::default();
    for path in [service, tray_file].into_iter().flatten() {
        p.files.push(File {
            path,
            contents: String::new(),
        });
    }
    match os {
        Os::Linux => {
            p.commands.push(Cmd::may(strings(&[
                "systemctl",
                "--user",
                "disable",
                "--now",
                UNIT,
            ])));
            p.commands
                .push(Cmd::may(strings(&["systemctl", "--user", "daemon-reload"])));
        }
        Os::MacOs => {
            for label in [LABEL, TRAY_LABEL] {
                p.commands.push(Cmd::may(vec![
                    "launchctl".into(),
                    "bootout".into(),
                    format!("gui/{}/{label}", t.uid),
                ]));
            }
        }
        Os::Windows => {
            for name in ["Softadastra", "SoftadastraTray"] {
                p.commands.push(Cmd::may(vec![
                    "reg".into(),
                    "delete".into(),
                    RUN_KEY.into(),
                    "/v".into(),
                    name.into(),
                    "/f".into(),
                ]));
            }
        }
    }
    p
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// Files written (their content was new or different).
    pub written: Vec<PathBuf>,
    /// Files already as planned.
    pub unchanged: Vec<PathBuf>,
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// Commands run successfully.
    pub ran: Vec<String>,
    /// Commands allowed to fail that did, with their output.
    pub skipped: Vec<String>,
}

/// Carry out an install plan (`remove` false) or an uninstall plan
/// (`remove` true: its files are deleted). The first failing command not
/// allowed to fail stops and is reported.
pub fn apply(plan: &Plan, remove: bool) -> Result<Report, InstallError> {
    let mut report = Report::default();
    for f in &plan.files {
        if remove {
            match std::fs::remove_file(&f.path) {
                Ok(()) => report.removed.push(f.path.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(InstallError::Io {
                        op: "remove",
                        path: f.path.clone(),
                        source,
                    });
                }
            }
            continue;
        }
        if std::fs::read_to_string(&f.path).is_ok_and(|c| c == f.contents) {
            report.unchanged.push(f.path.clone());
            continue;
        }
        if let Some(dir) = f.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| InstallError::Io {
                op: "create directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        write_atomically(&f.path, &f.contents)?;
        report.written.push(f.path.clone());
    }
    for c in &plan.commands {
        let line = c.line();
        let Some((program, rest)) = c.argv.split_first() else {
            continue;
        };
        let out = Command::new(program).args(rest).output();
        let failure = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "{} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => report.ran.push(line),
            Some(output) if c.may_fail => report.skipped.push(format!("{line}: {output}")),
            Some(output) => {
                return Err(InstallError::Command {
                    command: line,
                    output,
                });
            }
        }
    }
    Ok(report)
}

fn write_atomically(path: &Path, contents: &str) -> Result<(), InstallError> {
    let io = |op, source| InstallError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("softadastra-new");
    std::fs::write(&tmp, contents).map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("write", e))
}

#[cfg(test)]
mod tests;
