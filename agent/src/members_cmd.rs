//! `softadastra folder share|unshare|offers|accept|decline`, `folder list`'s
//! rows, and `peer pause|resume`: who each folder is shared with.
//!
//! With the agent running, each change goes through it (it takes effect on
//! its connections at once); without, the store is changed directly and
//! the agent applies it when it starts. Offers come from connected
//! devices, so they need the running agent.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use softadastra::core::NodeId;
use softadastra::folder;
use softadastra::fs::scan::EntryKind;
use softadastra::index::{FolderType, members};
use softadastra::runtime::trust;
use softadastra::store::Store;

use crate::control::{self, Reached, Request, call_or_open};
use crate::folder_cmd::human_bytes;
use crate::home::Home;

/// A folder type named on the command line, if one was.
pub fn parse_type(kind: Option<&str>) -> Result<Option<softadastra::index::FolderType>> {
    kind.map(|k| k.parse().map_err(|e: String| anyhow::anyhow!(e)))
        .transpose()
}

/// One device a folder is shared with.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberRow {
    /// Its id.
    pub id: String,
    /// Its name, if known.
    pub name: Option<String>,
}

/// One shared folder as `folder list` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct FolderRow {
    id: String,
    path: PathBuf,
    paused: bool,
    #[serde(rename = "type")]
    kind: String,
    members: Vec<MemberRow>,
    files: u64,
    dirs: u64,
    bytes: u64,
}

fn member_rows(store: &Store, ids: impl IntoIterator<Item = NodeId>) -> Vec<MemberRow> {
    ids.into_iter()
        .map(|id| MemberRow {
            id: id.to_string(),
            name: trust::name_of(store, id),
        })
        .collect()
}

/// Every shared folder with its members, type and size.
pub fn folder_rows(store: &Store) -> Result<Vec<FolderRow>> {
    let mut rows = Vec::new();
    for f in folder::list(store)? {
        let (mut files, mut dirs, mut bytes) = (0, 0, 0);
        for r in folder::records(store, &f.id) {
            let (_, rec) = r?;
            if rec.deleted {
                continue;
            }
            match rec.kind {
                EntryKind::Dir => dirs += 1,
                _ => {
                    files += 1;
                    bytes += rec.size;
                }
            }
        }
        rows.push(FolderRow {
            members: member_rows(store, f.members.iter().copied()),
            id: f.id,
            path: f.path,
            paused: f.paused,
            kind: f.kind.to_string(),
            files,
            dirs,
            bytes,
        });
    }
    Ok(rows)
}

/// A switch given as `on` or `off` (`what` names it in the error).
pub(crate) fn on_off(what: &str, text: &str) -> Result<bool> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => anyhow::bail!("{what} takes `on` or `off`, not {other:?}"),
    }
}

/// Say what a command did: `data` as JSON on stdout with `--json`, else
/// `prose` on stderr.
pub(crate) fn say(json: bool, data: serde_json::Value, prose: &str) -> Result<ExitCode> {
    if json {
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&data)?
        )?;
    } else {
        eprintln!("{prose}");
    }
    Ok(ExitCode::SUCCESS)
}

fn who(m: &MemberRow) -> String {
    match &m.name {
        Some(n) => n.clone(),
        None => m.id.chars().take(7).collect(),
    }
}

/// `folder list`.
pub fn run_list(home: &Home, json: bool) -> Result<ExitCode> {
    let rows: Vec<FolderRow> = match call_or_open(home, &Request::FolderList)? {
        Reached::Agent(answer) => serde_json::from_value(answer)?,
        Reached::Store(store) => folder_rows(&store)?,
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no shared folders; add one with `softadastra folder add PATH`");
        return Ok(ExitCode::SUCCESS);
    }
    let w = rows.iter().map(|r| r.id.len()).max().unwrap_or(2).max(2);
    writeln!(
        out,
        "{:<w$}  {:>8}  {:>6}  {:>10}  {:<7}  {:<12}  {:<20}  PATH",
        "ID", "FILES", "DIRS", "SIZE", "STATE", "TYPE", "SHARED WITH"
    )?;
    for r in rows {
        let state = if r.paused { "paused" } else { "active" };
        let with = if r.members.is_empty() {
            "no device".to_string()
        } else {
            r.members.iter().map(who).collect::<Vec<_>>().join(", ")
        };
        writeln!(
            out,
            "{:<w$}  {:>8}  {:>6}  {:>10}  {:<7}  {:<12}  {:<20}  {}",
            r.id,
            r.files,
            r.dirs,
            human_bytes(r.bytes),
            state,
            r.kind,
            with,
            r.path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `folder share ID DEVICE` / `folder unshare ID DEVICE` (`id` may be the
/// app space, `@app`).
pub fn run_member(
    home: &Home,
    id: &str,
    device: &str,
    share: bool,
    json: bool,
) -> Result<ExitCode> {
    let request = Request::FolderMember {
        id: id.to_string(),
        device: device.to_string(),
        share,
    };
    let (changed, device) = match call_or_open(home, &request)? {
        Reached::Agent(answer) => (
            answer["changed"].as_bool().unwrap_or(false),
            answer["device"].as_str().unwrap_or(device).to_string(),
        ),
        Reached::Store(mut store) => {
            let d = trust::resolve(&store, device)?;
            if id != softadastra::index::values::APP_SPACE {
                folder::get(&store, id)?;
            }
            let changed = members::set_member(&mut store, id, d, share)?;
            if changed && !share {
                softadastra::sync::forget_peer_folder(&mut store, id, d)?;
            }
            (changed, d.to_string())
        }
    };
    let prose = match (share, changed) {
        (true, true) => format!("sharing {id:?} with {device}"),
        (true, false) => format!("{id:?} was already shared with {device}"),
        (false, true) => format!(
            "stopped sharing {id:?} with {device}: it is told at once and gets nothing more of it"
        ),
        (false, false) => format!("{id:?} was not shared with {device}"),
    };
    say(
        json,
        serde_json::json!({"id": id, "device": device, "shared": share, "changed": changed}),
        &prose,
    )
}

/// `peer pause DEVICE` / `peer resume DEVICE`.
pub fn run_peer_pause(home: &Home, device: &str, paused: bool, json: bool) -> Result<ExitCode> {
    let request = Request::PeerPause {
        device: device.to_string(),
        paused,
    };
    let (changed, device) = match call_or_open(home, &request)? {
        Reached::Agent(answer) => (
            answer["changed"].as_bool().unwrap_or(false),
            answer["device"].as_str().unwrap_or(device).to_string(),
        ),
        Reached::Store(mut store) => {
            let d = trust::resolve(&store, device)?;
            (
                members::set_device_paused(&mut store, d, paused)?,
                d.to_string(),
            )
        }
    };
    let prose = match (paused, changed) {
        (true, true) => {
            format!("paused {device}: nothing syncs with it until `softadastra peer resume`")
        }
        (true, false) => format!("{device} was already paused"),
        (false, true) => format!("resumed {device}"),
        (false, false) => format!("{device} was not paused"),
    };
    say(
        json,
        serde_json::json!({"device": device, "paused": paused, "changed": changed}),
        &prose,
    )
}

fn agent_only(home: &Home, request: &Request, what: &str) -> Result<serde_json::Value> {
    agent_only_for(
        home,
        request,
        &format!(
            "{what} needs the running agent (offers come from connected devices): start it with `softadastra run`"
        ),
    )
}

/// The running agent's answer to `request`, or `refusal` as the error.
fn agent_only_for(home: &Home, request: &Request, refusal: &str) -> Result<serde_json::Value> {
    match control::call(home, request)? {
        Some(answer) => Ok(answer),
        None => bail!("{refusal}"),
    }
}

/// `folder offers`.
pub fn run_offers(home: &Home, json: bool) -> Result<ExitCode> {
    let answer = agent_only(home, &Request::Offers, "listing offers")?;
    if json {
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&answer)?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let offers = answer.as_array().cloned().unwrap_or_default();
    if offers.is_empty() {
        eprintln!("no folder is offered to this node");
    }
    let mut out = std::io::stdout().lock();
    for o in offers {
        let id = o["id"].as_str().unwrap_or_default();
        let by: Vec<String> = o["by"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                b["name"]
                    .as_str()
                    .or(b["device"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        writeln!(
            out,
            "{id}  offered by {}  (`softadastra folder accept {id} PATH` or `folder decline {id}`)",
            by.join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `folder accept ID PATH [--type TYPE]`.
pub fn run_accept(
    home: &Home,
    id: &str,
    path: &std::path::Path,
    kind: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    parse_type(kind.as_deref())?;
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    let path = std::fs::canonicalize(path)?;
    let answer = agent_only(
        home,
        &Request::OfferAccept {
            id: id.to_string(),
            path: path.clone(),
            kind,
        },
        "accepting an offer",
    )?;
    say(
        json,
        answer,
        &format!("keeping folder {id:?} at {}; it syncs now", path.display()),
    )
}

/// `folder decline ID`.
pub fn run_decline(home: &Home, id: &str, json: bool) -> Result<ExitCode> {
    let answer = agent_only(
        home,
        &Request::OfferDecline { id: id.to_string() },
        "declining an offer",
    )?;
    say(
        json,
        answer,
        &format!("declined {id:?}: it is not offered again here (`folder accept` still takes it)"),
    )
}

/// `folder type ID TYPE`.
pub fn run_type(home: &Home, id: &str, kind: &str, json: bool) -> Result<ExitCode> {
    let Some(wanted) = parse_type(Some(kind))? else {
        bail!("no folder type given");
    };
    let request = Request::FolderType {
        id: id.to_string(),
        kind: kind.to_string(),
    };
    match call_or_open(home, &request)? {
        Reached::Agent(_) => {}
        Reached::Store(mut store) => {
            offline_engine(home)?.retype(&mut store, id, wanted)?;
        }
    }
    let prose = format!(
        "{id:?} is {wanted} on this node{}",
        match wanted {
            FolderType::SendOnly => {
                ": its changes go out; a peer's are shown as \"remote differs\" (`folder override` pushes this node's state back)"
            }
            FolderType::ReceiveOnly => {
                ": a peer's changes come in; its own are kept here, shown as \"locally changed\" (`folder revert` puts the peers' version back)"
            }
            FolderType::SendReceive => "",
        }
    );
    say(json, serde_json::json!({"id": id, "type": wanted}), &prose)
}

/// A sync engine for a command run without the agent: bookkeeping only.
pub fn offline_engine(home: &Home) -> Result<softadastra::sync::SyncEngine> {
    Ok(softadastra::sync::SyncEngine::new(
        home.node_id()?,
        softadastra::sync::SyncConfig::default(),
        0,
    ))
}

/// `folder override ID`.
pub fn run_override(home: &Home, id: &str, json: bool) -> Result<ExitCode> {
    let request = Request::FolderOverride { id: id.to_string() };
    let n = match call_or_open(home, &request)? {
        Reached::Agent(answer) => answer["paths"].as_u64().unwrap_or(0) as usize,
        Reached::Store(mut store) => {
            let config = folder::get(&store, id)?;
            if config.kind != softadastra::index::FolderType::SendOnly {
                bail!(
                    "{id:?} is {}; override is for send-only folders (`softadastra folder type {id} send-only`)",
                    config.kind
                );
            }
            offline_engine(home)?.override_remote(&mut store, id)?
        }
    };
    say(
        json,
        serde_json::json!({"id": id, "paths": n}),
        &format!(
            "{n} path(s) of {id:?} now carry this node's version; peers take it back (theirs are kept in their history)"
        ),
    )
}

/// `folder revert ID`.
pub fn run_revert(home: &Home, id: &str, json: bool) -> Result<ExitCode> {
    let answer = agent_only_for(
        home,
        &Request::FolderRevert { id: id.to_string() },
        "reverting a folder needs the running agent (it asks the peers for their version): start it with `softadastra run`",
    )?;
    let prose = format!(
        "{} path(s) of {id:?} go back to the peers' version; this node's copies are kept in {id:?}'s history",
        answer["paths"].as_u64().unwrap_or(0)
    );
    say(json, answer, &prose)
}
