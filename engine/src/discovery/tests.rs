//! Packet encoding and the registry's state transitions, on a virtual clock.

use super::*;
use proptest::prelude::*;

fn packet(node: &[u8], port: u16, instance: u64) -> Packet {
    Packet {
        kind: Kind::Announce,
        node: NodeId::derive(node),
        port,
        instance,
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn packets_round_trip_and_bad_ones_say_why() {
    for kind in [Kind::Announce, Kind::Probe] {
        let p = Packet {
            kind,
            ..packet(b"a", 7420, 99)
        };
        let bytes = p.encode();
        assert_eq!(bytes.len(), PACKET_LEN);
        assert_eq!(Packet::decode(&bytes), Ok(p));
    }
    let good = packet(b"a", 7420, 1).encode();
    assert_eq!(Packet::decode(&good[..47]), Err(PacketError::TooShort(47)));
    assert_eq!(Packet::decode(&[0; 2000]), Err(PacketError::TooLong(2000)));
    let mut bad = good;
    bad[0] = b'X';
    assert_eq!(Packet::decode(&bad), Err(PacketError::BadMagic));
    let mut bad = good;
    bad[4] = 0;
    assert_eq!(Packet::decode(&bad), Err(PacketError::BadVersion(0)));
    let mut bad = good;
    bad[5] = 9;
    assert_eq!(Packet::decode(&bad), Err(PacketError::BadKind(9)));
    let mut bad = good;
    bad[38..40].copy_from_slice(&[0, 0]);
    assert_eq!(Packet::decode(&bad), Err(PacketError::BadPort));
}

/// A newer version appends fields; this version reads its prefix.
#[test]
fn a_newer_version_with_more_fields_is_understood() {
    let p = packet(b"future", 9000, 5);
    let mut bytes = p.encode().to_vec();
    bytes[4] = 7;
    bytes.extend_from_slice(b"fields this version does not know");
    assert_eq!(Packet::decode(&bytes), Ok(p));
}

proptest! {
    /// Hostile bytes never panic: they decode or they are refused.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = Packet::decode(&bytes);
    }

    /// Any packet with our prefix and random tails decodes to the prefix.
    #[test]
    fn magic_prefixed_bytes_decode_consistently(
        mut bytes in proptest::collection::vec(any::<u8>(), PACKET_LEN..200),
    ) {
        bytes[..4].copy_from_slice(&MAGIC);
        if let Ok(p) = Packet::decode(&bytes) {
            let again = p.encode();
            prop_assert_eq!(&again[6..48], &bytes[6..48]);
        }
    }
}

#[test]
fn registry_walks_discovered_alive_stale_expired_and_back() {
    let own = NodeId::derive(b"me");
    let timing = Timing::every(Duration::from_secs(1));
    let mut r = Registry::new(own, timing);
    let t0 = Instant::now();
    let wall = Timestamp(1);
    let b = packet(b"b", 7420, 1);
    let id = b.node;

    // Our own packets (multicast loops back) are not a node.
    let mine = Packet { node: own, ..b };
    assert_eq!(r.observe(&mine, addr("10.0.0.1:1"), t0, wall), None);

    // The source address is the peer's; the port is the announced one.
    assert_eq!(
        r.observe(&b, addr("10.0.0.2:51000"), t0, wall),
        Some(Change::Found(id, addr("10.0.0.2:7420")))
    );
    assert_eq!(r.get(&id).unwrap().presence, Presence::Discovered);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(r.observe(&b, addr("10.0.0.2:51000"), t1, wall), None);
    assert_eq!(r.get(&id).unwrap().presence, Presence::Alive);
    assert!(r.tick(t1 + Duration::from_millis(2999)).is_empty());

    // Silent: stale once, then expired and forgotten.
    let t_stale = t1 + timing.stale_after;
    assert_eq!(r.tick(t_stale), vec![Change::Stale(id)]);
    assert!(r.tick(t_stale).is_empty(), "stale is reported once");
    assert_eq!(r.get(&id).unwrap().presence, Presence::Stale);
    let t_exp = t1 + timing.expire_after;
    assert_eq!(r.tick(t_exp), vec![Change::Expired(id)]);
    assert!(r.get(&id).is_none());
    assert!(r.list().is_empty());

    // It comes back as new.
    assert_eq!(
        r.observe(&b, addr("10.0.0.2:1"), t_exp, wall),
        Some(Change::Found(id, addr("10.0.0.2:7420")))
    );
    // Stale, then heard again: returned.
    let t_s2 = t_exp + timing.stale_after;
    assert_eq!(r.tick(t_s2), vec![Change::Stale(id)]);
    assert_eq!(
        r.observe(&b, addr("10.0.0.2:1"), t_s2, wall),
        Some(Change::Returned(id, addr("10.0.0.2:7420")))
    );
    // A new address, then a restart.
    assert_eq!(
        r.observe(&b, addr("10.0.0.9:1"), t_s2, wall),
        Some(Change::Moved(id, addr("10.0.0.9:7420")))
    );
    let restarted = Packet { instance: 2, ..b };
    assert_eq!(
        r.observe(&restarted, addr("10.0.0.9:1"), t_s2, wall),
        Some(Change::Restarted(id, addr("10.0.0.9:7420")))
    );
    assert_eq!(r.get(&id).unwrap().packets, 4, "counted since it came back");
}

/// A node heard over IPv4 and IPv6 keeps its IPv4 address while IPv4 is
/// heard, and moves to IPv6 only when IPv4 falls silent.
#[test]
fn ipv4_is_preferred_while_heard() {
    let timing = Timing::every(Duration::from_secs(1));
    let mut r = Registry::new(NodeId::derive(b"me"), timing);
    let p = packet(b"dual", 7420, 1);
    let t0 = Instant::now();
    let w = Timestamp(0);
    let v4 = addr("10.0.0.2:1");
    let v6 = addr("[fe80::2]:1");
    assert!(matches!(r.observe(&p, v4, t0, w), Some(Change::Found(..))));
    assert_eq!(r.observe(&p, v6, t0, w), None, "no flapping to IPv6");
    assert_eq!(r.get(&p.node).unwrap().addr, addr("10.0.0.2:7420"));
    let later = t0 + timing.stale_after;
    assert_eq!(
        r.observe(&p, v6, later, w),
        Some(Change::Moved(p.node, addr("[fe80::2]:7420"))),
        "IPv4 silent: IPv6 it is"
    );
    assert_eq!(
        r.observe(&p, v4, later, w),
        Some(Change::Moved(p.node, addr("10.0.0.2:7420"))),
        "IPv4 back: preferred again"
    );
}
