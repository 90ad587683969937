//! Golden files pin the on-disk and wire formats: `data/golden/*` must decode to the
//! known contents, and today's encoder must produce them byte for byte. A
//! format change that breaks either needs a new format version, not new
//! golden files. Regenerate only for a deliberate new version:
//! `SOFTADASTRA_BLESS=1 cargo test --test format_golden`.

use std::path::PathBuf;
use std::sync::Arc;

use softadastra::core::{NodeId, Seq, Timestamp};
use softadastra::store::{Entry, Op, SavedTally, Store, StoreConfig, ns, snapshot};
use softadastra::wal::MemStorage;
use softadastra::wal::format::{self, Decoded};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data/golden")
        .join(name)
}

/// A store in a new directory whose index is a copy of the golden file
/// at `path`, opened (the directory goes with the first value).
fn open_golden_index(
    path: &std::path::Path,
) -> (tempfile::TempDir, Store, softadastra::store::StoreRecovery) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(dir.path());
    std::fs::copy(path, config.index_path()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (store, rec) = Store::open_dir(config).unwrap();
    (dir, store, rec)
}

fn ops() -> Vec<Op> {
    vec![
        Op::Put {
            ns: ns::APP.into(),
            key: "user:1".into(),
            value: b"Gaspard".to_vec(),
            origin: NodeId([7; 32]),
            timestamp: Timestamp(1_700_000_000_000_000_000),
        },
        Op::Remove {
            ns: ns::APP.into(),
            key: "user:1".into(),
            origin: NodeId([7; 32]),
            timestamp: Timestamp(1_700_000_000_000_000_001),
        },
        Op::PurgeTombstones {
            ns: ns::FILES.into(),
            before: Timestamp(5),
        },
        Op::Forget {
            ns: ns::FILES.into(),
            key: "docs/ignored.log".into(),
        },
        Op::DropPrefix {
            ns: ns::FILES.into(),
            prefix: "old-folder/".into(),
        },
    ]
}

fn expected_segment() -> Vec<u8> {
    let mut out = Vec::new();
    format::encode_segment_header(Seq(1), &mut out);
    for (i, op) in ops().iter().enumerate() {
        let payload = postcard::to_allocvec(op).unwrap();
        format::encode_record(
            Seq(i as u64 + 1),
            softadastra::store::OP_RECORD_KIND,
            &payload,
            &mut out,
        );
    }
    out
}

fn expected_snapshot() -> Vec<u8> {
    let a = Entry {
        value: Some(b"Softadastra".to_vec()),
        version: Seq(41),
        timestamp: Timestamp(1_700_000_000_000_000_000),
        origin: NodeId([1; 32]),
    };
    let b = Entry {
        value: None,
        version: Seq(42),
        timestamp: Timestamp(1_700_000_000_000_000_002),
        origin: NodeId([2; 32]),
    };
    snapshot::encode(
        Seq(42),
        2,
        [(ns::APP, "user:1", &a), (ns::FILES, "docs/a.txt", &b)].into_iter(),
    )
}

fn check(name: &str, expected: Vec<u8>) -> Vec<u8> {
    let path = golden(name);
    if std::env::var_os("SOFTADASTRA_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &expected).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        bytes, expected,
        "{name}: the encoder no longer produces the golden bytes"
    );
    bytes
}

#[test]
fn wal_segment_v1_golden() {
    let bytes = check("wal-v1.seg", expected_segment());
    assert_eq!(&bytes[..8], b"SDAWAL\r\n");
    let mut pos = format::SEGMENT_HEADER_LEN;
    let mut decoded = Vec::new();
    while pos < bytes.len() {
        match format::decode_record(&bytes[pos..]) {
            Decoded::Record(r, used) => {
                decoded.push((r.seq, postcard::from_bytes::<Op>(r.payload).unwrap()));
                pos += used;
            }
            other => panic!("golden segment unreadable at {pos}: {other:?}"),
        }
    }
    let expected: Vec<_> = ops()
        .into_iter()
        .enumerate()
        .map(|(i, op)| (Seq(i as u64 + 1), op))
        .collect();
    assert_eq!(decoded, expected);
}

#[test]
fn snapshot_v1_golden() {
    let bytes = check("snapshot-v1.snap", expected_snapshot());
    let d = snapshot::decode(&bytes).unwrap();
    assert_eq!(d.seq, Seq(42));
    assert_eq!(d.rows.len(), 2);
    assert_eq!(d.rows[0].1, "user:1");
    assert_eq!(d.rows[1].2.value, None);
}

#[test]
fn store_opens_golden_files() {
    // A store whose directory holds exactly the golden files recovers them.
    let storage = MemStorage::new();
    storage.set_contents(
        &PathBuf::from("/g/wal/seg-00000000000000000001.wal"),
        std::fs::read(golden("wal-v1.seg")).unwrap(),
    );
    let (store, rec) = Store::open(
        StoreConfig::new("/g"),
        Arc::new(storage),
        Arc::new(softadastra::core::ManualClock::new()),
    )
    .unwrap();
    assert_eq!(rec.wal.records, 5);
    assert!(store.entry(ns::APP, "user:1").unwrap().is_tombstone());
    assert_eq!(store.last_seq(), Seq(5));
}

/// The on-disk index (`index.redb`) as a release leaves it after the
/// golden operations and a clean close. Its bytes are redb's to lay out,
/// so what is pinned is that every later release opens it and reads the
/// same state, not that it writes the same bytes. Format 1 (entries as
/// plain postcard) and format 2 (entries in the stored form, their origin
/// numbered) read alike; `SOFTADASTRA_BLESS=1` writes this release's.
fn index_golden(name: &str, bless: bool) -> tempfile::TempDir {
    let path = golden(name);
    if bless && std::env::var_os("SOFTADASTRA_BLESS").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
        store.apply_batch(ops()).unwrap();
        store
            .put("folder.config", "docs", b"golden".to_vec())
            .unwrap();
        let config = store.config().clone();
        drop(store);
        std::fs::copy(config.index_path(), &path).unwrap();
    }
    let (dir, mut store, rec) = open_golden_index(&path);
    assert_eq!(rec.checkpoint, Some(Seq(6)), "{rec:?}");
    assert_eq!(rec.wal.replayed, 0);
    let tomb = store.entry(ns::APP, "user:1").unwrap();
    assert!(tomb.is_tombstone());
    assert_eq!(tomb.version, Seq(2));
    assert_eq!(tomb.origin, NodeId([7; 32]));
    assert_eq!(
        store.value("folder.config", "docs"),
        Some(b"golden".to_vec())
    );
    let changed: Vec<(String, u64)> = store
        .changed_since(ns::APP, Seq(0))
        .map(|(k, e)| (k, e.version.0))
        .collect();
    assert_eq!(changed, [("user:1".to_string(), 2)]);
    // Sequences go on after the file's.
    assert_eq!(store.put(ns::APP, "next", vec![1]).unwrap(), Seq(7));
    dir
}

/// The raw bytes of every entry of the index file at `path`, and its
/// format number.
fn raw_index(path: &std::path::Path) -> (Vec<Vec<u8>>, u64) {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    // A copy: opening a redb file may write to it.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("index.redb");
    std::fs::copy(path, &copy).unwrap();
    let db = redb::Database::open(&copy).unwrap();
    let read = db.begin_read().unwrap();
    let entries = read.open_table(ENTRIES).unwrap();
    let rows = entries
        .iter()
        .unwrap()
        .map(|r| r.unwrap().1.value().to_vec())
        .collect();
    let format = read
        .open_table(META)
        .unwrap()
        .get("format")
        .unwrap()
        .unwrap()
        .value();
    (rows, format)
}

#[test]
fn index_v1_golden() {
    let (entries, format) = raw_index(&golden("index-v1.redb"));
    assert_eq!(format, 1);
    assert!(entries.iter().all(|e| e[0] != 0xE2), "plain postcard");
    let dir = index_golden("index-v1.redb", false);
    // Marked as format 2 at its first open; its old entries stay, the new
    // one is in the stored form.
    let (entries, format) = raw_index(&StoreConfig::new(dir.path()).index_path());
    assert_eq!(format, 2);
    assert_eq!(entries.iter().filter(|e| e[0] == 0xE2).count(), 1);
}

#[test]
fn index_v2_golden() {
    index_golden("index-v2.redb", true);
    let (entries, format) = raw_index(&golden("index-v2.redb"));
    assert_eq!(format, 2);
    assert!(entries.iter().all(|e| e[0] == 0xE2), "the stored form");
}

/// What a value counts for in the saved-totals golden: its length.
fn by_len(_key: &str, v: &[u8]) -> Option<u64> {
    Some(v.len() as u64)
}

/// An index with running totals saved at close (the optional `totals`
/// table, blob format 1): they are taken back, uncounted, and hold what
/// was saved. The index of the release before it (`index-v1.redb`, no
/// such table) opens as before and counts its totals.
#[test]
fn index_v1_saved_totals_golden() {
    const BY_LEN: SavedTally = SavedTally {
        name: "by_len.v1",
        count: by_len,
    };
    let path = golden("index-v1-totals.redb");
    if std::env::var_os("SOFTADASTRA_BLESS").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
        for (k, v) in [("g1/a", "one"), ("g1/b", "three"), ("g2/c", "seven!!")] {
            store.put(ns::APP, k, v.as_bytes().to_vec()).unwrap();
        }
        store.tally_later(ns::APP, &[BY_LEN]).unwrap().run();
        let config = store.config().clone();
        drop(store);
        std::fs::copy(config.index_path(), &path).unwrap();
    }
    let (_dir, mut store, _) = open_golden_index(&path);
    assert!(
        store.tally_later(ns::APP, &[BY_LEN]).is_none(),
        "taken back"
    );
    let g1 = store.tally(ns::APP, Some("g1"), by_len);
    let g2 = store.tally(ns::APP, Some("g2"), by_len);
    assert_eq!((g1.items, g1.bytes, g2.items, g2.bytes), (2, 8, 1, 7));

    let (_dir, mut store, _) = open_golden_index(&golden("index-v1.redb"));
    store
        .tally_later(ns::APP, &[BY_LEN])
        .expect("an index from before saved totals counts them")
        .run();
    assert_eq!(
        store.tally(ns::APP, None, by_len).items,
        0,
        "user:1 is a tombstone"
    );
}

fn expected_file_record() -> Vec<u8> {
    use softadastra::core::{ContentHash, VersionVector};
    use softadastra::folder::FileRecord;
    use softadastra::fs::chunk::Chunk;
    use softadastra::fs::scan::EntryKind;
    let mut version = VersionVector::default();
    version.bump(NodeId([1; 32]));
    version.bump(NodeId([2; 32]));
    let record = FileRecord {
        kind: EntryKind::File,
        size: 70_000,
        mtime_ns: 1_700_000_000_123_456_789,
        mode: 0o644,
        inode: 42,
        hash: Some(ContentHash([5; 32])),
        chunks: vec![
            Chunk {
                offset: 0,
                len: 65_536,
                hash: ContentHash([6; 32]),
            },
            Chunk {
                offset: 65_536,
                len: 4_464,
                hash: ContentHash([7; 32]),
            },
        ],
        link_target: None,
        version,
        modified_by: NodeId([2; 32]),
        deleted: false,
    };
    postcard::to_allocvec(&record).unwrap()
}

#[test]
fn file_record_v1_golden() {
    let bytes = check("file-record-v1.bin", expected_file_record());
    let record: softadastra::folder::FileRecord = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(record.size, 70_000);
    assert_eq!(record.chunks.len(), 2);
    assert_eq!(record.version.entries().len(), 2);
}

/// Records in the stored form (`index::stored`, format 2), each after its
/// length (u32 LE): a file of two chunks, a small file of one whole
/// chunk (its list left out), and one whose last writer the version
/// vector does not name.
fn expected_stored_records() -> Vec<(softadastra::folder::FileRecord, Vec<u8>)> {
    use softadastra::core::ContentHash;
    use softadastra::fs::chunk::Chunk;
    let two: softadastra::folder::FileRecord =
        postcard::from_bytes(&expected_file_record()).unwrap();
    let mut small = two.clone();
    small.size = 1_200;
    small.hash = Some(ContentHash([8; 32]));
    small.chunks = vec![Chunk {
        offset: 0,
        len: 1_200,
        hash: ContentHash([8; 32]),
    }];
    let mut foreign = small.clone();
    foreign.modified_by = NodeId([3; 32]);
    [two, small, foreign]
        .into_iter()
        .map(|r| {
            let bytes = softadastra::index::write_record(&r);
            (r, bytes)
        })
        .collect()
}

#[test]
fn file_record_stored_v2_golden() {
    let records = expected_stored_records();
    let mut expected = Vec::new();
    for (_, bytes) in &records {
        expected.extend((bytes.len() as u32).to_le_bytes());
        expected.extend(bytes);
    }
    let pinned = check("file-record-stored-v2.bin", expected);
    let mut rest = pinned.as_slice();
    for (record, _) in records {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        assert_eq!(
            softadastra::index::decode_record(&rest[4..4 + len]).unwrap(),
            record
        );
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty());
    // Format 1, the plain postcard earlier releases stored, reads too.
    let plain = std::fs::read(golden("file-record-v1.bin")).unwrap();
    assert_eq!(
        softadastra::index::decode_record(&plain).unwrap(),
        postcard::from_bytes::<softadastra::folder::FileRecord>(&plain).unwrap()
    );
}

fn expected_wire() -> Vec<u8> {
    use softadastra::transport::wire::{Hello, MAX_CONTROL_FRAME, Message, encode};
    let mut out = Vec::new();
    let hello = Message::Hello(Hello {
        // The frames' layout is pinned here, not the protocol version a
        // hello names (3 when the file was made; the hello says which).
        protocol: 3,
        node: NodeId([4; 32]),
        name: "laptop".into(),
        hostname: "laptop.local".into(),
        os: "linux".into(),
        version: "0.1.0".into(),
        meta: vec![1, 1, 6, b's', b'y', b'n', b'c', b'/', b'1', 0x80, 0x01],
    });
    let Message::Hello(h) = hello.clone() else {
        unreachable!()
    };
    for m in [
        hello,
        Message::Ping { nonce: 42 },
        Message::Pong { nonce: 42 },
        Message::Goodbye {
            code: 0,
            reason: "bye".into(),
        },
        Message::Join {
            secret: [7; 16],
            hello: h.clone(),
            port: 7420,
        },
        Message::Welcome {
            hello: h,
            folder: Some("photos".into()),
        },
        Message::JoinRefused {
            reason: "this invite was already used".into(),
        },
    ] {
        encode(&m, MAX_CONTROL_FRAME, &mut out).unwrap();
    }
    out
}

#[test]
fn wire_frames_v1_golden() {
    use softadastra::transport::wire::{FrameDecoder, MAX_CONTROL_FRAME, Message};
    let bytes = check("wire-v1.bin", expected_wire());
    let mut d = FrameDecoder::new(MAX_CONTROL_FRAME);
    d.push(&bytes);
    let mut n = 0;
    while let Some(m) = d.poll().unwrap() {
        if n == 0 {
            assert!(matches!(m, Message::Hello(ref h) if h.name == "laptop"));
        }
        n += 1;
    }
    assert_eq!(n, 7);
}

/// The request that opens a bulk stream (its answers are raw bytes).
fn expected_chunk_request() -> Vec<u8> {
    use softadastra::core::ContentHash;
    use softadastra::transport::wire::ChunkRequest;
    ChunkRequest {
        chunks: vec![(ContentHash([0xab; 32]), 65_536), (ContentHash([1; 32]), 1)],
    }
    .encode()
    .unwrap()
}

#[test]
fn chunk_request_v1_golden() {
    use softadastra::core::ContentHash;
    use softadastra::transport::wire::ChunkRequest;
    let bytes = check("chunk-request-v1.bin", expected_chunk_request());
    let request = ChunkRequest::decode([bytes[0], bytes[1]], &bytes[2..]).unwrap();
    assert_eq!(
        request.chunks,
        vec![(ContentHash([0xab; 32]), 65_536), (ContentHash([1; 32]), 1)]
    );
}

/// A chunk list request (protocol 4) followed by its answer: the list of
/// a file of two chunks.
fn expected_chunk_list() -> Vec<u8> {
    use softadastra::core::ContentHash;
    use softadastra::transport::wire::{ChunkListRequest, encode_chunk_list};
    let mut out = ChunkListRequest {
        folder: "photos".into(),
        path: "vm/disk.img".into(),
        hash: ContentHash([0xcd; 32]),
    }
    .encode()
    .unwrap();
    out.extend(encode_chunk_list(
        [(ContentHash([2; 32]), 262_144), (ContentHash([3; 32]), 10)].into_iter(),
    ));
    out
}

#[test]
fn chunk_list_v1_golden() {
    use softadastra::core::ContentHash;
    use softadastra::transport::wire::{
        CHUNK_FOLLOWS, CHUNK_LIST_HEAD, ChunkListReader, ChunkListRequest, LIST_ENTRY,
    };
    let bytes = check("chunk-list-v1.bin", expected_chunk_list());
    assert_eq!(bytes[..2], CHUNK_LIST_HEAD);
    let len = ChunkListRequest::body_len([bytes[2], bytes[3]]).unwrap();
    let request = ChunkListRequest::decode(&bytes[4..4 + len]).unwrap();
    assert_eq!(request.path, "vm/disk.img");
    let answer = &bytes[4 + len..];
    assert_eq!(answer[0], CHUNK_FOLLOWS);
    let count = u32::from_le_bytes([answer[1], answer[2], answer[3], answer[4]]);
    let mut reader = ChunkListReader::new(count, 262_154).unwrap();
    let mut got = Vec::new();
    reader
        .push(&answer[5..5 + 2 * LIST_ENTRY], |at, h, l| {
            got.push((at, h, l))
        })
        .unwrap();
    reader.finish().unwrap();
    assert_eq!(
        got,
        vec![
            (0, ContentHash([2; 32]), 262_144),
            (262_144, ContentHash([3; 32]), 10)
        ]
    );
}

/// One of each sync protocol message, as its codec writes them, each
/// preceded by its length (u32 LE) in the golden file.
fn sync_messages() -> Vec<softadastra::sync::SyncMessage> {
    use softadastra::sync::SyncMessage;
    let record: softadastra::folder::FileRecord =
        postcard::from_bytes(&expected_file_record()).unwrap();
    vec![
        SyncMessage::Folders {
            ids: vec!["docs".into(), "photos".into()],
            reply: true,
        },
        SyncMessage::IndexRequest {
            folder: "docs".into(),
            since: 41,
        },
        SyncMessage::IndexPage {
            folder: "docs".into(),
            since: 41,
            upto: 42,
            records: vec![("notes/a.txt".into(), record)],
            more: false,
            values: vec![("user:1".into(), b"Gaspard".to_vec())],
        },
        SyncMessage::IndexHint {
            folder: "docs".into(),
            seq: 42,
        },
    ]
}

fn expected_sync_messages() -> Vec<u8> {
    let mut out = Vec::new();
    for m in sync_messages() {
        let bytes = m.encode();
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

#[test]
fn sync_messages_v1_golden() {
    use softadastra::sync::SyncMessage;
    let bytes = check("sync-messages-v1.bin", expected_sync_messages());
    let mut rest = &bytes[..];
    let mut decoded = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        decoded.push(SyncMessage::decode(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    assert_eq!(decoded, sync_messages());
}

fn expected_folder_config() -> Vec<u8> {
    let mut config = softadastra::index::FolderConfig::new("photos", "/home/ada/Photos");
    config.members.insert(NodeId([3; 32]));
    config.members.insert(NodeId([9; 32]));
    config.kind = softadastra::index::FolderType::ReceiveOnly;
    softadastra::index::folders::encode_config(&config)
}

#[test]
fn folder_config_v2_golden() {
    use softadastra::index::folders::decode_config;
    let bytes = check("folder-config-v2.bin", expected_folder_config());
    let stored = decode_config("photos", &bytes).unwrap();
    assert!(!stored.legacy);
    assert_eq!(stored.config.members.len(), 2);
    assert_eq!(
        stored.config.kind,
        softadastra::index::FolderType::ReceiveOnly
    );
    // The form releases before folder members wrote (id, path, paused)
    // still reads, with no members: the upgrade settles them.
    let legacy = postcard::to_allocvec(&("photos", "/home/ada/Photos", false)).unwrap();
    let stored = decode_config("photos", &legacy).unwrap();
    assert!(stored.legacy && stored.config.members.is_empty());
}

fn expected_guard_held() -> Vec<u8> {
    let held = softadastra::index::guard::Held {
        paths: 251,
        of_files: 300,
        since: softadastra::core::Timestamp(1_764_700_000_000_000_000),
    };
    postcard::to_allocvec(&held).unwrap()
}

#[test]
fn guard_held_v1_golden() {
    let bytes = check("guard-held-v1.bin", expected_guard_held());
    let held: softadastra::index::guard::Held = postcard::from_bytes(&bytes).unwrap();
    assert_eq!((held.paths, held.of_files), (251, 300));
}

fn expected_history_kept(stored: softadastra::index::history::Stored) -> Vec<u8> {
    expected_history_kept_for(stored, softadastra::index::history::Why::Replaced)
}

fn expected_history_kept_for(
    stored: softadastra::index::history::Stored,
    why: softadastra::index::history::Why,
) -> Vec<u8> {
    use softadastra::index::history::{HISTORY_NS, Kept, keep_op};
    use softadastra::store::{Op, Store, StoreConfig};
    let record: softadastra::folder::FileRecord =
        postcard::from_bytes(&expected_file_record()).unwrap();
    let kept = Kept {
        record,
        kept_at: softadastra::core::Timestamp(1_764_700_000_000_000_000),
        why,
        stored,
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
    match keep_op(&store, "docs", "report.txt", &kept) {
        Op::Put { ns, value, .. } if ns == HISTORY_NS => value,
        other => panic!("not a history entry: {other:?}"),
    }
}

#[test]
fn history_kept_v1_golden() {
    use softadastra::index::history::{Stored, Why, decode};
    let trash = Stored::File(".softadastra/trash/1764700000/report.txt".into());
    let bytes = check("history-kept-v1.bin", expected_history_kept(trash.clone()));
    let kept = decode("docs/report.txt", &bytes).unwrap();
    assert_eq!(kept.record.size, 70_000);
    assert_eq!(kept.why, Why::Replaced);
    assert_eq!(kept.stored, trash);
    // Kept in the version store (same format, later variants).
    let blob = check(
        "history-kept-blob-v1.bin",
        expected_history_kept(Stored::Blob),
    );
    assert_eq!(decode("k", &blob).unwrap().stored, Stored::Blob);
    let chunks = Stored::Chunks {
        bases: vec![softadastra::core::ContentHash::of(b"base")],
    };
    let bytes = check(
        "history-kept-chunks-v1.bin",
        expected_history_kept(chunks.clone()),
    );
    assert_eq!(decode("k", &bytes).unwrap().stored, chunks);
    // A version an edit here replaced, its bytes still to be gathered.
    let bytes = check(
        "history-kept-wanted-v1.bin",
        expected_history_kept_for(Stored::Wanted, Why::EditedHere),
    );
    let wanted = decode("k", &bytes).unwrap();
    assert_eq!(
        (wanted.stored, wanted.why),
        (Stored::Wanted, Why::EditedHere)
    );
}

#[test]
fn local_versions_switch_v1_golden() {
    use softadastra::index::retention::{self, LOCAL_EDITS_NS};
    use softadastra::store::{Store, StoreConfig};
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
    retention::set_keeps_local_edits(&mut store, "docs", false).unwrap();
    let value = store
        .get(LOCAL_EDITS_NS, "docs")
        .and_then(|e| e.value.clone())
        .unwrap();
    let bytes = check("local-versions-off-v1.bin", value);
    store.put(LOCAL_EDITS_NS, "docs", bytes).unwrap();
    assert!(!retention::keeps_local_edits(&store, "docs"));
}

#[test]
fn retention_policy_v1_golden() {
    use softadastra::index::retention::{self, Policy, RETENTION_NS};
    use softadastra::store::{Store, StoreConfig};
    let policy = Policy::parse("staggered", Some("10GB")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open_dir(StoreConfig::new(dir.path())).unwrap();
    retention::set(&mut store, "docs", &policy).unwrap();
    let value = store
        .get(RETENTION_NS, "docs")
        .and_then(|e| e.value.clone())
        .unwrap();
    let bytes = check("retention-policy-v1.bin", value);
    store.put(RETENTION_NS, "docs", bytes).unwrap();
    assert_eq!(retention::get(&store, "docs").unwrap(), Some(policy));
}

#[test]
fn restore_job_v1_golden() {
    use softadastra::runtime::history::Job;
    let job = Job {
        at: 1_764_700_000_000_000_000,
    };
    let bytes = check("restore-job-v1.bin", job.encode());
    assert_eq!(Job::decode("docs", &bytes).unwrap(), job);
    assert!(Job::decode("docs", &[7, 1]).is_err());
}

/// The node's setup kept aside at a checkpoint (`store::aside`, format 1).
fn expected_aside() -> Vec<u8> {
    let rows = vec![
        (
            "folders".to_string(),
            "docs".to_string(),
            Entry {
                value: Some(b"folder docs".to_vec()),
                version: Seq(3),
                timestamp: Timestamp(1_700_000_000_000_000_000),
                origin: NodeId::LOCAL,
            },
        ),
        (
            "peers".to_string(),
            "PEER".to_string(),
            Entry {
                value: None,
                version: Seq(5),
                timestamp: Timestamp(1_700_000_000_000_000_001),
                origin: NodeId::LOCAL,
            },
        ),
    ];
    softadastra::store::aside::encode(Seq(5), &rows).unwrap()
}

#[test]
fn aside_v1_golden() {
    let bytes = check("aside-v1.bin", expected_aside());
    assert_eq!(&bytes[..8], softadastra::store::aside::MAGIC);
    let a = softadastra::store::aside::decode(&bytes).unwrap();
    assert_eq!(a.seq, Seq(5));
    assert_eq!(a.rows.len(), 2);
    assert_eq!(a.rows[0].0, "folders");
    assert_eq!(a.rows[1].2.value, None);
}
