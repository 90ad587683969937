//! A peer announcing hostile paths: each is refused and counted, nothing is
//! recorded or planned for it, and the good records of the same page are
//! still taken.

mod common;

use std::time::Instant;

use common::{docs_node, open, page, record, share_docs};
use softadastra::core::{ContentHash, NodeId, VersionVector};
use softadastra::folder::FileRecord;
use softadastra::folder::values::{self, APP_SPACE};
use softadastra::fs::chunk::Chunk;
use softadastra::index::members;
use softadastra::store::ns;
use softadastra::sync::{Action, SyncConfig, SyncEngine, SyncMessage};

#[test]
fn hostile_paths_are_refused_and_the_rest_is_taken() {
    let me = NodeId::derive(b"me");
    let mallory = NodeId::derive(b"mallory");
    let (mut store, mut engine) = docs_node(me, mallory);
    let now = Instant::now();
    let hostile = [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        "C:/Windows/evil",
        "nul\0byte",
        "",
    ];
    let mut records: Vec<(String, FileRecord)> = hostile
        .iter()
        .map(|p| (p.to_string(), record(mallory)))
        .collect();
    records.push(("fine/ok.txt".into(), record(mallory)));
    let actions = engine
        .received(&mut store, mallory, page(records), now)
        .unwrap();
    assert!(
        engine.refused_paths >= 5,
        "refused {} hostile paths",
        engine.refused_paths
    );
    let needs = SyncEngine::needs(&store);
    assert_eq!(needs.len(), 1, "{needs:?}");
    assert_eq!(needs[0].1, "fine/ok.txt");
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Place { path, .. } if path == "fine/ok.txt"
    )));
    for (key, _) in store.list(ns::FILES, "") {
        assert!(!key.contains(".."), "recorded {key}");
    }
}

#[test]
fn file_records_whose_chunks_do_not_cover_the_file_are_refused() {
    let me = NodeId::derive(b"me");
    let mallory = NodeId::derive(b"mallory");
    let (mut store, mut engine) = docs_node(me, mallory);
    let with = |size: u64, chunks: &[(u64, u32)]| {
        let mut r = record(mallory);
        r.size = size;
        r.chunks = chunks
            .iter()
            .map(|&(offset, len)| Chunk {
                offset,
                len,
                hash: ContentHash::of(b"abc"),
            })
            .collect();
        r
    };
    let records = vec![
        // No chunks for three bytes.
        ("none.bin".to_string(), with(3, &[])),
        // A gap, an overlap, a chunk past the end, an empty chunk.
        ("gap.bin".to_string(), with(6, &[(0, 2), (3, 3)])),
        ("overlap.bin".to_string(), with(4, &[(0, 3), (2, 2)])),
        ("long.bin".to_string(), with(3, &[(0, 4)])),
        ("empty-chunk.bin".to_string(), with(3, &[(0, 3), (3, 0)])),
        // A chunk larger than any node makes or serves (a memory bomb).
        (
            "huge.bin".to_string(),
            with(u64::from(u32::MAX), &[(0, u32::MAX)]),
        ),
        ("ok.bin".to_string(), record(mallory)),
        // An empty file has no chunks.
        ("empty.bin".to_string(), with(0, &[])),
    ];
    engine
        .received(&mut store, mallory, page(records), Instant::now())
        .unwrap();
    assert_eq!(engine.refused_paths, 6);
    let mut needed: Vec<String> = SyncEngine::needs(&store)
        .into_iter()
        .map(|(_, path, _)| path)
        .collect();
    needed.sort();
    assert_eq!(needed, ["empty.bin", "ok.bin"]);
}

#[test]
fn hostile_app_values_are_refused_and_the_rest_is_taken() {
    let me = NodeId::derive(b"me");
    let mallory = NodeId::derive(b"mallory");
    let mut store = open(me);
    members::set_member(&mut store, APP_SPACE, mallory, true).unwrap();
    let mut engine = SyncEngine::new(me, SyncConfig::default(), 1);
    let now = Instant::now();
    engine.connected(&store, mallory, now).unwrap();
    engine
        .received(
            &mut store,
            mallory,
            SyncMessage::Folders {
                ids: vec![APP_SPACE.into()],
                reply: false,
            },
            now,
        )
        .unwrap();
    let value = |bytes: &[u8]| {
        let mut version = VersionVector::default();
        version.bump(mallory);
        values::value_record(bytes, version, mallory, 1)
    };
    let records = vec![
        ("good".to_string(), value(b"v1")),
        // Bytes that are not what the record says.
        ("bad-hash".to_string(), value(b"x")),
        // A live value without its bytes.
        ("no-bytes".to_string(), value(b"z")),
        // A file record inside the app space.
        ("file-kind".to_string(), record(mallory)),
        // A key no node may write.
        ("ctl\u{1}key".to_string(), value(b"c")),
        ("".to_string(), value(b"e")),
    ];
    let inline = vec![
        ("good".to_string(), b"v1".to_vec()),
        ("bad-hash".to_string(), b"y".to_vec()),
        ("ctl\u{1}key".to_string(), b"c".to_vec()),
        ("".to_string(), b"e".to_vec()),
    ];
    engine
        .received(
            &mut store,
            mallory,
            SyncMessage::IndexPage {
                folder: APP_SPACE.into(),
                since: 0,
                upto: 10,
                records,
                more: false,
                values: inline,
            },
            now,
        )
        .unwrap();
    assert_eq!(engine.refused_paths, 5);
    assert_eq!(values::get(&store, "good"), Some(b"v1".to_vec()));
    let keys: Vec<String> = values::list(&store, "").map(|(k, _)| k).collect();
    assert_eq!(keys, ["good"]);
    assert!(SyncEngine::needs(&store).is_empty());

    // A value record announced for a folder of files is refused too.
    share_docs(&mut store, &[mallory]);
    engine
        .received(
            &mut store,
            mallory,
            SyncMessage::Folders {
                ids: vec!["docs".into(), APP_SPACE.into()],
                reply: false,
            },
            now,
        )
        .unwrap();
    engine
        .received(
            &mut store,
            mallory,
            SyncMessage::IndexPage {
                folder: "docs".into(),
                since: 0,
                upto: 10,
                records: vec![("v.txt".into(), value(b"v"))],
                more: false,
                values: vec![("v.txt".into(), b"v".to_vec())],
            },
            now,
        )
        .unwrap();
    assert_eq!(engine.refused_paths, 6);
    assert!(SyncEngine::needs(&store).is_empty());
    assert!(store.get(ns::FILES, "docs/v.txt").is_none());
}
