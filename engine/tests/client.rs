//! The SDK client end to end: two clients in one process, each a whole
//! node with its own home, trusting each other on 127.0.0.1, syncing
//! key/values (and a folder) over QUIC.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use softadastra::client::{Client, ClientError, ClientOptions};
use softadastra::transport::mesh::PeerState;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn open(dir: &tempfile::TempDir, name: &str) -> Client {
    Client::open(
        ClientOptions::new(dir.path().join(name))
            .name(name)
            .listen(loopback()),
    )
    .unwrap()
}

/// Poll `what` until it holds (20 s at most).
fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pair(a: &mut Client, b: &mut Client) {
    let (aa, ba) = (a.start_transport().unwrap(), b.start_transport().unwrap());
    a.trust(b.node_id(), Some(ba)).unwrap();
    b.trust(a.node_id(), Some(aa)).unwrap();
    wait("the clients to connect", || {
        a.connected_peers() == [b.node_id()] && b.connected_peers() == [a.node_id()]
    });
}

#[test]
fn values_written_on_one_client_reach_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (open(&dir, "alice"), open(&dir, "bob"));
    // Local first: written before any network.
    a.put("greeting", "hello").unwrap();
    assert_eq!(a.get("greeting").as_deref(), Some(&b"hello"[..]));
    let peers = a.peers().unwrap();
    assert!(peers.is_empty());
    assert!(matches!(
        a.start_discovery(),
        Err(ClientError::TransportNotStarted)
    ));

    pair(&mut a, &mut b);
    wait("the value written before connecting", || {
        b.get("greeting").as_deref() == Some(b"hello")
    });
    let t0 = Instant::now();
    a.put("user:1", "Gaspard").unwrap();
    wait("a new value", || b.get("user:1").is_some());
    eprintln!("one value propagated in {:?}", t0.elapsed());
    b.put("user:1", "Gaspard B.").unwrap();
    wait("an update the other way", || {
        a.get("user:1").as_deref() == Some(b"Gaspard B.")
    });
    assert!(a.remove("greeting").unwrap());
    wait("a removal", || b.get("greeting").is_none());
    assert!(!a.remove("greeting").unwrap(), "nothing left to remove");
    assert_eq!(
        b.list("user:"),
        vec![("user:1".to_string(), b"Gaspard B.".to_vec())]
    );
    let states: Vec<PeerState> = a.peers().unwrap().iter().map(|p| p.state).collect();
    assert_eq!(states, [PeerState::Connected]);
    let tick = a.tick().unwrap();
    assert_eq!(tick.peers_connected, 1);
    assert_eq!(tick.pending_files, 0);
    assert!(tick.last_seq > 0);
    assert_eq!(a.node_info().id, a.node_id());
    assert_eq!(a.node_info().name, "alice");
    assert!(
        a.refresh_node_info()
            .capabilities
            .iter()
            .any(|c| c == "values/1")
    );
}

#[test]
fn concurrent_offline_writes_converge_with_a_conflict_key_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (open(&dir, "alice"), open(&dir, "bob"));
    a.put("title", "from alice").unwrap();
    std::thread::sleep(Duration::from_millis(5));
    b.put("title", "from bob").unwrap();
    pair(&mut a, &mut b);
    let conflict_keys = |c: &Client| {
        c.list("title.sync-conflict-")
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
    };
    wait("both sides to settle the conflict", || {
        a.list("") == b.list("") && conflict_keys(&a).len() == 1
    });
    // The later write wins the key everywhere; the other is kept.
    assert_eq!(a.get("title").as_deref(), Some(&b"from bob"[..]));
    assert_eq!(conflict_keys(&b), [b"from alice".to_vec()]);

    // Everything is durable: a reopened node has it all.
    let a_id = a.node_id();
    a.close();
    let a = open(&dir, "alice");
    assert_eq!(a.node_id(), a_id, "the same identity");
    assert_eq!(a.get("title").as_deref(), Some(&b"from bob"[..]));
    assert_eq!(conflict_keys(&a).len(), 1);
}

#[test]
fn a_folder_added_through_the_client_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (open(&dir, "alice"), open(&dir, "bob"));
    let (fa, fb) = (dir.path().join("share-a"), dir.path().join("share-b"));
    std::fs::create_dir_all(&fa).unwrap();
    std::fs::create_dir_all(&fb).unwrap();
    std::fs::write(fa.join("notes.txt"), "from alice's disk").unwrap();
    pair(&mut a, &mut b);
    assert_eq!(a.add_folder(&fa, Some("notes")).unwrap().id, "notes");
    b.add_folder(&fb, Some("notes")).unwrap();
    // A folder is shared with no device until the user says so.
    assert!(a.folders().unwrap()[0].members.is_empty());
    assert!(a.share_folder("notes", b.node_id(), true).unwrap());
    assert!(b.share_folder("notes", a.node_id(), true).unwrap());
    assert!(
        !b.share_folder("notes", a.node_id(), true).unwrap(),
        "already"
    );
    wait("the file", || {
        std::fs::read(fb.join("notes.txt")).ok().as_deref() == Some(b"from alice's disk")
    });
    assert_eq!(b.folders().unwrap().len(), 1);
    // Bad input is a clear error that changes nothing.
    let e = a.add_folder(&dir.path().join("missing"), None).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    let e = a.put("", "x").unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    assert_eq!(a.folders().unwrap().len(), 1);
}

/// The SDK's history, conflicts and deletion guard calls, on a folder two
/// clients sync: a replaced version comes back (on both; a whole-folder
/// restore plans it too), a conflict is
/// listed and settled (on both), and asking to accept deletions where
/// none is held is a clear error.
#[test]
fn history_conflicts_and_the_guard_through_the_client() {
    use softadastra::runtime::conflicts::Keep;
    use softadastra::runtime::history::Pick;
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (open(&dir, "alice"), open(&dir, "bob"));
    let (fa, fb) = (dir.path().join("share-a"), dir.path().join("share-b"));
    std::fs::create_dir_all(&fa).unwrap();
    std::fs::create_dir_all(&fb).unwrap();
    std::fs::write(fa.join("notes.txt"), "v1").unwrap();
    pair(&mut a, &mut b);
    a.add_folder(&fa, Some("notes")).unwrap();
    b.add_folder(&fb, Some("notes")).unwrap();
    a.share_folder("notes", b.node_id(), true).unwrap();
    b.share_folder("notes", a.node_id(), true).unwrap();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap_or_default();
    wait("v1 on bob", || read(&fb.join("notes.txt")) == b"v1");

    // Alice writes v2; bob keeps v1 and gets it back for both.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let moment = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    std::thread::sleep(std::time::Duration::from_millis(50));
    std::fs::write(fa.join("notes.txt"), "v2").unwrap();
    wait("v2 on bob", || read(&fb.join("notes.txt")) == b"v2");
    let versions = b.history(&fb.join("notes.txt")).unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0].size, 2);
    // The whole folder, as it was before v2: a dry run names notes.txt.
    let plan = b.restore_folder("notes", moment, true).unwrap();
    assert_eq!(plan.bring_back.len(), 1, "{plan:?}");
    assert_eq!(plan.bring_back[0].path, "notes.txt");
    assert!(!plan.carried_out);
    b.restore(&fb.join("notes.txt"), Pick::Newest, None)
        .unwrap();
    assert_eq!(read(&fb.join("notes.txt")), b"v1");
    wait("v1 back on alice", || read(&fa.join("notes.txt")) == b"v1");

    // A conflict copy bob has reaches alice; alice keeps the original.
    let copy = "notes.sync-conflict-20261203-101010-ABCDEFG.txt";
    std::fs::write(fb.join(copy), "the other one").unwrap();
    wait("the copy on alice", || fa.join(copy).is_file());
    wait("alice lists it", || a.conflicts(None).unwrap().len() == 1);
    let settled = a.resolve_conflict(&fa.join(copy), Keep::Original).unwrap();
    assert_eq!(settled.trashed.len(), 1);
    wait("the copy gone on bob", || !fb.join(copy).exists());
    assert!(b.conflicts(Some("notes")).unwrap().is_empty());

    let e = a.accept_deletions("notes").unwrap_err();
    assert!(e.to_string().contains("holds back no deletions"), "{e}");

    // Alice's own edit of v2 is in alice's history, its bytes gathered;
    // switched off, the next edit keeps nothing.
    let versions = |c: &Client| c.history(&fa.join("notes.txt")).unwrap();
    wait("alice keeps v2, edited here", || {
        versions(&a)
            .iter()
            .any(|v| v.why == "edited here" && v.here && v.size == 2)
    });
    a.keep_local_versions("notes", false).unwrap();
    let before = versions(&a).len();
    std::fs::write(fa.join("notes.txt"), "v3").unwrap();
    wait("v3 on bob", || read(&fb.join("notes.txt")) == b"v3");
    assert_eq!(versions(&a).len(), before);
    assert!(a.keep_local_versions("nothing", true).is_err());
}
