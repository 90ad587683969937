//! The node's home directory and what lives in it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use softadastra::core::NodeId;

/// Layout of a node's home directory.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    /// `--home`/`SOFTADASTRA_HOME`, else the OS data directory.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Home> {
        let root = match explicit {
            Some(dir) => dir,
            None => directories::ProjectDirs::from("", "", "softadastra")
                .map(|d| d.data_dir().to_path_buf())
                .context("cannot determine a home directory for softadastra; pass --home DIR")?,
        };
        Ok(Home { root })
    }

    /// The id local changes are recorded under. Until the node has an
    /// identity (created by `softadastra init`, the transport issue), that
    /// is [`NodeId::LOCAL`].
    pub fn node_id(&self) -> NodeId {
        NodeId::LOCAL
    }

    /// Directory of the store (WAL and snapshots).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
}
