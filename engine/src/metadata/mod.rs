//! # metadata — what a node says about itself
//!
//! A node's description — id, display name, host name, OS, version,
//! capabilities, when it started and so how long it has been up — is
//! exchanged in the connection hello, kept with each peer by the mesh, and
//! shown by `softadastra node` (this node) and `softadastra peers --json`
//! (the others).
//!
//! The fixed part (id, names, OS, version) travels in the hello's own
//! fields. Everything that may grow travels in [`NodeMeta`], an opaque,
//! versioned byte string inside the hello: a version byte, then fields in
//! a fixed order that later versions only ever *append* to. A reader takes
//! the fields it knows and ignores what follows (a newer peer's extra
//! fields never break an older node); a field missing from an older peer
//! takes its default.

use serde::Serialize;

use crate::core::NodeId;
use crate::transport::identity::Identity;
use crate::transport::wire::Hello;

/// The metadata version this node writes.
pub const META_VERSION: u8 = 1;

/// What this version of the agent can do, as told to peers.
pub const CAPABILITIES: &[&str] = &[
    "sync/1",
    "chunks/blake3-fastcdc",
    "discovery/1",
    "invite/1",
    "values/1",
];

/// The machine's host name, for a node's default display name and its hello.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "softadastra-node".into())
}

/// The hello this node sends on every connection: who it is, where it
/// runs, and its metadata (`started_at_ms`: when it started, Unix ms). The
/// endpoint fills in the protocol version.
pub fn local_hello(identity: &Identity, started_at_ms: u64) -> Hello {
    Hello {
        protocol: 0,
        node: identity.node_id(),
        name: identity.name().to_string(),
        hostname: hostname(),
        os: std::env::consts::OS.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        meta: NodeMeta::local(started_at_ms).encode(),
    }
}

/// The growing part of a node's description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeMeta {
    /// The metadata version the sender wrote (0: it sent none).
    pub version: u8,
    /// What the node can do.
    pub capabilities: Vec<String>,
    /// When the node started (Unix milliseconds).
    pub started_at_ms: u64,
}

impl NodeMeta {
    /// This node's metadata.
    pub fn local(started_at_ms: u64) -> NodeMeta {
        NodeMeta {
            version: META_VERSION,
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            started_at_ms,
        }
    }

    /// The bytes for [`Hello::meta`]: the version byte, then each field.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![META_VERSION];
        // Serialising strings and integers to a Vec cannot fail.
        out.extend(postcard::to_allocvec(&self.capabilities).unwrap_or_default());
        out.extend(postcard::to_allocvec(&self.started_at_ms).unwrap_or_default());
        out
    }

    /// Read metadata from any version: known fields in order, defaults for
    /// those an older sender did not write, anything after them (a newer
    /// sender's fields) ignored. Garbage yields the defaults from the first
    /// field that does not decode; it never fails or panics.
    pub fn decode(bytes: &[u8]) -> NodeMeta {
        let mut meta = NodeMeta::default();
        let Some((&version, mut rest)) = bytes.split_first() else {
            return meta;
        };
        meta.version = version;
        match postcard::take_from_bytes::<Vec<String>>(rest) {
            Ok((v, r)) => {
                meta.capabilities = v;
                rest = r;
            }
            Err(_) => return meta,
        }
        if let Ok((v, _)) = postcard::take_from_bytes::<u64>(rest) {
            meta.started_at_ms = v;
        }
        meta
    }
}

/// A node's whole description, as shown to people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Node id (shown in its text form).
    #[serde(serialize_with = "NodeId::serialize_text")]
    pub id: NodeId,
    /// Display name.
    pub name: String,
    /// Host name.
    pub hostname: String,
    /// Operating system.
    pub os: String,
    /// Softadastra version.
    pub version: String,
    /// Wire protocol version.
    pub protocol: u32,
    /// Metadata version it sent.
    pub meta_version: u8,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// When it started (Unix milliseconds; 0 if it did not say).
    pub started_at_ms: u64,
    /// Seconds up, as of `now_ms` given to [`NodeInfo::from_hello`].
    pub uptime_secs: Option<u64>,
}

impl NodeInfo {
    /// The description a hello carries, with uptime as of `now_ms`.
    pub fn from_hello(hello: &Hello, now_ms: u64) -> NodeInfo {
        let meta = NodeMeta::decode(&hello.meta);
        NodeInfo {
            id: hello.node,
            name: hello.name.clone(),
            hostname: hello.hostname.clone(),
            os: hello.os.clone(),
            version: hello.version.clone(),
            protocol: hello.protocol,
            meta_version: meta.version,
            capabilities: meta.capabilities,
            started_at_ms: meta.started_at_ms,
            uptime_secs: (meta.started_at_ms > 0)
                .then(|| now_ms.saturating_sub(meta.started_at_ms) / 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_reads_every_version() {
        let m = NodeMeta::local(1_700_000_000_000);
        assert_eq!(NodeMeta::decode(&m.encode()), m);

        // A newer peer appended fields: they are ignored.
        let mut newer = m.encode();
        newer[0] = 9;
        newer.extend(postcard::to_allocvec(&("gpu", 12u32, vec![1u8, 2])).unwrap());
        let read = NodeMeta::decode(&newer);
        assert_eq!(read.capabilities, m.capabilities);
        assert_eq!(read.started_at_ms, m.started_at_ms);
        assert_eq!(read.version, 9);

        // An older peer wrote fewer fields: defaults for the rest.
        let mut older = vec![1u8];
        older.extend(postcard::to_allocvec(&vec!["sync/1".to_string()]).unwrap());
        let read = NodeMeta::decode(&older);
        assert_eq!(read.capabilities, ["sync/1"]);
        assert_eq!(read.started_at_ms, 0);

        // No metadata at all.
        assert_eq!(NodeMeta::decode(&[]), NodeMeta::default());
    }

    #[test]
    fn info_from_a_hello_has_uptime() {
        let hello = Hello {
            protocol: 1,
            node: NodeId::derive(b"n"),
            name: "laptop".into(),
            hostname: "laptop.local".into(),
            os: "linux".into(),
            version: "0.1.0".into(),
            meta: NodeMeta::local(10_000).encode(),
        };
        let info = NodeInfo::from_hello(&hello, 70_500);
        assert_eq!(info.uptime_secs, Some(60));
        assert!(info.capabilities.iter().any(|c| c == "sync/1"));
        let bare = Hello {
            meta: Vec::new(),
            ..hello
        };
        assert_eq!(NodeInfo::from_hello(&bare, 1).uptime_secs, None);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = NodeMeta::decode(&bytes);
        }
    }
}
