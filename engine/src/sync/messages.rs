//! What the sync engine exchanges with peers and with the executor: the
//! protocol's messages, file work (needs and actions), progress and errors.

use super::*;

/// Messages of the sync protocol (carried on a connection's control stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMessage {
    /// The folders the sender shares (sent on connect and when they change).
    Folders {
        /// Folder ids.
        ids: Vec<String>,
        /// The sender has not heard the receiver's list yet: answer with yours.
        reply: bool,
    },
    /// "Send me folder `folder`'s records changed after your sequence `since`."
    IndexRequest {
        /// Folder id.
        folder: String,
        /// The sender's cursor for the receiver.
        since: u64,
    },
    /// Records of `folder` whose sequence is in `(since, upto]`.
    IndexPage {
        /// Folder id.
        folder: String,
        /// The request's `since`.
        since: u64,
        /// Highest sequence covered (the next request starts here).
        upto: u64,
        /// (path, record) pairs.
        records: Vec<(String, FileRecord)>,
        /// More pages follow.
        more: bool,
        /// (path, bytes) of each live record of the app space
        /// ([`APP_SPACE`]), whose values travel inline; empty for folders.
        values: Vec<(String, Vec<u8>)>,
    },
    /// "My index of `folder` changed (it reached `seq`)": ask me.
    IndexHint {
        /// Folder id.
        folder: String,
        /// The sender's latest sequence.
        seq: u64,
    },
}

/// What is still to do for one folder (see [`SyncEngine::progress`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderProgress {
    /// Files still to fetch, place or remove.
    pub needed_files: u64,
    /// Their bytes (content still to be placed).
    pub needed_bytes: u64,
    /// Waiting their turn.
    pub queued: u64,
    /// Being transferred or committed now.
    pub in_flight: u64,
    /// Failed at least once, waiting for a retry.
    pub failing: u64,
    /// Of those, waiting for something to change (space freed, a
    /// permission given): a person may have to act.
    pub blocked: u64,
    /// Some of the failing paths, with why.
    pub failing_files: Vec<Failing>,
}

/// A path whose file work failed and waits for a retry (see
/// [`FolderProgress`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    /// Folder-relative path.
    pub path: String,
    /// Why the last attempt failed.
    pub why: String,
    /// The kind of failure.
    pub cause: Cause,
    /// Whether the work waits for something to change (see
    /// [`Cause::needs_change`]) rather than for a retry soon.
    pub waits_for_change: bool,
    /// Attempts so far.
    pub attempts: u32,
}

/// Pending file work for one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// The record to reach.
    pub record: FileRecord,
    /// Keep the local content under this name first.
    pub conflict_copy: Option<String>,
    /// Peers known to have the content.
    pub sources: Vec<NodeId>,
    /// Set when taking `record` settles a conflict with the local version
    /// given here: on completion the path gets `record`'s content under
    /// the merge of both versions plus one event of this node. `record`
    /// itself stays exactly as the peer announced it, so later records are
    /// compared with what the network knows, not with a private intention.
    pub resolves: Option<VersionVector>,
}

/// File work for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message to a peer.
    Send {
        /// The peer.
        peer: NodeId,
        /// The message.
        message: SyncMessage,
    },
    /// Make `path` hold `need.record` (a live entry): keep a conflict copy
    /// of the local content first if asked; fetch what is missing from the
    /// sources; replace the local file only if it still matches `expect`
    /// (the index entry now) — otherwise it changed meanwhile: report
    /// failure and let the scan record it, which makes it a conflict.
    Place {
        /// Folder id.
        folder: String,
        /// Path in the folder.
        path: String,
        /// What to reach.
        need: Need,
        /// The local index entry the disk must still match.
        expect: Option<FileRecord>,
    },
    /// Remove `path` (into the trash) if it still matches `expect`, then
    /// record the deletion `need.record`.
    Remove {
        /// Folder id.
        folder: String,
        /// Path in the folder.
        path: String,
        /// The deletion to reach.
        need: Need,
        /// The local index entry the disk must still match.
        expect: Option<FileRecord>,
    },
}

/// What a [`SyncEngine::tick`] did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// What to do now.
    pub actions: Vec<Action>,
    /// Requests and file work handed out again after a timeout or failure.
    pub retried: usize,
    /// File work dropped because its need was settled meanwhile (a newer
    /// local edit, or the same state reached another way).
    pub pruned: usize,
    /// `actions.len()`.
    pub batch_size: usize,
}

/// Tunables (all durations on the engine's clock).
#[derive(Debug, Clone, Copy)]
pub struct SyncConfig {
    /// Records per index page.
    pub page_records: usize,
    /// First retry delay of an unanswered request or failed file work.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Retry delay of file work that waits for a change (a full disk, a
    /// denied permission: see [`Cause::needs_change`]) when no change is
    /// reported sooner.
    pub retry_blocked: Duration,
    /// Every shared folder is re-polled this often even with no hint.
    pub poll_every: Duration,
    /// File work handed out at once (the rest waits its turn, so a bulk
    /// sync of many files neither floods the executor nor memory).
    pub max_out: usize,
    /// File work kept in memory at once (directories aside): the rest
    /// waits in the store only, and is taken in, in path order, as the
    /// work in memory drains — memory does not grow with the number of
    /// files a sync brings (issue 21: a million pending paths took ~200 MB).
    pub work_window: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            page_records: 1000,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            retry_blocked: Duration::from_secs(60),
            poll_every: Duration::from_secs(60),
            max_out: 512,
            work_window: 16_384,
        }
    }
}

/// Errors of the sync layer.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed; nothing of the failed step was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The folder layer failed.
    #[error(transparent)]
    Folder(#[from] index::FolderError),
}

/// One finished piece of file work, for [`SyncEngine::completed_all`].
#[derive(Debug, Clone)]
pub struct Completed {
    /// Folder id.
    pub folder: String,
    /// Folder-relative path.
    pub path: String,
    /// The need the work carried out.
    pub done: Need,
    /// The need's record with this node's local metadata (what is on disk).
    pub record: FileRecord,
    /// A conflict copy kept beside the file: its path and record.
    pub conflict_copy: Option<(String, FileRecord)>,
}
