//! `softadastra init`, `id` and `peer …`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde::Serialize;
use softadastra::core::NodeId;
use softadastra::runtime::trust;
use softadastra::transport::identity::Identity;

use crate::control::{self, Request};
use crate::home::Home;
use crate::store_cmd::open_store;
use softadastra::metadata::hostname;

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Trust a node by its id (as `softadastra id` prints it on that node).
    Add {
        /// The node id.
        node_id: String,
        /// Where to reach it.
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// A name to call it by (in place of the id, wherever a device is asked for).
        #[arg(long)]
        name: Option<String>,
    },
    /// Sync nothing with a device for now (it stays trusted).
    Pause {
        /// Its id or name.
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Sync with a paused device again.
    Resume {
        /// Its id or name.
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a node.
    Remove {
        /// The node id.
        node_id: String,
    },
    /// List trusted peers.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn parse_id(text: &str) -> Result<NodeId> {
    Ok(text.parse::<NodeId>()?)
}

pub fn run_init(home: &Home, name: Option<String>) -> Result<ExitCode> {
    let name = name.unwrap_or_else(hostname);
    if name.trim().is_empty() || name.len() > 64 {
        bail!("invalid node name {name:?}: use 1-64 characters");
    }
    let identity = Identity::create(&home.root, &name)?;
    eprintln!(
        "initialised node {:?} in {}",
        identity.name(),
        home.root.display()
    );
    writeln!(std::io::stdout(), "{}", identity.node_id())?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_id(home: &Home) -> Result<ExitCode> {
    match Identity::load(&home.root)? {
        Some(identity) => writeln!(std::io::stdout(), "{}", identity.node_id())?,
        None => bail!(
            "this node has no identity yet in {}; create one with `softadastra init`",
            home.root.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_peer(home: &Home, cmd: PeerCommand) -> Result<ExitCode> {
    // With the agent running (it holds the store), changes go through it
    // and take effect on its connections at once.
    let request = match &cmd {
        PeerCommand::Pause { device, json } => {
            return crate::members_cmd::run_peer_pause(home, device, true, *json);
        }
        PeerCommand::Resume { device, json } => {
            return crate::members_cmd::run_peer_pause(home, device, false, *json);
        }
        PeerCommand::Add {
            node_id,
            addr,
            name,
        } => Some(Request::PeerAdd {
            id: parse_id(node_id)?.to_string(),
            addr: addr.clone(),
            name: name.clone(),
        }),
        PeerCommand::Remove { node_id } => Some(Request::PeerRemove {
            id: node_id.clone(),
        }),
        PeerCommand::List { json } => {
            if control::call(home, &Request::Peers)?.is_some() {
                return crate::run_cmd::run_peers(home, *json);
            }
            None
        }
    };
    let mut store = match request {
        Some(request) => match control::call_or_open(home, &request)? {
            control::Reached::Store(store) => *store,
            control::Reached::Agent(answer) => {
                match cmd {
                    PeerCommand::Add { .. } => eprintln!(
                        "trusting {}{}",
                        answer["id"].as_str().unwrap_or_default(),
                        match (answer["addr"].as_str(), answer["discovered"].as_str()) {
                            (Some(a), _) => format!(" at {a}"),
                            (None, Some(d)) => format!(", found on the LAN at {d}; connecting"),
                            (None, None) => {
                                "; not seen on the LAN yet: it connects when discovered or when it dials this node"
                                    .to_string()
                            }
                        }
                    ),
                    _ => eprintln!(
                        "no longer trusting {}",
                        answer["id"].as_str().unwrap_or_default()
                    ),
                }
                return Ok(ExitCode::SUCCESS);
            }
        },
        None => open_store(home)?,
    };
    let own = home.node_id()?;
    match cmd {
        PeerCommand::Add {
            node_id,
            addr,
            name,
        } => {
            let peer = trust::add(&mut store, own, parse_id(&node_id)?, addr)?;
            if let Some(name) = name {
                trust::set_name(&mut store, peer.id, &name, true)?;
            }
            eprintln!(
                "trusting {}{}",
                peer.id,
                peer.addr.map(|a| format!(" at {a}")).unwrap_or_default()
            );
        }
        PeerCommand::Remove { node_id } => {
            let id = trust::resolve(&store, &node_id)?;
            trust::remove(&mut store, id)?;
            eprintln!("no longer trusting {id}");
        }
        PeerCommand::Pause { .. } | PeerCommand::Resume { .. } => {}
        PeerCommand::List { json } => {
            #[derive(Serialize)]
            struct Row {
                id: String,
                name: Option<String>,
                addr: Option<String>,
                paused: bool,
            }
            let rows: Vec<Row> = trust::list(&store)?
                .into_iter()
                .map(|p| Row {
                    id: p.id.to_string(),
                    name: trust::name_of(&store, p.id),
                    addr: p.addr,
                    paused: softadastra::index::members::is_paused(&store, &p.id),
                })
                .collect();
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                eprintln!(
                    "no trusted peers; add one with `softadastra peer add NODE_ID --addr HOST:PORT`"
                );
            } else {
                writeln!(out, "{:<60}  {:<16}  ADDRESS", "NODE ID", "NAME")?;
                for r in rows {
                    writeln!(
                        out,
                        "{:<60}  {:<16}  {}{}",
                        r.id,
                        r.name.as_deref().unwrap_or("-"),
                        r.addr.as_deref().unwrap_or("(not known yet)"),
                        if r.paused { "  (paused)" } else { "" }
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
