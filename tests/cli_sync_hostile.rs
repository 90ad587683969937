//! A hostile peer against a real `softadastra run` node, end to end.
//!
//! Mallory is an in-process harness that the victim trusts: it completes
//! TLS, says hello and speaks the sync protocol, but it announces paths
//! that climb out of the folder (`../`, absolute, drive paths) and answers
//! every chunk request with garbage of the right length. A good node shares
//! the same folder and has the real file. The victim must refuse the
//! hostile paths (nothing written outside the folder), discard every
//! garbage chunk (its hash does not match), fetch those chunks again from
//! the good peer — it asks both, chunk by chunk — and keep syncing with
//! the good peer throughout. Small files go the same way in batches: a
//! file only Mallory offers never lands (its chunks are garbage) while the
//! small files of the same batch that the good peer has do.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::node::{Node, sharing as node};
use common::{json, open_store, run, stdout, wait};
use softadastra::core::{ContentHash, NodeId};
use softadastra::folder::{self, FileRecord};
use softadastra::sync::SyncMessage;
use softadastra::transport::identity::Identity;
use softadastra::transport::quic::{BulkStream, Endpoint, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::wire::{CHUNK_FOLLOWS, CHUNK_MISSING, ChunkRequest, Hello};

/// The index entry the (stopped) node in `home` has for `docs/<rel>`.
fn record_of(home: &Path, rel: &str) -> FileRecord {
    let store = open_store(home);
    folder::records(&store, "docs")
        .flatten()
        .find(|(p, _)| *p == rel)
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| panic!("{rel} is not indexed"))
}

/// How Mallory answers a chunk request.
#[derive(Clone)]
enum Serve {
    /// Bytes of the right length and the wrong content for every chunk.
    Garbage,
    /// Nothing, ever: the stream is held open unanswered.
    Stall,
    /// The real bytes (found by hash), slowly, one request at a time: a
    /// request waits, receiving nothing, while another is sent.
    Trickle(Arc<Chunks>),
    /// The real bytes, at once, of the chunks that end within the first
    /// `upto` bytes of the file; the others only once `open` is set
    /// (until then their requests get nothing).
    Upto {
        chunks: Arc<Chunks>,
        upto: u64,
        open: Arc<AtomicBool>,
    },
}

/// A file's chunks by hash: where each starts, and its bytes.
type Chunks = HashMap<ContentHash, (u64, Vec<u8>)>;

/// The chunks of `file`, whose index entry is `record`.
fn chunks_of(record: &FileRecord, file: &[u8]) -> Chunks {
    record
        .chunks
        .iter()
        .map(|c| {
            let at = c.offset as usize;
            (c.hash, (c.offset, file[at..at + c.len as usize].to_vec()))
        })
        .collect()
}

/// Answer one chunk request as `how` says; `asked` counts the chunks asked
/// for.
async fn serve(
    mut stream: BulkStream,
    how: Serve,
    asked: Arc<AtomicU64>,
    turn: Arc<tokio::sync::Mutex<()>>,
) {
    let mut head = [0u8; 2];
    if stream.read_exact(&mut head).await.is_err() {
        return;
    }
    let Ok(len) = ChunkRequest::body_len(head) else {
        return;
    };
    let mut body = vec![0u8; len];
    if stream.read_exact(&mut body).await.is_err() {
        return;
    }
    let Ok(request) = ChunkRequest::decode(head, &body) else {
        return;
    };
    asked.fetch_add(request.chunks.len() as u64, Ordering::SeqCst);
    match how {
        Serve::Garbage => {
            for (_, len) in request.chunks {
                let _ = stream.write_all(&[CHUNK_FOLLOWS]).await;
                let _ = stream.write_all(&vec![0x5a; len as usize]).await;
            }
        }
        Serve::Stall => std::future::pending::<()>().await,
        Serve::Trickle(bytes) => {
            let _turn = turn.lock().await;
            for (hash, _) in request.chunks {
                let Some((_, b)) = bytes.get(&hash) else {
                    let _ = stream.write_all(&[CHUNK_MISSING]).await;
                    continue;
                };
                let _ = stream.write_all(&[CHUNK_FOLLOWS]).await;
                // ~160 KB/s: a 1 MiB request takes ~6.5 s.
                for piece in b.chunks(16 << 10) {
                    if stream.write_all(piece).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Serve::Upto { chunks, upto, open } => {
            for (hash, len) in request.chunks {
                let Some((at, b)) = chunks.get(&hash) else {
                    let _ = stream.write_all(&[CHUNK_MISSING]).await;
                    continue;
                };
                while at + u64::from(len) > upto && !open.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = stream.write_all(&[CHUNK_FOLLOWS]).await;
                if stream.write_all(b).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.finish();
}

/// Mallory: connect to the victim, offer it `offered` in folder `docs`
/// and answer its chunk requests as `how` says, until the test ends.
fn mallory(
    home: &Path,
    victim: (NodeId, u16),
    port: u16,
    offered: Vec<(String, FileRecord)>,
    how: Serve,
    asked: Arc<AtomicU64>,
) -> tokio::runtime::Runtime {
    let identity = Identity::load(home).unwrap().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(async move {
        let endpoint = Endpoint::bind(
            SocketAddr::from(([127, 0, 0, 1], port)),
            identity.clone(),
            TrustedIds::new([victim.0]),
            Hello {
                protocol: 0,
                node: identity.node_id(),
                name: "mallory".into(),
                hostname: "localhost".into(),
                os: std::env::consts::OS.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                meta: Vec::new(),
            },
            QuicConfig::default(),
        )
        .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], victim.1));
        let peer = loop {
            match endpoint.connect(addr, victim.0).await {
                Ok(p) => break p,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let handle = peer.handle();
        let send = |m: &SyncMessage| handle.send(postcard::to_allocvec(m).unwrap());
        send(&SyncMessage::Folders {
            ids: vec!["docs".into()],
            reply: true,
        });
        {
            let handle = handle.clone();
            let turn = Arc::new(tokio::sync::Mutex::new(()));
            tokio::spawn(async move {
                while let Ok(stream) = handle.accept_bulk().await {
                    tokio::spawn(serve(stream, how.clone(), asked.clone(), turn.clone()));
                }
            });
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(peer.serve(move |bytes| drop(tx.send(bytes))));
        while let Some(bytes) = rx.recv().await {
            if let Ok(SyncMessage::IndexRequest { folder, since }) =
                postcard::from_bytes::<SyncMessage>(&bytes)
            {
                let records = if since < 10 { offered.clone() } else { vec![] };
                send(&SyncMessage::IndexPage {
                    folder,
                    since,
                    upto: 10,
                    records,
                    more: false,
                    values: vec![],
                });
            }
        }
    });
    rt
}

/// Mallory's identity (a node that never runs) and the port it will use.
struct Evil {
    node: Node,
    port: u16,
}

/// Start `victim`, and Mallory against it; the count of chunks asked of
/// Mallory.
fn start_against_mallory(
    victim: &mut Node,
    evil: &Evil,
    offered: Vec<(String, FileRecord)>,
    how: Serve,
) -> (tokio::runtime::Runtime, Arc<AtomicU64>) {
    victim.start();
    let asked = Arc::new(AtomicU64::new(0));
    let victim_id: NodeId = victim.id.parse().unwrap();
    let rt = mallory(
        evil.node.home.path(),
        (victim_id, victim.port),
        evil.port,
        offered,
        how,
        asked.clone(),
    );
    (rt, asked)
}

/// Mallory, and a victim that trusts it and gives a silent peer up after
/// `stall_secs`.
fn victim_and_mallory(stall_secs: Option<f64>) -> (Node, PathBuf, Evil) {
    let evil = Evil {
        node: Node::new("mallory"),
        port: common::node::free_port(),
    };
    let (victim, dir) = node("victim", &[]);
    if let Some(secs) = stall_secs {
        std::fs::write(
            victim.home.path().join("config.toml"),
            format!("[sync]\nstall_secs = {secs}\n"),
        )
        .unwrap();
    }
    let addr = format!("127.0.0.1:{}", evil.port);
    let out = run(
        victim.home.path(),
        &["peer", "add", &evil.node.id, "--addr", &addr],
    );
    assert!(out.status.success());
    // Mallory is a member of docs: what it sends there is weighed, not
    // refused unread (a non-member is tested in cli_membership.rs).
    let out = run(
        victim.home.path(),
        &["folder", "share", "docs", &evil.node.id],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    (victim, dir, evil)
}

/// The names in `dir` but the node's own `.softadastra`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".softadastra")
        .collect();
    names.sort();
    names
}

/// A 3 MiB file and five small ones, the same for a given seed.
fn dataset(seed: u64) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let big: Vec<u8> = (0..3 << 20).map(|_| rng.u8(..)).collect();
    let small = (0..5)
        .map(|i| {
            let len = 1000 + 700 * i;
            (
                format!("small-{i}.txt"),
                (0..len).map(|_| rng.u8(..)).collect(),
            )
        })
        .collect();
    (big, small)
}

/// A good node sharing `big.bin` and the small files, and its folder.
fn good_node(big: &[u8], small: &[(String, Vec<u8>)]) -> (Node, PathBuf) {
    let mut files: Vec<(&str, &[u8])> = vec![("big.bin", big)];
    files.extend(small.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    node("good", &files)
}

/// Wait until `dir` holds `big.bin` and the small files, then check that
/// nothing else is there (no temporary, hostile or phantom file).
fn wait_for_dataset(dir: &Path, big: &[u8], small: &[(String, Vec<u8>)]) {
    wait("big.bin synced", Duration::from_secs(60), || {
        std::fs::read(dir.join("big.bin")).is_ok_and(|b| b == big)
    });
    for (p, bytes) in small {
        wait("small files synced", Duration::from_secs(30), || {
            std::fs::read(dir.join(p)).is_ok_and(|b| b == *bytes)
        });
    }
    let mut expected = vec!["big.bin".to_string()];
    expected.extend(small.iter().map(|(p, _)| p.clone()));
    assert_eq!(names_in(dir), expected, "only the synced files are there");
}

/// A later edit on the good node reaches the victim: syncing goes on.
fn still_syncing(good_dir: &Path, victim_dir: &Path) {
    std::fs::write(good_dir.join("after.txt"), b"still syncing").unwrap();
    wait("a later edit synced", Duration::from_secs(30), || {
        std::fs::read(victim_dir.join("after.txt")).is_ok_and(|b| b == b"still syncing")
    });
}

#[test]
fn hostile_paths_are_refused_and_garbage_chunks_are_refetched_from_a_good_peer() {
    let (big, small) = dataset(7);
    let (mut good, good_dir) = good_node(&big, &small);
    let (mut victim, victim_dir, evil) = victim_and_mallory(None);
    let record = record_of(good.home.path(), "big.bin");
    let big_chunks = record.chunks.len();
    assert!(big_chunks > 4, "several chunks to spread over peers");
    // Mallory offers paths that climb out of the folder, big.bin, the good
    // peer's small files, and one small file nobody has the bytes of.
    let mut offered: Vec<(String, FileRecord)> = [
        "../escaped.txt",
        "a/../../climbed.txt",
        "/tmp/softadastra-absolute-evil.txt",
        "C:/Windows/evil.txt",
        // The agent's own files: its trash, a temporary file.
        ".softadastra/trash/1/planted.txt",
        "d/.softadastra-tmp-00000000-planted.txt",
        "big.bin",
    ]
    .iter()
    .map(|p| (p.to_string(), record.clone()))
    .collect();
    offered.extend(
        small
            .iter()
            .map(|(p, _)| (p.clone(), record_of(good.home.path(), p))),
    );
    let mut phantom = record_of(good.home.path(), &small[0].0);
    let nobody = ContentHash::of(b"bytes no peer has");
    phantom.hash = Some(nobody);
    phantom.chunks[0].hash = nobody;
    offered.push(("only-mallory.txt".into(), phantom));
    good.trust(&victim);
    victim.trust(&good);

    // Mallory alone first: the only source of big.bin serves garbage.
    let (_mallory, asked) = start_against_mallory(&mut victim, &evil, offered, Serve::Garbage);
    // Every chunk of big.bin and of the six small files asked of Mallory.
    let all = (big_chunks + small.len() + 1) as u64;
    wait("garbage served", Duration::from_secs(30), || {
        asked.load(Ordering::SeqCst) >= all
    });
    for (p, _) in &small {
        assert!(
            !victim_dir.join(p).exists(),
            "a file assembled from garbage reached its path"
        );
    }
    assert!(
        !victim_dir.join("big.bin").exists(),
        "a file assembled from garbage reached its path"
    );

    // The good peer arrives: the victim asks both, chunk by chunk; what
    // Mallory sends is discarded and fetched again from the good peer.
    let before = asked.load(Ordering::SeqCst);
    good.start();
    wait_for_dataset(&victim_dir, &big, &small);
    assert!(
        asked.load(Ordering::SeqCst) > before,
        "the victim asked Mallory again once there were two sources"
    );

    // Nothing escaped the folder.
    let home = victim.home.path();
    for p in [
        home.join("escaped.txt"),
        home.join("climbed.txt"),
        PathBuf::from("/tmp/softadastra-absolute-evil.txt"),
        victim_dir.join(".softadastra/trash/1/planted.txt"),
        victim_dir.join("d/.softadastra-tmp-00000000-planted.txt"),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }

    // And syncing with the good peer goes on.
    still_syncing(&good_dir, &victim_dir);
    victim.signal("-TERM");
    good.signal("-TERM");
}

/// A peer that takes chunk requests and never answers them holds nothing
/// up for longer than the stall time: what was asked of it is asked of
/// the good peer, large and small files alike.
#[test]
fn a_peer_that_stops_answering_is_given_up_and_the_files_come_from_a_good_peer() {
    let (big, small) = dataset(8);
    let (mut good, good_dir) = good_node(&big, &small);
    let (mut victim, victim_dir, evil) = victim_and_mallory(Some(1.0));
    let mut offered = vec![(
        "big.bin".to_string(),
        record_of(good.home.path(), "big.bin"),
    )];
    offered.extend(
        small
            .iter()
            .map(|(p, _)| (p.clone(), record_of(good.home.path(), p))),
    );
    let chunks: usize = offered.iter().map(|(_, r)| r.chunks.len()).sum();
    good.trust(&victim);
    victim.trust(&good);

    // Mallory alone: every chunk is asked of it, and never comes.
    let (_mallory, asked) = start_against_mallory(&mut victim, &evil, offered, Serve::Stall);
    wait(
        "every chunk asked of Mallory",
        Duration::from_secs(30),
        || asked.load(Ordering::SeqCst) >= chunks as u64,
    );
    // `sync status` says what fails, and why.
    let stalled = format!("{} sent nothing for 1s", evil.node.id);
    wait("the stall in sync status", Duration::from_secs(30), || {
        let shown = stdout(&run(victim.home.path(), &["sync", "status"]));
        shown.contains("failing, retried with backoff") && shown.contains(&stalled)
    });

    // The good peer arrives. Mallory is still a source, and still asked
    // (files start at different sources): each request to it is given up
    // after a second of silence and asked of the good peer instead.
    let before = asked.load(Ordering::SeqCst);
    good.start();
    wait_for_dataset(&victim_dir, &big, &small);
    assert!(
        asked.load(Ordering::SeqCst) > before,
        "the victim asked the stalling peer again once there were two sources"
    );
    still_syncing(&good_dir, &victim_dir);
    victim.signal("-TERM");
    good.signal("-TERM");
}

/// Only silence counts as a stall: a peer that sends slowly, one request
/// at a time — so a request waits seconds with nothing on its own stream
/// — is waited for: with a stall time of 3 s, each 1 MiB request takes
/// ~6.5 s and the last one waits ~13 s before its first byte. No request
/// is given up: each chunk is asked for once.
#[test]
fn a_slow_peer_is_waited_for_while_it_sends() {
    let (big, small) = dataset(9);
    // Only to index the file: the good node never runs.
    let (good, _) = good_node(&big, &small);
    let record = record_of(good.home.path(), "big.bin");
    let bytes = chunks_of(&record, &big);
    let chunks = record.chunks.len() as u64;
    let (mut victim, victim_dir, evil) = victim_and_mallory(Some(3.0));
    let (_mallory, asked) = start_against_mallory(
        &mut victim,
        &evil,
        vec![("big.bin".to_string(), record)],
        Serve::Trickle(Arc::new(bytes)),
    );
    let took = wait("big.bin synced", Duration::from_secs(60), || {
        std::fs::read(victim_dir.join("big.bin")).is_ok_and(|b| b == big)
    });
    eprintln!("3 MiB from a slow peer in {took:?}");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        chunks,
        "a request to a peer that was sending was given up and asked again"
    );
    assert_eq!(names_in(&victim_dir), vec!["big.bin".to_string()]);
    victim.signal("-TERM");
}

/// A large file whose transfer broke part-way goes on from where it broke:
/// the chunks already written to its temporary file are checked and kept,
/// and only the rest is fetched.
#[test]
fn a_large_transfer_cut_part_way_resumes_where_it_stopped() {
    let (big, small) = dataset(10);
    let (good, _) = good_node(&big, &small);
    let record = record_of(good.home.path(), "big.bin");
    let size = record.size;
    let (mut victim, victim_dir, evil) = victim_and_mallory(Some(1.0));
    let open = Arc::new(AtomicBool::new(false));
    let (_mallory, _) = start_against_mallory(
        &mut victim,
        &evil,
        vec![("big.bin".to_string(), record.clone())],
        Serve::Upto {
            chunks: Arc::new(chunks_of(&record, &big)),
            upto: size / 2,
            open: open.clone(),
        },
    );
    let fetched = || {
        json(&run(victim.home.path(), &["status", "--json"]))["sync_bytes_fetched"]
            .as_u64()
            .unwrap_or(0)
    };
    // The first half comes, the rest does not: the transfer is given up
    // after a second of silence (and again at each retry).
    let stalled = format!("{} sent nothing for 1s", evil.node.id);
    wait("the transfer given up", Duration::from_secs(30), || {
        fetched() > 0 && stdout(&run(victim.home.path(), &["sync", "status"])).contains(&stalled)
    });
    assert!(!victim_dir.join("big.bin").exists());
    let before = fetched();
    open.store(true, Ordering::SeqCst);
    wait("big.bin synced", Duration::from_secs(60), || {
        std::fs::read(victim_dir.join("big.bin")).is_ok_and(|b| b == big)
    });
    let after = fetched() - before;
    eprintln!("{size}-byte file: {before} bytes before the cut, {after} after");
    assert!(
        after < size,
        "the whole file was fetched again ({after} of {size} bytes)"
    );
    assert_eq!(names_in(&victim_dir), vec!["big.bin".to_string()]);
    victim.signal("-TERM");
}
