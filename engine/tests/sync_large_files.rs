//! Large files in the index exchange: a file of many chunks is announced
//! without its chunk list, pages end at a byte budget however large the
//! folder's files are (every page fits a control frame), and the node
//! that takes such a record stores the work, does it with the list filled
//! in, and records the file with its list.

mod common;

use std::time::Instant;

use common::{docs_node, page, record};
use softadastra::core::{ContentHash, NodeId, VersionVector};
use softadastra::folder::{self, FileRecord};
use softadastra::fs::chunk::Chunk;
use softadastra::store::{Store, ns};
use softadastra::sync::{Action, MAX_LISTED_CHUNKS, SyncEngine, SyncMessage};
use softadastra::transport::wire::{MAX_CONTROL_FRAME, Message, encode};

/// A file of `n` chunks of 64 KiB, last changed by `by`.
fn large(by: NodeId, n: usize, seed: u8) -> FileRecord {
    let mut r = record(by);
    r.chunks = (0..n)
        .map(|i| Chunk {
            offset: i as u64 * 65_536,
            len: 65_536,
            hash: ContentHash::of(&[seed, (i % 251) as u8, (i / 251) as u8]),
        })
        .collect();
    r.size = n as u64 * 65_536;
    r.hash = Some(ContentHash::of(&[seed]));
    r
}

/// Every page a peer asking from the start gets, following `more`.
fn all_pages(engine: &mut SyncEngine, store: &mut Store, peer: NodeId) -> Vec<SyncMessage> {
    let mut pages = Vec::new();
    let mut since = 0;
    loop {
        let ask = SyncMessage::IndexRequest {
            folder: "docs".into(),
            since,
        };
        let out = engine.received(store, peer, ask, Instant::now()).unwrap();
        let Some(Action::Send { message, .. }) = out.into_iter().next() else {
            panic!("no page");
        };
        let SyncMessage::IndexPage { upto, more, .. } = &message else {
            panic!("not a page: {message:?}");
        };
        let (upto, more) = (*upto, *more);
        pages.push(message);
        if !more {
            return pages;
        }
        assert!(upto > since, "a page that does not move on");
        since = upto;
        assert!(pages.len() < 1000, "pages without end");
    }
}

#[test]
fn pages_of_large_files_fit_a_frame_and_leave_long_lists_out() {
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let (mut store, mut engine) = docs_node(me, peer);
    // 40 files just under the list limit (44 KiB of list each: 1.7 MiB in
    // all), 5 far over it (a 26 GB file's list alone is 17 MB), and small
    // ones between.
    let mut expected = Vec::new();
    for i in 0..60 {
        let (path, rec) = match i % 12 {
            0 => (format!("huge-{i}.img"), large(me, 400_000, i)),
            1 | 2 => (format!("small-{i}.txt"), record(me)),
            _ => (format!("big-{i}.bin"), large(me, MAX_LISTED_CHUNKS, i)),
        };
        let value = postcard::to_allocvec(&rec).unwrap();
        store
            .put(ns::FILES, &folder::file_key("docs", &path), value)
            .unwrap();
        expected.push((path, rec));
    }
    let pages = all_pages(&mut engine, &mut store, peer);
    assert!(pages.len() > 1, "1.7 MiB of lists in one page");
    let mut got = Vec::new();
    for p in pages {
        let mut frame = Vec::new();
        encode(&Message::App(p.encode()), MAX_CONTROL_FRAME, &mut frame)
            .expect("every page fits a control frame");
        if let SyncMessage::IndexPage { records, .. } = p {
            got.extend(records);
        }
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), expected.len(), "every record, once");
    for ((path, sent), (_, rec)) in got.iter().zip(&expected) {
        if rec.chunks.len() > MAX_LISTED_CHUNKS {
            assert!(sent.chunks_elided(), "{path}: a long list was sent");
            assert!(sent.is_filled_in(&sent.clone()));
            assert!(rec.is_filled_in(sent), "{path}: the rest as recorded");
        } else {
            assert_eq!(sent, rec, "{path}: sent whole");
        }
    }
}

#[test]
fn a_file_announced_without_its_list_is_fetched_and_recorded_with_it() {
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let (mut store, mut engine) = docs_node(me, peer);
    let now = Instant::now();
    let whole = large(peer, 5000, 7);
    let mut announced = whole.clone();
    announced.chunks.clear();
    // A small file without chunks is not a list left out: refused.
    let mut tiny = record(peer);
    tiny.chunks.clear();
    let actions = engine
        .received(
            &mut store,
            peer,
            page(vec![
                ("disk.img".into(), announced.clone()),
                ("tiny.txt".into(), tiny),
            ]),
            now,
        )
        .unwrap();
    assert_eq!(engine.refused_paths, 1);
    let need = actions
        .iter()
        .find_map(|a| match a {
            Action::Place { path, need, .. } if path == "disk.img" => Some(need.clone()),
            _ => None,
        })
        .expect("work for the large file");
    assert!(need.record.chunks_elided());
    // The executor fills the list in (from a peer) and does the work: the
    // work is still current, and the file is recorded with its list.
    let mut done = need.clone();
    done.record.chunks = whole.chunks.clone();
    assert!(SyncEngine::is_current(
        &store, "docs", "disk.img", &done, None
    ));
    let mut placed = done.record.clone();
    placed.inode = 42;
    engine
        .completed(&mut store, "docs", "disk.img", &done, placed, None, now)
        .unwrap();
    let recorded = folder::record(&store, "docs", "disk.img").expect("recorded");
    assert_eq!(recorded.chunks, whole.chunks);
    assert!(SyncEngine::needs(&store).is_empty(), "the work is done");
    // A list of other content is not the announced record.
    let mut other = done.clone();
    other.record.hash = Some(ContentHash::of(b"other"));
    assert!(!other.record.is_filled_in(&need.record));
}

#[test]
fn the_same_content_announced_without_its_list_keeps_the_local_list() {
    let me = NodeId::derive(b"me");
    let peer = NodeId::derive(b"peer");
    let (mut store, mut engine) = docs_node(me, peer);
    // This node has the file; the peer made the same bytes on its own.
    let mine = large(me, 3000, 9);
    store
        .put(
            ns::FILES,
            &folder::file_key("docs", "same.img"),
            postcard::to_allocvec(&mine).unwrap(),
        )
        .unwrap();
    let mut theirs = mine.clone();
    theirs.version = VersionVector::default();
    theirs.version.bump(peer);
    theirs.modified_by = peer;
    theirs.chunks.clear();
    engine
        .received(
            &mut store,
            peer,
            page(vec![("same.img".into(), theirs)]),
            Instant::now(),
        )
        .unwrap();
    let recorded = folder::record(&store, "docs", "same.img").expect("recorded");
    assert_eq!(recorded.chunks, mine.chunks, "the list is never lost");
    assert!(recorded.version.compare(&mine.version) != softadastra::core::Causality::Before);
    assert!(
        SyncEngine::needs(&store).is_empty(),
        "no work for the same bytes"
    );
}
