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

use super::TransportError;
use super::identity::Identity;
use super::tls::{self, TrustedIds};
use super::wire::{
    self, FrameDecoder, Hello, MAX_CONTROL_FRAME, Message, PROTOCOL_VERSION, WireError, close_code,
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
}

impl Default for QuicConfig {
    /// 5 s keepalive, 20 s idle timeout, 5 s for the hello.
    fn default() -> Self {
        QuicConfig {
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            hello_timeout: Duration::from_secs(5),
        }
    }
}

/// A bound QUIC endpoint: listens, and dials trusted peers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    identity: Identity,
    trusted: TrustedIds,
    hello: Hello,
    config: QuicConfig,
}

fn transport_config(config: &QuicConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(config.keepalive));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(config.idle_timeout).ok());
    Arc::new(t)
}

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
        server.transport_config(transport_config(&config));
        let inner = quinn::Endpoint::server(server, addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        Ok(Endpoint {
            inner,
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

    /// Dial `addr`, accepting only the node `expected`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: NodeId,
    ) -> Result<Peer, TransportError> {
        let client_tls =
            tls::client_config(&self.identity, &self.trusted, Some(expected)).map_err(tls_err)?;
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(tls_err)?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport_config(&self.config));
        let connecting = self
            .inner
            .connect_with(client, addr, "softadastra")
            .map_err(|e| TransportError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let conn = connecting.await.map_err(|e| TransportError::Connect {
            addr,
            reason: e.to_string(),
        })?;
        let (send, recv) = conn.open_bi().await.map_err(|e| TransportError::Connect {
            addr,
            reason: format!("refused by the peer ({e})"),
        })?;
        let mut control = ControlStream::new(send, recv);
        Peer::greet(conn, &mut control, &self.hello, self.config.hello_timeout)
            .await
            .map(|(id, hello, conn)| Peer {
                id,
                hello,
                conn,
                control,
            })
    }

    /// Complete TLS with `addr` but send nothing: for tests of how a node
    /// treats a silent peer.
    #[doc(hidden)]
    pub async fn connect_without_hello(
        &self,
        addr: SocketAddr,
        expected: NodeId,
    ) -> Result<quinn::Connection, TransportError> {
        let client_tls =
            tls::client_config(&self.identity, &self.trusted, Some(expected)).map_err(tls_err)?;
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(tls_err)?;
        let connecting = self
            .inner
            .connect_with(
                quinn::ClientConfig::new(Arc::new(crypto)),
                addr,
                "softadastra",
            )
            .map_err(|e| TransportError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        connecting.await.map_err(|e| TransportError::Connect {
            addr,
            reason: e.to_string(),
        })
    }

    /// Wait for the next incoming connection. `None` once the endpoint is
    /// closed. The handshake and hello happen in [`Accepting::establish`],
    /// so a slow or silent peer never holds up the next one.
    pub async fn accept(&self) -> Option<Accepting> {
        let incoming = self.inner.accept().await?;
        Some(Accepting {
            incoming,
            hello: self.hello.clone(),
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
    hello: Hello,
    config: QuicConfig,
}

impl Accepting {
    /// Where it comes from.
    pub fn remote_addr(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Complete the handshake (refusing untrusted certificates) and the
    /// hello exchange.
    pub async fn establish(self) -> Result<Peer, TransportError> {
        let addr = self.incoming.remote_address();
        let conn = self.incoming.await.map_err(|e| TransportError::Connect {
            addr,
            reason: e.to_string(),
        })?;
        let (send, recv) = tokio::time::timeout(self.config.hello_timeout, conn.accept_bi())
            .await
            .map_err(|_| TransportError::Protocol {
                peer: None,
                reason: "no control stream opened".into(),
                code: close_code::UNEXPECTED,
            })?
            .map_err(|e| TransportError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let mut control = ControlStream::new(send, recv);
        let (id, hello, conn) =
            Peer::greet(conn, &mut control, &self.hello, self.config.hello_timeout).await?;
        Ok(Peer {
            id,
            hello,
            conn,
            control,
        })
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
}

impl Peer {
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
        control.send(&Message::Hello(own.clone())).await?;
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
            Ok(Err(e)) => return Err(e),
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
        }
    }

    /// Serve the control stream until the connection ends: answer pings,
    /// stop on a goodbye, and close the connection with the matching
    /// [`close_code`] (and a log line) on a malformed, oversized or
    /// unexpected message. Returns why the connection ended.
    pub async fn serve(mut self) -> String {
        loop {
            let fail = |code: u32, reason: String| {
                tracing::warn!(peer = %self.id, code, %reason, "closing connection: protocol violation");
                self.conn
                    .close(quinn::VarInt::from_u32(code), reason.as_bytes());
                format!("closed by us: {reason}")
            };
            match self.control.recv().await {
                Ok(Message::Ping { nonce }) => {
                    if let Err(e) = self.control.send(&Message::Pong { nonce }).await {
                        return e.to_string();
                    }
                }
                Ok(Message::Pong { .. }) => {}
                Ok(Message::Goodbye { code, reason }) => {
                    self.conn
                        .close(quinn::VarInt::from_u32(close_code::NORMAL), b"goodbye");
                    return format!("peer said goodbye ({code}: {reason})");
                }
                Ok(Message::Hello(_)) => {
                    return fail(close_code::UNEXPECTED, "a second hello".into());
                }
                Err(TransportError::Protocol { code, reason, .. }) => return fail(code, reason),
                Err(e) => {
                    if let Some(r) = self.conn.close_reason() {
                        return r.to_string();
                    }
                    // The peer ended its control stream (perhaps mid-frame)
                    // without closing: nothing more can be said on it.
                    return fail(close_code::UNEXPECTED, format!("control stream ended: {e}"));
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
    /// No more bytes will be written.
    pub fn finish(&mut self) -> Result<(), TransportError> {
        self.send
            .finish()
            .map_err(|e| TransportError::Closed(e.to_string()))
    }
}

impl PeerHandle {
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
}

fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(tls::node_id_of)
}
