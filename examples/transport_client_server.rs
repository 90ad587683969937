//! transport: two nodes, each with its own identity (a self-signed
//! certificate; node id = blake3 of it), trust each other by id and talk
//! over QUIC with mutual TLS on 127.0.0.1. A stranger is refused.
//!
//! Run: `cargo run -p softadastra --example transport_client_server`

use std::net::SocketAddr;

use softadastra::metadata::local_hello;
use softadastra::transport::identity::Identity;
use softadastra::transport::quic::{Endpoint, Incoming, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::wire::Message;

fn endpoint(
    identity: &Identity,
    trusted: &TrustedIds,
) -> Result<Endpoint, Box<dyn std::error::Error>> {
    Ok(Endpoint::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        identity.clone(),
        trusted.clone(),
        local_hello(identity, 0),
        QuicConfig::default(),
    )?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let server_id = Identity::create(&dir.path().join("server"), "server")?;
    let client_id = Identity::create(&dir.path().join("client"), "client")?;
    let stranger_id = Identity::create(&dir.path().join("stranger"), "stranger")?;
    println!(
        "server {}\nclient {}",
        server_id.node_id(),
        client_id.node_id()
    );

    let server_trusts = TrustedIds::new([client_id.node_id()]);
    let client_trusts = TrustedIds::new([server_id.node_id()]);
    let server = endpoint(&server_id, &server_trusts)?;
    let addr = server.local_addr()?;
    let serving = server.clone();
    tokio::spawn(async move {
        while let Some(accepting) = serving.accept().await {
            tokio::spawn(async move {
                match accepting.establish().await {
                    Ok(Incoming::Peer(peer)) => {
                        println!("server: hello from {}", peer.hello.name);
                        // Serve answers pings; app messages would arrive here.
                        let why = peer.serve(|_| {}).await;
                        println!("server: connection ended ({why})");
                    }
                    Ok(Incoming::Join(j)) => j.refuse("no invites here").await,
                    Err(e) => println!("server: refused a connection: {e}"),
                }
            });
        }
    });

    let client = endpoint(&client_id, &client_trusts)?;
    let mut peer = client.connect(addr, server_id.node_id()).await?;
    println!("client: connected to {} ({})", peer.hello.name, peer.id);
    for nonce in 1..=3 {
        peer.control.send(&Message::Ping { nonce }).await?;
        println!("client: {:?}", peer.control.recv().await?);
    }

    // The stranger is not in the server's trust list: with TLS 1.3 the
    // refusal shows on its first use of the connection.
    let stranger = endpoint(&stranger_id, &TrustedIds::new([server_id.node_id()]))?;
    match stranger.connect(addr, server_id.node_id()).await {
        Ok(mut p) => match p.control.send(&Message::Ping { nonce: 9 }).await {
            Ok(()) => println!("stranger: {:?}", p.control.recv().await),
            Err(e) => println!("stranger: {e}"),
        },
        Err(e) => println!("stranger: {e}"),
    }
    client.close();
    server.close();
    Ok(())
}
