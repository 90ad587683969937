//! The local control API: how CLI commands (and the tray) talk to a
//! running agent.
//!
//! A Unix domain socket `control.sock` in the home directory, mode 0600,
//! and every connection's peer credentials are checked against the
//! socket's owner: nothing else on the machine can drive the agent. Off
//! Unix (and on Unix with `SOFTADASTRA_CONTROL=tcp`) it is a loopback TCP
//! port instead, whose address and a 128-bit random token are written to
//! the owner-only `control.tcp`; a connection must send the token first.
//! One JSON request per line, one JSON response per line:
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
        /// A name to call it by.
        #[serde(default)]
        name: Option<String>,
    },
    /// Pause or resume everything with a device.
    PeerPause {
        /// Its id or name.
        device: String,
        /// Pause (true) or resume.
        paused: bool,
    },
    /// Share a folder with a device, or stop.
    FolderMember {
        /// Folder id.
        id: String,
        /// The device's id or name.
        device: String,
        /// Share (true) or unshare.
        share: bool,
    },
    /// The shared folders with their members.
    FolderList,
    /// Set how a folder syncs on this node.
    FolderType {
        /// Folder id.
        id: String,
        /// send-receive, send-only or receive-only.
        kind: String,
    },
    /// Push a send-only folder's state back over the remote changes.
    FolderOverride {
        /// Folder id.
        id: String,
    },
    /// Put the peers' version back over a receive-only folder's local changes.
    FolderRevert {
        /// Folder id.
        id: String,
    },
    /// Accept or undo the deletions a folder's deletion guard holds back.
    FolderDeletions {
        /// Folder id.
        id: String,
        /// What to do with them.
        decision: crate::guard_cmd::Decision,
    },
    /// Switch a folder's deletion guard on or off.
    FolderGuard {
        /// Folder id.
        id: String,
        /// On (true) or off.
        on: bool,
    },
    /// Show (no policy) or set how long a folder keeps versions.
    FolderVersions {
        /// Folder id.
        id: String,
        /// The new policy.
        policy: Option<softadastra::index::retention::Policy>,
        /// Keep versions of edits made here: switch on or off.
        #[serde(default)]
        local: Option<bool>,
    },
    /// A file's kept versions.
    History {
        /// The file (absolute).
        path: PathBuf,
    },
    /// A folder's deleted files with a kept version.
    DeletedFiles {
        /// Folder id.
        folder: String,
    },
    /// Restore a kept version.
    Restore {
        /// The file (absolute).
        path: PathBuf,
        /// Which version.
        pick: softadastra::runtime::history::Pick,
        /// Where to write it (absolute; none: in place).
        to: Option<PathBuf>,
    },
    /// Put a whole folder back as it was at a moment (or, dry, say how).
    RestoreFolder {
        /// Folder id.
        folder: String,
        /// The moment, ns since the Unix epoch.
        at: u64,
        /// Only say what it would do.
        dry_run: bool,
    },
    /// The conflicts of a folder, or of every folder.
    Conflicts {
        /// Folder id (none: every folder).
        folder: Option<String>,
    },
    /// Settle the conflict of a file or of its conflict copy.
    ConflictResolve {
        /// The file or copy (absolute).
        path: PathBuf,
        /// What to keep.
        keep: softadastra::runtime::conflicts::Keep,
    },
    /// Folders devices offer this node.
    Offers,
    /// Accept an offered folder into a directory.
    OfferAccept {
        /// Folder id.
        id: String,
        /// Where to keep it (absolute).
        path: PathBuf,
        /// How it syncs here (default send-receive).
        #[serde(default)]
        kind: Option<String>,
    },
    /// Decline an offered folder (remembered).
    OfferDecline {
        /// Folder id.
        id: String,
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
        /// Devices (ids or names) to share it with.
        #[serde(default)]
        share: Vec<String>,
        /// How it syncs here (default send-receive).
        #[serde(default)]
        kind: Option<String>,
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
    /// The index entries of one folder (all if `None`), deletions too
    /// with `all`: what `ls` prints.
    Ls {
        /// Folder id.
        folder: Option<String>,
        /// Deletions too.
        all: bool,
    },
    /// The events after `since` (none: from now on), waiting up to
    /// `wait_ms` for one when there is none yet (a long poll).
    Events {
        /// The last event number the client has.
        #[serde(default)]
        since: Option<u64>,
        /// How long to wait for an event, ms (at most a minute).
        #[serde(default)]
        wait_ms: u64,
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

/// Where the loopback control endpoint of `home` is written: one line,
/// `127.0.0.1:PORT TOKEN`, readable by the owner only.
pub fn endpoint_path(home: &Home) -> PathBuf {
    home.root.join("control.tcp")
}

/// Whether the control API runs over loopback TCP with a secret token
/// instead of a Unix socket: always off Unix (where a per-user file holds
/// the token), and on Unix when `SOFTADASTRA_CONTROL=tcp` (so that path is
/// tested here too).
fn over_tcp() -> bool {
    !cfg!(unix) || std::env::var("SOFTADASTRA_CONTROL").is_ok_and(|v| v == "tcp")
}

/// Send `request` to the agent running on `home`. `Ok(None)` when no agent
/// is running there; an error when it answered with one.
pub fn call(home: &Home, request: &Request) -> Result<Option<serde_json::Value>> {
    let absent = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        )
    };
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    let answer = if over_tcp() {
        let path = endpoint_path(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let Some((addr, token)) = text.trim().split_once(' ') else {
            bail!("{} is damaged; restart the agent", path.display());
        };
        let stream = match std::net::TcpStream::connect(addr) {
            Ok(s) => s,
            // Left behind by an agent that did not stop cleanly.
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(e).context("cannot reach the agent's control endpoint"),
        };
        exchange(&stream, &format!("{token}\n{line}"))?
    } else {
        #[cfg(unix)]
        {
            let path = socket_path(home);
            let stream = match std::os::unix::net::UnixStream::connect(&path) {
                Ok(s) => s,
                Err(e) if absent(&e) => return Ok(None),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot reach the agent's control socket {}", path.display())
                    });
                }
            };
            exchange(&stream, &line)?
        }
        #[cfg(not(unix))]
        unreachable!("off Unix the control API is always loopback TCP")
    };
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

/// Who carries out a command that the running agent, if any, must do.
pub enum Reached {
    /// The running agent did: its answer.
    Agent(serde_json::Value),
    /// No agent runs: the store, for the command to do it itself.
    Store(Box<softadastra::store::Store>),
}

/// How long a command waits for a store in use to come free or for the
/// agent holding it to answer.
const STARTING_AGENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Send `request` to the agent running on `home`, or, when none runs, open
/// the store for the caller to do the work itself. An agent holds the store
/// from its first moment, a little before its control socket is up (and a
/// one-shot command holds it for a moment): a store found in use is not an
/// error at once — the agent is asked again, then the store, for up to
/// [`STARTING_AGENT_WAIT`].
pub fn call_or_open(home: &Home, request: &Request) -> Result<Reached> {
    crate::store_cmd::while_store_in_use(STARTING_AGENT_WAIT, || {
        if let Some(answer) = call(home, request)? {
            return Ok(Reached::Agent(answer));
        }
        let store = crate::store_cmd::open_store(home)?;
        Ok(Reached::Store(Box::new(store)))
    })
}

/// Write `text`, read one answer line.
fn exchange<S>(stream: S, text: &str) -> Result<String>
where
    S: std::io::Read + std::io::Write,
{
    let mut stream = stream;
    stream
        .write_all(text.as_bytes())
        .context("cannot send to the agent")?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("the agent did not answer")?;
    if answer.is_empty() {
        bail!("the agent closed the control connection without answering");
    }
    Ok(answer)
}

/// What serves requests: the running agent.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn handle(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<serde_json::Value>> + Send;
}

/// A running control API; dropping it does not stop it, [`Serving::stop`] does.
pub struct Serving {
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
}

impl Serving {
    /// Stop serving and remove the socket or endpoint file.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serve the control API of `home` until stopped: the Unix socket (mode
/// 0600, each connection's peer uid checked against the owner), or a
/// loopback TCP port whose connections must first send the token written,
/// owner-only, to [`endpoint_path`]. A stale socket or file is replaced:
/// the caller holds the store lock, so no other agent uses this home.
pub fn serve<H: Handler>(home: &Home, handler: std::sync::Arc<H>) -> Result<Serving> {
    if over_tcp() {
        return serve_tcp(home, handler);
    }
    #[cfg(unix)]
    {
        serve_unix(&socket_path(home), handler)
    }
    #[cfg(not(unix))]
    unreachable!("off Unix the control API is always loopback TCP")
}

fn serve_tcp<H: Handler>(home: &Home, handler: std::sync::Arc<H>) -> Result<Serving> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("cannot open the loopback control endpoint")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let secret = softadastra::transport::pairing::fresh_secret()
        .map_err(|e| anyhow::anyhow!("cannot make the control token: {e}"))?;
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let path = endpoint_path(home);
    write_private(&path, &format!("{addr} {token}\n"))?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (handler, token) = (handler.clone(), token.clone());
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let (read, write) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                // The token first: only someone who can read the owner's
                // file may drive the agent.
                match lines.next_line().await {
                    Ok(Some(t)) if t.trim() == token => {}
                    _ => {
                        tracing::warn!("control connection without the right token refused");
                        return;
                    }
                }
                answer(lines, write, handler).await;
            });
        }
    });
    Ok(Serving { task, path })
}

/// Create `path` holding `text`, readable and writable by the owner only
/// (on Unix by mode; elsewhere the file inherits the per-user profile
/// directory's access control).
fn write_private(path: &Path, text: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(unix)]
fn serve_unix<H: Handler>(path: &Path, handler: std::sync::Arc<H>) -> Result<Serving> {
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
    let task = tokio::spawn(async move {
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
                let (read, write) = stream.into_split();
                let lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(read));
                answer(lines, write, handler).await;
            });
        }
    });
    Ok(Serving {
        task,
        path: path.to_path_buf(),
    })
}

/// One connection: a JSON request per line in, a JSON answer per line out.
async fn answer<R, W, H>(
    mut lines: tokio::io::Lines<tokio::io::BufReader<R>>,
    mut write: W,
    handler: std::sync::Arc<H>,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
    H: Handler,
{
    use tokio::io::AsyncWriteExt;
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
}
