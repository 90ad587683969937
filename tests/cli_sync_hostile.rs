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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::node::{Node, sharing as node};
use common::{run, wait};
use softadastra::core::{ContentHash, NodeId};
use softadastra::folder::{self, FileRecord};
use softadastra::store::{Store, StoreConfig};
use softadastra::sync::SyncMessage;
use softadastra::transport::identity::Identity;
use softadastra::transport::quic::{BulkStream, Endpoint, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::wire::{CHUNK_FOLLOWS, ChunkRequest, Hello};

/// The index entry the (stopped) node in `home` has for `docs/<rel>`.
fn record_of(home: &Path, rel: &str) -> FileRecord {
    let (store, _) = Store::open_dir(StoreConfig::new(home.join("store"))).unwrap();
    folder::records(&store, "docs")
        .flatten()
        .find(|(p, _)| *p == rel)
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| panic!("{rel} is not indexed"))
}

/// Answer one chunk request with bytes of the right length and the wrong
/// content for every chunk asked for.
async fn serve_garbage(mut stream: BulkStream, served: Arc<AtomicU64>) {
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
    for (_, len) in request.chunks {
        let _ = stream.write_all(&[CHUNK_FOLLOWS]).await;
        let _ = stream.write_all(&vec![0x5a; len as usize]).await;
        served.fetch_add(1, Ordering::SeqCst);
    }
    let _ = stream.finish();
}

/// Mallory: connect to the victim and lie to it until the test ends.
fn mallory(
    home: &Path,
    victim: (NodeId, u16),
    port: u16,
    big: FileRecord,
    small: Vec<(String, FileRecord)>,
    served: Arc<AtomicU64>,
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
            let (handle, served) = (handle.clone(), served.clone());
            tokio::spawn(async move {
                while let Ok(stream) = handle.accept_bulk().await {
                    tokio::spawn(serve_garbage(stream, served.clone()));
                }
            });
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(peer.serve(move |bytes| drop(tx.send(bytes))));
        let mut hostile: Vec<(String, FileRecord)> = [
            "../escaped.txt",
            "a/../../climbed.txt",
            "/tmp/softadastra-absolute-evil.txt",
            "C:/Windows/evil.txt",
        ]
        .iter()
        .map(|p| (p.to_string(), big.clone()))
        .collect();
        hostile.push(("big.bin".into(), big.clone()));
        hostile.extend(small);
        while let Some(bytes) = rx.recv().await {
            if let Ok(SyncMessage::IndexRequest { folder, since }) =
                postcard::from_bytes::<SyncMessage>(&bytes)
            {
                let records = if since < 10 { hostile.clone() } else { vec![] };
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

#[test]
fn hostile_paths_are_refused_and_garbage_chunks_are_refetched_from_a_good_peer() {
    let mut rng = fastrand::Rng::with_seed(7);
    let big: Vec<u8> = (0..3 << 20).map(|_| rng.u8(..)).collect();
    let small: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            let len = 1000 + 700 * i;
            (
                format!("small-{i}.txt"),
                (0..len).map(|_| rng.u8(..)).collect(),
            )
        })
        .collect();
    let mut files: Vec<(&str, &[u8])> = vec![("big.bin", &big)];
    files.extend(small.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let (mut good, good_dir) = node("good", &files);
    let (mut victim, victim_dir) = node("victim", &[]);
    let evil = Node::new("mallory");
    let evil_port = common::node::free_port();
    let record = record_of(good.home.path(), "big.bin");
    // Mallory offers the good peer's small files too, and one small file
    // nobody has the bytes of.
    let mut small_records: Vec<(String, FileRecord)> = small
        .iter()
        .map(|(p, _)| (p.clone(), record_of(good.home.path(), p)))
        .collect();
    let mut phantom = small_records[0].1.clone();
    let nobody = ContentHash::of(b"bytes no peer has");
    phantom.hash = Some(nobody);
    phantom.chunks[0].hash = nobody;
    small_records.push(("only-mallory.txt".into(), phantom));
    let big_chunks = record.chunks.len();
    assert!(
        record.chunks.len() > 4,
        "several chunks to spread over peers"
    );
    good.trust(&victim);
    victim.trust(&good);
    assert!(
        run(
            victim.home.path(),
            &[
                "peer",
                "add",
                &evil.id,
                "--addr",
                &format!("127.0.0.1:{evil_port}")
            ],
        )
        .status
        .success()
    );

    // Mallory alone first: the only source of big.bin serves garbage.
    victim.start();
    let served = Arc::new(AtomicU64::new(0));
    let victim_id: NodeId = victim.id.parse().unwrap();
    let _mallory = mallory(
        evil.home.path(),
        (victim_id, victim.port),
        evil_port,
        record,
        small_records,
        served.clone(),
    );
    // Every chunk of big.bin and of the six small files asked of Mallory.
    let asked = (big_chunks + small.len() + 1) as u64;
    wait("garbage served", Duration::from_secs(30), || {
        served.load(Ordering::SeqCst) >= asked
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
    let before = served.load(Ordering::SeqCst);
    good.start();
    wait("big.bin synced", Duration::from_secs(60), || {
        std::fs::read(victim_dir.join("big.bin")).is_ok_and(|b| b == big)
    });
    for (p, bytes) in &small {
        wait("small files synced", Duration::from_secs(30), || {
            std::fs::read(victim_dir.join(p)).is_ok_and(|b| b == *bytes)
        });
    }
    assert!(
        served.load(Ordering::SeqCst) > before,
        "the victim asked Mallory again once there were two sources"
    );

    // Nothing escaped the folder.
    let home = victim.home.path();
    for p in [
        home.join("escaped.txt"),
        home.join("climbed.txt"),
        PathBuf::from("/tmp/softadastra-absolute-evil.txt"),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    let mut names: Vec<String> = std::fs::read_dir(&victim_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".softadastra")
        .collect();
    names.sort();
    let mut expected = vec!["big.bin".to_string()];
    expected.extend(small.iter().map(|(p, _)| p.clone()));
    assert_eq!(
        names, expected,
        "no temporary, hostile or phantom file is left"
    );

    // And syncing with the good peer goes on.
    std::fs::write(good_dir.join("after.txt"), b"still syncing").unwrap();
    wait("a later edit synced", Duration::from_secs(30), || {
        std::fs::read(victim_dir.join("after.txt")).is_ok_and(|b| b == b"still syncing")
    });
    victim.signal("-TERM");
    good.signal("-TERM");
}
