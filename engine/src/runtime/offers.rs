//! # runtime::offers — folders other devices offer this node
//!
//! A trusted device that shares a folder with this node which this node
//! does not have *offers* it. The sync engine keeps who offers what while
//! they are connected ([`crate::sync::SyncEngine::offers`]); this module
//! adds what the user decided: a declined offer is remembered (namespace
//! `offers.declined`, key the folder id) and not shown again (accepting
//! it later still works); an accepted one becomes a folder shared with
//! the devices offering it.
//! It reads and writes the store only; the [`super::node::Node`] starts
//! the folder's watcher.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::trust;
use crate::core::NodeId;
use crate::index::{FolderConfig, FolderError, folders};
use crate::store::{Op, Store};

/// Namespace of declined offers: key the folder id, value empty.
pub const DECLINED_NS: &str = "offers.declined";

/// A folder offered to this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The folder's id.
    pub id: String,
    /// The devices offering it, with their names when known.
    pub by: Vec<OfferedBy>,
}

impl Offer {
    /// The devices offering it as people know them: each one's name, or
    /// its id when it has none.
    pub fn offerers(&self) -> Vec<String> {
        self.by
            .iter()
            .map(|b| b.name.clone().unwrap_or_else(|| b.device.clone()))
            .collect()
    }
}

/// One device offering a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedBy {
    /// Its id (text form).
    pub device: String,
    /// Its name, if known.
    pub name: Option<String>,
}

/// The offers worth showing: those not declined and still not a folder here.
pub fn visible<'a>(
    store: &Store,
    offered: impl IntoIterator<Item = (&'a String, &'a BTreeSet<NodeId>)>,
) -> Vec<Offer> {
    offered
        .into_iter()
        .filter(|(id, _)| !store.contains(DECLINED_NS, id) && folders::get(store, id).is_err())
        .map(|(id, by)| Offer {
            id: id.clone(),
            by: by
                .iter()
                .map(|d| OfferedBy {
                    device: d.to_string(),
                    name: trust::name_of(store, *d),
                })
                .collect(),
        })
        .collect()
}

/// Remember that offer `id` was declined.
pub fn decline(store: &mut Store, id: &str) -> Result<(), FolderError> {
    folders::validate_id(id)?;
    store.put(DECLINED_NS, id, Vec::new())?;
    Ok(())
}

/// Make offer `id` a folder at `path`, shared with `by` (the devices
/// offering it); a decline of it is forgotten.
pub fn accept(
    store: &mut Store,
    id: &str,
    path: &Path,
    by: &BTreeSet<NodeId>,
) -> Result<FolderConfig, FolderError> {
    let mut config = crate::folder::add(store, id, path)?;
    config.members = by.clone();
    folders::put(store, &config)?;
    if store.contains(DECLINED_NS, id) {
        store.apply(Op::Forget {
            ns: DECLINED_NS.into(),
            key: id.to_string(),
        })?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declined_offer_is_hidden_and_an_accepted_one_is_a_shared_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) =
            Store::open_dir(crate::store::StoreConfig::new(dir.path().join("store"))).unwrap();
        let alice = NodeId::derive(b"alice");
        let mut offered = std::collections::BTreeMap::new();
        for id in ["photos", "music"] {
            offered.insert(id.to_string(), BTreeSet::from([alice]));
        }
        let ids = |store: &Store| -> Vec<String> {
            visible(store, &offered).into_iter().map(|o| o.id).collect()
        };
        assert_eq!(ids(&store), ["music", "photos"]);
        decline(&mut store, "music").unwrap();
        assert_eq!(ids(&store), ["photos"]);
        assert!(decline(&mut store, "../bad").is_err());
        // Accepting still works after a decline, and clears it.
        let target = dir.path().join("music");
        std::fs::create_dir(&target).unwrap();
        let config = accept(&mut store, "music", &target, &BTreeSet::from([alice])).unwrap();
        assert!(config.shared_with(&alice));
        assert!(!store.contains(DECLINED_NS, "music"));
        assert_eq!(ids(&store), ["photos"], "a folder here is no offer");
    }
}
