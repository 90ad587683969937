//! TLS 1.3 with mutual authentication by pinned node id.
//!
//! There is no certificate authority. Each node presents its self-signed
//! certificate; the other side computes the node id (blake3 of the DER) and
//! accepts the connection only if that id is in its [`TrustedIds`] — and,
//! when dialling a particular peer, only if it is *that* peer. The TLS
//! handshake's signature check proves the presenter holds the certificate's
//! key, so a node that pins an id pins one key: a valid certificate under an
//! unknown id, or the right name with another key, is refused during the
//! handshake and learns nothing.
//!
//! Only the `ring` provider is compiled in, and only TLS 1.3 is offered.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::identity::Identity;
use super::wire::{ALPN, JOIN_ALPN};
use crate::core::{Clock, NodeId, SystemClock, Timestamp};

/// The set of node ids this node accepts connections with; shared and
/// updatable while connections run (a peer added or removed takes effect on
/// the next handshake).
///
/// It also carries the *pairing window*: while an invite is outstanding, a
/// client certificate under an unknown id passes the TLS handshake — and
/// the connection may then do nothing but prove an invite secret (see
/// [`super::pairing`]); a connection under the normal ALPN from an unknown
/// id is closed at once with [`close_code::NOT_TRUSTED`](super::wire::close_code::NOT_TRUSTED).
#[derive(Debug, Clone, Default)]
pub struct TrustedIds(Arc<TrustInner>);

#[derive(Debug, Default)]
struct TrustInner {
    ids: RwLock<HashSet<NodeId>>,
    /// Wall time (ns since the epoch) until which unknown clients may pair.
    pairing_until: AtomicU64,
}

impl TrustedIds {
    /// A set holding `ids`.
    pub fn new(ids: impl IntoIterator<Item = NodeId>) -> Self {
        TrustedIds(Arc::new(TrustInner {
            ids: RwLock::new(ids.into_iter().collect()),
            pairing_until: AtomicU64::new(0),
        }))
    }
    /// Whether `id` is trusted.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.0.ids.read().map(|s| s.contains(id)).unwrap_or(false)
    }
    /// Replace the whole set.
    pub fn replace(&self, ids: impl IntoIterator<Item = NodeId>) {
        if let Ok(mut s) = self.0.ids.write() {
            *s = ids.into_iter().collect();
        }
    }
    /// Trust one more id.
    pub fn insert(&self, id: NodeId) {
        if let Ok(mut s) = self.0.ids.write() {
            s.insert(id);
        }
    }
    /// Let unknown clients complete TLS (to pair) until `until`; `None` closes the window.
    pub fn set_pairing_window(&self, until: Option<Timestamp>) {
        self.0
            .pairing_until
            .store(until.map_or(0, Timestamp::as_nanos), Ordering::SeqCst);
    }
    /// Whether unknown clients may complete TLS now.
    pub fn pairing_open(&self) -> bool {
        SystemClock.wall().as_nanos() < self.0.pairing_until.load(Ordering::SeqCst)
    }
}

/// The node id a certificate stands for.
pub fn node_id_of(cert: &CertificateDer<'_>) -> NodeId {
    NodeId::derive(cert.as_ref())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn refuse() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

#[derive(Debug)]
struct PinnedVerifier {
    trusted: TrustedIds,
    /// When dialling a particular peer: only that id.
    expected: Option<NodeId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    /// `pairing`: checking a client, which may be unknown while the pairing
    /// window is open.
    fn check(
        &self,
        cert: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        pairing: bool,
    ) -> Result<(), rustls::Error> {
        let id = node_id_of(cert);
        let wanted = self.expected.is_none_or(|e| e == id);
        let known = self.trusted.contains(&id) || (pairing && self.trusted.pairing_open());
        if intermediates.is_empty() && wanted && known {
            Ok(())
        } else {
            tracing::info!(peer = %id, "refused a certificate whose node id is not trusted here");
            Err(refuse())
        }
    }
    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, false)
            .map(|()| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, true)
            .map(|()| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn verifier(trusted: &TrustedIds, expected: Option<NodeId>) -> Arc<PinnedVerifier> {
    Arc::new(PinnedVerifier {
        trusted: trusted.clone(),
        expected,
        algorithms: provider().signature_verification_algorithms,
    })
}

fn chain(identity: &Identity) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        vec![CertificateDer::from(identity.cert_der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der().to_vec())),
    )
}

/// The server side: presents `identity`, requires a client certificate
/// whose id is in `trusted`.
pub fn server_config(
    identity: &Identity,
    trusted: &TrustedIds,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let (certs, key) = chain(identity);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier(trusted, None))
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN.to_vec(), JOIN_ALPN.to_vec()];
    Ok(config)
}

/// The client side: presents `identity`; accepts the server only if its id
/// is `expected` (when given) and in `trusted`.
pub fn client_config(
    identity: &Identity,
    trusted: &TrustedIds,
    expected: Option<NodeId>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    client_config_for(identity, trusted, expected, ALPN)
}

/// [`client_config`] offering the protocol `alpn` (e.g. [`JOIN_ALPN`]).
pub fn client_config_for(
    identity: &Identity,
    trusted: &TrustedIds,
    expected: Option<NodeId>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let (certs, key) = chain(identity);
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier(trusted, expected))
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The server name every node uses: identity is the pinned id, not a name.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("softadastra")
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConnection, ServerConnection};

    fn identity(name: &str) -> (tempfile::TempDir, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::create(dir.path(), name).unwrap();
        (dir, id)
    }

    /// Run an in-memory handshake; Ok(peer id as seen by the server) or the first error.
    fn handshake(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
    ) -> Result<(NodeId, NodeId), String> {
        let mut c =
            ClientConnection::new(Arc::new(client), server_name()).map_err(|e| e.to_string())?;
        let mut s = ServerConnection::new(Arc::new(server)).map_err(|e| e.to_string())?;
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).map_err(|e| e.to_string())?;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).map_err(|e| e.to_string())?;
            }
            s.process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).map_err(|e| e.to_string())?;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).map_err(|e| e.to_string())?;
            }
            c.process_new_packets()
                .map_err(|e| format!("client: {e}"))?;
            if !c.is_handshaking() && !s.is_handshaking() {
                let seen_by_server = node_id_of(&s.peer_certificates().ok_or("no client cert")?[0]);
                let seen_by_client = node_id_of(&c.peer_certificates().ok_or("no server cert")?[0]);
                assert_eq!(s.alpn_protocol(), Some(ALPN));
                return Ok((seen_by_server, seen_by_client));
            }
        }
        Err("handshake did not finish".into())
    }

    #[test]
    fn mutual_trust_completes_and_names_both_sides() {
        let ((_a, a), (_b, b)) = (identity("a"), identity("b"));
        let client = client_config(&a, &TrustedIds::new([b.node_id()]), Some(b.node_id())).unwrap();
        let server = server_config(&b, &TrustedIds::new([a.node_id()])).unwrap();
        assert_eq!(handshake(client, server), Ok((a.node_id(), b.node_id())));
    }

    #[test]
    fn an_untrusted_client_is_refused_by_the_server() {
        let ((_a, a), (_b, b)) = (identity("a"), identity("b"));
        let client = client_config(&a, &TrustedIds::new([b.node_id()]), None).unwrap();
        let server = server_config(&b, &TrustedIds::default()).unwrap();
        let err = handshake(client, server).unwrap_err();
        assert!(err.starts_with("server:"), "{err}");
    }

    #[test]
    fn the_wrong_server_for_a_pinned_id_is_refused_by_the_client() {
        let ((_a, a), (_b, b), (_m, mallory)) = (identity("a"), identity("b"), identity("mallory"));
        // Mallory trusts everyone and answers where b was expected.
        let client = client_config(
            &a,
            &TrustedIds::new([b.node_id(), mallory.node_id()]),
            Some(b.node_id()),
        )
        .unwrap();
        let server = server_config(&mallory, &TrustedIds::new([a.node_id()])).unwrap();
        let err = handshake(client, server).unwrap_err();
        assert!(err.starts_with("client:"), "{err}");
    }

    #[test]
    fn a_pinned_certificate_without_its_key_is_refused() {
        let ((_a, a), (_b, b), (_m, m)) = (identity("a"), identity("b"), identity("m"));
        // m presents b's certificate (b's trusted id) but signs with its own key.
        let (b_cert, _) = chain(&b);
        let (_, m_key) = chain(&m);
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier(&TrustedIds::new([a.node_id()]), None))
            .with_single_cert(b_cert, m_key);
        match server {
            // rustls may already refuse the mismatched pair at configuration.
            Err(_) => {}
            Ok(mut server) => {
                server.alpn_protocols = vec![ALPN.to_vec()];
                let client =
                    client_config(&a, &TrustedIds::new([b.node_id()]), Some(b.node_id())).unwrap();
                let err = handshake(client, server).unwrap_err();
                assert!(err.starts_with("client:"), "{err}");
            }
        }
    }

    #[test]
    fn the_pairing_window_admits_unknown_clients_only_while_open() {
        let ((_a, a), (_b, b)) = (identity("a"), identity("b"));
        let server_trust = TrustedIds::default();
        let client = || client_config(&a, &TrustedIds::new([b.node_id()]), None).unwrap();
        let server = || server_config(&b, &server_trust).unwrap();
        assert!(handshake(client(), server()).is_err());
        let now = SystemClock.wall().as_nanos();
        server_trust.set_pairing_window(Some(Timestamp(now + 60_000_000_000)));
        assert!(server_trust.pairing_open());
        assert!(handshake(client(), server()).is_ok());
        server_trust.set_pairing_window(Some(Timestamp(now.saturating_sub(1))));
        assert!(!server_trust.pairing_open(), "an expired window is closed");
        assert!(handshake(client(), server()).is_err());
        // The window never lets a client accept an unknown *server*.
        server_trust.set_pairing_window(Some(Timestamp(now + 60_000_000_000)));
        let lenient = TrustedIds::default();
        lenient.set_pairing_window(Some(Timestamp(now + 60_000_000_000)));
        let client = client_config(&a, &lenient, None).unwrap();
        assert!(handshake(client, server()).is_err());
    }

    #[test]
    fn trust_changes_apply_to_the_next_handshake() {
        let ((_a, a), (_b, b)) = (identity("a"), identity("b"));
        let server_trust = TrustedIds::default();
        let client = || client_config(&a, &TrustedIds::new([b.node_id()]), None).unwrap();
        assert!(handshake(client(), server_config(&b, &server_trust).unwrap()).is_err());
        server_trust.replace([a.node_id()]);
        assert!(handshake(client(), server_config(&b, &server_trust).unwrap()).is_ok());
    }
}
