//! QUIC connections between trusting nodes (quinn over [`tls`]).
//!
//! A connection is mutual TLS 1.3 with pinned node ids; right after the
//! handshake the dialler opens the *control stream* (bidirectional, small
//! framed [`Message`]s) and both sides exchange [`Hello`]. A hello that
//! names another node than the certificate, or another protocol version,
//! closes the connection with a [`close_code`]. Bulk transfers will use
//! separate streams, so a large transfer never blocks control messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::TransportError;
use super::identity::Identity;
use super::pairing::Invite;
use super::tls::{self, TrustedIds};
use super::wire::{
    self, ALPN, FrameDecoder, Hello, JOIN_ALPN, MAX_CONTROL_FRAME, Message, PROTOCOL_VERSION,
    WireError, close_code,
};
use crate::core::NodeId;

mod accept;
mod peer;

pub use accept::*;
pub use peer::*;

/// Keepalive and idle timing of connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicConfig {
    /// A keepalive is sent after this much silence.
    pub keepalive: Duration,
    /// A connection silent for this long is dead.
    pub idle_timeout: Duration,
    /// Longest wait for the peer's hello.
    pub hello_timeout: Duration,
    /// Longest wait for a dialled handshake: a peer that is down answers
    /// nothing at all over UDP, so without this a dial would wait out the
    /// whole idle timeout.
    pub connect_timeout: Duration,
}

impl Default for QuicConfig {
    /// 5 s keepalive, 20 s idle timeout, 5 s for the hello, 5 s to connect.
    fn default() -> Self {
        QuicConfig {
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            hello_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A bound QUIC endpoint: listens, and dials trusted peers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    /// The server side's settings for a peer on this machine (the
    /// endpoint's own are for LAN peers).
    loopback: Arc<quinn::ServerConfig>,
    identity: Identity,
    trusted: TrustedIds,
    hello: Hello,
    config: QuicConfig,
}

fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Connection settings for a path to a peer, on this machine (`loopback`)
/// or not.
///
/// Datagram size is the main cost lever: every QUIC packet is encrypted,
/// acknowledged and handed to the kernel on its own, so the same bytes in
/// bigger datagrams cost far less CPU (the transport bench measures it).
/// Path MTU discovery finds how large a path allows; the bounds here are
/// what the sending side can use:
/// - to this machine (loopback, e.g. two nodes on one host) datagrams of
///   up to 64 KiB, sent one per system call — a segmentation-offload
///   batch of several such packets would exceed the 64 KiB a single send
///   may carry and be dropped whole;
/// - to a LAN peer at most [`LAN_MTU`] bytes with segmentation offload:
///   quinn hands the kernel up to 10 packets per send, which must stay
///   within 64 KiB. Ethernet paths settle at 1452–1472 bytes after a few
///   lost probes; jumbo-frame LANs use up to 6,500.
fn transport_config(config: &QuicConfig, loopback: bool) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(config.keepalive));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(config.idle_timeout).ok());
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    if loopback {
        mtu.upper_bound(MAX_UDP_PAYLOAD);
        t.enable_segmentation_offload(false);
        // The usual first window is ten Ethernet-sized packets (14,720
        // bytes): a single 33 KB path-MTU probe would fill it and hold
        // back the hello, or a close, until the probe is acknowledged.
        // Ten of this path's datagrams instead, as the rule intends.
        let mut cc = quinn::congestion::CubicConfig::default();
        cc.initial_window(10 * u64::from(MAX_UDP_PAYLOAD));
        t.congestion_controller_factory(Arc::new(cc));
    } else {
        mtu.upper_bound(LAN_MTU);
    }
    t.mtu_discovery_config(Some(mtu));
    Arc::new(t)
}

/// The endpoint accepts datagrams up to the largest UDP payload, and says
/// so to its peers: QUIC caps a path's MTU at what the receiving end
/// announces (1472 bytes by default), so without this no path could go
/// past Ethernet's size, not even loopback.
fn endpoint_config() -> quinn::EndpointConfig {
    let mut c = quinn::EndpointConfig::default();
    // In range by construction: quinn accepts 1200..=65527.
    let _ = c.max_udp_payload_size(MAX_UDP_PAYLOAD);
    c
}

/// The largest UDP payload over IPv4 (65535 minus the IP and UDP headers).
const MAX_UDP_PAYLOAD: u16 = 65_507;

/// The largest datagram probed for on a LAN path (see [`transport_config`]).
const LAN_MTU: u16 = 6_500;

/// Socket buffers asked for (the kernel caps them at `net.core.rmem_max`
/// and `wmem_max`): room for a burst of large datagrams, so a receiver
/// that is a moment late does not drop them and halve the send rate.
const SOCKET_BUFFER: usize = 4 << 20;

fn tls_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Handshake(e.to_string())
}

impl Endpoint {
    /// Listen on `addr` (port 0 picks one) as `identity`, accepting only
    /// `trusted` nodes. `hello` is what this node says about itself; its
    /// `node` and `protocol` are set from the identity and this build.
    /// Must be called within a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        identity: Identity,
        trusted: TrustedIds,
        mut hello: Hello,
        config: QuicConfig,
    ) -> Result<Endpoint, TransportError> {
        hello.node = identity.node_id();
        hello.protocol = PROTOCOL_VERSION;
        let server_tls = tls::server_config(&identity, &trusted).map_err(tls_err)?;
        let server_crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).map_err(tls_err)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        let mut loopback = server.clone();
        server.transport_config(transport_config(&config, false));
        loopback.transport_config(transport_config(&config, true));
        let bind = |source| TransportError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
        {
            let r = socket2::SockRef::from(&socket);
            // Best effort: the defaults still work, only slower.
            let _ = r.set_recv_buffer_size(SOCKET_BUFFER);
            let _ = r.set_send_buffer_size(SOCKET_BUFFER);
        }
        let inner = quinn::Endpoint::new(
            endpoint_config(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind)?;
        Ok(Endpoint {
            inner,
            loopback: Arc::new(loopback),
            identity,
            trusted,
            hello,
            config,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.inner
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: ([0, 0, 0, 0], 0).into(),
                source,
            })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// Complete the TLS handshake with `addr` offering `alpn`, accepting
    /// only the node `expected` (which must be in `trusted`).
    async fn dial(
        &self,
        addr: SocketAddr,
        expected: NodeId,
        trusted: &TrustedIds,
        alpn: &[u8],
    ) -> Result<quinn::Connection, TransportError> {
        let client_tls = tls::client_config_for(&self.identity, trusted, Some(expected), alpn)
            .map_err(tls_err)?;
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(tls_err)?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport_config(&self.config, is_loopback(addr)));
        let connecting = self
            .inner
            .connect_with(client, addr, "softadastra")
            .map_err(|e| TransportError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Ok(done) => done.map_err(|e| connection_error(addr, &e)),
            Err(_) => Err(TransportError::Connect {
                addr,
                reason: format!(
                    "no answer within {} s (is the node running and reachable?)",
                    self.config.connect_timeout.as_secs()
                ),
            }),
        }
    }

    /// Dial `addr`, accepting only the node `expected`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: NodeId,
    ) -> Result<Peer, TransportError> {
        self.connect_speaking(addr, expected, ALPN).await
    }

    /// [`Endpoint::connect`] offering another protocol name: for tests of
    /// how nodes of different versions report each other.
    #[doc(hidden)]
    pub async fn connect_speaking(
        &self,
        addr: SocketAddr,
        expected: NodeId,
        alpn: &[u8],
    ) -> Result<Peer, TransportError> {
        let conn = self.dial(addr, expected, &self.trusted, alpn).await?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| connection_error(addr, &e))?;
        let mut control = ControlStream::new(send, recv);
        Peer::greet(conn, &mut control, &self.hello, self.config.hello_timeout)
            .await
            .map(|(id, hello, conn)| Peer::new(id, hello, conn, control))
    }

    /// Complete TLS with `addr` but send nothing: for tests of how a node
    /// treats a silent peer.
    #[doc(hidden)]
    pub async fn connect_without_hello(
        &self,
        addr: SocketAddr,
        expected: NodeId,
    ) -> Result<quinn::Connection, TransportError> {
        self.dial(addr, expected, &self.trusted, ALPN).await
    }

    /// Redeem `invite`: dial its addresses in turn (pinning the inviter, so
    /// the secret is shown to no one else) and prove the secret. `port` is
    /// where this node listens, for the inviter to dial back. On success
    /// returns the inviter's hello, the folder the invite shares and the
    /// address that answered; the caller then trusts the inviter.
    pub async fn join(
        &self,
        invite: &Invite,
        port: u16,
    ) -> Result<(Hello, Option<String>, SocketAddr), TransportError> {
        let pinned = TrustedIds::new([invite.inviter]);
        let mut last = TransportError::Handshake("the invite lists no address".into());
        for &addr in &invite.addrs {
            match self.join_at(addr, invite, &pinned, port).await {
                Ok((hello, folder)) => return Ok((hello, folder, addr)),
                // A refusal is the inviter's answer: trying elsewhere cannot help.
                Err(e @ TransportError::JoinRefused(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn join_at(
        &self,
        addr: SocketAddr,
        invite: &Invite,
        pinned: &TrustedIds,
        port: u16,
    ) -> Result<(Hello, Option<String>), TransportError> {
        // With no invite outstanding the inviter refuses unknown nodes in
        // the TLS handshake itself (and with TLS 1.3 the joiner learns it
        // only on its first stream), which means this code is spent.
        let spent = |e: TransportError| {
            match e {
            TransportError::Refused { .. } => TransportError::JoinRefused(
                "the inviter has no open invite: this code was already used or has expired, or the inviter restarted since; ask for a new code".into(),
            ),
            e => e,
        }
        };
        let conn = self
            .dial(addr, invite.inviter, pinned, JOIN_ALPN)
            .await
            .map_err(spent)?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| spent(connection_error(addr, &e)))?;
        let mut control = ControlStream::new(send, recv);
        let join = Message::Join {
            secret: invite.secret,
            hello: self.hello.clone(),
            port,
        };
        if let Err(e) = control.send(&join).await {
            return Err(spent(
                conn.close_reason()
                    .map_or(e, |reason| connection_error(addr, &reason)),
            ));
        }
        let answer = tokio::time::timeout(self.config.hello_timeout * 2, control.recv()).await;
        let result = match answer {
            Err(_) => Err(TransportError::Connect {
                addr,
                reason: "the inviter did not answer the join in time".into(),
            }),
            Ok(Ok(Message::Welcome { hello, folder })) if hello.node == invite.inviter => {
                Ok((hello, folder))
            }
            Ok(Ok(Message::JoinRefused { reason })) => Err(TransportError::JoinRefused(reason)),
            Ok(Ok(other)) => Err(TransportError::Protocol {
                peer: Some(invite.inviter),
                reason: format!("expected an answer to the join, got {other:?}"),
                code: close_code::UNEXPECTED,
            }),
            Ok(Err(e)) => Err(spent(
                conn.close_reason()
                    .map_or(e, |reason| connection_error(addr, &reason)),
            )),
        };
        conn.close(quinn::VarInt::from_u32(close_code::NORMAL), b"join done");
        result
    }

    /// Wait for the next incoming connection. `None` once the endpoint is
    /// closed. The handshake and hello happen in [`Accepting::establish`],
    /// so a slow or silent peer never holds up the next one.
    pub async fn accept(&self) -> Option<Accepting> {
        let incoming = self.inner.accept().await?;
        Some(Accepting {
            incoming,
            loopback: self.loopback.clone(),
            hello: self.hello.clone(),
            trusted: self.trusted.clone(),
            config: self.config,
        })
    }

    /// Stop listening and close every connection.
    pub fn close(&self) {
        self.inner.close(
            quinn::VarInt::from_u32(close_code::NORMAL),
            b"shutting down",
        );
    }

    /// Close every connection and wait (up to `limit`) until the peers have
    /// been told, so they see a clean close rather than a timeout.
    pub async fn shutdown(&self, limit: Duration) {
        self.close();
        let _ = tokio::time::timeout(limit, self.inner.wait_idle()).await;
    }
}
