//! The executor: carries out the engine's file work on disk.
//!
//! Placing a file: every chunk the file needs is taken from a local file
//! that has it (same hash anywhere in any shared folder: renames and copies
//! move no bytes over the network) or fetched from a peer that announced
//! the version, several at once over bulk streams. The bytes go into a
//! hidden temporary file in the destination directory, each chunk checked
//! against its hash, the whole file against the announced hash; the file
//! is synced, its mtime and permissions set, and then — holding the store,
//! so the watcher cannot mistake the new file for a local edit — the engine
//! confirms the work is still wanted, the disk is checked to be what the
//! index says, a conflict copy is made if asked, the temporary file is
//! renamed into place and the new state recorded. A partial file never
//! appears at its real path. Removing moves the file into the folder's
//! `.softadastra/trash/` instead of deleting it. A file that would not fit
//! in the free space is not started (`space`). Every failure is a typed
//! [`WorkError`] whose cause tells the engine whether to retry soon or
//! wait for a change.
//!
//! Chunk requests (bulk stream): 32-byte chunk hash + u32 LE length;
//! answer: one status byte (0 = here it is, 1 = not here) then the bytes.
//!
//! One job per file: `chunk_index`, `chunk_build`, `chunk_places`, `serve`, `fetch`, `dest`, `work`, `small`, `large`, `space`, `writers`, `commit`, `trash`, `versions`, `gather`, `apply`, `sys`.
//!
//! # Design notes
//!
//! (Moved here from ARCHITECTURE.md, which keeps the map.)
//!
//! `exec/` (one file
//! per job: `chunk_index`, `serve`, `fetch`, `dest`, `work`, `small`,
//! `large`, `writers`, `commit`, `trash`, `versions`, `gather`, `apply`,
//! `sys` — the libc calls — and `tests`; the watcher's echo filter is `runtime/echoes.rs`): chunk
//! index (rebuilt from the store lazily — every 10 s when it changed; at
//! once when a peer asks for a chunk it lacks; at most every 250 ms when a
//! place it gave no longer holds the chunk — every local chunk by hash, plus
//! chunks of files just moved to the
//! trash, so a rename carried out as delete-then-add still moves no bytes,
//! and the chunks of kept versions, which a peer gathering the version its
//! own edit replaced asks for);
//! chunk service on bulk streams (a request's chunks read in order on a
//! blocking thread a few ahead of the network, one open file kept across
//! them; a chunk is re-hashed before it is sent unless its file's size, mtime
//! and inode are still what the index recorded — the scanner's own test —
//! since the receiver checks every chunk anyway);
//! `place` — set-up (folder root from a cache the runtime clears when a
//! folder is added or dropped; each parent `lstat`ed — none may be a symlink
//! — and directories made only when one is missing, on a blocking thread —
//! for a small file, the one that writes it), then the file's chunks planned in file order as jobs: a
//! chunk local files have is copied (and always re-hashed; a file the
//! committer moves to the trash is listed at its trash place before the move
//! and dropped at the old one after it, so a rename arriving as a deletion
//! and an addition copies every chunk from wherever the file is), a run of
//! consecutive missing chunks (up to 1 MiB) is fetched on one bulk stream; 6
//! jobs at a time per file, 24 jobs overall; runs go to the sources in turn,
//! so several peers serve one file, and chunks a peer lacks or sends with a
//! wrong hash are asked of the next. A request is given up (its chunks asked
//! of the next source, or the file retried later) only when its peer has sent
//! nothing — on that request or any other of this node's — for the stall time
//! (`RuntimeOptions::stall`, `[sync] stall_secs`, 30 s; `exec::Heard` keeps
//! when each peer last sent chunk bytes). Every failure is a typed
//! `sync::WorkError` whose `Cause` says whether time can cure it (a transfer,
//! a disk changed under the work: short backoff, 0.5–30 s) or a change must
//! come first (no space, permission denied or read-only, a name the file
//! system refuses, a refused path, a directory holding others' files: held
//! for `SyncConfig::retry_blocked`, 60 s, or until the runtime reports a
//! change — a local change or rescan of the folder, its resume, or, checked
//! every 5 s, room on its disk). Before any byte is fetched a file must fit
//! in its disk's free space beyond `[sync] min_free` (`exec::space`). A request's age does not count: the
//! 60 s limit on a whole request that this replaced cut every request on a
//! link of 2 Mbit/s with four 6 MiB files in flight (24 requests sharing it),
//! and the files were fetched again and again and never landed. A large
//! file whose assembly fails only because chunks did not come keeps its
//! temporary file (`exec::Partials`, per folder and path, with the content
//! hash it was for): chunks are written in order, so it holds the file's
//! first chunks; the next attempt at the same content re-checks them
//! (`open_assembly`: each chunk's bytes against its hash, up to the first that
//! does not match, feeding the whole-file hash) and fetches only the rest. A
//! later attempt at other content deletes it, so does the work for its path
//! ending, a check every 5 s that the engine still wants that content there
//! (`Partials::drop_unwanted`; the fault test found one left in a converged
//! tree when its file had moved on at its origin), and a restart deletes every temporary file
//! a previous run left (`recover_temp_files`) — except one whose destination is missing and whose
//! bytes are what the index or the pending work says belongs there (a power
//! cut between moving the old version to the trash and the new one in), which
//! is finished instead of leaving the scan to see a deletion. Temporary names
//! are `.softadastra-tmp-<8 hex>-<name>`, or `=<digest of the name>` in place
//! of `-<name>` when that would pass 255 bytes. A run of at most 64 KiB (`SMALL_FILE`)
//! is not fetched on a stream of its own: it joins `SmallFetches`, per peer,
//! where up to 8 requests run at once, each taking every small run waiting
//! (up to 64 chunks / 4 MiB) — thousands of small files cost a few hundred
//! round trips. Small files are placed in batches (`exec::run_small`):
//! `dispatch` hands the small-file places of one engine step to one task per
//! 32 (`SMALL_BATCH`), which plans every file, copies the local chunks in one
//! blocking job and asks each file's missing chunks of its first source (files
//! of a batch start at different sources). Every chunk's answer comes back on
//! one channel per batch (`Answering`: a reply dropped unanswered says so, so a
//! batch never waits for an answer that cannot come); a file whose source sent
//! only some of its chunks asks the next source at once, and whenever no
//! answer is waiting, the files whose bytes are all here are written (one
//! `write` each), hashed (not again when it is one chunk, checked on arrival,
//! whose hash is the file's), timestamped and closed in one job on one of 4
//! dedicated `sync-writer-*` threads fed from one queue (`exec::Writers`) and
//! their commits sent, while the rest of the batch is still coming — a slow or
//! stalling source holds up only the files asked of it. The commits' answers
//! are awaited at the end. Each file succeeds or fails (and is retried)
//! alone; up to 256 small files are being gathered or written at once. A task, a blocking job and a few channel hops per file
//! had cost the receiver's async workers a third more CPU. A larger file
//! (its assembly boxed) (up to 16 at once) is written in order into `.softadastra-tmp-*` beside the
//! target by a writer thread that hashes the whole file as it goes and
//! starts the disk's writeback every 8 MiB (`sync_file_range`, Linux), so
//! its closing fsync finds little left; whole-file hash checked, mtime and
//! mode set (files ≥ 4 MiB fsynced here). A peer's file record whose chunks
//! do not tile the file exactly (gaps, overlaps, empty or > 1 MiB chunks) is
//! refused when it arrives. No code on an async worker waits for the store's
//! lock (a commit holds it through a WAL fsync): the chunk index takes it
//! only when a rebuild may be due. A node's runtime starts at most
//! `BLOCKING_THREADS` (64) blocking threads. Two kinds of blocking work wait
//! on something else while holding one — a large file's writer (up to 16 at
//! once) and a chunk request being served (`SERVING`, 16 at once over all
//! peers; more wait without a thread) — so the rest, which never waits on a
//! peer, always finds a thread however many peers fetch at once.
//!
//! All changes to disk and index then go through **the committer**, three
//! threads in a pipeline (group commit; `sync-committer`, `sync-recorder`
//! and `sync-logger` in `top -H`). The first takes whatever work is
//! waiting as one batch and (1) makes the small files' data durable with one
//! `syncfs` (an fsync each for few or large files, and on other systems),
//! with the directories holding the temporary files when the batch only
//! places new files. The second takes every batch flushed meanwhile and (2)
//! under the store lock, with the WAL's fsyncs held and the last one taken
//! out of the lock (`Store::hold_deferred`):
//! parents not symlinks (each directory looked at once per batch),
//! `is_current`, nothing inside this node's home (a folder may contain it;
//! its scan leaves it out, and nothing a peer names there is written or
//! removed), disk still as indexed, conflict copy
//! (`sync::resolve::copy_target` picks a free name, or none if the bytes are
//! already kept) or the replaced file (or link) moved to the trash, then the
//! rename into place — every one of these renames with `RENAME_NOREPLACE`
//! where the file system has it (`exec::sys::rename_new`; a stat first elsewhere:
//! the window is that of a check-then-rename), so a file created at the path
//! between moving the old one aside and moving the new one in is never
//! replaced: the work fails as "changed on disk" and the scan decides first
//! (the old version stays where it went) — or, for a deletion, into
//! `.softadastra/trash/<unix time>/<path>`. Nothing in the trash is replaced
//! either: a second version of a path in the same second is `<name>.~2~`, and
//! so on. A directory's removal fails while it still holds files (the sync
//! engine hands it out only when no work inside it is left, so what remains
//! is a file this node was not asked to delete); recording it gone while it
//! stayed on disk left empty directories behind on peers for good. Unless every
//! item placed a new file, the renames made durable — before the batch's
//! records are even written, since any later fsync of the log (step 3's for
//! an earlier batch, another writer's) may carry them; then `completed_all`
//! for the batch, whose work due next rides on the first reply of an item
//! done (none done: it is dispatched at once; a failed fsync: dispatched
//! anyway, since it was marked in flight). The third, without the store lock (the second is on the
//! next batch meanwhile), (3) makes the WAL durable with one fsync for every
//! batch waiting (`PendingSync::sync` on a handle of its own, the outcome
//! handed back with `Store::synced`), and only then answers. An index entry
//! is thus never durable before its bytes, and nothing is told to a peer
//! before the entry is durable: the answers wait for step 3, and index pages
//! and hints name only sequences up to `Store::durable_seq` (a completed
//! batch's folder is hinted at the first tick after its records are
//! durable). A new file's rename may not be durable when its entry is: at
//! start, before the scan, `recover_temp_files` moves a leftover temporary
//! file into place when its destination is missing and the index says the
//! destination holds exactly its bytes (otherwise the scan would take the
//! missing file for a deletion and send it to every peer); other leftovers
//! are interrupted downloads and are deleted (a temporary file changed
//! since the folder's watcher started is this run's, and left alone).
//! Symlinks from peers are not created. Each file placed is remembered
//! with its inode, size, mtime and ctime right after the rename, if it is
//! still the file that was moved — same inode, size and mtime as the
//! temporary file before the move (a small file's writer reads that from
//! its open handle, so the committer walks no path for it; a large file's
//! is looked up) (`echoes::Echoes`): the watcher's event for it
//! is recognised with one stat instead of a reconcile under the store lock
//! (which the committer needs); a file touched since differs and is
//! reconciled as any other.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::echoes::Placed;
use super::events;
use super::{Shared, lock};
use crate::core::{Clock, ContentHash, NodeId, VersionVector};
use crate::folder::{self, FileRecord};
use crate::fs::ignore::{META_DIR, TEMP_PREFIX};
use crate::fs::scan::{EntryKind, FileStat};
use crate::store::Store;
use crate::sync::resolve::{Probe, copy_target};
use crate::sync::{Action, Cause, Completed, Need, SyncEngine, WorkError};
use crate::transport::quic::BulkStream;
use crate::transport::wire::{
    CHUNK_FOLLOWS, CHUNK_LIST_HEAD, CHUNK_MISSING, ChunkListReader, ChunkListRequest, ChunkRequest,
    LIST_ENTRY, MAX_REQUEST_BYTES, MAX_REQUEST_CHUNKS, encode_chunk_list,
};
use crate::wal::PendingSync;

mod apply;
mod chunk_build;
mod chunk_index;
mod chunk_places;
mod commit;
mod dest;
mod fetch;
mod gather;
mod large;
mod serve;
mod small;
mod space;
mod sys;
mod trash;
pub mod versions;
mod work;
mod writers;

use apply::*;
pub use chunk_index::*;
pub use chunk_places::{FILE_NAME as CHUNK_PLACES_FILE, QUIET};
pub use commit::*;
pub use dest::*;
pub use fetch::*;
pub use gather::*;
pub use large::*;
pub use serve::*;
pub use small::*;
pub use space::*;
use sys::*;
pub(crate) use sys::{disk_space, rename_new};
pub use trash::*;
pub use work::*;
pub use writers::*;

#[cfg(test)]
mod tests;
