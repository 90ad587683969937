//! QUIC endpoints on 127.0.0.1: trusted nodes connect and exchange hellos;
//! strangers are refused in the handshake; a trusted peer that sends
//! garbage is disconnected while the node keeps serving others.

use std::net::SocketAddr;
use std::time::Duration;

use softadastra::core::NodeId;
use softadastra::transport::TransportError;
use softadastra::transport::identity::Identity;
use softadastra::transport::quic::{Endpoint, Incoming, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::wire::{Hello, Message};

struct Node {
    _dir: tempfile::TempDir,
    identity: Identity,
    trusted: TrustedIds,
}

fn node(name: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::create(dir.path(), name).unwrap();
    Node {
        _dir: dir,
        identity,
        trusted: TrustedIds::default(),
    }
}

fn hello(name: &str) -> Hello {
    Hello {
        protocol: 0,
        node: NodeId::LOCAL,
        name: name.into(),
        hostname: "localhost".into(),
        os: std::env::consts::OS.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        meta: Vec::new(),
    }
}

fn bind(n: &Node) -> Endpoint {
    bind_port(n, 0)
}

fn bind_port(n: &Node, port: u16) -> Endpoint {
    let config = QuicConfig {
        hello_timeout: Duration::from_secs(2),
        ..QuicConfig::default()
    };
    Endpoint::bind(
        SocketAddr::from(([127, 0, 0, 1], port)),
        n.identity.clone(),
        n.trusted.clone(),
        hello(n.identity.name()),
        config,
    )
    .unwrap()
}

/// Serve: accept connections forever, each served by `Peer::serve`;
/// report hellos and why connections ended.
fn serve(ep: Endpoint) -> tokio::sync::mpsc::UnboundedReceiver<Result<String, String>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(accepting) = ep.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                match accepting.establish().await {
                    Err(e) => drop(tx.send(Err(e.to_string()))),
                    Ok(Incoming::Join(j)) => {
                        drop(tx.send(Err(format!("unexpected join from {}", j.id))));
                        j.refuse("this test issues no invites").await;
                    }
                    Ok(Incoming::Peer(peer)) => {
                        let name = peer.hello.name.clone();
                        drop(tx.send(Ok(format!("hello from {name}"))));
                        let why = peer.serve(|_| {}).await;
                        drop(tx.send(Err(format!("closed {name}: {why}"))));
                    }
                }
            });
        }
    });
    rx
}

/// A node that dialled its peer before the peer listened (the first
/// packet is lost and resent only about a second later) gives that dial up
/// once the peer's own connection is in: each side keeps the one
/// connection, none is replaced while it carries transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_overtaken_by_the_peers_connection_replaces_nothing() {
    use softadastra::transport::mesh::{Mesh, MeshEvent};
    let (a, b) = (node("alpha"), node("beta"));
    let (ida, idb) = (a.identity.node_id(), b.identity.node_id());
    a.trusted.replace([idb]);
    b.trusted.replace([ida]);
    // A free port for beta, unbound while alpha starts dialling it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let ea = bind(&a);
    let a_addr = ea.local_addr().unwrap().to_string();
    let refuse: softadastra::transport::mesh::JoinHandler =
        std::sync::Arc::new(|_| Err("no".into()));
    let (tx_a, mut rx_a) = tokio::sync::mpsc::unbounded_channel();
    let mesh_a = Mesh::start(
        ea,
        [(idb, Some(format!("127.0.0.1:{port}")))],
        refuse.clone(),
        Some(tx_a),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (tx_b, mut rx_b) = tokio::sync::mpsc::unbounded_channel();
    let mesh_b = Mesh::start(
        bind_port(&b, port),
        [(ida, Some(a_addr))],
        refuse,
        Some(tx_b),
    );
    // Long enough for alpha's first packet to be resent and answered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connections = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<MeshEvent>| {
        let mut n = 0;
        while let Ok(ev) = rx.try_recv() {
            if matches!(ev, MeshEvent::Connected(_)) {
                n += 1;
            }
        }
        n
    };
    assert_eq!(connections(&mut rx_a), 1, "alpha connected more than once");
    assert_eq!(connections(&mut rx_b), 1, "beta connected more than once");
    assert_eq!(mesh_a.connected().len(), 1);
    mesh_a.shutdown(Duration::from_millis(200)).await;
    mesh_b.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_nodes_connect_exchange_hellos_and_ping() {
    let (a, b) = (node("alpha"), node("beta"));
    a.trusted.replace([b.identity.node_id()]);
    b.trusted.replace([a.identity.node_id()]);
    let (ea, eb) = (bind(&a), bind(&b));
    let mut events = serve(eb.clone());
    let mut peer = ea
        .connect(eb.local_addr().unwrap(), b.identity.node_id())
        .await
        .unwrap();
    assert_eq!(peer.id, b.identity.node_id());
    assert_eq!(peer.hello.name, "beta");
    assert_eq!(peer.hello.node, b.identity.node_id());
    assert_eq!(
        events.recv().await.unwrap(),
        Ok("hello from alpha".to_string())
    );
    for nonce in 0..10 {
        peer.control.send(&Message::Ping { nonce }).await.unwrap();
        assert_eq!(peer.control.recv().await.unwrap(), Message::Pong { nonce });
    }
    ea.close();
    eb.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_impostors_are_refused() {
    let (a, b, stranger) = (node("alpha"), node("beta"), node("stranger"));
    b.trusted.replace([a.identity.node_id()]);
    a.trusted.replace([b.identity.node_id()]);
    stranger.trusted.replace([b.identity.node_id()]);
    let (eb, es, ea) = (bind(&b), bind(&stranger), bind(&a));
    let _events = serve(eb.clone());
    // b does not trust the stranger: refused during the handshake.
    let refused = es
        .connect(eb.local_addr().unwrap(), b.identity.node_id())
        .await;
    assert!(
        matches!(refused, Err(TransportError::Refused { .. })),
        "{refused:?}"
    );
    // alpha dials b's address expecting another id: refused by alpha itself.
    let wrong = ea
        .connect(eb.local_addr().unwrap(), stranger.identity.node_id())
        .await;
    assert!(wrong.is_err(), "{wrong:?}");
    // And the well-behaved peer still gets through.
    assert!(
        ea.connect(eb.local_addr().unwrap(), b.identity.node_id())
            .await
            .is_ok()
    );
}

/// A trusted peer that misbehaves is disconnected with the right close
/// code, and the node keeps serving a well-behaved peer throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_trusted_peers_are_disconnected_and_others_are_still_served() {
    let server = node("server");
    let good = node("good");
    good.trusted.replace([server.identity.node_id()]);
    let eb = bind(&server);
    let eg = bind(&good);
    let hostiles: Vec<(&str, Vec<u8>, &str)> = vec![
        ("oversized", u32::MAX.to_le_bytes().to_vec(), "exceeds"),
        (
            "garbage",
            vec![5, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb],
            "malformed",
        ),
        (
            "second-hello",
            {
                let mut b = Vec::new();
                softadastra::transport::wire::encode(
                    &Message::Hello(hello("again")),
                    1 << 20,
                    &mut b,
                )
                .unwrap();
                b
            },
            "second hello",
        ),
        (
            "truncated",
            vec![100, 0, 0, 0, 1, 2, 3],
            "control stream ended",
        ),
    ];
    let nodes: Vec<Node> = hostiles.iter().map(|(name, _, _)| node(name)).collect();
    server.trusted.replace(
        nodes
            .iter()
            .map(|n| n.identity.node_id())
            .chain([good.identity.node_id()]),
    );
    let mut events = serve(eb.clone());
    let mut good_peer = eg
        .connect(eb.local_addr().unwrap(), server.identity.node_id())
        .await
        .unwrap();
    assert_eq!(
        events.recv().await.unwrap(),
        Ok("hello from good".to_string())
    );

    for ((name, bytes, expect), n) in hostiles.iter().zip(&nodes) {
        n.trusted.replace([server.identity.node_id()]);
        let ea = bind(n);
        let mut hostile = ea
            .connect(eb.local_addr().unwrap(), server.identity.node_id())
            .await
            .unwrap();
        assert_eq!(
            events.recv().await.unwrap(),
            Ok(format!("hello from {name}"))
        );
        hostile.control.send_raw(bytes).await.unwrap();
        if *name == "truncated" {
            hostile.control.finish();
        }
        let closed = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(
            closed.starts_with(&format!("closed {name}")) && closed.contains(expect),
            "{name}: {closed}"
        );
        let why = tokio::time::timeout(Duration::from_secs(5), hostile.closed())
            .await
            .unwrap();
        assert!(
            why.contains(expect) || why.contains("closed"),
            "{name}: the peer is told why: {why}"
        );
        // The good peer is served throughout.
        good_peer
            .control
            .send(&Message::Ping { nonce: 7 })
            .await
            .unwrap();
        assert_eq!(
            good_peer.control.recv().await.unwrap(),
            Message::Pong { nonce: 7 }
        );
    }
}

/// A peer that connects and never says hello does not hold up others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_does_not_block_other_peers() {
    let (server, silent, good) = (node("server"), node("silent"), node("good"));
    server
        .trusted
        .replace([silent.identity.node_id(), good.identity.node_id()]);
    silent.trusted.replace([server.identity.node_id()]);
    good.trusted.replace([server.identity.node_id()]);
    let eb = bind(&server);
    let mut events = serve(eb.clone());
    // A raw quinn client that completes TLS and then stays silent.
    let es = bind(&silent);
    let raw = es
        .connect_without_hello(eb.local_addr().unwrap(), server.identity.node_id())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let eg = bind(&good);
    eg.connect(eb.local_addr().unwrap(), server.identity.node_id())
        .await
        .unwrap();
    assert_eq!(
        events.recv().await.unwrap(),
        Ok("hello from good".to_string())
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the good peer waited behind the silent one"
    );
    drop(raw);
}

/// Nodes of different protocol versions both say so, rather than "connection lost".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_version_mismatch_is_reported_on_both_sides() {
    let (a, b) = (node("alpha"), node("beta"));
    a.trusted.replace([b.identity.node_id()]);
    b.trusted.replace([a.identity.node_id()]);
    let (ea, eb) = (bind(&a), bind(&b));
    let mut events = serve(eb.clone());
    let newer = ea
        .connect_speaking(
            eb.local_addr().unwrap(),
            b.identity.node_id(),
            b"softadastra/2",
        )
        .await;
    let err = newer.expect_err("a node speaking softadastra/2 must not get in");
    assert!(
        matches!(err, TransportError::VersionMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("another version"), "{err}");
    let seen = events.recv().await.unwrap().unwrap_err();
    assert!(
        seen.contains("another version"),
        "the listener reports it too: {seen}"
    );
}

mod pairing {
    use super::*;
    use softadastra::core::{Clock, SystemClock, Timestamp};
    use softadastra::transport::pairing::{Invitations, Invite, PairingError};

    /// The inviter's side: redeem join requests against `invitations`,
    /// trusting the joiner on success; report each outcome.
    fn serve_invites(
        ep: Endpoint,
        invitations: std::sync::Arc<Invitations>,
        trusted: TrustedIds,
    ) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(accepting) = ep.accept().await {
                let (tx, invitations, trusted) = (tx.clone(), invitations.clone(), trusted.clone());
                tokio::spawn(async move {
                    match accepting.establish().await {
                        Ok(Incoming::Join(j)) => {
                            match invitations.redeem(&j.secret, SystemClock.wall()) {
                                Ok(folder) => {
                                    trusted.insert(j.id);
                                    let id = j.id;
                                    j.welcome(folder).await.unwrap();
                                    drop(tx.send(format!("joined {id}")));
                                }
                                Err(e) => {
                                    j.refuse(&e.to_string()).await;
                                    drop(tx.send(format!("refused: {e}")));
                                }
                            }
                        }
                        Ok(Incoming::Peer(p)) => {
                            drop(tx.send(format!("peer {}", p.hello.name)));
                            p.serve(|_| {}).await;
                        }
                        Err(e) => drop(tx.send(format!("error: {e}"))),
                    }
                });
            }
        });
        rx
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invite_pairs_once_then_is_refused_and_an_expired_one_is_refused() {
        let (a, b, c) = (node("inviter"), node("joiner"), node("late"));
        let (ea, eb, ec) = (bind(&a), bind(&b), bind(&c));
        let invitations = std::sync::Arc::new(Invitations::new(a.trusted.clone()));
        let mut events = serve_invites(ea.clone(), invitations.clone(), a.trusted.clone());
        let now = SystemClock.wall();
        let invite = invitations
            .issue(
                a.identity.node_id(),
                vec![ea.local_addr().unwrap()],
                Some("photos".into()),
                Duration::from_secs(60),
                now,
            )
            .unwrap();
        // The code is what travels between the machines.
        let parsed = Invite::parse(&invite.to_code()).unwrap();

        let (welcome, folder, at) = eb.join(&parsed, 7420).await.unwrap();
        assert_eq!(welcome.node, a.identity.node_id());
        assert_eq!(folder.as_deref(), Some("photos"));
        assert_eq!(at, ea.local_addr().unwrap());
        assert_eq!(
            events.recv().await.unwrap(),
            format!("joined {}", b.identity.node_id())
        );

        // Now they trust each other: a normal connection works both ways.
        b.trusted.insert(a.identity.node_id());
        let peer = eb
            .connect(ea.local_addr().unwrap(), a.identity.node_id())
            .await
            .unwrap();
        assert_eq!(peer.hello.name, "inviter");
        assert_eq!(events.recv().await.unwrap(), "peer joiner");

        // The same code again, from another node: with no other invite
        // outstanding the inviter does not even complete TLS with it, and
        // the joiner is told the code is spent.
        assert!(!a.trusted.pairing_open());
        let again = ec.join(&parsed, 0).await.unwrap_err();
        assert!(matches!(again, TransportError::JoinRefused(_)), "{again:?}");
        assert!(
            again.to_string().contains("already used or has expired"),
            "{again}"
        );
        // The inviter saw (and logged) a refused handshake.
        assert!(events.recv().await.unwrap().starts_with("error:"));

        // With another invite outstanding (the window open), each bad
        // secret reaches the invitation check and is refused for its reason.
        let _open = invitations
            .issue(
                a.identity.node_id(),
                vec![],
                None,
                Duration::from_secs(60),
                now,
            )
            .unwrap();
        let reused = ec.join(&parsed, 0).await.unwrap_err();
        assert!(
            reused
                .to_string()
                .contains(&PairingError::AlreadyUsed.to_string()),
            "{reused}"
        );
        assert!(events.recv().await.unwrap().starts_with("refused"));
        let old = invitations
            .issue(
                a.identity.node_id(),
                vec![ea.local_addr().unwrap()],
                None,
                Duration::from_secs(60),
                Timestamp(now.as_nanos() - 120_000_000_000),
            )
            .unwrap();
        let expired = ec.join(&old, 0).await.unwrap_err();
        assert!(
            expired
                .to_string()
                .contains(&PairingError::Expired.to_string()),
            "{expired}"
        );
        // A made-up secret is refused as unknown; the stranger learned nothing
        // and still cannot connect as a peer.
        let mut forged = old.clone();
        forged.secret = [0x55; 16];
        let unknown = ec.join(&forged, 0).await.unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains(&PairingError::Unknown.to_string()),
            "{unknown}"
        );
        c.trusted.insert(a.identity.node_id());
        let sneaky = ec
            .connect(ea.local_addr().unwrap(), a.identity.node_id())
            .await;
        assert!(
            matches!(sneaky, Err(TransportError::Refused { .. })),
            "an unknown node under the normal protocol is refused even while pairing is open: {sneaky:?}"
        );
    }
}
