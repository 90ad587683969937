//! The simulation's executor: what `runtime::exec` does with the engine's
//! actions, played on a node's in-memory disk — messages sent, content
//! fetched from a source, the need checked as current and the disk as
//! indexed, a conflict copy kept, the result reported as completed or
//! failed.

use super::*;

impl Sim {
    pub(super) fn run_actions(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { peer, message } => {
                    let to = self.index_of(peer);
                    self.send(i, to, Msg::Sync(message));
                }
                work => self.start_work(i, work),
            }
        }
    }

    /// The executor: begin a Place or Remove.
    pub(super) fn start_work(&mut self, i: usize, work: Action) {
        let now = self.now();
        let (path, expect) = match &work {
            Action::Place { path, expect, .. } | Action::Remove { path, expect, .. } => {
                (path.clone(), expect.clone())
            }
            Action::Send { .. } => unreachable!(),
        };
        if std::env::var_os("SOFTADASTRA_SIM_VERBOSE").is_some() {
            match &work {
                Action::Place {
                    path, need, expect, ..
                } => eprintln!(
                    "node {i} start place {path} need v={:?} copy={:?} expect v={:?}",
                    need.record.version,
                    need.conflict_copy,
                    expect.as_ref().map(|e| &e.version)
                ),
                Action::Remove {
                    path, need, expect, ..
                } => eprintln!(
                    "node {i} start remove {path} v={:?} expect v={:?}",
                    need.record.version,
                    expect.as_ref().map(|e| &e.version)
                ),
                _ => {}
            }
        }
        // The disk must still be what the index says; else the scan will
        // record the change and the engine decides again.
        let node = &mut self.nodes[i];
        let on_disk = node.disk.get(&path).map(|b| hash(b));
        let expected = expect.as_ref().filter(|e| !e.deleted).and_then(|e| e.hash);
        if on_disk != expected {
            node.engine.failed(FOLDER, &path, now, &simulated());
            return;
        }
        match &work {
            Action::Remove { need, .. } => {
                if !SyncEngine::is_current(
                    node.store.as_ref().unwrap(),
                    FOLDER,
                    &path,
                    need,
                    expect.as_ref(),
                ) {
                    node.engine.failed(FOLDER, &path, now, &simulated());
                    return;
                }
                if std::env::var_os("SOFTADASTRA_SIM_VERBOSE").is_some() {
                    eprintln!("node {i} remove: {path} v={:?}", need.record.version);
                }
                node.disk.remove(&path);
                let rec = need.record.clone();
                let acts = node
                    .engine
                    .completed(
                        node.store.as_mut().unwrap(),
                        FOLDER,
                        &path,
                        need,
                        rec,
                        None,
                        now,
                    )
                    .unwrap();
                self.run_actions(i, acts);
            }
            Action::Place { need, .. } => {
                let want = need.record.hash.unwrap();
                // Content already here (any path): no transfer.
                if let Some(bytes) = node.disk.values().find(|b| hash(b) == want).cloned() {
                    self.finish_place(i, work, bytes);
                    return;
                }
                let sources: Vec<usize> = need
                    .sources
                    .iter()
                    .map(|s| self.index_of(*s))
                    .filter(|s| self.connected(i, *s))
                    .collect();
                let Some(&src) = sources.get(self.rng.usize(0..sources.len().max(1))) else {
                    self.nodes[i]
                        .engine
                        .failed(FOLDER, &path, now, &simulated());
                    return;
                };
                self.next_req += 1;
                let req = self.next_req;
                let node = &mut self.nodes[i];
                node.fetches.insert(
                    req,
                    Fetch {
                        path: path.clone(),
                        hash: want,
                        deadline: now + Duration::from_secs(2),
                        work,
                    },
                );
                self.send(i, src, Msg::Get { req, hash: want });
            }
            Action::Send { .. } => unreachable!(),
        }
    }

    pub(super) fn finish_place(&mut self, i: usize, work: Action, bytes: Vec<u8>) {
        let Action::Place {
            path, need, expect, ..
        } = work
        else {
            return;
        };
        let now = self.now();
        let wall = self.clock.wall().as_nanos() as i64;
        let node = &mut self.nodes[i];
        if !SyncEngine::is_current(
            node.store.as_ref().unwrap(),
            FOLDER,
            &path,
            &need,
            expect.as_ref(),
        ) {
            // Overtaken while the bytes travelled: drop them.
            node.engine.failed(FOLDER, &path, now, &simulated());
            return;
        }
        let on_disk = node.disk.get(&path).map(|b| hash(b));
        if on_disk != expect.as_ref().filter(|e| !e.deleted).and_then(|e| e.hash) {
            node.engine.failed(FOLDER, &path, now, &simulated());
            return;
        }
        let mut copy = None;
        if let Some(name) = &need.conflict_copy
            && let Some(old) = node.disk.get(&path).cloned()
            && let Some(copy_path) = copy_target(name, |p| match node.disk.get(p) {
                None => Probe::Free,
                Some(b) if *b == old => Probe::Same,
                Some(_) => Probe::Different,
            })
        {
            let mut v = records(node.store.as_ref().unwrap())
                .remove(&copy_path)
                .map(|r| r.version)
                .unwrap_or_default();
            v.bump(node.id);
            let rec = record_for(&old, v.clone(), node.id, wall);
            self.edits.push((
                copy_path.clone(),
                Edit {
                    content: Some(hash(&old)),
                    version: v,
                },
            ));
            node.disk.insert(copy_path.clone(), old);
            copy = Some((copy_path.clone(), rec));
        }
        if std::env::var_os("SOFTADASTRA_SIM_VERBOSE").is_some() {
            eprintln!(
                "node {i} place: {path} {} over {:?} v={:?} copy={:?}",
                &hash(&bytes).to_string()[..8],
                node.disk
                    .get(&path)
                    .map(|b| hash(b).to_string()[..8].to_string()),
                need.record.version,
                need.conflict_copy
            );
        }
        node.disk.insert(path.clone(), bytes);
        let mut rec = need.record.clone();
        rec.inode = 0;
        let acts = node
            .engine
            .completed(
                node.store.as_mut().unwrap(),
                FOLDER,
                &path,
                &need,
                rec,
                copy,
                now,
            )
            .unwrap();
        self.run_actions(i, acts);
    }
}
