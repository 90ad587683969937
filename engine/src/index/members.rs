//! # index::members — who may see each folder and the app space
//!
//! Owns the answer to "may device D see folder F?", read from the store:
//! a folder's members are in its [`FolderConfig`]; the app space's in the
//! `app.members` namespace; devices paused as a whole (`peer pause`) in
//! `peers.paused`. A device learns, and is served, only what
//! [`shared_with`] names for it. This module reads and writes the store
//! only; it never checks that a device is trusted (the runtime does,
//! before it records a member) and never talks to one.

use std::collections::BTreeSet;

use super::folders::{self, FolderConfig};
use super::values::APP_SPACE;
use super::{FolderError, decode, encode};
use crate::core::NodeId;
use crate::store::{Op, Store};

/// Namespace of the app space's members: key the device's hex id, value
/// its [`NodeId`].
pub const APP_MEMBERS_NS: &str = "app.members";
/// Namespace of devices paused as a whole: same layout.
pub const PAUSED_DEVICES_NS: &str = "peers.paused";

fn ids_in(store: &Store, ns: &str) -> BTreeSet<NodeId> {
    store
        .list(ns, "")
        .filter_map(|(k, e)| decode::<NodeId>(&k, e.value.as_deref()?).ok())
        .collect()
}

fn set_in(store: &mut Store, ns: &str, peer: NodeId, on: bool) -> Result<bool, FolderError> {
    let key = peer.to_hex();
    if store.contains(ns, &key) == on {
        return Ok(false);
    }
    let mut ops = vec![if on {
        Op::Put {
            ns: ns.into(),
            key,
            value: encode(&peer),
            origin: store.config().node,
            timestamp: store.wall_time(),
        }
    } else {
        Op::Forget { ns: ns.into(), key }
    }];
    // The app space's list is settled from its first change on: an
    // upgrade never fills it again behind the user's back.
    if ns == APP_MEMBERS_NS && !store.contains(MEMBERSHIP_MARK_NS, MEMBERSHIP_MARK) {
        ops.push(mark(store));
    }
    store.apply_batch(ops)?;
    Ok(true)
}

fn mark(store: &Store) -> Op {
    Op::Put {
        ns: MEMBERSHIP_MARK_NS.into(),
        key: MEMBERSHIP_MARK.into(),
        value: vec![1],
        origin: store.config().node,
        timestamp: store.wall_time(),
    }
}

/// The devices the app space is shared with.
pub fn app_members(store: &Store) -> BTreeSet<NodeId> {
    ids_in(store, APP_MEMBERS_NS)
}

/// Whether `peer` is paused as a whole.
pub fn is_paused(store: &Store, peer: &NodeId) -> bool {
    store.contains(PAUSED_DEVICES_NS, &peer.to_hex())
}

/// Devices paused as a whole.
pub fn paused_devices(store: &Store) -> BTreeSet<NodeId> {
    ids_in(store, PAUSED_DEVICES_NS)
}

/// Pause (or resume) everything with `peer`. Returns whether it changed.
pub fn set_device_paused(
    store: &mut Store,
    peer: NodeId,
    paused: bool,
) -> Result<bool, FolderError> {
    set_in(store, PAUSED_DEVICES_NS, peer, paused)
}

/// The folders (by id, active ones) and the app space that `peer` may
/// see: nothing while it is paused.
pub fn shared_with(store: &Store, peer: &NodeId) -> Result<BTreeSet<String>, FolderError> {
    if is_paused(store, peer) {
        return Ok(BTreeSet::new());
    }
    let mut out: BTreeSet<String> = folders_shared_with(store, peer)?
        .into_iter()
        .map(|f| f.id)
        .collect();
    if store.contains(APP_MEMBERS_NS, &peer.to_hex()) {
        out.insert(APP_SPACE.to_string());
    }
    Ok(out)
}

/// The active folders shared with `peer` (none while it is paused), whole:
/// what it may be served from.
pub fn folders_shared_with(store: &Store, peer: &NodeId) -> Result<Vec<FolderConfig>, FolderError> {
    if is_paused(store, peer) {
        return Ok(Vec::new());
    }
    Ok(folders::list(store)?
        .into_iter()
        .filter(|f| !f.paused && f.shared_with(peer))
        .collect())
}

/// Whether folder `id` (or the app space) is shared with `peer`, paused
/// or not.
pub fn is_member(store: &Store, id: &str, peer: &NodeId) -> bool {
    if id == APP_SPACE {
        store.contains(APP_MEMBERS_NS, &peer.to_hex())
    } else {
        folders::get(store, id).is_ok_and(|f| f.shared_with(peer))
    }
}

/// Share folder `id` (or the app space, [`APP_SPACE`]) with `peer`, or
/// stop sharing it. Returns whether anything changed.
pub fn set_member(
    store: &mut Store,
    id: &str,
    peer: NodeId,
    member: bool,
) -> Result<bool, FolderError> {
    if id == APP_SPACE {
        return set_in(store, APP_MEMBERS_NS, peer, member);
    }
    let mut config = folders::get(store, id)?;
    let changed = if member {
        config.members.insert(peer)
    } else {
        config.members.remove(&peer)
    };
    if changed {
        folders::put(store, &config)?;
    }
    Ok(changed)
}

/// Take `peer` out of every folder, the app space and the paused list
/// (it is no longer trusted: trusting it again shares nothing by itself).
/// Returns the folders it was a member of.
pub fn forget_device(store: &mut Store, peer: NodeId) -> Result<Vec<String>, FolderError> {
    let mut was = Vec::new();
    for mut f in folders::list(store)? {
        if f.members.remove(&peer) {
            folders::put(store, &f)?;
            was.push(f.id);
        }
    }
    if set_in(store, APP_MEMBERS_NS, peer, false)? {
        was.push(APP_SPACE.to_string());
    }
    set_in(store, PAUSED_DEVICES_NS, peer, false)?;
    Ok(was)
}

/// The folders whose stored form predates members, and, if the app space
/// has never had a member list, that too: what an upgrade must settle.
pub fn unsettled(store: &Store) -> Result<(Vec<FolderConfig>, bool), FolderError> {
    let legacy = folders::list_stored(store)?
        .into_iter()
        .filter(|s| s.legacy)
        .map(|s| s.config)
        .collect();
    Ok((legacy, !store.contains(MEMBERSHIP_MARK_NS, MEMBERSHIP_MARK)))
}

/// Where the mark that membership was settled once is kept.
pub const MEMBERSHIP_MARK_NS: &str = "meta";
/// The mark's key.
pub const MEMBERSHIP_MARK: &str = "membership";

/// Give every legacy folder, and the app space if it never had a member
/// list, the devices in `trusted` (what each synced with before the
/// upgrade), and mark the upgrade done — in one batch. Returns the
/// folders settled and whether the app space was.
pub fn settle_upgrade(
    store: &mut Store,
    trusted: &BTreeSet<NodeId>,
) -> Result<(Vec<String>, bool), FolderError> {
    let (legacy, app) = unsettled(store)?;
    // A home with nothing to settle (a new one) is left unwritten.
    if legacy.is_empty() && (!app || trusted.is_empty()) {
        return Ok((Vec::new(), false));
    }
    let origin = store.config().node;
    let timestamp = store.wall_time();
    let put = |ns: &str, key: String, value: Vec<u8>| Op::Put {
        ns: ns.into(),
        key,
        value,
        origin,
        timestamp,
    };
    let mut ops = Vec::new();
    let mut ids = Vec::new();
    for mut f in legacy {
        f.members = trusted.clone();
        ops.push(put(
            folders::FOLDERS_NS,
            f.id.clone(),
            folders::encode_config(&f),
        ));
        ids.push(f.id);
    }
    if app {
        for peer in trusted {
            ops.push(put(APP_MEMBERS_NS, peer.to_hex(), encode(peer)));
        }
        ops.push(mark(store));
    }
    store.apply_batch(ops)?;
    Ok((ids, app))
}
