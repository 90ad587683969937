//! Folder membership end to end: a folder syncs only with the devices it
//! is shared with; a trusted device that is not a member gets nothing of
//! it (not its list, index, or chunks by hash, even while it is a member
//! of another folder) and plants nothing in it; unsharing stops a device
//! at once and leaves nothing half-written; an offer is accepted into a
//! path; a home from the release before membership keeps syncing with
//! the devices it trusted.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::node::{Node, free_port, sharing};
use common::{json, open_store, run, stderr, wait};
use softadastra::core::{ContentHash, NodeId, VersionVector};
use softadastra::folder::{self, FileRecord};
use softadastra::sync::SyncMessage;
use softadastra::transport::identity::Identity;
use softadastra::transport::quic::{Endpoint, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::wire::{
    CHUNK_FOLLOWS, CHUNK_MISSING, ChunkListRequest, ChunkRequest, Hello,
};

fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stderr(&out)
}

fn trust(a: &Node, b: &Node) {
    ok(
        a.home.path(),
        &[
            "peer",
            "add",
            &b.id,
            "--addr",
            &format!("127.0.0.1:{}", b.port),
        ],
    );
}

fn status(n: &Node) -> serde_json::Value {
    json(&run(n.home.path(), &["status", "--json"]))
}

/// Pseudo-random bytes (incompressible, deterministic).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

#[test]
fn a_folder_syncs_only_with_its_members_and_unsharing_stops_a_device_at_once() {
    let (mut alpha, a_dir) = sharing("alpha", &[("secret.txt", b"for beta only")]);
    let (mut beta, b_dir) = sharing("beta", &[]);
    let (mut carol, c_dir) = sharing("carol", &[]);
    // Alpha trusts both, shares docs with beta only, by name.
    trust(&alpha, &beta);
    trust(&alpha, &carol);
    ok(
        alpha.home.path(),
        &["peer", "add", &beta.id, "--name", "Beta-Laptop"],
    );
    let said = ok(
        alpha.home.path(),
        &["folder", "share", "docs", "beta-laptop"],
    );
    assert!(said.contains("sharing \"docs\""), "{said}");
    let again = json(&run(
        alpha.home.path(),
        &["folder", "share", "docs", "beta-laptop", "--json"],
    ));
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["device"], beta.id.as_str());
    // Both others trust alpha and share their docs with it.
    beta.trust(&alpha);
    carol.trust(&alpha);
    // Bad input: a device nobody trusts, a folder that is not there.
    let o = run(alpha.home.path(), &["folder", "share", "docs", "nobody"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no trusted device is called \"nobody\""),
        "{}",
        stderr(&o)
    );
    let o = run(alpha.home.path(), &["folder", "share", "nope", &beta.id]);
    assert!(
        stderr(&o).contains("no folder with id \"nope\""),
        "{}",
        stderr(&o)
    );

    let list = json(&run(alpha.home.path(), &["folder", "list", "--json"]));
    let members = &list[0]["members"];
    assert_eq!(members.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(members[0]["name"], "Beta-Laptop");
    assert_eq!(list[0]["type"], "send-receive");

    alpha.start();
    beta.start();
    carol.start();
    alpha.connected_to(&beta);
    alpha.connected_to(&carol);
    wait("beta gets the file", Duration::from_secs(20), || {
        std::fs::read(b_dir.join("secret.txt")).is_ok_and(|b| b == b"for beta only")
    });
    // Carol is trusted and connected, and has a folder docs too: it gets
    // nothing, and alpha takes nothing from it.
    std::fs::write(c_dir.join("planted.txt"), b"from carol").unwrap();
    std::fs::write(a_dir.join("later.txt"), b"still for beta").unwrap();
    wait("beta gets the later file", Duration::from_secs(20), || {
        b_dir.join("later.txt").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!c_dir.join("secret.txt").exists() && !c_dir.join("later.txt").exists());
    assert!(!a_dir.join("planted.txt").exists() && !b_dir.join("planted.txt").exists());
    let st = status(&alpha);
    assert_eq!(st["folders"][0]["members"].as_array().unwrap().len(), 1);
    assert_eq!(
        st["offers"],
        serde_json::json!([]),
        "carol's docs is no offer"
    );

    // A big file starts towards beta; alpha stops sharing with beta while
    // it may still be in flight.
    let big = bytes(48 << 20, 7);
    // Written aside and renamed in: alpha indexes only the whole file (a
    // slow write could be indexed part-way, a complete earlier version).
    let aside = alpha.home.path().join("big.tmp");
    std::fs::write(&aside, &big).unwrap();
    std::fs::rename(&aside, a_dir.join("big.bin")).unwrap();
    wait("beta starts on big.bin", Duration::from_secs(20), || {
        status(&beta)["folders"][0]["progress"]["needed_files"].as_u64() > Some(0)
            || b_dir.join("big.bin").exists()
    });
    let said = ok(alpha.home.path(), &["folder", "unshare", "docs", &beta.id]);
    assert!(said.contains("stopped sharing \"docs\""), "{said}");
    std::fs::write(a_dir.join("after.txt"), b"not for beta").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !b_dir.join("after.txt").exists(),
        "beta is no longer a member"
    );
    // Nothing half-written at a real path: big.bin is whole or absent.
    if let Ok(got) = std::fs::read(b_dir.join("big.bin")) {
        assert!(got == big, "a partial big.bin at its real path");
    }
    // Beta's docs is still its own; the connection came back for the rest.
    alpha.connected_to(&beta);
    let list = json(&run(alpha.home.path(), &["folder", "list", "--json"]));
    assert_eq!(list[0]["members"], serde_json::json!([]));
}

/// A trusted device, member of `pub` only, speaking the protocol itself.
struct Outsider {
    rt: tokio::runtime::Runtime,
    handle: softadastra::transport::quic::PeerHandle,
    inbox: std::sync::Arc<std::sync::Mutex<Vec<SyncMessage>>>,
}

impl Outsider {
    fn connect(home: &Path, victim: NodeId, victim_port: u16) -> Outsider {
        let identity = Identity::load(home).unwrap().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let inbox = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = inbox.clone();
        let handle = rt.block_on(async move {
            let endpoint = Endpoint::bind(
                SocketAddr::from(([127, 0, 0, 1], free_port())),
                identity.clone(),
                TrustedIds::new([victim]),
                Hello {
                    protocol: 0,
                    node: identity.node_id(),
                    name: "outsider".into(),
                    hostname: "localhost".into(),
                    os: std::env::consts::OS.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    meta: Vec::new(),
                },
                QuicConfig::default(),
            )
            .unwrap();
            let addr = SocketAddr::from(([127, 0, 0, 1], victim_port));
            let peer = loop {
                match endpoint.connect(addr, victim).await {
                    Ok(p) => break p,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            let handle = peer.handle();
            tokio::spawn(async move {
                let _keep = endpoint;
                peer.serve(move |bytes| {
                    if let Ok(m) = postcard::from_bytes::<SyncMessage>(&bytes) {
                        sink.lock().unwrap().push(m);
                    }
                })
                .await
            });
            handle
        });
        Outsider { rt, handle, inbox }
    }

    fn send(&self, m: &SyncMessage) {
        self.handle.send(postcard::to_allocvec(m).unwrap());
    }

    /// Ask for `chunks` on a bulk stream: `Some(bytes)` per chunk served,
    /// `None` per chunk refused; an empty list if the stream was closed.
    fn chunks(&self, chunks: Vec<(ContentHash, u32)>) -> Vec<Option<Vec<u8>>> {
        let handle = self.handle.clone();
        self.rt.block_on(async move {
            let mut s = handle.open_bulk().await.unwrap();
            let wanted: Vec<u32> = chunks.iter().map(|c| c.1).collect();
            s.write_all(&ChunkRequest { chunks }.encode().unwrap())
                .await
                .unwrap();
            let mut out = Vec::new();
            for len in wanted {
                let mut mark = [0u8; 1];
                if s.read_exact(&mut mark).await.is_err() {
                    break;
                }
                match mark[0] {
                    CHUNK_FOLLOWS => {
                        let mut buf = vec![0u8; len as usize];
                        s.read_exact(&mut buf).await.unwrap();
                        out.push(Some(buf));
                    }
                    CHUNK_MISSING => out.push(None),
                    other => panic!("unexpected chunk mark {other}"),
                }
            }
            out
        })
    }

    /// Ask for the chunk list of `path` in `folder` as content `hash`:
    /// how many chunks it lists, or `None` if it was answered "missing".
    fn chunk_list_len(&self, folder: &str, path: &str, hash: ContentHash) -> Option<u32> {
        let handle = self.handle.clone();
        let request = ChunkListRequest {
            folder: folder.into(),
            path: path.into(),
            hash,
        }
        .encode()
        .unwrap();
        self.rt.block_on(async move {
            let mut s = handle.open_bulk().await.unwrap();
            s.write_all(&request).await.unwrap();
            let mut mark = [0u8; 1];
            s.read_exact(&mut mark).await.unwrap();
            match mark[0] {
                CHUNK_FOLLOWS => {
                    let mut count = [0u8; 4];
                    s.read_exact(&mut count).await.unwrap();
                    Some(u32::from_le_bytes(count))
                }
                CHUNK_MISSING => None,
                other => panic!("unexpected chunk list mark {other}"),
            }
        })
    }

    fn pages_for(&self, folder: &str) -> usize {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|m| matches!(m, SyncMessage::IndexPage { folder: f, .. } if f == folder))
            .count()
    }

    fn folders_told(&self) -> Vec<Vec<String>> {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                SyncMessage::Folders { ids, .. } => Some(ids.clone()),
                _ => None,
            })
            .collect()
    }
}

fn record_in(home: &Path, folder: &str, rel: &str) -> FileRecord {
    let store = open_store(home);
    folder::records(&store, folder)
        .flatten()
        .find(|(p, _)| *p == rel)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("{folder}/{rel} is not indexed"))
}

fn chunk_list(r: &FileRecord) -> Vec<(ContentHash, u32)> {
    r.chunks.iter().map(|c| (c.hash, c.len)).collect()
}

#[test]
fn a_trusted_device_gets_nothing_of_a_folder_it_is_not_a_member_of() {
    let secret = bytes(300_000, 1);
    let (mut victim, docs) = sharing("victim", &[("secret.bin", &secret)]);
    let public = victim.home.path().join("pub");
    std::fs::create_dir(&public).unwrap();
    std::fs::write(public.join("public.txt"), b"anyone in pub may read this").unwrap();
    ok(
        victim.home.path(),
        &["folder", "add", public.to_str().unwrap(), "--id", "pub"],
    );
    let outsider = Node::new("outsider");
    trust(&victim, &outsider);
    ok(
        victim.home.path(),
        &["folder", "share", "pub", &outsider.id],
    );
    let secret_rec = record_in(victim.home.path(), "docs", "secret.bin");
    let public_rec = record_in(victim.home.path(), "pub", "public.txt");
    victim.start();
    let victim_id: NodeId = victim.id.parse().unwrap();
    let o = Outsider::connect(outsider.home.path(), victim_id, victim.port);
    wait("the victim's folder list", Duration::from_secs(20), || {
        !o.folders_told().is_empty()
    });
    // It is told of pub (and the app space it was paired into), never of docs.
    for ids in o.folders_told() {
        assert!(!ids.contains(&"docs".to_string()), "{ids:?}");
        assert!(ids.contains(&"pub".to_string()), "{ids:?}");
    }
    // It claims docs, asks for its index, hints, and pushes a record.
    o.send(&SyncMessage::Folders {
        ids: vec!["docs".into(), "pub".into()],
        reply: false,
    });
    o.send(&SyncMessage::IndexRequest {
        folder: "docs".into(),
        since: 0,
    });
    o.send(&SyncMessage::IndexHint {
        folder: "docs".into(),
        seq: 1000,
    });
    let mut version = VersionVector::default();
    version.bump(NodeId::derive(b"outsider"));
    let mut planted = secret_rec.clone();
    planted.version = version;
    o.send(&SyncMessage::IndexPage {
        folder: "docs".into(),
        since: 0,
        upto: 10,
        records: vec![("planted.bin".into(), planted)],
        more: false,
        values: vec![],
    });
    // Chunks by hash: pub's are served, docs' are not (no oracle).
    let got = o.chunks(chunk_list(&public_rec));
    assert_eq!(got, vec![Some(b"anyone in pub may read this".to_vec())]);
    let got = o.chunks(chunk_list(&secret_rec));
    assert!(
        !got.is_empty() && got.iter().all(Option::is_none),
        "{got:?}"
    );
    wait("the refusals counted", Duration::from_secs(10), || {
        status(&victim)["refused_not_member"].as_u64() >= Some(3)
    });
    // Chunk lists likewise: pub's is given, docs' is refused, and counted
    // (once the messages above are all handled).
    std::thread::sleep(Duration::from_secs(1));
    let refused = status(&victim)["refused_not_member"].as_u64().unwrap();
    assert_eq!(
        o.chunk_list_len("pub", "public.txt", public_rec.hash.unwrap()),
        Some(1)
    );
    assert_eq!(
        o.chunk_list_len("docs", "secret.bin", secret_rec.hash.unwrap()),
        None
    );
    wait(
        "the chunk list refusal counted",
        Duration::from_secs(10),
        || status(&victim)["refused_not_member"].as_u64() == Some(refused + 1),
    );
    assert_eq!(o.pages_for("docs"), 0);
    assert!(!docs.join("planted.bin").exists());
    // Logged once per device and folder, not per request.
    let refusals = victim.wait_for(&["refused: this folder is not shared with that device"]);
    assert!(refusals.contains("folder=docs"), "{refusals}");
    // Shared with it, docs is answered.
    ok(
        victim.home.path(),
        &["folder", "share", "docs", &outsider.id],
    );
    o.send(&SyncMessage::IndexRequest {
        folder: "docs".into(),
        since: 0,
    });
    wait("an index page of docs", Duration::from_secs(10), || {
        o.pages_for("docs") > 0
    });
    drop(o);
}

#[test]
fn an_offered_folder_is_accepted_into_a_path_and_syncs() {
    let (mut alpha, _a_dir) = sharing("alpha", &[("hello.txt", b"offered")]);
    let mut beta = Node::new("beta");
    trust(&alpha, &beta);
    trust(&beta, &alpha);
    ok(alpha.home.path(), &["folder", "share", "docs", &beta.id]);
    alpha.start();
    beta.start();
    beta.connected_to(&alpha);
    wait("the offer", Duration::from_secs(20), || {
        status(&beta)["offers"][0]["id"] == "docs"
    });
    let offers = json(&run(beta.home.path(), &["folder", "offers", "--json"]));
    assert_eq!(offers[0]["by"][0]["name"], "alpha", "{offers}");
    let target = beta.home.path().join("from-alpha");
    ok(
        beta.home.path(),
        &["folder", "accept", "docs", target.to_str().unwrap()],
    );
    wait("the offered folder's file", Duration::from_secs(20), || {
        std::fs::read(target.join("hello.txt")).is_ok_and(|b| b == b"offered")
    });
    let list = json(&run(beta.home.path(), &["folder", "list", "--json"]));
    assert_eq!(list[0]["members"][0]["id"], alpha.id.as_str());
    // Declining an offer nobody makes is an error that names the fix.
    let o = run(
        beta.home.path(),
        &["folder", "accept", "nope", "/tmp/x-nope"],
    );
    assert!(
        stderr(&o).contains("no connected device offers"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_home_from_before_membership_keeps_syncing_with_the_devices_it_trusted() {
    let (_dir, home) = common::old_home("before-membership");
    let first = run(&home, &["folder", "list", "--json"]);
    let said = stderr(&first);
    assert!(said.contains("upgraded this home"), "{said}");
    let list = json(&first);
    let members = list[0]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "both devices trusted before: {list}");
    // Said once: the next open has nothing to upgrade.
    let again = run(&home, &["folder", "list", "--json"]);
    assert!(!stderr(&again).contains("upgraded"), "{}", stderr(&again));
    assert_eq!(json(&again), list);
    // The app's values stay shared with them too, and what was there is intact.
    let store = open_store(&home);
    let app = softadastra::index::members::app_members(&store);
    assert_eq!(app.len(), 2);
    assert_eq!(
        softadastra::folder::values::get(&store, "greeting"),
        Some(b"hi".to_vec())
    );
    assert_eq!(folder::records(&store, "docs").count(), 3);
}

#[test]
fn a_send_only_folder_sends_its_changes_shows_remote_ones_and_overrides_them() {
    let (mut alpha, a_dir) = sharing("alpha", &[("plan.txt", b"the reference")]);
    let (mut beta, b_dir) = sharing("beta", &[]);
    alpha.trust(&beta);
    beta.trust(&alpha);
    let said = ok(alpha.home.path(), &["folder", "type", "docs", "send-only"]);
    assert!(said.contains("send-only"), "{said}");
    let o = run(alpha.home.path(), &["folder", "type", "docs", "sideways"]);
    assert!(stderr(&o).contains("unknown folder type"), "{}", stderr(&o));
    let o = run(beta.home.path(), &["folder", "override", "docs"]);
    assert!(
        stderr(&o).contains("override is for send-only folders"),
        "{}",
        stderr(&o)
    );
    alpha.start();
    beta.start();
    wait("beta gets the reference", Duration::from_secs(20), || {
        std::fs::read(b_dir.join("plan.txt")).is_ok_and(|b| b == b"the reference")
    });
    // Beta edits and adds: alpha applies neither, and says so.
    std::fs::write(b_dir.join("plan.txt"), b"beta's idea").unwrap();
    std::fs::write(b_dir.join("extra.txt"), b"beta only").unwrap();
    wait(
        "alpha sees the remote changes",
        Duration::from_secs(20),
        || status(&alpha)["folders"][0]["remote_differs"] == 2,
    );
    assert_eq!(
        std::fs::read(a_dir.join("plan.txt")).unwrap(),
        b"the reference"
    );
    assert!(!a_dir.join("extra.txt").exists());
    assert_eq!(status(&alpha)["folders"][0]["type"], "send-only");
    // Override: beta gets alpha's state back; its own goes to its trash.
    let said = ok(alpha.home.path(), &["folder", "override", "docs"]);
    assert!(said.contains("2 path(s)"), "{said}");
    wait(
        "beta is back to the reference",
        Duration::from_secs(20),
        || {
            std::fs::read(b_dir.join("plan.txt")).is_ok_and(|b| b == b"the reference")
                && !b_dir.join("extra.txt").exists()
        },
    );
    let kept = common::entries(&b_dir, true);
    assert!(
        kept.iter()
            .any(|(k, v)| k.contains("versions") && v == b"beta's idea"),
        "beta's edit is in its versions: {:?}",
        kept.keys().collect::<Vec<_>>()
    );
    assert_eq!(status(&alpha)["folders"][0]["remote_differs"], 0);
    // Alpha's own changes still go out.
    std::fs::write(a_dir.join("plan.txt"), b"the reference, v2").unwrap();
    wait("beta gets v2", Duration::from_secs(20), || {
        std::fs::read(b_dir.join("plan.txt")).is_ok_and(|b| b == b"the reference, v2")
    });
}

#[test]
fn a_receive_only_folder_takes_changes_keeps_its_own_and_reverts_them() {
    let files: [(&str, &[u8]); 3] = [
        ("a.txt", b"alpha's a"),
        ("b.txt", b"alpha's b"),
        ("sub/c.txt", b"alpha's c"),
    ];
    let (mut alpha, a_dir) = sharing("alpha", &[]);
    std::fs::create_dir(a_dir.join("sub")).unwrap();
    for (rel, bytes) in files {
        std::fs::write(a_dir.join(rel), bytes).unwrap();
    }
    ok(alpha.home.path(), &["folder", "rescan", "docs"]);
    let mut beta = Node::new("beta");
    let b_dir = beta.home.path().join("docs");
    std::fs::create_dir(&b_dir).unwrap();
    ok(
        beta.home.path(),
        &[
            "folder",
            "add",
            b_dir.to_str().unwrap(),
            "--id",
            "docs",
            "--type",
            "receive-only",
        ],
    );
    alpha.trust(&beta);
    beta.trust(&alpha);
    alpha.start();
    beta.start();
    wait("beta gets alpha's files", Duration::from_secs(20), || {
        files
            .iter()
            .all(|(rel, bytes)| std::fs::read(b_dir.join(rel)).is_ok_and(|b| b == *bytes))
    });
    assert_eq!(status(&beta)["folders"][0]["type"], "receive-only");
    assert_eq!(status(&beta)["folders"][0]["locally_changed"], 0);
    // Beta edits one, deletes one, adds one: none of it reaches alpha.
    std::fs::write(b_dir.join("a.txt"), b"beta's edit").unwrap();
    std::fs::remove_file(b_dir.join("b.txt")).unwrap();
    std::fs::write(b_dir.join("local.txt"), b"beta only").unwrap();
    wait(
        "beta counts its local changes",
        Duration::from_secs(20),
        || status(&beta)["folders"][0]["locally_changed"] == 3,
    );
    std::thread::sleep(Duration::from_millis(500));
    for (rel, bytes) in files {
        assert_eq!(std::fs::read(a_dir.join(rel)).unwrap(), bytes, "{rel}");
    }
    assert!(!a_dir.join("local.txt").exists());
    // Alpha's changes still come in.
    std::fs::write(a_dir.join("sub/c.txt"), b"alpha's c, v2").unwrap();
    wait("beta gets alpha's edit", Duration::from_secs(20), || {
        std::fs::read(b_dir.join("sub/c.txt")).is_ok_and(|b| b == b"alpha's c, v2")
    });
    // Revert: alpha's version of everything, byte for byte; beta's own
    // copies are in its trash.
    let said = ok(beta.home.path(), &["folder", "revert", "docs"]);
    assert!(said.contains("3 path(s)"), "{said}");
    let expected: Vec<(&str, &[u8])> = vec![
        ("a.txt", b"alpha's a"),
        ("b.txt", b"alpha's b"),
        ("sub/c.txt", b"alpha's c, v2"),
    ];
    wait(
        "beta is alpha's copy again",
        Duration::from_secs(20),
        || {
            expected
                .iter()
                .all(|(rel, bytes)| std::fs::read(b_dir.join(rel)).is_ok_and(|b| b == *bytes))
                && !b_dir.join("local.txt").exists()
        },
    );
    assert_eq!(
        common::entries(&b_dir, false),
        common::entries(&a_dir, false)
    );
    let kept = common::entries(&b_dir, true);
    for mine in [&b"beta's edit"[..], b"beta only"] {
        assert!(
            kept.iter()
                .any(|(k, v)| k.contains("versions") && v == mine),
            "{mine:?} is in beta's versions: {:?}",
            kept.keys().collect::<Vec<_>>()
        );
    }
    wait("nothing locally changed", Duration::from_secs(10), || {
        status(&beta)["folders"][0]["locally_changed"] == 0
    });
    let o = run(alpha.home.path(), &["folder", "revert", "docs"]);
    assert!(
        stderr(&o).contains("for receive-only folders"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_path_then_a_plain_invite_pairs_for_that_folder() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("Photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("p1.jpg"), b"a picture").unwrap();
    let mut nas = Node::new("nas");
    let mut laptop = Node::new("laptop");
    // `run PATH` shares PATH; started by hand to pass it.
    let mut cmd = std::process::Command::new(common::bin());
    cmd.arg("--home")
        .arg(nas.home.path())
        .args(["run", photos.to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{}", nas.port))
        .env("SOFTADASTRA_NO_DISCOVERY", "1")
        .env("SOFTADASTRA_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    nas.child = Some(cmd.spawn().unwrap());
    laptop.start();
    // `invite` needs the running agent: asked until it answers.
    let mut said = String::new();
    wait(
        "an invite from the running agent",
        Duration::from_secs(20),
        || {
            let invite = run(nas.home.path(), &["invite"]);
            said = stderr(&invite);
            invite.status.success()
        },
    );
    assert!(said.contains("shares folder \"photos\""), "{said}");
    let code = said
        .split_whitespace()
        .find(|w| w.starts_with("SA1-"))
        .unwrap()
        .to_string();
    let target = laptop.home.path().join("Photos");
    ok(
        laptop.home.path(),
        &["join", &code, target.to_str().unwrap()],
    );
    wait(
        "the folder's file on the laptop",
        Duration::from_secs(20),
        || std::fs::read(target.join("p1.jpg")).is_ok_and(|b| b == b"a picture"),
    );
    // Both sides recorded the other as the folder's member.
    for (n, other) in [(&nas, &laptop), (&laptop, &nas)] {
        let list = json(&run(n.home.path(), &["folder", "list", "--json"]));
        assert_eq!(list[0]["members"][0]["id"], other.id.as_str(), "{list}");
    }
}

/// Whether any key or value of the stopped node in `home`'s store, or any
/// line of its log, mentions `word`.
fn knows_of(home: &Path, log: &[String], word: &str) -> Vec<String> {
    let store = open_store(home);
    let mut seen: Vec<String> = Vec::new();
    let spaces: Vec<String> = store.namespaces();
    for ns in spaces {
        for (k, e) in store.scan_prefix(&ns, "") {
            let value = e.value.as_deref().unwrap_or_default();
            if k.contains(word) || value.windows(word.len()).any(|w| w == word.as_bytes()) {
                seen.push(format!("store {ns}/{k}"));
            }
        }
    }
    seen.extend(log.iter().filter(|l| l.contains(word)).cloned());
    seen
}

#[test]
fn three_agents_each_learn_only_the_folders_shared_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["one", "two", "three"]
        .iter()
        .map(|n| Node::new_in(n, dir.path()))
        .collect();
    let folder = |n: &Node, id: &str, file: Option<(&str, &[u8])>| {
        let path = n.home.path().join(id);
        std::fs::create_dir(&path).unwrap();
        if let Some((name, bytes)) = file {
            std::fs::write(path.join(name), bytes).unwrap();
        }
        ok(
            n.home.path(),
            &["folder", "add", path.to_str().unwrap(), "--id", id],
        );
        path
    };
    let a1 = folder(
        &nodes[0],
        "alphafolder",
        Some(("a.txt", b"for one and two")),
    );
    let a2 = folder(&nodes[1], "alphafolder", None);
    let b2 = folder(&nodes[1], "bravofolder", None);
    let b3 = folder(
        &nodes[2],
        "bravofolder",
        Some(("b.txt", b"for two and three")),
    );
    // Everyone trusts everyone; folders are shared pairwise only.
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                trust(&nodes[i], &nodes[j]);
            }
        }
    }
    let share =
        |n: &Node, id: &str, with: &Node| ok(n.home.path(), &["folder", "share", id, &with.id]);
    share(&nodes[0], "alphafolder", &nodes[1]);
    share(&nodes[1], "alphafolder", &nodes[0]);
    share(&nodes[1], "bravofolder", &nodes[2]);
    share(&nodes[2], "bravofolder", &nodes[1]);
    for n in nodes.iter_mut() {
        n.start();
    }
    nodes[0].connected_to(&nodes[2]);
    wait("both folders sync", Duration::from_secs(20), || {
        std::fs::read(a2.join("a.txt")).is_ok_and(|b| b == b"for one and two")
            && std::fs::read(b2.join("b.txt")).is_ok_and(|b| b == b"for two and three")
    });
    // Changes keep flowing both ways.
    std::fs::write(b2.join("back.txt"), b"from two").unwrap();
    std::fs::write(a2.join("back.txt"), b"from two").unwrap();
    wait(
        "two's changes reach one and three",
        Duration::from_secs(20),
        || a1.join("back.txt").exists() && b3.join("back.txt").exists(),
    );
    assert!(
        json(&run(nodes[0].home.path(), &["folder", "offers", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        json(&run(nodes[2].home.path(), &["folder", "offers", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
    let logs: Vec<Vec<String>> = nodes.iter().map(|n| n.log_so_far()).collect();
    for n in nodes.iter_mut() {
        n.signal("-TERM");
    }
    let one = knows_of(nodes[0].home.path(), &logs[0], "bravofolder");
    assert!(one.is_empty(), "one learnt of bravofolder: {one:#?}");
    let three = knows_of(nodes[2].home.path(), &logs[2], "alphafolder");
    assert!(three.is_empty(), "three learnt of alphafolder: {three:#?}");
    // (Two knows both, as it should.)
    assert!(!knows_of(nodes[1].home.path(), &logs[1], "bravofolder").is_empty());
}
