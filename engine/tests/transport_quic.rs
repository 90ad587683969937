//! QUIC endpoints on 127.0.0.1: trusted nodes connect and exchange hellos;
//! strangers are refused in the handshake; a trusted peer that sends
//! garbage is disconnected while the node keeps serving others.

use std::net::SocketAddr;
use std::time::Duration;

use softadastra::core::NodeId;
use softadastra::transport::TransportError;
use softadastra::transport::identity::Identity;
use softadastra::transport::quic::{Endpoint, QuicConfig};
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
    }
}

fn bind(n: &Node) -> Endpoint {
    let config = QuicConfig {
        hello_timeout: Duration::from_secs(2),
        ..QuicConfig::default()
    };
    Endpoint::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
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
                    Ok(peer) => {
                        let name = peer.hello.name.clone();
                        drop(tx.send(Ok(format!("hello from {name}"))));
                        let why = peer.serve().await;
                        drop(tx.send(Err(format!("closed {name}: {why}"))));
                    }
                }
            });
        }
    });
    rx
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
        matches!(
            refused,
            Err(TransportError::Connect { .. }) | Err(TransportError::Closed(_))
        ),
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
