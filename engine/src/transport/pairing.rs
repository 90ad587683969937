//! One-step pairing: invite codes and their one-time secrets.
//!
//! The inviter (a running node) issues an [`Invite`]: its node id, the
//! addresses it listens on, optionally a folder id, a random 128-bit
//! one-time secret and an expiry, printed as a copy-safe code. The joiner
//! parses the code, dials one of the addresses under the pairing ALPN
//! ([`JOIN_ALPN`](super::wire::JOIN_ALPN)) pinning the inviter's id — so the
//! secret is only ever revealed to the inviter — and sends it in a
//! [`Message::Join`](super::wire::Message::Join). The inviter redeems it in
//! its [`Invitations`]: unknown, expired and already used secrets are
//! refused with a reason; a good one is consumed and both sides add each
//! other to their trusted peers.
//!
//! Pending invitations live in the running node's memory only: a restart
//! of the inviter invalidates every outstanding code (they are meant to
//! live minutes, and a code that outlives a restart would be a surprise).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tls::TrustedIds;
use crate::core::{NodeId, Timestamp, base32_decode, base32_encode};

/// Default lifetime of an invite.
pub const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(15 * 60);

/// Text before the body of an invite code: product and code version.
const CODE_PREFIX: &str = "SA1";

/// Everything a joiner needs: who to reach, where, and the secret to prove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The inviting node.
    pub inviter: NodeId,
    /// Where it listens.
    pub addrs: Vec<SocketAddr>,
    /// The folder it shares with the joiner, if any.
    pub folder: Option<String>,
    /// The one-time secret.
    pub secret: [u8; 16],
    /// When the invite stops working.
    pub expires: Timestamp,
}

/// Why an invite code or a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// The text is not an invite code at all.
    #[error(
        "not an invite code: {0} (codes start with {CODE_PREFIX} and come from `softadastra invite`)"
    )]
    NotACode(&'static str),
    /// The check sum does not match: a character was lost or changed.
    #[error("the invite code is damaged (a character is missing or mistyped); copy it again")]
    Damaged,
    /// The invite's time is up.
    #[error("this invite has expired; ask for a new one with `softadastra invite`")]
    Expired,
    /// The invite was already redeemed.
    #[error("this invite was already used; each code pairs one node — ask for a new one")]
    AlreadyUsed,
    /// The inviter knows no such invite (never issued, or issued before it restarted).
    #[error(
        "the inviter does not know this invite (it may have restarted since); ask for a new one"
    )]
    Unknown,
    /// The operating system's random generator failed.
    #[error("the operating system provided no randomness for an invite secret")]
    NoRandomness,
}

impl Invite {
    /// The copy-safe text form: `SA1-` then base32 groups of six, the last
    /// four bytes of the body being a blake3 check of the rest.
    pub fn to_code(&self) -> String {
        let mut body = postcard::to_allocvec(self).unwrap_or_default();
        let check = blake3::hash(&body);
        body.extend_from_slice(&check.as_bytes()[..4]);
        let text = base32_encode(&body);
        let groups: Vec<&str> = text
            .as_bytes()
            .chunks(6)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        format!("{CODE_PREFIX}-{}", groups.join("-"))
    }

    /// Read a code printed by [`Invite::to_code`] (case, spaces and line
    /// breaks forgiven).
    pub fn parse(code: &str) -> Result<Invite, PairingError> {
        let cleaned: String = code
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        let body = cleaned
            .strip_prefix(CODE_PREFIX)
            .ok_or(PairingError::NotACode("it does not start with SA1"))?;
        let bytes = base32_decode(body)
            .ok_or(PairingError::NotACode("it has characters codes never use"))?;
        if bytes.len() < 4 {
            return Err(PairingError::NotACode("it is too short"));
        }
        let (payload, check) = bytes.split_at(bytes.len() - 4);
        if blake3::hash(payload).as_bytes()[..4] != *check {
            return Err(PairingError::Damaged);
        }
        postcard::from_bytes(payload).map_err(|_| PairingError::Damaged)
    }
}

/// A fresh 128-bit secret from the operating system's CSPRNG.
pub fn fresh_secret() -> Result<[u8; 16], PairingError> {
    use ring::rand::SecureRandom;
    let mut secret = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| PairingError::NoRandomness)?;
    Ok(secret)
}

#[derive(Debug)]
struct Pending {
    expires: Timestamp,
    folder: Option<String>,
    used: bool,
}

/// The invites a running node has issued, and the pairing window they open.
#[derive(Debug)]
pub struct Invitations {
    pending: Mutex<HashMap<[u8; 16], Pending>>,
    trusted: TrustedIds,
}

impl Invitations {
    /// An empty set whose window is kept on `trusted`.
    pub fn new(trusted: TrustedIds) -> Self {
        Invitations {
            pending: Mutex::default(),
            trusted,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Pending>> {
        crate::core::lock(&self.pending)
    }

    /// Keep the TLS pairing window open exactly as long as the latest
    /// unused invite lives; forget invites long past.
    fn update_window(&self, pending: &mut HashMap<[u8; 16], Pending>, now: Timestamp) {
        pending.retain(|_, p| p.expires.as_nanos() + 3_600_000_000_000 > now.as_nanos());
        let until = pending
            .values()
            .filter(|p| !p.used && p.expires > now)
            .map(|p| p.expires)
            .max();
        self.trusted.set_pairing_window(until);
    }

    /// Issue an invite from `inviter` reachable at `addrs`, valid for `ttl`.
    /// Fails only if the OS cannot provide randomness.
    pub fn issue(
        &self,
        inviter: NodeId,
        addrs: Vec<SocketAddr>,
        folder: Option<String>,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Invite, PairingError> {
        let secret = fresh_secret()?;
        let expires = Timestamp(now.as_nanos() + ttl.as_nanos() as u64);
        let mut pending = self.lock();
        pending.insert(
            secret,
            Pending {
                expires,
                folder: folder.clone(),
                used: false,
            },
        );
        self.update_window(&mut pending, now);
        Ok(Invite {
            inviter,
            addrs,
            folder,
            secret,
            expires,
        })
    }

    /// Consume `secret`: the invite's folder on success.
    pub fn redeem(
        &self,
        secret: &[u8; 16],
        now: Timestamp,
    ) -> Result<Option<String>, PairingError> {
        let mut pending = self.lock();
        // Compared without early exit, so timing does not reveal how many
        // leading bytes of a guess were right.
        let found = pending
            .keys()
            .find(|k| k.iter().zip(secret).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
            .copied();
        let result = match found.and_then(|k| pending.get_mut(&k)) {
            None => Err(PairingError::Unknown),
            Some(p) if p.used => Err(PairingError::AlreadyUsed),
            Some(p) if p.expires <= now => Err(PairingError::Expired),
            Some(p) => {
                p.used = true;
                Ok(p.folder.clone())
            }
        };
        self.update_window(&mut pending, now);
        result
    }

    /// How many invites can still be redeemed.
    pub fn outstanding(&self, now: Timestamp) -> usize {
        self.lock()
            .values()
            .filter(|p| !p.used && p.expires > now)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000_000_000);

    fn invite() -> Invite {
        Invite {
            inviter: NodeId::derive(b"inviter"),
            addrs: vec![
                "192.168.1.20:7420".parse().unwrap(),
                "[fe80::1]:7420".parse().unwrap(),
            ],
            folder: Some("photos".into()),
            secret: [7; 16],
            expires: T0,
        }
    }

    #[test]
    fn codes_round_trip_forgivingly() {
        let code = invite().to_code();
        assert!(code.starts_with("SA1-"), "{code}");
        assert_eq!(Invite::parse(&code), Ok(invite()));
        let sloppy = format!("  {}\n", code.to_lowercase().replace('-', " "));
        assert_eq!(Invite::parse(&sloppy), Ok(invite()));
    }

    #[test]
    fn damaged_and_foreign_codes_are_refused_clearly() {
        let code = invite().to_code();
        let mut chars: Vec<char> = code.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'Q' { 'R' } else { 'Q' };
        let typo: String = chars.iter().collect();
        assert_eq!(Invite::parse(&typo), Err(PairingError::Damaged));
        let short = &code[..code.len() - 3];
        assert!(Invite::parse(short).is_err());
        assert!(matches!(
            Invite::parse("hello"),
            Err(PairingError::NotACode(_))
        ));
        assert!(matches!(
            Invite::parse("SA1-!!!"),
            Err(PairingError::NotACode(_))
        ));
    }

    #[test]
    fn a_secret_works_once_and_not_after_expiry() {
        let trusted = TrustedIds::default();
        let inv = Invitations::new(trusted.clone());
        let ttl = Duration::from_secs(60);
        let a = inv
            .issue(NodeId::derive(b"me"), vec![], None, ttl, T0)
            .unwrap();
        let b = inv
            .issue(NodeId::derive(b"me"), vec![], Some("docs".into()), ttl, T0)
            .unwrap();
        assert_ne!(a.secret, b.secret);
        assert_eq!(inv.outstanding(T0), 2);
        assert_eq!(inv.redeem(&a.secret, T0), Ok(None));
        assert_eq!(inv.redeem(&a.secret, T0), Err(PairingError::AlreadyUsed));
        assert_eq!(inv.redeem(&[1; 16], T0), Err(PairingError::Unknown));
        let later = Timestamp(T0.as_nanos() + 61_000_000_000);
        assert_eq!(inv.redeem(&b.secret, later), Err(PairingError::Expired));
        assert_eq!(inv.outstanding(later), 0);
    }

    #[test]
    fn the_window_closes_when_no_invite_can_be_redeemed() {
        use crate::core::{Clock, SystemClock};
        let trusted = TrustedIds::default();
        let inv = Invitations::new(trusted.clone());
        let now = SystemClock.wall();
        assert!(!trusted.pairing_open());
        let a = inv
            .issue(
                NodeId::derive(b"me"),
                vec![],
                None,
                Duration::from_secs(60),
                now,
            )
            .unwrap();
        assert!(trusted.pairing_open());
        inv.redeem(&a.secret, now).unwrap();
        assert!(!trusted.pairing_open(), "the only invite is used");
    }
}
