//! The agent's configuration file (TOML).
//!
//! Where: `<home>/config.toml` when `--home`/`SOFTADASTRA_HOME` names the
//! node's home (so several nodes on one machine stay apart), else the OS
//! config directory (`~/.config/softadastra/config.toml` on Linux). A
//! missing file means every default; an unknown key or a bad value is an
//! error naming the line. Command-line flags and environment variables win
//! over the file. `softadastra config show` prints every option with the
//! value in force.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Every option.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The node.
    pub node: NodeSection,
    /// Syncing.
    pub sync: SyncSection,
    /// LAN discovery.
    pub discovery: DiscoverySection,
    /// Logging.
    pub log: LogSection,
    /// The tray and its notifications.
    pub desktop: DesktopSection,
    /// Per folder, by id (`[folder.<id>]`).
    pub folder: std::collections::BTreeMap<String, FolderSection>,
}

/// `[folder.<id>]`: one folder's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FolderSection {
    /// How long its kept versions stay: "30d" or "staggered" (`folder
    /// versions`); the file wins at each start.
    pub versions: Option<String>,
    /// A limit on what they take: "10GB", "500MiB" or "5%".
    pub versions_cap: Option<String>,
    /// Whether it keeps the versions that edits and deletions made on this
    /// device replace (`folder versions ID --local on|off`; on unless
    /// set); the file wins at each start.
    pub local_versions: Option<bool>,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// QUIC listening address (`run --listen`).
    pub listen: String,
}

/// `[sync]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSection {
    /// Days replaced and deleted files stay in the trash (`run --trash-days`).
    pub trash_days: u32,
    /// Seconds a peer may send nothing while chunks are asked of it before
    /// they are asked of another peer (or the file is retried later). Only
    /// silence counts: a slow link or a busy peer still sending is waited for.
    pub stall_secs: f64,
    /// Free space kept on each folder's disk: a file that would leave less
    /// is not started (it waits, shown as failing, until space is freed).
    /// A share ("1%") or a size ("500 MB", "2 GiB").
    pub min_free: String,
}

/// `[discovery]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoverySection {
    /// Announce and listen on the LAN (`run --no-discovery` turns it off).
    pub enabled: bool,
    /// UDP port (`run --discovery-port`).
    pub port: u16,
    /// Seconds between announcements (`run --discovery-interval`).
    pub interval_secs: f64,
    /// Interfaces to announce on; empty: all that are up (`run --discovery-interface`).
    pub interfaces: Vec<String>,
}

/// `[desktop]`: the tray (`softadastra tray`) reads it when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesktopSection {
    /// Desktop notifications for what needs a person: a conflict, a
    /// folder error, a folder offered, deletions held back.
    pub notifications: bool,
}

impl Default for DesktopSection {
    fn default() -> Self {
        DesktopSection {
            notifications: true,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Level filter of `run` (`SOFTADASTRA_LOG` wins), e.g. "info" or "softadastra=debug".
    pub level: String,
    /// Also write a daily-rotated log file under `<home>/logs/` (`run --log-file`;
    /// `softadastra install` turns it on for the service).
    pub file: bool,
    /// Log files kept.
    pub keep_files: usize,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            listen: format!("0.0.0.0:{}", crate::run_cmd::DEFAULT_PORT),
        }
    }
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            trash_days: 30,
            stall_secs: softadastra::runtime::DEFAULT_STALL.as_secs_f64(),
            min_free: "1%".into(),
        }
    }
}

impl Default for DiscoverySection {
    fn default() -> Self {
        DiscoverySection {
            enabled: true,
            port: softadastra::discovery::service::DEFAULT_PORT,
            interval_secs: 5.0,
            interfaces: Vec::new(),
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            file: false,
            keep_files: 7,
        }
    }
}

impl Config {
    /// Read `path`; every default if it does not exist.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let config: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config
            .check()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        self.node
            .listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("node.listen = {:?} is not IP:PORT", self.node.listen))?;
        if !(0.05..=3600.0).contains(&self.discovery.interval_secs) {
            anyhow::bail!(
                "discovery.interval_secs = {} is out of range (0.05 to 3600)",
                self.discovery.interval_secs
            );
        }
        if !(0.5..=3600.0).contains(&self.sync.stall_secs) {
            anyhow::bail!(
                "sync.stall_secs = {} is out of range (0.5 to 3600)",
                self.sync.stall_secs
            );
        }
        self.min_free()?;
        self.policies()?;
        Ok(())
    }

    /// The retention policies `[folder.<id>]` sections set, read.
    pub fn policies(&self) -> Result<Vec<(String, softadastra::index::retention::Policy)>> {
        let mut out = Vec::new();
        for (id, f) in &self.folder {
            match (&f.versions, &f.versions_cap) {
                (Some(v), cap) => out.push((
                    id.clone(),
                    softadastra::index::retention::Policy::parse(v, cap.as_deref())
                        .map_err(|e| anyhow::anyhow!("folder.{id}.{e}"))?,
                )),
                (None, Some(_)) => anyhow::bail!(
                    "folder.{id}.versions_cap needs folder.{id}.versions (\"30d\" or \"staggered\")"
                ),
                (None, None) => {}
            }
        }
        Ok(out)
    }

    /// Record in `store` the retention policies the file sets, for the
    /// folders shared here. Returns a warning for each folder it names
    /// that is not.
    pub fn apply_policies(&self, store: &mut softadastra::store::Store) -> Result<Vec<String>> {
        use softadastra::index::retention;
        let policies: std::collections::BTreeMap<_, _> = self.policies()?.into_iter().collect();
        let mut warnings = Vec::new();
        for (id, section) in &self.folder {
            if section == &FolderSection::default() {
                continue;
            }
            if softadastra::folder::get(store, id).is_err() {
                warnings.push(format!(
                    "config: [folder.{id}] names no folder shared here (see `softadastra folder list`)"
                ));
                continue;
            }
            if let Some(policy) = policies.get(id)
                && retention::get(store, id)?.as_ref() != Some(policy)
            {
                retention::set(store, id, policy)?;
                tracing::info!(folder = %id, %policy, "retention policy from the config file");
            }
            if let Some(on) = section.local_versions
                && retention::keeps_local_edits(store, id) != on
            {
                retention::set_keeps_local_edits(store, id, on)?;
                tracing::info!(folder = %id, on, "versions of local edits, from the config file");
            }
        }
        Ok(warnings)
    }

    /// `[sync] min_free`, read.
    pub fn min_free(&self) -> Result<softadastra::runtime::exec::MinFree> {
        self.sync
            .min_free
            .parse()
            .map_err(|e| anyhow::anyhow!("sync.min_free: {e}"))
    }

    /// The whole configuration as TOML (every option, defaults included).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_bad_files_say_where() {
        let d = Config::default();
        assert_eq!(toml::from_str::<Config>(&d.to_toml()).unwrap(), d);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        assert_eq!(Config::load(&p).unwrap(), d, "missing file: defaults");
        std::fs::write(&p, "[sync]\ntrash_days = 3\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.sync.trash_days, 3);
        assert_eq!(
            c.discovery,
            DiscoverySection::default(),
            "the rest defaults"
        );
        std::fs::write(&p, "[sync]\ntrash_dayz = 3\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("trash_dayz") && e.contains("line 2"), "{e}");
        std::fs::write(&p, "[node]\nlisten = \"nowhere\"\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("node.listen"), "{e}");
        std::fs::write(&p, "[sync]\nstall_secs = 0.0\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("sync.stall_secs = 0 is out of range"), "{e}");
        std::fs::write(&p, "[sync]\nstall_secs = 2.5\n").unwrap();
        assert_eq!(Config::load(&p).unwrap().sync.stall_secs, 2.5);
        std::fs::write(&p, "[sync]\nmin_free = \"plenty\"\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("sync.min_free") && e.contains("plenty"), "{e}");
        std::fs::write(&p, "[sync]\nmin_free = \"2 GiB\"\n").unwrap();
        assert_eq!(Config::load(&p).unwrap().min_free().unwrap().bytes, 2 << 30);
        std::fs::write(&p, "[folder.docs]\nversions = \"forever\"\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("folder.docs.versions"), "{e}");
        std::fs::write(&p, "[folder.docs]\nversions_cap = \"1GB\"\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("needs folder.docs.versions"), "{e}");
        std::fs::write(&p, "[folder.docs]\nversion = \"30d\"\n").unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("version"), "{e}");
    }

    #[test]
    fn folder_policies_from_the_file_are_recorded_for_shared_folders() {
        use softadastra::index::retention::{self, Policy};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(
            &p,
            "[folder.docs]\nversions = \"staggered\"\nversions_cap = \"10GB\"\nlocal_versions = false\n\n[folder.gone]\nversions = \"7d\"\n",
        )
        .unwrap();
        let config = Config::load(&p).unwrap();
        assert_eq!(toml::from_str::<Config>(&config.to_toml()).unwrap(), config);
        let (mut store, _) = softadastra::store::Store::open_dir(
            softadastra::store::StoreConfig::new(dir.path().join("store")),
        )
        .unwrap();
        let root = dir.path().join("docs");
        std::fs::create_dir(&root).unwrap();
        softadastra::folder::share(&mut store, &root, Some("docs")).unwrap();
        let warnings = config.apply_policies(&mut store).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("[folder.gone]"));
        assert_eq!(
            retention::get(&store, "docs").unwrap(),
            Some(Policy::parse("staggered", Some("10GB")).unwrap())
        );
        assert!(!retention::keeps_local_edits(&store, "docs"));
        assert!(
            retention::keeps_local_edits(&store, "gone"),
            "on unless set"
        );
    }
}
