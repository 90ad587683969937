//! Accepting connections: the handshake and hello run by the caller's
//! task, joins under the pairing protocol, and what a refusal or a closed
//! connection means.

use super::*;

/// An incoming connection not yet established.
#[derive(Debug)]
pub struct Accepting {
    pub(super) incoming: quinn::Incoming,
    pub(super) loopback: Arc<quinn::ServerConfig>,
    pub(super) hello: Hello,
    pub(super) trusted: TrustedIds,
    pub(super) config: QuicConfig,
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
    pub(super) own: Hello,
    pub(super) conn: quinn::Connection,
    pub(super) control: ControlStream,
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

pub(super) async fn read_join(
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
pub(super) fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// TLS alert `no_application_protocol`: the peers share no protocol version.
pub(super) const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Turn a quinn connection error into what it means for the user: another
/// protocol version, a refusal (certificate not trusted, or not the node
/// expected), or a plain connection failure.
pub(super) fn connection_error(addr: SocketAddr, e: &quinn::ConnectionError) -> TransportError {
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
