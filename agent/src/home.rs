//! The node's home directory and what lives in it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use softadastra::core::NodeId;
use softadastra::metadata::hostname;
use softadastra::transport::identity::Identity;

/// Layout of a node's home directory.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
    /// The configuration file: `<root>/config.toml` for an explicit home,
    /// else in the OS config directory.
    pub config: PathBuf,
}

impl Home {
    /// `--home`/`SOFTADASTRA_HOME`, else the OS data directory.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Home> {
        Ok(match explicit {
            Some(root) => Home {
                config: root.join("config.toml"),
                root,
            },
            None => {
                let dirs = directories::ProjectDirs::from("", "", "softadastra").context(
                    "cannot determine a home directory for softadastra; pass --home DIR",
                )?;
                Home {
                    root: dirs.data_dir().to_path_buf(),
                    config: dirs.config_dir().join("config.toml"),
                }
            }
        })
    }

    /// This node's identity, created (named after the host) the first time
    /// a command needs it.
    pub fn identity(&self) -> Result<Identity> {
        if let Some(identity) = Identity::load(&self.root)? {
            return Ok(identity);
        }
        let identity = Identity::create(&self.root, &hostname()).with_context(|| {
            format!(
                "cannot create this node's identity in {}",
                self.root.display()
            )
        })?;
        eprintln!(
            "initialised this node: {} (node id {})",
            identity.name(),
            identity.node_id()
        );
        Ok(identity)
    }

    /// The id local changes are recorded under.
    pub fn node_id(&self) -> Result<NodeId> {
        Ok(self.identity()?.node_id())
    }

    /// A home at `root` (its config file inside it).
    pub fn at(root: PathBuf) -> Home {
        Home {
            config: root.join("config.toml"),
            root,
        }
    }

    /// Directory of the daily-rotated log files.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Directory of the store (WAL and on-disk index).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
}
