//! # index::folders — the shared folders' configurations and their stored form
//!
//! Owns [`FolderConfig`] (id, root, paused, the devices the folder is
//! shared with, its [`FolderType`]) and the one encoder and decoder of its
//! stored form in the `folders` namespace. It reads and writes the store
//! only, and never decides who may see a folder at the wire: that is
//! [`super::members`]'s question, asked by `sync` and the runtime.
//!
//! ## Stored form
//!
//! Format 2 (this release): the bytes `0x00 0x02`, then the postcard
//! encoding of [`FolderConfig`]. Releases before it stored a postcard
//! `(id, path, paused)` with no version; its first byte is the id's
//! length, never 0 (ids have 1–64 characters), so the two cannot be
//! confused. Such a *legacy* record decodes with no members; the runtime
//! migrates it once (see `runtime::trust::upgrade_membership`) so that a
//! folder that synced before the upgrade keeps syncing with the devices
//! it synced with. A record of a newer format is refused with
//! [`FolderError::NewerFormat`], never guessed at. Pinned by
//! `data/golden/folder-config-v2.bin`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{FolderError, decode};
use crate::core::{NodeId, Seq};
use crate::store::Store;

/// Namespace of folder configurations.
pub const FOLDERS_NS: &str = "folders";

/// The stored format of a [`FolderConfig`] this release writes.
pub const FOLDER_FORMAT: u8 = 2;

/// How a folder syncs on this node (each node chooses its own).
/// (Stored by variant index; the names are for JSON: `send-receive`, …)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FolderType {
    /// Local changes go out, remote changes are applied.
    #[default]
    SendReceive,
    /// Local changes go out; remote changes are not applied.
    SendOnly,
    /// Remote changes are applied; local changes are not sent.
    ReceiveOnly,
}

impl FolderType {
    /// The name the CLI and the config use.
    pub fn as_str(self) -> &'static str {
        match self {
            FolderType::SendReceive => "send-receive",
            FolderType::SendOnly => "send-only",
            FolderType::ReceiveOnly => "receive-only",
        }
    }
}

impl std::fmt::Display for FolderType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FolderType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "send-receive" => Ok(FolderType::SendReceive),
            "send-only" => Ok(FolderType::SendOnly),
            "receive-only" => Ok(FolderType::ReceiveOnly),
            other => Err(format!(
                "unknown folder type {other:?}: use send-receive, send-only or receive-only"
            )),
        }
    }
}

/// A shared folder on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderConfig {
    /// Id shared by every node that syncs this folder.
    pub id: String,
    /// Absolute root path on this node.
    pub path: PathBuf,
    /// Paused folders are neither watched nor synced.
    pub paused: bool,
    /// The devices this folder is shared with: only they learn of it, get
    /// its index or its chunks, or have their changes to it taken in.
    pub members: BTreeSet<NodeId>,
    /// How it syncs on this node.
    pub kind: FolderType,
}

impl FolderConfig {
    /// A new folder, shared with no device yet.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> FolderConfig {
        FolderConfig {
            id: id.into(),
            path: path.into(),
            paused: false,
            members: BTreeSet::new(),
            kind: FolderType::SendReceive,
        }
    }

    /// Whether the folder is shared with `peer`.
    pub fn shared_with(&self, peer: &NodeId) -> bool {
        self.members.contains(peer)
    }
}

/// What releases before format 2 stored.
#[derive(Deserialize)]
struct LegacyConfig {
    id: String,
    path: PathBuf,
    paused: bool,
}

/// A stored configuration, and whether it is in the legacy form (written
/// before folders had members).
#[derive(Debug, Clone)]
pub struct Stored {
    /// The configuration.
    pub config: FolderConfig,
    /// Read from a record of a release before format 2.
    pub legacy: bool,
}

/// The stored bytes of `config` (format [`FOLDER_FORMAT`]).
pub fn encode_config(config: &FolderConfig) -> Vec<u8> {
    let mut out = vec![0, FOLDER_FORMAT];
    out.extend(super::encode(config));
    out
}

/// Read the stored bytes of folder `key`, in either form.
pub fn decode_config(key: &str, bytes: &[u8]) -> Result<Stored, FolderError> {
    match bytes {
        [0, FOLDER_FORMAT, rest @ ..] => Ok(Stored {
            config: decode(key, rest)?,
            legacy: false,
        }),
        [0, version, ..] => Err(FolderError::NewerFormat {
            key: key.to_string(),
            version: *version,
        }),
        _ => {
            let old: LegacyConfig = decode(key, bytes)?;
            Ok(Stored {
                config: FolderConfig {
                    paused: old.paused,
                    ..FolderConfig::new(old.id, old.path)
                },
                legacy: true,
            })
        }
    }
}

/// Check a folder id.
pub fn validate_id(id: &str) -> Result<(), FolderError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(FolderError::InvalidId { id: id.to_string() })
    }
}

/// Every shared folder as stored, by id.
pub fn list_stored(store: &Store) -> Result<Vec<Stored>, FolderError> {
    store
        .list(FOLDERS_NS, "")
        .map(|(k, e)| decode_config(&k, e.value.as_deref().unwrap_or_default()))
        .collect()
}

/// Every shared folder, by id.
pub fn list(store: &Store) -> Result<Vec<FolderConfig>, FolderError> {
    Ok(list_stored(store)?.into_iter().map(|s| s.config).collect())
}

/// The folder with this id.
pub fn get(store: &Store, id: &str) -> Result<FolderConfig, FolderError> {
    match store.get(FOLDERS_NS, id) {
        Some(e) => Ok(decode_config(id, e.value.as_deref().unwrap_or_default())?.config),
        None => Err(FolderError::NotFound(id.to_string())),
    }
}

/// Record `config` (replacing the folder's earlier configuration).
pub fn put(store: &mut Store, config: &FolderConfig) -> Result<Seq, FolderError> {
    Ok(store.put(FOLDERS_NS, &config.id, encode_config(config))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_record_reads_with_no_members_and_a_newer_one_is_refused() {
        #[derive(Serialize)]
        struct Old<'a> {
            id: &'a str,
            path: PathBuf,
            paused: bool,
        }
        let old = super::super::encode(&Old {
            id: "docs",
            path: "/srv/docs".into(),
            paused: true,
        });
        let s = decode_config("docs", &old).unwrap();
        assert!(s.legacy);
        assert!(s.config.paused && s.config.members.is_empty());
        assert_eq!(s.config.kind, FolderType::SendReceive);

        let mut new = FolderConfig::new("docs", "/srv/docs");
        new.members.insert(NodeId::derive(b"peer"));
        new.kind = FolderType::ReceiveOnly;
        let s = decode_config("docs", &encode_config(&new)).unwrap();
        assert!(!s.legacy);
        assert_eq!(s.config, new);

        let mut newer = encode_config(&new);
        newer[1] = FOLDER_FORMAT + 1;
        assert!(matches!(
            decode_config("docs", &newer),
            Err(FolderError::NewerFormat { version: 3, .. })
        ));
        assert!(decode_config("docs", &[0]).is_err());
        assert!(decode_config("docs", &[]).is_err());
    }

    #[test]
    fn folder_types_read_back_from_their_names() {
        for t in [
            FolderType::SendReceive,
            FolderType::SendOnly,
            FolderType::ReceiveOnly,
        ] {
            assert_eq!(t.as_str().parse::<FolderType>(), Ok(t));
        }
        assert!("both".parse::<FolderType>().is_err());
    }
}
