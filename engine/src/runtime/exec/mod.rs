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
//! in the free space is not started ([`space`]). Every failure is a typed
//! [`WorkError`] whose cause tells the engine whether to retry soon or
//! wait for a change.
//!
//! Chunk requests (bulk stream): 32-byte chunk hash + u32 LE length;
//! answer: one status byte (0 = here it is, 1 = not here) then the bytes.
//!
//! One job per file: [`chunk_index`], [`serve`], [`fetch`], [`dest`], [`work`], [`small`], [`large`], [`space`], [`writers`], [`commit`], [`trash`], [`apply`], [`sys`].

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::echoes::Placed;
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
    CHUNK_FOLLOWS, CHUNK_MISSING, ChunkRequest, MAX_REQUEST_BYTES, MAX_REQUEST_CHUNKS,
};
use crate::wal::PendingSync;

mod apply;
mod chunk_index;
mod commit;
mod dest;
mod fetch;
mod large;
mod serve;
mod small;
mod space;
mod sys;
mod trash;
mod work;
mod writers;

use apply::*;
pub use chunk_index::*;
pub use commit::*;
pub use dest::*;
pub use fetch::*;
pub use large::*;
pub use serve::*;
pub use small::*;
pub use space::*;
use sys::*;
pub use trash::*;
pub use work::*;
pub use writers::*;

#[cfg(test)]
mod tests;
