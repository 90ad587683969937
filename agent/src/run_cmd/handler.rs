//! The running agent as the control socket sees it: each request
//! answered from the node's state (status, peers, invites, folder changes).

use super::*;

/// The running agent, as the control socket sees it.
pub(super) struct Daemon {
    pub(super) identity: Identity,
    /// The running node: transport, sync, discovery, folders.
    pub(super) node: Node,
    pub(super) invitations: Arc<Invitations>,
    pub(super) stop: tokio::sync::Notify,
}

use crate::members_cmd::parse_type;

/// Most events one answer carries (a client behind asks again).
const EVENTS_PER_ANSWER: usize = 512;

/// Longest an events request may wait for one.
const EVENTS_LONGEST_WAIT_MS: u64 = 60_000;

impl Daemon {
    /// The trusted devices `names` name (ids or names), all or an error.
    fn devices(&self, names: &[String]) -> Result<Vec<NodeId>> {
        let store = lock(self.node.store());
        Ok(names
            .iter()
            .map(|n| trust::resolve(&store, n))
            .collect::<Result<_, _>>()?)
    }
}

impl control::Handler for Daemon {
    async fn handle(&self, request: Request) -> Result<serde_json::Value> {
        let own = self.identity.node_id();
        Ok(match request {
            Request::Status => {
                let mut status = self.node.status()?;
                status.invites_outstanding = self.invitations.outstanding(SystemClock.wall());
                serde_json::to_value(status)?
            }
            Request::Node => {
                let now_ms = SystemClock.wall().as_nanos() / 1_000_000;
                let mut info =
                    serde_json::to_value(NodeInfo::from_hello(&hello_of(&self.identity), now_ms))?;
                info["running"] = json!(true);
                info["listen"] = json!(self.node.addr().to_string());
                info
            }
            Request::Peers => serde_json::to_value(peer_rows(
                self.node.peers(),
                self.node
                    .with_discovery(Discovery::nearby)
                    .unwrap_or_default(),
            ))?,
            Request::Invite {
                folder: shared,
                ttl_secs,
                addrs,
            } => {
                let shared = match shared {
                    Some(id) => {
                        folder::get(&lock(self.node.store()), &id)?;
                        Some(id)
                    }
                    // A node sharing exactly one folder offers that one:
                    // `run PATH` then `invite` is enough to pair for it.
                    None => match folder::list(&lock(self.node.store()))?.as_slice() {
                        [only] => Some(only.id.clone()),
                        _ => None,
                    },
                };
                let ttl = Duration::from_secs(ttl_secs.clamp(10, 7 * 24 * 3600));
                let invite = self.invitations.issue(
                    own,
                    invite_addrs(self.node.addr(), &addrs)?,
                    shared,
                    ttl,
                    SystemClock.wall(),
                )?;
                info!(folder = ?invite.folder, ttl_secs = ttl.as_secs(), "invite issued");
                json!({
                    "code": invite.to_code(),
                    "expires_in_secs": ttl.as_secs(),
                    "addrs": invite.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "folder": invite.folder,
                })
            }
            Request::Join { code, path } => {
                let (joined, id, addr) = join(
                    self.node.mesh().endpoint(),
                    self.node.addr().port(),
                    self.node.store(),
                    &code,
                    path,
                )
                .await?;
                self.node.admit(id, Some(addr));
                if let Some(f) = &joined.folder
                    && joined.path.is_some()
                {
                    self.node.folder_added(f)?;
                }
                serde_json::to_value(joined)?
            }
            Request::PeerAdd { id, addr, name } => {
                let id: NodeId = id.parse()?;
                let peer = self.node.trust(id, addr)?;
                if let Some(name) = name {
                    trust::set_name(&mut lock(self.node.store()), id, &name, true)?;
                }
                // Heard on the LAN already: no address needed.
                let seen = self.node.with_discovery(|d| d.get(&id)).flatten();
                json!({"id": id.to_string(), "addr": peer.addr, "discovered": seen.map(|n| n.addr.to_string())})
            }
            Request::PeerRemove { id } => {
                let id = self.devices(std::slice::from_ref(&id))?[0];
                self.node.untrust(id)?;
                json!({"id": id.to_string()})
            }
            Request::FolderAdd {
                path,
                id,
                share,
                kind,
            } => {
                // Every device and the type are checked before anything is added.
                let devices = self.devices(&share)?;
                let kind = parse_type(kind.as_deref())?.unwrap_or_default();
                let config = self.node.add_folder_as(&path, id.as_deref(), kind)?;
                for d in devices {
                    self.node.set_member(&config.id, d, true)?;
                }
                json!({"id": config.id, "path": config.path})
            }
            Request::FolderType { id, kind } => {
                let kind = parse_type(Some(&kind))?.unwrap_or_default();
                let config = self.node.set_folder_type(&id, kind)?;
                json!({"id": id, "type": config.kind})
            }
            Request::FolderRevert { id } => {
                let n = self.node.revert_folder(&id)?;
                json!({"id": id, "paths": n})
            }
            Request::FolderVersions { id, policy, local } => {
                use softadastra::index::retention;
                softadastra::folder::get(&lock(self.node.store()), &id)?;
                let removed = match &policy {
                    Some(p) => self.node.set_retention(&id, p)?,
                    None => 0,
                };
                let mut store = lock(self.node.store());
                if let Some(on) = local {
                    retention::set_keeps_local_edits(&mut store, &id, on)?;
                }
                let now = retention::get(&store, &id)?;
                let local = retention::keeps_local_edits(&store, &id);
                json!({"id": id, "policy": now, "removed": removed, "local": local})
            }
            Request::History { path } => json!(self.node.history(&path)?),
            Request::DeletedFiles { folder } => json!(self.node.deleted_files(&folder)?),
            Request::Restore { path, pick, to } => {
                json!(self.node.restore(&path, pick, to.as_deref())?)
            }
            Request::RestoreFolder {
                folder,
                at,
                dry_run,
            } => {
                // Many files may be written: off the async workers' turn.
                let done =
                    tokio::task::block_in_place(|| self.node.restore_folder(&folder, at, dry_run))?;
                json!(done)
            }
            Request::Conflicts { folder } => json!(self.node.conflicts(folder.as_deref())?),
            Request::ConflictResolve { path, keep } => {
                json!(self.node.settle_conflict(&path, keep)?)
            }
            Request::FolderDeletions { id, decision } => {
                let decided = match decision {
                    crate::guard_cmd::Decision::Accept => self.node.accept_deletions(&id)?,
                    crate::guard_cmd::Decision::Restore => self.node.restore_deletions(&id)?,
                };
                json!({"id": id, "decision": decision, "decided": decided})
            }
            Request::FolderGuard { id, on } => {
                self.node.set_deletion_guard(&id, on)?;
                json!({"id": id, "guard": on})
            }
            Request::FolderOverride { id } => {
                let n = self.node.override_folder(&id)?;
                json!({"id": id, "paths": n})
            }
            Request::FolderMember { id, device, share } => {
                let d = self.devices(std::slice::from_ref(&device))?[0];
                let changed = self.node.set_member(&id, d, share)?;
                json!({"id": id, "device": d.to_string(), "changed": changed})
            }
            Request::PeerPause { device, paused } => {
                let d = self.devices(std::slice::from_ref(&device))?[0];
                let changed = self.node.pause_device(d, paused)?;
                json!({"device": d.to_string(), "changed": changed})
            }
            Request::FolderList => {
                json!(crate::members_cmd::folder_rows(&lock(self.node.store()))?)
            }
            Request::Offers => json!(self.node.offers()),
            Request::OfferAccept { id, path, kind } => {
                let kind = parse_type(kind.as_deref())?.unwrap_or_default();
                let config = self.node.accept_offer(&id, &path, kind)?;
                json!({"id": config.id, "path": config.path})
            }
            Request::OfferDecline { id } => {
                self.node.decline_offer(&id)?;
                json!({"id": id})
            }
            Request::FolderSet { id, change } => {
                let said = match change {
                    FolderChange::Pause => {
                        self.node.pause_folder(&id)?;
                        format!(
                            "paused {id:?}: not synced until `softadastra folder resume {id}`; peers are told"
                        )
                    }
                    FolderChange::Resume => {
                        self.node.resume_folder(&id)?;
                        format!("resumed {id:?}: scanning, then syncing")
                    }
                    FolderChange::Remove => {
                        let config = self.node.remove_folder(&id)?;
                        format!(
                            "stopped sharing {id:?}; files in {} are untouched",
                            config.path.display()
                        )
                    }
                    FolderChange::Rescan => {
                        match self.node.rescan_folder(&id) {
                            Err(NodeError::Paused(_)) => bail!(
                                "{id:?} is paused; `softadastra folder resume {id}` scans and syncs it"
                            ),
                            Err(NodeError::NotWatched(_)) => {
                                bail!("{id:?} is not being watched (see `softadastra status`)")
                            }
                            other => other?,
                        }
                        format!("rescanning {id:?}; `softadastra status` shows when it is done")
                    }
                };
                info!(folder = %id, change = ?change, "folder changed");
                json!({"id": id, "said": said})
            }
            Request::StoreRead { ns, key, prefix } => {
                let store = lock(self.node.store());
                json!(crate::store_cmd::read_rows(
                    &store,
                    &ns,
                    key.as_deref(),
                    &prefix
                ))
            }
            Request::StoreWrite { key, value } => {
                let seq = crate::store_cmd::write_value(
                    &mut lock(self.node.store()),
                    self.identity.node_id(),
                    &key,
                    value.as_deref(),
                )?;
                if seq.is_some() {
                    self.node.values_changed();
                }
                json!(seq)
            }
            Request::Ls { folder, all } => {
                let store = lock(self.node.store());
                json!(crate::folder_cmd::ls_rows(&store, folder.as_deref(), all)?)
            }
            Request::Events { since, wait_ms } => {
                let wait = Duration::from_millis(wait_ms.min(EVENTS_LONGEST_WAIT_MS));
                json!(
                    self.node
                        .events()
                        .wait(since, EVENTS_PER_ANSWER, wait)
                        .await
                )
            }
            Request::Shutdown => {
                self.stop.notify_one();
                json!({"stopping": true})
            }
        })
    }
}
