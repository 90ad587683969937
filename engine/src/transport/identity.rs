//! The node's identity: a self-signed certificate and its private key.
//!
//! Stored in `<home>/identity/`: `cert.der` (public), `key.der` (PKCS#8,
//! owner-only, mode 0600, in a 0700 directory) and `name`. The node id is
//! [`NodeId::derive`] of the certificate DER.
//!
//! ```
//! use softadastra::transport::identity::Identity;
//! let dir = tempfile::tempdir().unwrap();
//! let created = Identity::create(dir.path(), "laptop").unwrap();
//! let loaded = Identity::load(dir.path()).unwrap().unwrap();
//! assert_eq!(created.node_id(), loaded.node_id());
//! assert_eq!(loaded.name(), "laptop");
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::TransportError;
use crate::core::NodeId;

/// A node's certificate and key.
#[derive(Clone)]
pub struct Identity {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    name: String,
    node_id: NodeId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("name", &self.name)
            .finish()
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TransportError + 'a {
    move |source| TransportError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn write_file(path: &Path, bytes: &[u8], owner_only: bool) -> Result<(), TransportError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if owner_only { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = owner_only;
    let mut f = options.open(path).map_err(io("create", path))?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("fsync", path))
}

impl Identity {
    /// The identity directory inside a home directory.
    pub fn dir(home: &Path) -> PathBuf {
        home.join("identity")
    }

    /// Generate a new identity (ECDSA P-256, self-signed) named `name` and
    /// store it under `home`. Refuses if one exists: a node never silently
    /// becomes another node.
    pub fn create(home: &Path, name: &str) -> Result<Identity, TransportError> {
        if let Some(existing) = Identity::load(home)? {
            return Err(TransportError::AlreadyInitialised(existing.node_id));
        }
        let key =
            rcgen::KeyPair::generate().map_err(|e| TransportError::Certificate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec!["softadastra".to_string()])
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params
            .self_signed(&key)
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        let identity = Identity {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            name: name.to_string(),
            node_id: NodeId::derive(cert.der()),
        };
        // Written to a temporary directory, then renamed: a crash leaves
        // either no identity or a whole one.
        let dir = Identity::dir(home);
        let tmp = home.join(".identity.tmp");
        fs::create_dir_all(home).map_err(io("create directory", home))?;
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
        }
        fs::create_dir(&tmp).map_err(io("create directory", &tmp))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700))
                .map_err(io("chmod", &tmp))?;
        }
        write_file(&tmp.join("cert.der"), &identity.cert_der, false)?;
        write_file(&tmp.join("key.der"), &identity.key_der, true)?;
        write_file(&tmp.join("name"), name.as_bytes(), false)?;
        fs::rename(&tmp, &dir).map_err(io("rename", &tmp))?;
        if let Ok(d) = fs::File::open(home) {
            let _ = d.sync_all();
        }
        Ok(identity)
    }

    /// Load the identity stored under `home`, if there is one.
    pub fn load(home: &Path) -> Result<Option<Identity>, TransportError> {
        let dir = Identity::dir(home);
        if !dir.exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read(&p).map_err(io("read", &dir))
        };
        let cert_der = read("cert.der")?;
        let key_der = read("key.der")?;
        let name = String::from_utf8_lossy(&read("name")?).trim().to_string();
        let corrupt = |reason: String| TransportError::Corruption {
            path: dir.clone(),
            reason,
        };
        let key = rcgen::KeyPair::try_from(key_der.as_slice())
            .map_err(|e| corrupt(format!("key.der: {e}")))?;
        // The key must be the one the certificate was issued for: its public
        // half appears in the certificate's SubjectPublicKeyInfo.
        if !contains(&cert_der, key.public_key_raw()) {
            return Err(corrupt("key.der does not belong to cert.der".into()));
        }
        Ok(Some(Identity {
            node_id: NodeId::derive(&cert_der),
            cert_der,
            key_der,
            name,
        }))
    }

    /// The node id: blake3 of the certificate.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }
    /// The display name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }
    /// The private key, PKCS#8 DER.
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_and_refuse_to_overwrite() {
        let home = tempfile::tempdir().unwrap();
        let a = Identity::create(home.path(), "a").unwrap();
        assert_eq!(
            Identity::load(home.path()).unwrap().unwrap().node_id(),
            a.node_id()
        );
        assert!(
            matches!(Identity::create(home.path(), "b"), Err(TransportError::AlreadyInitialised(id)) if id == a.node_id())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(Identity::dir(home.path()).join("key.der"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the key is owner-only");
            let mode = fs::metadata(Identity::dir(home.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            Identity::create(other.path(), "a").unwrap().node_id(),
            a.node_id(),
            "ids are unique"
        );
    }

    #[test]
    fn a_swapped_or_damaged_key_is_refused() {
        let (h1, h2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        Identity::create(h1.path(), "one").unwrap();
        Identity::create(h2.path(), "two").unwrap();
        let key2 = fs::read(Identity::dir(h2.path()).join("key.der")).unwrap();
        let key1 = Identity::dir(h1.path()).join("key.der");
        fs::remove_file(&key1).unwrap();
        fs::write(&key1, &key2).unwrap();
        assert!(matches!(
            Identity::load(h1.path()),
            Err(TransportError::Corruption { .. })
        ));
        fs::write(&key1, b"garbage").unwrap();
        assert!(matches!(
            Identity::load(h1.path()),
            Err(TransportError::Corruption { .. })
        ));
    }
}
