//! `install` and `uninstall`: the agent as a login service for this user.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use softadastra_installer::{InstallError, Os, Plan, Target, apply, plan, uninstall_plan};

use crate::home::Home;

fn target(home: &Home) -> Result<Target> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot find this program's own path")?;
    let user_home = directories::BaseDirs::new()
        .map(|d| d.home_dir().to_path_buf())
        .context("cannot determine your home directory")?;
    let node_home = std::path::absolute(&home.root)
        .with_context(|| format!("bad home directory {}", home.root.display()))?;
    #[cfg(unix)]
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&user_home).map(|m| m.uid()).unwrap_or(0)
    };
    #[cfg(not(unix))]
    let uid = 0;
    Ok(Target {
        exe,
        user_home,
        node_home: Some(node_home),
        uid,
    })
}

fn show(p: &Plan, remove: bool) {
    for f in &p.files {
        if remove {
            println!("would remove {}", f.path.display());
        } else {
            println!("would write {}:", f.path.display());
            for line in f.contents.lines() {
                println!("    {line}");
            }
        }
    }
    for c in &p.commands {
        println!(
            "would run   {}{}",
            c.line(),
            if c.may_fail { "   (may fail)" } else { "" }
        );
    }
}

/// Whether `install` sets the tray up: when asked (`--tray`); else, unless
/// `--no-tray`, when this build has the tray and a graphical session runs
/// (on Linux `DISPLAY` or `WAYLAND_DISPLAY` is set; macOS and Windows
/// always have one), saying so.
pub fn with_tray(asked: bool, refused: bool) -> bool {
    if asked || refused {
        return asked;
    }
    let graphical = !cfg!(target_os = "linux")
        || ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    let tray = cfg!(feature = "tray") && graphical;
    if tray {
        eprintln!(
            "a graphical session is running: the tray icon starts at login too (--no-tray leaves it out)"
        );
    }
    tray
}

pub fn run_install(home: &Home, tray: bool, dry_run: bool, no_start: bool) -> Result<ExitCode> {
    if tray && !cfg!(feature = "tray") {
        bail!(
            "this softadastra was built without the tray icon, so there is nothing to start at login for it; install without --tray, or build with `--features tray`"
        );
    }
    let os = Os::current();
    let mut p = plan(os, &target(home)?, tray);
    if dry_run {
        show(&p, false);
        return Ok(ExitCode::SUCCESS);
    }
    let later: Vec<String> = if no_start {
        std::mem::take(&mut p.commands)
            .into_iter()
            .map(|c| c.line())
            .collect()
    } else {
        Vec::new()
    };
    let result = apply(&p, false);
    for f in &p.files {
        eprintln!("registered {}", f.path.display());
    }
    match result {
        Ok(report) => {
            if report.written.is_empty() && !report.unchanged.is_empty() {
                eprintln!("(already installed; nothing changed on disk)");
            }
            for c in &report.ran {
                eprintln!("ran {c}");
            }
            if no_start {
                eprintln!("not started (--no-start); to start it now run:");
                for c in later {
                    eprintln!("  {c}");
                }
            } else {
                eprintln!("the agent starts at every login; `softadastra uninstall` undoes this");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(InstallError::Command { command, output }) => bail!(
            "the login service is written, but `{command}` failed ({output}). It starts at your next login; to start it now, run that command in your desktop session"
        ),
        Err(e) => Err(e.into()),
    }
}

pub fn run_uninstall(home: &Home, dry_run: bool) -> Result<ExitCode> {
    let p = uninstall_plan(Os::current(), &target(home)?);
    if dry_run {
        show(&p, true);
        return Ok(ExitCode::SUCCESS);
    }
    let report = apply(&p, true)?;
    for f in &report.removed {
        eprintln!("removed {}", f.display());
    }
    for s in &report.skipped {
        eprintln!("note: {s}");
    }
    if report.removed.is_empty() {
        eprintln!("nothing was installed");
    }
    eprintln!(
        "the node's home ({}) and your synced folders are untouched",
        home.root.display()
    );
    Ok(ExitCode::SUCCESS)
}
