//! What a running node says about itself, typed: [`NodeStatus`] and one
//! [`FolderStatus`] per shared folder. The agent's control socket returns
//! exactly these (as JSON); the CLI and the tray read them back into the
//! same types — no state string is parsed anywhere.
//!
//! Built from the node's live state ([`Node::status`](super::node::Node::status));
//! this module only describes, it changes nothing.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::discovery::service::Stats;
use crate::sync::FolderProgress;

/// A shared folder's state, in the order it is decided: paused, in error,
/// deletions held, being scanned, syncing, or up to date.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FolderState {
    /// Paused by its owner: not watched or synced.
    #[serde(rename = "paused")]
    Paused,
    /// It cannot be watched ([`FolderStatus::error`] says why).
    #[serde(rename = "error")]
    Error,
    /// Deletions are held back by the deletion guard, waiting for a
    /// person ([`FolderStatus::deletions_held`]); the rest syncs.
    #[serde(rename = "deletions held")]
    DeletionsHeld,
    /// Its catch-up scan is running.
    #[serde(rename = "scanning")]
    Scanning,
    /// Files are still to fetch, place or remove.
    #[serde(rename = "syncing")]
    Syncing,
    /// Nothing is left to do (what a status built from nothing says).
    #[serde(rename = "up to date")]
    #[default]
    UpToDate,
}

impl FolderState {
    /// As people read it.
    pub fn as_str(self) -> &'static str {
        match self {
            FolderState::Paused => "paused",
            FolderState::Error => "error",
            FolderState::DeletionsHeld => "deletions held",
            FolderState::Scanning => "scanning",
            FolderState::Syncing => "syncing",
            FolderState::UpToDate => "up to date",
        }
    }
}

/// A path that is not synced, and why (see [`FolderStatus::not_synced`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotSynced {
    /// Folder-relative path.
    pub path: String,
    /// Why it is left out.
    pub why: String,
}

/// One shared folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderStatus {
    /// Folder id.
    pub id: String,
    /// Its root on this machine.
    pub path: PathBuf,
    /// Paused by its owner.
    pub paused: bool,
    /// Its state.
    pub state: FolderState,
    /// Why it cannot be watched, if it cannot.
    pub error: Option<String>,
    /// Regular files indexed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What is still to do, and what fails.
    pub progress: FolderProgress,
    /// How many paths the scans leave out for good (special files, names
    /// that cannot be synced, node homes).
    pub not_synced: u64,
    /// The first [`NOT_SYNCED_SHOWN`] of them.
    pub not_synced_files: Vec<NotSynced>,
    /// How it syncs on this node.
    #[serde(rename = "type", default)]
    pub kind: crate::index::FolderType,
    /// The devices it is shared with (ids, text form).
    #[serde(default)]
    pub members: Vec<String>,
    /// Send-only: paths a peer changed that this node did not take
    /// (`folder override` pushes the local state back).
    #[serde(default)]
    pub remote_differs: u64,
    /// Receive-only: paths this node changed and did not send (`folder
    /// revert` puts the peers' version back).
    #[serde(default)]
    pub locally_changed: u64,
    /// Deletions the deletion guard holds back, by direction (`folder
    /// accept-deletions` or `restore-deletions`).
    #[serde(default)]
    pub deletions_held: crate::runtime::guard::Decided,
    /// Conflict copies in the folder (`softadastra conflicts`).
    #[serde(default)]
    pub conflicts: u64,
}

/// How many not-synced paths a [`FolderStatus`] lists.
pub const NOT_SYNCED_SHOWN: usize = 20;

/// LAN discovery, when it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryStatus {
    /// UDP port.
    pub port: u16,
    /// Seconds between announcements.
    pub interval_s: f64,
    /// Nodes heard recently.
    pub nearby: usize,
    /// Traffic so far.
    pub stats: Stats,
}

/// A running node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id (text form).
    pub node: String,
    /// Display name.
    pub name: String,
    /// QUIC address bound.
    pub listen: String,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Peers trusted.
    pub peers_trusted: usize,
    /// Of those, connected now.
    pub peers_connected: usize,
    /// Every shared folder.
    pub folders: Vec<FolderStatus>,
    /// Where the WAL is.
    pub wal_dir: PathBuf,
    /// The WAL's last sequence.
    pub wal_last_seq: u64,
    /// Paths with file work pending, over all folders.
    pub sync_pending: usize,
    /// Files placed and removed since start.
    pub sync_files_done: u64,
    /// Content bytes received from peers since start.
    pub sync_bytes_fetched: u64,
    /// Bytes taken from local files instead.
    pub sync_bytes_reused: u64,
    /// Invitations issued and not yet used or expired (the agent's).
    pub invites_outstanding: usize,
    /// LAN discovery, if on.
    pub discovery: Option<DiscoveryStatus>,
    /// Folders connected devices offer this node (`folder accept`).
    #[serde(default)]
    pub offers: Vec<crate::runtime::offers::Offer>,
    /// Requests, hints, pages and chunk requests refused because the folder
    /// was not shared with the device that sent them.
    #[serde(default)]
    pub refused_not_member: u64,
    /// Records refused from peers (hostile or invalid paths).
    #[serde(default)]
    pub refused_paths: u64,
}

impl NodeStatus {
    /// Whether every folder is up to date (or paused) and nothing fails.
    pub fn all_synced(&self) -> bool {
        self.folders
            .iter()
            .all(|f| matches!(f.state, FolderState::UpToDate | FolderState::Paused))
    }
}
