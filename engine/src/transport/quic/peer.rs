//! A connected peer: its control stream (framed messages, the serving
//! loop) and its bulk streams (raw bytes, any number at once).

use super::*;

/// The control stream of a connection.
#[derive(Debug)]
pub struct ControlStream {
    pub(super) send: quinn::SendStream,
    pub(super) recv: quinn::RecvStream,
    pub(super) decoder: FrameDecoder,
    pub(super) buf: Vec<u8>,
}

impl ControlStream {
    pub(super) fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
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

pub(super) fn wire_error(e: WireError) -> TransportError {
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
    pub(super) conn: quinn::Connection,
    /// The control stream.
    pub control: ControlStream,
    pub(super) outbox_tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    pub(super) outbox: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Peer {
    pub(super) fn new(
        id: NodeId,
        hello: Hello,
        conn: quinn::Connection,
        control: ControlStream,
    ) -> Peer {
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

    pub(super) async fn greet(
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
    pub(super) conn: quinn::Connection,
    pub(super) outbox: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
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

pub(super) fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(tls::node_id_of)
}
