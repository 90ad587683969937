//! `log` (the agent's log file, followed or not) and `shutdown`.

use super::*;

/// `log`: the newest log file's last `lines` lines, then (with `follow`)
/// whatever is appended, across the daily rotation.
pub fn run_log(home: &Home, lines: usize, follow: bool) -> Result<ExitCode> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let dir = home.log_dir();
    let newest = || -> Option<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("softadastra") && n.ends_with(".log"))
            })
            .collect();
        files.sort();
        files.pop()
    };
    let Some(mut path) = newest() else {
        bail!(
            "no log file in {}: the agent writes one when run with `--log-file` (as `softadastra install` sets up) or with `log.file = true` in {}",
            dir.display(),
            home.config.display()
        );
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let all: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout().lock();
    for l in &all[all.len().saturating_sub(lines)..] {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut at = text.len() as u64;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(n) = newest().filter(|n| *n != path) {
            path = n;
            at = 0;
        }
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < at {
            at = 0;
        }
        if len > at {
            f.seek(SeekFrom::Start(at))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            at += buf.len() as u64;
            out.write_all(&buf)?;
            out.flush()?;
        }
    }
}

pub fn run_shutdown(home: &Home) -> Result<ExitCode> {
    control::call(home, &Request::Shutdown)?.ok_or_else(|| not_running(home, "nothing to stop"))?;
    eprintln!("the agent is stopping");
    Ok(ExitCode::SUCCESS)
}
