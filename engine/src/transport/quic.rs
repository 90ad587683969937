//! QUIC connections between trusting nodes (quinn over [`tls`](super::tls)).
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

/// An incoming connection not yet established.
#[derive(Debug)]
pub struct Accepting {
    incoming: quinn::Incoming,
    loopback: Arc<quinn::ServerConfig>,
    hello: Hello,
    trusted: TrustedIds,
    config: QuicConfig,
}

/// An established incoming connection: a trusted peer, or a node asking to
/// pair (which has been told nothing yet).
#[derive(Debug)]
pub enum Incoming {
    /// A trusted peer, hellos exchanged.
    Peer(Peer),
    /// An unknown node presenting an invite secret.
    Join(JoinRequest),
}

/// A node that wants to pair, with the secret it presents. Answer with
/// [`JoinRequest::welcome`] or [`JoinRequest::refuse`].
#[derive(Debug)]
pub struct JoinRequest {
    /// The joiner's node id (from its certificate).
    pub id: NodeId,
    /// What the joiner says about itself.
    pub hello: Hello,
    /// The invite secret it presents.
    pub secret: [u8; 16],
    /// The QUIC port it listens on (0: none).
    pub port: u16,
    own: Hello,
    conn: quinn::Connection,
    control: ControlStream,
}

impl JoinRequest {
    /// Where the joiner connected from.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Where the joiner can be dialled back: its source address with the port it announced.
    pub fn dial_back_addr(&self) -> Option<SocketAddr> {
        (self.port != 0).then(|| SocketAddr::new(self.conn.remote_address().ip(), self.port))
    }

    /// Accept: tell the joiner who this node is and which folder it shares.
    pub async fn welcome(mut self, folder: Option<String>) -> Result<(), TransportError> {
        let hello = self.own.clone();
        self.control
            .send(&Message::Welcome { hello, folder })
            .await?;
        self.control.finish();
        // The joiner closes once it has read the answer.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.closed()).await;
        Ok(())
    }

    /// Refuse, telling the joiner why.
    pub async fn refuse(mut self, reason: &str) {
        let _ = self
            .control
            .send(&Message::JoinRefused {
                reason: reason.to_string(),
            })
            .await;
        self.control.finish();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.closed()).await;
        self.conn.close(
            quinn::VarInt::from_u32(close_code::JOIN_REFUSED),
            reason.as_bytes(),
        );
    }
}

impl Accepting {
    /// Where it comes from.
    pub fn remote_addr(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Complete the handshake (refusing untrusted certificates) and the
    /// hello exchange — or, on a pairing connection, read the join request.
    pub async fn establish(self) -> Result<Incoming, TransportError> {
        let addr = self.incoming.remote_address();
        let connecting = if is_loopback(addr) {
            self.incoming.accept_with(self.loopback)
        } else {
            self.incoming.accept()
        };
        let conn = connecting
            .map_err(|e| connection_error(addr, &e))?
            .await
            .map_err(|e| connection_error(addr, &e))?;
        let id = peer_id(&conn)
            .ok_or_else(|| TransportError::Handshake("the peer presented no certificate".into()))?;
        let (send, recv) = tokio::time::timeout(self.config.hello_timeout, conn.accept_bi())
            .await
            .map_err(|_| TransportError::Protocol {
                peer: Some(id),
                reason: "no control stream opened".into(),
                code: close_code::UNEXPECTED,
            })?
            .map_err(|e| connection_error(addr, &e))?;
        let mut control = ControlStream::new(send, recv);
        if negotiated_alpn(&conn).as_deref() == Some(JOIN_ALPN) {
            return read_join(id, conn, control, self.hello, self.config.hello_timeout).await;
        }
        if !self.trusted.contains(&id) {
            // Let in by the pairing window, but not pairing: nothing to say to it.
            conn.close(
                quinn::VarInt::from_u32(close_code::NOT_TRUSTED),
                b"not trusted",
            );
            return Err(TransportError::Refused {
                addr,
                reason: format!("{id} is not trusted here"),
            });
        }
        let (id, hello, conn) =
            Peer::greet(conn, &mut control, &self.hello, self.config.hello_timeout).await?;
        Ok(Incoming::Peer(Peer::new(id, hello, conn, control)))
    }
}

async fn read_join(
    id: NodeId,
    conn: quinn::Connection,
    mut control: ControlStream,
    own: Hello,
    timeout: Duration,
) -> Result<Incoming, TransportError> {
    let refuse = |reason: String, code: u32| {
        conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
        TransportError::Protocol {
            peer: Some(id),
            reason,
            code,
        }
    };
    match tokio::time::timeout(timeout, control.recv()).await {
        Err(_) => Err(refuse(
            "no join request in time".into(),
            close_code::UNEXPECTED,
        )),
        Ok(Err(TransportError::Protocol { reason, code, .. })) => Err(refuse(reason, code)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Message::Join {
            secret,
            hello,
            port,
        })) => {
            if hello.node != id {
                return Err(refuse(
                    "join hello names another node than the certificate".into(),
                    close_code::UNEXPECTED,
                ));
            }
            if hello.protocol != PROTOCOL_VERSION {
                return Err(refuse(
                    format!(
                        "joiner speaks protocol {}, this node {PROTOCOL_VERSION}",
                        hello.protocol
                    ),
                    close_code::VERSION,
                ));
            }
            Ok(Incoming::Join(JoinRequest {
                id,
                hello,
                secret,
                port,
                own,
                conn,
                control,
            }))
        }
        Ok(Ok(_)) => Err(refuse(
            "a pairing connection must start with a join request".into(),
            close_code::UNEXPECTED,
        )),
    }
}

/// The protocol the TLS handshake settled on.
fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// TLS alert `no_application_protocol`: the peers share no protocol version.
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Turn a quinn connection error into what it means for the user: another
/// protocol version, a refusal (certificate not trusted, or not the node
/// expected), or a plain connection failure.
fn connection_error(addr: SocketAddr, e: &quinn::ConnectionError) -> TransportError {
    use quinn::ConnectionError as C;
    let code = match e {
        C::ConnectionClosed(c) => Some(c.error_code),
        C::TransportError(t) => Some(t.code),
        _ => None,
    };
    let tls_alert = code.and_then(|c| {
        let v = u64::from(c);
        (0x100..0x200).contains(&v).then(|| (v - 0x100) as u8)
    });
    match (tls_alert, e) {
        (Some(ALERT_NO_APPLICATION_PROTOCOL), _) => TransportError::VersionMismatch {
            addr,
            detail: "no protocol version in common (TLS ALPN)".into(),
        },
        (Some(_), _) => TransportError::Refused {
            addr,
            reason: format!("the TLS handshake failed: {e}"),
        },
        (None, C::ApplicationClosed(c))
            if c.error_code == quinn::VarInt::from_u32(close_code::VERSION) =>
        {
            TransportError::VersionMismatch {
                addr,
                detail: String::from_utf8_lossy(&c.reason).into_owned(),
            }
        }
        (None, C::ApplicationClosed(c))
            if c.error_code == quinn::VarInt::from_u32(close_code::NOT_TRUSTED) =>
        {
            TransportError::Refused {
                addr,
                reason: "it does not trust this node".into(),
            }
        }
        _ => TransportError::Connect {
            addr,
            reason: e.to_string(),
        },
    }
}

/// The control stream of a connection.
#[derive(Debug)]
pub struct ControlStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl ControlStream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        ControlStream {
            send,
            recv,
            decoder: FrameDecoder::new(MAX_CONTROL_FRAME),
            buf: vec![0; 64 << 10],
        }
    }

    /// Send one message.
    pub async fn send(&mut self, message: &Message) -> Result<(), TransportError> {
        let mut frame = Vec::new();
        wire::encode(message, MAX_CONTROL_FRAME, &mut frame).map_err(|e| {
            TransportError::Protocol {
                peer: None,
                reason: e.to_string(),
                code: e.close_code(),
            }
        })?;
        self.send
            .write_all(&frame)
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))
    }

    /// Finish the sending side of the stream (no more messages).
    #[doc(hidden)]
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    /// Write raw bytes, bypassing the encoder: for tests of how peers
    /// handle malformed input.
    #[doc(hidden)]
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))
    }

    /// Receive one message.
    pub async fn recv(&mut self) -> Result<Message, TransportError> {
        loop {
            match self.decoder.poll() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(wire_error(e)),
            }
            match self.recv.read(&mut self.buf).await {
                Ok(Some(n)) => self.decoder.push(&self.buf[..n]),
                Ok(None) => {
                    return Err(TransportError::Closed(
                        "the peer finished the control stream".into(),
                    ));
                }
                Err(e) => return Err(TransportError::Closed(e.to_string())),
            }
        }
    }
}

fn wire_error(e: WireError) -> TransportError {
    TransportError::Protocol {
        peer: None,
        code: e.close_code(),
        reason: e.to_string(),
    }
}

/// An established connection with a trusted peer.
#[derive(Debug)]
pub struct Peer {
    /// The peer's node id (from its certificate).
    pub id: NodeId,
    /// What the peer said about itself.
    pub hello: Hello,
    conn: quinn::Connection,
    /// The control stream.
    pub control: ControlStream,
    outbox_tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    outbox: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Peer {
    fn new(id: NodeId, hello: Hello, conn: quinn::Connection, control: ControlStream) -> Peer {
        let (outbox_tx, outbox) = tokio::sync::mpsc::unbounded_channel();
        Peer {
            id,
            hello,
            conn,
            control,
            outbox_tx,
            outbox,
        }
    }

    async fn greet(
        conn: quinn::Connection,
        control: &mut ControlStream,
        own: &Hello,
        timeout: Duration,
    ) -> Result<(NodeId, Hello, quinn::Connection), TransportError> {
        let id = peer_id(&conn)
            .ok_or_else(|| TransportError::Handshake("the peer presented no certificate".into()))?;
        let fail = |conn: &quinn::Connection, code: u32, reason: String| {
            conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
            tracing::warn!(peer = %id, code, %reason, "closing connection");
            TransportError::Protocol {
                peer: Some(id),
                reason,
                code,
            }
        };
        if let Err(e) = control.send(&Message::Hello(own.clone())).await {
            return Err(conn
                .close_reason()
                .map_or(e, |r| connection_error(conn.remote_address(), &r)));
        }
        let first = match tokio::time::timeout(timeout, control.recv()).await {
            Err(_) => {
                return Err(fail(
                    &conn,
                    close_code::UNEXPECTED,
                    "no hello in time".into(),
                ));
            }
            Ok(Err(TransportError::Protocol { reason, code, .. })) => {
                return Err(fail(&conn, code, reason));
            }
            Ok(Err(e)) => {
                // A refusal by the peer (with TLS 1.3, a client certificate
                // it does not trust) shows up here, as the connection's end.
                return Err(conn
                    .close_reason()
                    .map_or(e, |r| connection_error(conn.remote_address(), &r)));
            }
            Ok(Ok(m)) => m,
        };
        let hello = match first {
            Message::Hello(h) => h,
            other => {
                return Err(fail(
                    &conn,
                    close_code::UNEXPECTED,
                    format!("expected hello, got {other:?}"),
                ));
            }
        };
        if hello.protocol != PROTOCOL_VERSION {
            return Err(fail(
                &conn,
                close_code::VERSION,
                format!(
                    "peer speaks protocol {}, this node {}",
                    hello.protocol, PROTOCOL_VERSION
                ),
            ));
        }
        if hello.node != id {
            return Err(fail(
                &conn,
                close_code::UNEXPECTED,
                format!(
                    "hello claims node {} but the certificate is {}",
                    hello.node, id
                ),
            ));
        }
        Ok((id, hello, conn))
    }

    /// A cheap handle to this connection (for a registry): id, close, closed.
    pub fn handle(&self) -> PeerHandle {
        PeerHandle {
            id: self.id,
            name: self.hello.name.clone(),
            conn: self.conn.clone(),
            outbox: self.outbox_tx.clone(),
        }
    }

    /// Serve the control stream until the connection ends: answer pings,
    /// hand application messages to `inbound`,
    /// send those queued through [`PeerHandle::send`], stop on a goodbye,
    /// and close the connection with the matching [`close_code`] (and a log
    /// line) on a malformed, oversized or unexpected message. Returns why
    /// the connection ended.
    pub async fn serve(mut self, mut inbound: impl FnMut(Vec<u8>) + Send) -> String {
        loop {
            let fail = |conn: &quinn::Connection, code: u32, reason: String| {
                tracing::warn!(peer = %self.id, code, %reason, "closing connection: protocol violation");
                conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
                format!("closed by us: {reason}")
            };
            let received = tokio::select! {
                r = self.control.recv() => r,
                Some(payload) = self.outbox.recv() => {
                    if let Err(e) = self.control.send(&Message::App(payload)).await {
                        return e.to_string();
                    }
                    continue;
                }
            };
            match received {
                Ok(Message::Ping { nonce }) => {
                    if let Err(e) = self.control.send(&Message::Pong { nonce }).await {
                        return e.to_string();
                    }
                }
                Ok(Message::Pong { .. }) => {}
                Ok(Message::App(payload)) => inbound(payload),
                Ok(Message::Goodbye { code, reason }) => {
                    self.conn
                        .close(quinn::VarInt::from_u32(close_code::NORMAL), b"goodbye");
                    return format!("peer said goodbye ({code}: {reason})");
                }
                Ok(Message::Hello(_)) => {
                    return fail(&self.conn, close_code::UNEXPECTED, "a second hello".into());
                }
                Ok(
                    Message::Join { .. } | Message::Welcome { .. } | Message::JoinRefused { .. },
                ) => {
                    return fail(
                        &self.conn,
                        close_code::UNEXPECTED,
                        "a pairing message on a peer connection".into(),
                    );
                }
                Err(TransportError::Protocol { code, reason, .. }) => {
                    return fail(&self.conn, code, reason);
                }
                Err(e) => {
                    if let Some(r) = self.conn.close_reason() {
                        return r.to_string();
                    }
                    // The peer ended its control stream (perhaps mid-frame)
                    // without closing: nothing more can be said on it.
                    return fail(
                        &self.conn,
                        close_code::UNEXPECTED,
                        format!("control stream ended: {e}"),
                    );
                }
            }
        }
    }

    /// Close the connection with `code` and a reason.
    pub fn close(&self, code: u32, reason: &str) {
        self.conn
            .close(quinn::VarInt::from_u32(code), reason.as_bytes());
    }

    /// Wait until the connection is closed; returns why.
    pub async fn closed(&self) -> String {
        self.conn.closed().await.to_string()
    }

    /// Remote address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }
}

/// A handle to a live connection, kept by a registry while [`Peer::serve`] runs.
#[derive(Debug, Clone)]
pub struct PeerHandle {
    /// The peer's node id.
    pub id: NodeId,
    /// The peer's display name.
    pub name: String,
    conn: quinn::Connection,
    outbox: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
}

/// A bulk-data stream: raw bytes, separate from the control stream, so a
/// large transfer never blocks small messages. Any number may be open at once.
#[derive(Debug)]
pub struct BulkStream {
    /// Sending half.
    pub send: quinn::SendStream,
    /// Receiving half.
    pub recv: quinn::RecvStream,
}

impl BulkStream {
    /// Write all of `bytes`.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))
    }
    /// Read into `buf`; `Ok(0)` once the peer finished the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        match self.recv.read(buf).await {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Ok(0),
            Err(e) => Err(TransportError::Closed(e.to_string())),
        }
    }
    /// Read exactly `buf.len()` bytes; an error if the stream ends first.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), TransportError> {
        self.recv.read_exact(buf).await.map_err(|e| match e {
            quinn::ReadExactError::FinishedEarly(n) => {
                TransportError::Closed(format!("stream ended {n} bytes early"))
            }
            quinn::ReadExactError::ReadError(e) => TransportError::Closed(e.to_string()),
        })
    }
    /// The next bytes as they arrived, at most `max` of them, without
    /// copying them out of the connection's buffers; `None` once the peer
    /// finished the stream.
    pub async fn read_bytes(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        match self.recv.read_chunk(max, true).await {
            Ok(c) => Ok(c.map(|c| c.bytes)),
            Err(e) => Err(TransportError::Closed(e.to_string())),
        }
    }
    /// Write `bytes`, handing the buffer itself to the connection (no copy).
    pub async fn write_bytes(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        self.send
            .write_chunk(bytes)
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))
    }
    /// No more bytes will be written.
    pub fn finish(&mut self) -> Result<(), TransportError> {
        self.send
            .finish()
            .map_err(|e| TransportError::Closed(e.to_string()))
    }
}

impl PeerHandle {
    /// Queue an application message (sent as [`Message::App`] on the
    /// control stream, in order). False once the connection is gone.
    pub fn send(&self, payload: Vec<u8>) -> bool {
        self.outbox.send(payload).is_ok()
    }

    /// Open a new bulk-data stream to the peer.
    pub async fn open_bulk(&self) -> Result<BulkStream, TransportError> {
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))?;
        Ok(BulkStream { send, recv })
    }

    /// Wait for the peer to open a bulk-data stream.
    pub async fn accept_bulk(&self) -> Result<BulkStream, TransportError> {
        let (send, recv) = self
            .conn
            .accept_bi()
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))?;
        Ok(BulkStream { send, recv })
    }

    /// Close the connection.
    pub fn close(&self, code: u32, reason: &str) {
        self.conn
            .close(quinn::VarInt::from_u32(code), reason.as_bytes());
    }
    /// Whether two handles are the same connection.
    pub fn same_connection(&self, other: &PeerHandle) -> bool {
        self.conn.stable_id() == other.conn.stable_id()
    }
    /// Remote address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }
    /// The largest UDP payload the path is known to carry now (path MTU
    /// discovery raises it from 1200 while the connection lives).
    pub fn path_mtu(&self) -> u16 {
        self.conn.stats().path.current_mtu
    }
}

fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(tls::node_id_of)
}
