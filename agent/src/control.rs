//! The local control API: how CLI commands (and the tray) talk to a
//! running agent.
//!
//! A Unix domain socket `control.sock` in the home directory, mode 0600,
//! and every connection's peer credentials are checked against the
//! socket's owner: nothing else on the machine can drive the agent. One
//! JSON request per line, one JSON response per line:
//! `{"cmd":"peers"}` → `{"ok":true,"data":[…]}` or `{"ok":false,"error":"…"}`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::home::Home;

/// A request to the running agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The node and its peers, folders and store at a glance.
    Status,
    /// Every trusted peer with its connection state.
    Peers,
    /// This node's description.
    Node,
    /// Issue an invite code.
    Invite {
        /// Folder the invite shares.
        folder: Option<String>,
        /// Lifetime in seconds.
        ttl_secs: u64,
        /// Addresses to put in the code ahead of the ones found locally.
        addrs: Vec<String>,
    },
    /// Redeem an invite code from another node.
    Join {
        /// The code.
        code: String,
        /// Where to keep the shared folder, if the invite shares one.
        path: Option<PathBuf>,
    },
    /// Trust a node.
    PeerAdd {
        /// Its id.
        id: String,
        /// Its address.
        addr: Option<String>,
    },
    /// Stop trusting a node.
    PeerRemove {
        /// Its id.
        id: String,
    },
    /// Share a folder.
    FolderAdd {
        /// Its absolute path.
        path: PathBuf,
        /// Its id (default: derived from the directory name).
        id: Option<String>,
    },
    /// Pause, resume, remove or rescan a folder.
    FolderSet {
        /// Folder id.
        id: String,
        /// What to do.
        change: FolderChange,
    },
    /// Read store entries: `key` alone, or every key under `prefix`.
    StoreRead {
        /// Namespace.
        ns: String,
        /// One key.
        key: Option<String>,
        /// Key prefix (when no key is given).
        prefix: String,
    },
    /// Set (`value`) or remove (`None`) an app key; it syncs to peers.
    StoreWrite {
        /// The key.
        key: String,
        /// Its new value, or `None` to remove it.
        value: Option<String>,
    },
    /// Stop the agent.
    Shutdown,
}

/// What `FolderSet` does to a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderChange {
    /// Stop syncing it for now.
    Pause,
    /// Sync it again.
    Resume,
    /// Stop sharing it (files stay).
    Remove,
    /// Scan it again now.
    Rescan,
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Where the control socket of `home` lives.
pub fn socket_path(home: &Home) -> PathBuf {
    home.root.join("control.sock")
}

/// Send `request` to the agent running on `home`. `Ok(None)` when no agent
/// is running there; an error when it answered with one.
#[cfg(unix)]
pub fn call(home: &Home, request: &Request) -> Result<Option<serde_json::Value>> {
    use std::os::unix::net::UnixStream;
    let path = socket_path(home);
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot reach the agent's control socket {}", path.display())
            });
        }
    };
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .context("cannot send to the agent")?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .context("the agent did not answer")?;
    if answer.is_empty() {
        bail!("the agent closed the control connection without answering");
    }
    let response: Response =
        serde_json::from_str(&answer).context("the agent's answer is not valid JSON")?;
    if response.ok {
        Ok(Some(response.data.unwrap_or(serde_json::Value::Null)))
    } else {
        bail!(
            "{}",
            response
                .error
                .unwrap_or_else(|| "the agent refused without a reason".into())
        )
    }
}

/// No control socket off Unix yet: every command works on the stored state.
#[cfg(not(unix))]
pub fn call(_home: &Home, _request: &Request) -> Result<Option<serde_json::Value>> {
    Ok(None)
}

/// What serves requests: the running agent.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn handle(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<serde_json::Value>> + Send;
}

/// Bind the control socket (replacing a stale one: the caller holds the
/// store lock, so no other agent uses this home) and serve until the task
/// is dropped.
#[cfg(unix)]
pub fn serve<H: Handler>(
    path: &Path,
    handler: std::sync::Arc<H>,
) -> Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).with_context(|| {
        format!(
            "cannot create the control socket {} (paths over ~100 bytes are refused by the OS)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} owner-only", path.display()))?;
    let owner = std::fs::metadata(path)?.uid();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == owner => {}
                other => {
                    tracing::warn!(peer = ?other.map(|c| c.uid()), "control connection from another user refused");
                    continue;
                }
            }
            let handler = handler.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
                let (read, mut write) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let response = match serde_json::from_str::<Request>(&line) {
                        Err(e) => Response {
                            ok: false,
                            data: None,
                            error: Some(format!("not a request this agent understands: {e}")),
                        },
                        Ok(request) => match handler.handle(request).await {
                            Ok(data) => Response {
                                ok: true,
                                data: Some(data),
                                error: None,
                            },
                            Err(e) => Response {
                                ok: false,
                                data: None,
                                error: Some(format!("{e:#}")),
                            },
                        },
                    };
                    let mut out = serde_json::to_string(&response).unwrap_or_default();
                    out.push('\n');
                    if write.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }))
}
