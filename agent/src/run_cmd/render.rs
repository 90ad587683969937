//! Rendering what the agent says for people: `status`, `sync status`,
//! `peers`, `node` (and `--json` as it is).

use super::*;

/// A peer as `peers` shows it.
#[derive(Debug, Serialize)]
pub(super) struct PeerRow {
    id: String,
    name: Option<String>,
    state: String,
    addr: Option<String>,
    remote: Option<String>,
    since_unix_ms: u64,
    version: Option<String>,
    os: Option<String>,
    last_error: Option<String>,
    retry_in_ms: Option<u64>,
    /// Trusted peers first; nearby untrusted nodes (heard on the LAN,
    /// listed for pairing, never synced with) after.
    trusted: bool,
    /// How the live connection came about (configured, discovered, incoming).
    found_by: Option<&'static str>,
    /// LAN discovery's view: discovered, alive or stale (none: not heard).
    lan: Option<&'static str>,
    /// Where discovery heard it.
    lan_addr: Option<String>,
    /// When discovery last heard it.
    last_seen_unix_ms: Option<u64>,
    /// What it said about itself on the last connection.
    info: Option<NodeInfo>,
}

pub(super) fn peer_rows(statuses: Vec<PeerStatus>, nearby: Vec<Nearby>) -> Vec<PeerRow> {
    let heard: HashMap<NodeId, &Nearby> = nearby.iter().map(|n| (n.id, n)).collect();
    let now_ms = SystemClock.wall().as_nanos() / 1_000_000;
    let mut rows: Vec<PeerRow> = statuses
        .iter()
        .map(|s| {
            let lan = heard.get(&s.id);
            PeerRow {
                id: s.id.to_string(),
                name: s.hello.as_ref().map(|h| h.name.clone()),
                state: s.state.as_str().to_string(),
                addr: s.addr.clone(),
                remote: s.remote.map(|r| r.to_string()),
                since_unix_ms: s.since.as_nanos() / 1_000_000,
                version: s.hello.as_ref().map(|h| h.version.clone()),
                os: s.hello.as_ref().map(|h| h.os.clone()),
                last_error: s.last_error.clone(),
                retry_in_ms: s.retry_in_ms,
                trusted: true,
                found_by: s.found_by,
                lan: lan.map(|n| n.presence.as_str()),
                lan_addr: lan.map(|n| n.addr.to_string()),
                last_seen_unix_ms: lan.map(|n| n.last_seen.as_nanos() / 1_000_000),
                info: s.hello.as_ref().map(|h| NodeInfo::from_hello(h, now_ms)),
            }
        })
        .collect();
    let known: std::collections::HashSet<NodeId> = statuses.iter().map(|s| s.id).collect();
    rows.extend(
        nearby
            .iter()
            .filter(|n| !known.contains(&n.id))
            .map(|n| PeerRow {
                id: n.id.to_string(),
                name: None,
                state: "nearby".into(),
                addr: None,
                remote: None,
                since_unix_ms: n.last_seen.as_nanos() / 1_000_000,
                version: None,
                os: None,
                last_error: None,
                retry_in_ms: None,
                trusted: false,
                found_by: None,
                lan: Some(n.presence.as_str()),
                lan_addr: Some(n.addr.to_string()),
                last_seen_unix_ms: Some(n.last_seen.as_nanos() / 1_000_000),
                info: None,
            }),
    );
    rows
}

/// No agent on this home: say so, and how to start one.
pub(super) fn not_running(home: &Home, what: &str) -> anyhow::Error {
    anyhow!(
        "the agent is not running on {}: {what}; start it with `softadastra run`",
        home.root.display()
    )
}

pub fn run_peers(home: &Home, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let rows: Vec<serde_json::Value> = match control::call_or_open(home, &Request::Peers)? {
        Reached::Agent(serde_json::Value::Array(rows)) => rows,
        Reached::Agent(other) => bail!("unexpected answer from the agent: {other}"),
        Reached::Store(store) => trust::list(&store)?
            .into_iter()
            .map(|p| json!({"id": p.id.to_string(), "addr": p.addr, "state": "agent not running"}))
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!(
            "no trusted peers; pair with `softadastra invite` here and `softadastra join CODE` there"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (trusted, nearby): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r["trusted"] != false);
    writeln!(
        out,
        "{:<16} {:<12} {:<24} {:<11} DETAIL",
        "PEER", "STATE", "ADDRESS", "LAN"
    )?;
    for r in trusted {
        let id = r["id"].as_str().unwrap_or_default();
        let name = r["name"]
            .as_str()
            .map_or_else(|| id[..7.min(id.len())].to_string(), String::from);
        let addr = r["remote"]
            .as_str()
            .or(r["addr"].as_str())
            .unwrap_or("(waiting for it)");
        let detail = match (r["last_error"].as_str(), r["retry_in_ms"].as_u64()) {
            (Some(e), Some(ms)) if r["state"] != "connected" => {
                format!("{e} (retry in {:.1} s)", ms as f64 / 1000.0)
            }
            (Some(e), _) if r["state"] != "connected" => e.to_string(),
            _ => r["version"]
                .as_str()
                .map(|v| format!("softadastra {v}"))
                .unwrap_or_default(),
        };
        writeln!(
            out,
            "{name:<16} {:<12} {addr:<24} {:<11} {detail}",
            r["state"].as_str().unwrap_or("?"),
            r["lan"].as_str().unwrap_or("-"),
        )?;
    }
    if !nearby.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Nearby on the LAN, not trusted (pair with `softadastra invite`, or `softadastra peer add ID`):"
        )?;
        for r in nearby {
            writeln!(
                out,
                "  {}  at {} ({})",
                r["id"].as_str().unwrap_or_default(),
                r["lan_addr"].as_str().unwrap_or("?"),
                r["lan"].as_str().unwrap_or("?")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_node(home: &Home, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let info = match control::call(home, &Request::Node)? {
        Some(info) => info,
        None => {
            let identity = Identity::load(&home.root)?.ok_or_else(|| {
                anyhow!(
                    "no node in {} yet: create one with `softadastra init`",
                    home.root.display()
                )
            })?;
            let hello = Hello {
                meta: NodeMeta::local(0).encode(),
                ..hello_of(&identity)
            };
            let mut info = serde_json::to_value(NodeInfo::from_hello(&hello, 0))?;
            info["running"] = json!(false);
            info
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = |k: &str| info[k].as_str().unwrap_or("").to_string();
    writeln!(out, "id            {}", text("id"))?;
    writeln!(out, "name          {}", text("name"))?;
    writeln!(out, "host          {} ({})", text("hostname"), text("os"))?;
    writeln!(
        out,
        "version       softadastra {} (wire protocol {}, metadata {})",
        text("version"),
        info["protocol"],
        info["meta_version"]
    )?;
    writeln!(
        out,
        "capabilities  {}",
        strings(&info["capabilities"]).join(", ")
    )?;
    match info["uptime_secs"].as_u64() {
        Some(up) if info["running"] == true => writeln!(
            out,
            "agent         running for {up} s, listening on {}",
            text("listen")
        )?,
        _ => writeln!(out, "agent         not running")?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_status(home: &Home, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match control::call_or_open(home, &Request::Status)? {
        Reached::Agent(answer) => {
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
            } else {
                let s: NodeStatus = serde_json::from_value(answer).context(
                    "the agent's status is not what this softadastra reads; is it another version?",
                )?;
                writeln!(out, "node     {} ({})", s.name, s.node)?;
                writeln!(
                    out,
                    "agent    running {} s, listening on {}",
                    s.uptime_secs, s.listen
                )?;
                writeln!(
                    out,
                    "peers    {} connected of {} trusted",
                    s.peers_connected, s.peers_trusted
                )?;
                writeln!(
                    out,
                    "store    WAL at sequence {} in {}",
                    s.wal_last_seq,
                    s.wal_dir.display()
                )?;
                match &s.discovery {
                    Some(d) => writeln!(
                        out,
                        "lan      discovery on UDP {}, every {} s, {} node(s) heard",
                        d.port, d.interval_s, d.nearby
                    )?,
                    None => writeln!(out, "lan      discovery off")?,
                }
                for f in &s.folders {
                    writeln!(out, "{}", folder_line(f))?;
                }
                for o in &s.offers {
                    let by = o.offerers();
                    writeln!(
                        out,
                        "offer    folder {} from {} — `softadastra folder accept {} PATH` or `folder decline {}`",
                        o.id,
                        by.join(", "),
                        o.id,
                        o.id
                    )?;
                }
                if s.refused_not_member > 0 {
                    writeln!(
                        out,
                        "refused  {} request(s) for folders not shared with the device that sent them (see the log)",
                        s.refused_not_member
                    )?;
                }
            }
        }
        Reached::Store(store) => {
            let node = Identity::load(&home.root)?;
            let folders = folder::list(&store)?;
            let peers = trust::list(&store)?;
            if json {
                let s = json!({
                    "running": false,
                    "node": node.as_ref().map(|i| i.node_id().to_string()),
                    "name": node.as_ref().map(|i| i.name().to_string()),
                    "peers_trusted": peers.len(),
                    "folders": folders.iter().map(|f| json!({"id": f.id, "path": f.path, "paused": f.paused})).collect::<Vec<_>>(),
                    "wal_last_seq": store.last_seq().0,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                match &node {
                    Some(i) => writeln!(out, "node     {} ({})", i.name(), i.node_id())?,
                    None => writeln!(out, "node     not initialised (`softadastra init`)")?,
                }
                writeln!(
                    out,
                    "agent    not running (start it with `softadastra run`)"
                )?;
                writeln!(out, "peers    {} trusted", peers.len())?;
                writeln!(out, "store    WAL at sequence {}", store.last_seq().0)?;
                for f in &folders {
                    writeln!(out, "folder   {} at {}", f.id, f.path.display())?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The strings of a JSON array (nothing for anything else).
pub(super) fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .collect()
}

/// One folder of `status`, for people: "folder docs at PATH — up to date ·
/// 1204 files, 3.2 GB" or "… — syncing 14 files (3.2 MB left) · 2 failing".
pub(super) fn folder_line(f: &FolderStatus) -> String {
    use crate::folder_cmd::human_bytes;
    let p = &f.progress;
    let state = match f.state {
        FolderState::Syncing => format!(
            "syncing {} files ({} left; {} in flight, {} queued)",
            p.needed_files,
            human_bytes(p.needed_bytes),
            p.in_flight,
            p.queued
        ),
        FolderState::Error => format!("error: {}", f.error.as_deref().unwrap_or("?")),
        other => other.as_str().to_string(),
    };
    let shared = match f.members.len() {
        0 => "shared with no device".to_string(),
        1 => "shared with 1 device".to_string(),
        n => format!("shared with {n} devices"),
    };
    let mut line = format!(
        "folder   {} at {} — {state} · {} files, {} · {} · {shared}",
        f.id,
        f.path.display(),
        f.files,
        human_bytes(f.bytes),
        f.kind
    );
    if f.remote_differs > 0 {
        line.push_str(&format!(
            "\n         {} remote change(s) not applied here (send-only): `softadastra folder override {}` pushes this node's version back",
            f.remote_differs, f.id
        ));
    }
    if f.conflicts > 0 {
        line.push_str(&format!(
            "\n         {} conflict(s), both versions kept: `softadastra conflicts --folder {}` lists them",
            f.conflicts, f.id
        ));
    }
    let held = f.deletions_held;
    if held.local > 0 {
        line.push_str(&format!(
            "\n         {} path(s) gone from this folder are not deleted on other devices (deletion guard): \
             `softadastra folder accept-deletions {}` deletes them everywhere, `restore-deletions {}` brings them back",
            held.local, f.id, f.id
        ));
    }
    if held.remote > 0 {
        line.push_str(&format!(
            "\n         {} deletion(s) from other devices are held back (deletion guard): \
             `softadastra folder accept-deletions {}` applies them, `restore-deletions {}` keeps this node's files",
            held.remote, f.id, f.id
        ));
    }
    if f.locally_changed > 0 {
        line.push_str(&format!(
            "\n         {} local change(s) not sent (receive-only): `softadastra folder revert {}` puts the peers' version back",
            f.locally_changed, f.id
        ));
    }
    if f.not_synced > 0 {
        line.push_str(&format!(
            "\n         {} not synced (left out on purpose; they stay on this machine only):",
            f.not_synced
        ));
        for n in &f.not_synced_files {
            line.push_str(&format!("\n           {}: {}", n.path, n.why));
        }
    }
    if p.failing > 0 {
        line.push_str(&format!(
            "\n         {} failing, retried with backoff{}:",
            p.failing,
            match p.blocked {
                0 => String::new(),
                b => format!("; {b} need you (they wait for space or a permission)"),
            }
        ));
        for f in &p.failing_files {
            let tries = match f.attempts {
                1 => "failed once".to_string(),
                k => format!("failed {k} times"),
            };
            let when = if f.waits_for_change {
                "; waits for a change"
            } else {
                ""
            };
            line.push_str(&format!(
                "\n           {}: {} ({tries}{when})",
                f.path, f.why
            ));
        }
    }
    line
}

/// `sync status`: what each folder still needs, and what fails.
pub fn run_sync_status(home: &Home, json_out: bool) -> Result<ExitCode> {
    use std::io::Write;
    let s = control::call(home, &Request::Status)?.ok_or_else(|| {
        not_running(
            home,
            "sync progress lives in the agent; `softadastra status` shows what is on disk",
        )
    })?;
    let s: NodeStatus = serde_json::from_value(s)
        .context("the agent's status is not what this softadastra reads; is it another version?")?;
    let mut out = std::io::stdout().lock();
    if json_out {
        writeln!(out, "{}", serde_json::to_string_pretty(&s.folders)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "peers    {} connected of {} trusted",
        s.peers_connected, s.peers_trusted
    )?;
    for f in &s.folders {
        writeln!(out, "{}", folder_line(f))?;
    }
    writeln!(
        out,
        "since start: {} files placed or removed, {} fetched, {} reused locally",
        s.sync_files_done,
        crate::folder_cmd::human_bytes(s.sync_bytes_fetched),
        crate::folder_cmd::human_bytes(s.sync_bytes_reused)
    )?;
    Ok(ExitCode::SUCCESS)
}
