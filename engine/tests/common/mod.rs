//! Helpers shared by the sync engine's tests: an in-memory store, a node
//! sharing `docs` with a peer, records and index pages from that peer.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use softadastra::core::{ContentHash, ManualClock, NodeId, VersionVector};
use softadastra::folder::{FileRecord, FolderConfig};
use softadastra::fs::chunk::Chunk;
use softadastra::fs::scan::EntryKind;
use softadastra::index::folders;
use softadastra::store::{Store, StoreConfig};
use softadastra::sync::{Action, SyncConfig, SyncEngine, SyncMessage};
use softadastra::wal::MemStorage;

/// A three-byte file ("abc") last changed by `by`.
pub fn record(by: NodeId) -> FileRecord {
    let mut version = VersionVector::default();
    version.bump(by);
    FileRecord {
        kind: EntryKind::File,
        size: 3,
        mtime_ns: 1,
        mode: 0o644,
        inode: 0,
        hash: Some(ContentHash::of(b"abc")),
        chunks: vec![Chunk {
            offset: 0,
            len: 3,
            hash: ContentHash::of(b"abc"),
        }],
        link_target: None,
        version,
        modified_by: by,
        deleted: false,
    }
}

pub fn open(me: NodeId) -> Store {
    let mut config = StoreConfig::new("/hostile");
    config.node = me;
    let (store, _) = Store::open(
        config,
        Arc::new(MemStorage::new()),
        Arc::new(ManualClock::new()),
    )
    .unwrap();
    store
}

/// Share the folder `docs` (at `/hostile/docs`, never touched) with `with`.
pub fn share_docs(store: &mut Store, with: &[NodeId]) {
    let mut folder = FolderConfig::new("docs", "/hostile/docs");
    folder.members = with.iter().copied().collect();
    folders::put(store, &folder).unwrap();
}

/// A node sharing `docs`, connected to `mallory`, having asked for its index.
pub fn docs_node(me: NodeId, mallory: NodeId) -> (Store, SyncEngine) {
    docs_node_with(me, mallory, SyncConfig::default())
}

/// [`docs_node`], its engine configured by `config`.
pub fn docs_node_with(me: NodeId, mallory: NodeId, config: SyncConfig) -> (Store, SyncEngine) {
    let mut store = open(me);
    share_docs(&mut store, &[mallory]);
    let mut engine = SyncEngine::new(me, config, 1);
    let now = Instant::now();
    engine.connected(&store, mallory, now).unwrap();
    let asked = engine
        .received(
            &mut store,
            mallory,
            SyncMessage::Folders {
                ids: vec!["docs".into()],
                reply: false,
            },
            now,
        )
        .unwrap();
    assert!(asked.iter().any(|a| matches!(
        a,
        Action::Send {
            message: SyncMessage::IndexRequest { since: 0, .. },
            ..
        }
    )));
    (store, engine)
}

pub fn page(records: Vec<(String, FileRecord)>) -> SyncMessage {
    SyncMessage::IndexPage {
        folder: "docs".into(),
        since: 0,
        upto: 10,
        records,
        more: false,
        values: vec![],
    }
}
