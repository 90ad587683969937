//! Transport benchmark: two nodes in one process on 127.0.0.1, real QUIC
//! with mutual TLS. Prints figures, asserts nothing.
//!
//! `cargo bench -p softadastra --bench transport` (`-- --quick` for less data).
//! Reference: raw quinn with one stream, both ends in one process, measured
//! ~450–600 MB/s on this machine (the target is ≥ 80 % of that).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use softadastra::core::NodeId;
use softadastra::transport::identity::Identity;
use softadastra::transport::quic::{Endpoint, Incoming, QuicConfig};
use softadastra::transport::tls::TrustedIds;
use softadastra::transport::wire::{Hello, Message};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let ticks: f64 =
                rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

fn hello() -> Hello {
    Hello {
        protocol: 0,
        node: NodeId::LOCAL,
        name: "bench".into(),
        hostname: "localhost".into(),
        os: "linux".into(),
        version: "bench".into(),
        meta: Vec::new(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ia, ib) = (
        Identity::create(da.path(), "a").unwrap(),
        Identity::create(db.path(), "b").unwrap(),
    );
    let (ta, tb) = (
        TrustedIds::new([ib.node_id()]),
        TrustedIds::new([ia.node_id()]),
    );
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = Endpoint::bind(any, ia.clone(), ta, hello(), QuicConfig::default()).unwrap();
    let b = Endpoint::bind(any, ib.clone(), tb, hello(), QuicConfig::default()).unwrap();
    let b_addr = b.local_addr().unwrap();
    let b_id = ib.node_id();
    let server = tokio::spawn(async move {
        while let Some(accepting) = b.accept().await {
            let Ok(Incoming::Peer(peer)) = accepting.establish().await else {
                continue;
            };
            let handle = peer.handle();
            tokio::spawn(peer.serve(|_| {}));
            tokio::spawn(async move {
                while let Ok(mut bulk) = handle.accept_bulk().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 1 << 20];
                        let mut total = 0u64;
                        while let Ok(n) = bulk.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            total += n as u64;
                        }
                        let _ = bulk.write_all(&total.to_le_bytes()).await;
                        let _ = bulk.finish();
                    });
                }
            });
        }
    });
    println!("softadastra transport benchmark (loopback, mutual TLS 1.3, ring)");

    // Connection set-up: handshake + hello exchange.
    let mut setups = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let p = a.connect(b_addr, b_id).await.unwrap();
        setups.push(t.elapsed());
        p.close(0, "bench");
    }
    setups.sort();
    println!(
        "connection set-up (handshake + hello)  p50 {:.2} ms  p99 {:.2} ms  over {}",
        setups[10].as_secs_f64() * 1e3,
        setups[19].as_secs_f64() * 1e3,
        setups.len()
    );

    // Small-message round trip on the control stream.
    let mut peer = a.connect(b_addr, b_id).await.unwrap();
    let mut rtts = Vec::new();
    for nonce in 0..2000u64 {
        let t = Instant::now();
        peer.control.send(&Message::Ping { nonce }).await.unwrap();
        let _ = peer.control.recv().await.unwrap();
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let pct =
        |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "control round trip (ping/pong)         p50 {:.0} us  p99 {:.0} us  over {}",
        pct(0.5),
        pct(0.99),
        rtts.len()
    );

    // Bulk throughput on one stream.
    let total: u64 = if quick { 256 << 20 } else { 2 << 30 };
    let handle = peer.handle();
    let mut bulk = handle.open_bulk().await.unwrap();
    let block = vec![0x5au8; 1 << 20];
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        bulk.write_all(&block).await.unwrap();
        sent += block.len() as u64;
    }
    bulk.finish().unwrap();
    let mut ack = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = bulk.read(&mut ack[got..]).await.unwrap();
        assert!(n > 0, "receiver closed early");
        got += n;
    }
    let elapsed = t.elapsed();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(u64::from_le_bytes(ack), total);
    println!(
        "bulk stream, {} MiB                   {:.0} MB/s  ({:.2} s wall, {:.2} s CPU for both ends together)",
        total >> 20,
        total as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_secs_f64(),
        cpu
    );
    println!(
        "path MTU reached                       {} bytes (UDP payload per datagram)",
        handle.path_mtu()
    );
    let _ = tokio::time::timeout(Duration::from_millis(100), server).await;
}
