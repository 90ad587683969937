//! # store::state::backend — the index file through the store's storage
//!
//! Lets redb read and write `index.redb` through the same [`PagedFile`]
//! seam as the WAL, so the power-loss and fault-injection tests cover the
//! index too. It only forwards calls; it never decides anything.

use redb::StorageBackend;

use crate::wal::PagedFile;

/// A [`PagedFile`] as redb's storage: the index reaches the disk through
/// the same seam as the WAL, so the power-loss and fault-injection tests
/// cover it too.
pub(super) struct Backend(pub(super) Box<dyn PagedFile>);

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("store index file")
    }
}

impl StorageBackend for Backend {
    fn len(&self) -> Result<u64, redb::BackendError> {
        Ok(self.0.size()?)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), redb::BackendError> {
        Ok(self.0.read_at(offset, out)?)
    }
    fn set_len(&self, len: u64) -> Result<(), redb::BackendError> {
        Ok(self.0.set_len(len)?)
    }
    fn sync_data(&self) -> Result<(), redb::BackendError> {
        Ok(self.0.sync()?)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), redb::BackendError> {
        Ok(self.0.write_at(offset, data)?)
    }
}
