//! The storage seam under the WAL and the store's on-disk index.
//!
//! Every byte the engine persists goes through [`Storage`] and
//! [`StorageFile`]. Production uses [`StdStorage`] (the real file system);
//! tests swap in:
//!
//! * [`MemStorage`] — an in-memory file system that keeps, per file, a *live*
//!   image (what reads see) and a *durable* image (what survives a crash).
//!   [`MemStorage::crash`] throws away everything not made durable, keeping a
//!   random prefix of unsynced appends to model torn writes.
//!   Files written at offsets ([`PagedFile`], the store's index) keep a log
//!   of the writes since their last sync instead, and a crash keeps a
//!   random prefix of that log.
//! * [`FaultyStorage`] — wraps another backend and fails the Nth write or
//!   the Nth sync with a chosen OS error (EIO, ENOSPC), for fault-injection
//!   tests that check nothing unacknowledged is reported durable and nothing
//!   acknowledged is lost.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A file opened for writing (appending) through a [`Storage`].
pub trait StorageFile: Send {
    /// Append all of `buf` at the end of the file.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Make everything written so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cut the file to `len` bytes; later writes append after it.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A second handle on the same file that can only make it durable:
    /// lets another thread run the fsync while this one goes on writing.
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>>;
}

/// Makes a file's writes durable from a handle of its own (see
/// [`StorageFile::syncer`]): everything written to the file before
/// [`FileSyncer::sync`] began is durable when it returns `Ok`.
pub trait FileSyncer: Send {
    /// Make the file's writes durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
}

/// A file read and written at offsets: the store's on-disk index, which
/// rewrites pages in place rather than appending.
pub trait PagedFile: Send + Sync {
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Fill `out` from `offset`; reading past the end is an error.
    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()>;
    /// Write all of `data` at `offset`, growing the file if need be.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Cut or grow (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Make every write so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
}

/// The file-system operations the WAL and store need.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Create a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the regular files directly in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Read a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Create (or truncate) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Open an existing file for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Atomically replace `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Delete a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Make the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Open a file for reading and writing at offsets, creating it empty
    /// if it does not exist.
    fn open_paged(&self, path: &Path) -> io::Result<Box<dyn PagedFile>>;
}

struct StdPaged(fs::File);

impl PagedFile for StdPaged {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.0, out, offset)
        }
        #[cfg(windows)]
        {
            let mut done = 0;
            while done < out.len() {
                let n = std::os::windows::fs::FileExt::seek_read(
                    &self.0,
                    &mut out[done..],
                    offset + done as u64,
                )?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                done += n;
            }
            Ok(())
        }
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::write_all_at(&self.0, data, offset)
        }
        #[cfg(windows)]
        {
            let mut done = 0;
            while done < data.len() {
                done += std::os::windows::fs::FileExt::seek_write(
                    &self.0,
                    &data[done..],
                    offset + done as u64,
                )?;
            }
            Ok(())
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdStorage;

struct StdFile(fs::File);

impl StorageFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        self.0.set_len(len)?;
        self.0.seek(io::SeekFrom::Start(len)).map(|_| ())
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        Ok(Box::new(StdFile(self.0.try_clone()?)))
    }
}

impl FileSyncer for StdFile {
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for StdStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        use std::io::Seek;
        let mut f = fs::OpenOptions::new().write(true).open(path)?;
        f.seek(io::SeekFrom::End(0))?;
        Ok(Box::new(StdFile(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            fs::File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }
    fn open_paged(&self, path: &Path) -> io::Result<Box<dyn PagedFile>> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(StdPaged(f)))
    }
}

#[derive(Debug, Default, Clone)]
struct MemFile {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Writes at offsets since the last sync, in order (paged files only).
    unsynced: Vec<PagedWrite>,
}

#[derive(Debug, Clone)]
enum PagedWrite {
    At(usize, Vec<u8>),
    Len(usize),
}

impl PagedWrite {
    fn apply(&self, image: &mut Vec<u8>) {
        match self {
            PagedWrite::At(at, data) => {
                if image.len() < at + data.len() {
                    image.resize(at + data.len(), 0);
                }
                image[*at..at + data.len()].copy_from_slice(data);
            }
            PagedWrite::Len(len) => image.resize(*len, 0),
        }
    }
}

/// An in-memory file system with a live and a durable image per file.
///
/// Cloning shares the same files, so a test can keep a handle, "crash" the
/// engine and reopen it on the same storage. Directory operations (create,
/// rename, remove) are modelled as immediately durable; file contents are
/// durable only once synced.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    files: Arc<Mutex<BTreeMap<PathBuf, MemFile>>>,
}

impl MemStorage {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<PathBuf, MemFile>> {
        // A panic while holding this lock can only come from a test's own
        // assertion; the map itself is always consistent.
        crate::core::lock(&self.files)
    }

    /// Simulate power loss: each file keeps its durable image plus a
    /// pseudo-random prefix (chosen from `seed`) of what was appended after
    /// the last sync — a torn write.
    pub fn crash(&self, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        for file in self.lock().values_mut() {
            if !file.unsynced.is_empty() {
                // A paged file: the durable image and the first writes
                // since its last sync, in order.
                let kept = rng.usize(0..=file.unsynced.len());
                let mut image = file.durable.clone();
                for w in file.unsynced.drain(..).take(kept) {
                    w.apply(&mut image);
                }
                file.live = image.clone();
                file.durable = image;
                continue;
            }
            let keep_extra =
                if file.live.len() > file.durable.len() && file.live.starts_with(&file.durable) {
                    rng.usize(0..=file.live.len() - file.durable.len())
                } else {
                    0
                };
            let mut image = file.durable.clone();
            image
                .extend_from_slice(&file.live[file.durable.len()..file.durable.len() + keep_extra]);
            file.live = image.clone();
            file.durable = image;
        }
    }

    /// Replace a file's contents outright (live and durable), for tests that
    /// damage data on purpose.
    pub fn set_contents(&self, path: &Path, bytes: Vec<u8>) {
        self.lock().insert(
            path.to_path_buf(),
            MemFile {
                live: bytes.clone(),
                durable: bytes,
                unsynced: Vec::new(),
            },
        );
    }
}

struct MemHandle {
    fs: MemStorage,
    path: PathBuf,
}

impl MemHandle {
    fn with<R>(&self, f: impl FnOnce(&mut MemFile) -> R) -> io::Result<R> {
        let mut files = self.fs.lock();
        let file = files
            .get_mut(&self.path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))?;
        Ok(f(file))
    }
}

fn offset(at: u64) -> io::Result<usize> {
    usize::try_from(at).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

impl PagedFile for MemHandle {
    fn size(&self) -> io::Result<u64> {
        self.with(|f| f.live.len() as u64)
    }
    fn read_at(&self, at: u64, out: &mut [u8]) -> io::Result<()> {
        let at = offset(at)?;
        self.with(|f| match f.live.get(at..at + out.len()) {
            Some(bytes) => {
                out.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        })?
    }
    fn write_at(&self, at: u64, data: &[u8]) -> io::Result<()> {
        let w = PagedWrite::At(offset(at)?, data.to_vec());
        self.with(|f| {
            w.apply(&mut f.live);
            f.unsynced.push(w);
        })
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let w = PagedWrite::Len(offset(len)?);
        self.with(|f| {
            w.apply(&mut f.live);
            f.unsynced.push(w);
        })
    }
    fn sync(&self) -> io::Result<()> {
        self.with(|f| {
            f.durable = f.live.clone();
            f.unsynced.clear();
        })
    }
}

impl StorageFile for MemHandle {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.with(|f| f.live.extend_from_slice(buf))
    }
    fn sync(&mut self) -> io::Result<()> {
        self.with(|f| {
            f.durable = f.live.clone();
            f.unsynced.clear();
        })
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.with(|f| f.live.truncate(len))
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        Ok(Box::new(MemHandle {
            fs: self.fs.clone(),
            path: self.path.clone(),
        }))
    }
}

impl FileSyncer for MemHandle {
    fn sync(&mut self) -> io::Result<()> {
        StorageFile::sync(self)
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .lock()
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.lock()
            .get(path)
            .map(|f| f.live.clone())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.lock().insert(path.to_path_buf(), MemFile::default());
        Ok(Box::new(MemHandle {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        if !self.lock().contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                path.display().to_string(),
            ));
        }
        Ok(Box::new(MemHandle {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = self.lock();
        let f = files
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.display().to_string()))?;
        files.insert(to.to_path_buf(), f);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.lock()
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn open_paged(&self, path: &Path) -> io::Result<Box<dyn PagedFile>> {
        self.lock().entry(path.to_path_buf()).or_default();
        Ok(Box::new(MemHandle {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

/// Which operation [`FaultyStorage`] fails, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail the Nth (1-based) file write with OS error `errno`.
    Write {
        /// Which write.
        nth: u64,
        /// The OS error, e.g. 5 (EIO) or 28 (ENOSPC).
        errno: i32,
    },
    /// Fail the Nth (1-based) file or directory sync with OS error `errno`.
    Sync {
        /// Which sync.
        nth: u64,
        /// The OS error.
        errno: i32,
    },
}

/// A [`Storage`] that fails one chosen write or sync, then works normally.
///
/// A failed write persists nothing of its buffer; a failed sync leaves the
/// data written but not durable (as on Linux, where the kernel may since have
/// dropped the dirty pages).
#[derive(Debug, Clone)]
pub struct FaultyStorage<S> {
    inner: S,
    fault: Fault,
    writes: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
}

impl<S: Storage + Clone + 'static> FaultyStorage<S> {
    /// Wrap `inner`, failing the operation `fault` names.
    pub fn new(inner: S, fault: Fault) -> Self {
        FaultyStorage {
            inner,
            fault,
            writes: Arc::default(),
            syncs: Arc::default(),
        }
    }
    /// How many writes have been attempted so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
    /// How many syncs have been attempted so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
    fn check_sync(&self) -> io::Result<()> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault {
            Fault::Sync { nth, errno } if nth == n => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
    fn check_write(&self) -> io::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault {
            Fault::Write { nth, errno } if nth == n => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

struct FaultyFile<S> {
    owner: FaultyStorage<S>,
    inner: Box<dyn StorageFile>,
}

impl<S: Storage + Clone + 'static> StorageFile for FaultyFile<S> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.owner.check_write()?;
        self.inner.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.owner.check_sync()?;
        self.inner.sync()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        Ok(Box::new(FaultySyncer {
            owner: self.owner.clone(),
            inner: self.inner.syncer()?,
        }))
    }
}

struct FaultyPaged<S> {
    owner: FaultyStorage<S>,
    inner: Box<dyn PagedFile>,
}

impl<S: Storage + Clone + 'static> PagedFile for FaultyPaged<S> {
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn read_at(&self, at: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(at, out)
    }
    fn write_at(&self, at: u64, data: &[u8]) -> io::Result<()> {
        self.owner.check_write()?;
        self.inner.write_at(at, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.owner.check_sync()?;
        self.inner.sync()
    }
}

struct FaultySyncer<S> {
    owner: FaultyStorage<S>,
    inner: Box<dyn FileSyncer>,
}

impl<S: Storage + Clone + 'static> FileSyncer for FaultySyncer<S> {
    fn sync(&mut self) -> io::Result<()> {
        self.owner.check_sync()?;
        self.inner.sync()
    }
}

impl<S: Storage + Clone + 'static> Storage for FaultyStorage<S> {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FaultyFile {
            owner: self.clone(),
            inner: self.inner.create(path)?,
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FaultyFile {
            owner: self.clone(),
            inner: self.inner.open_append(path)?,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check_sync()?;
        self.inner.sync_dir(dir)
    }
    fn open_paged(&self, path: &Path) -> io::Result<Box<dyn PagedFile>> {
        Ok(Box::new(FaultyPaged {
            owner: self.clone(),
            inner: self.inner.open_paged(path)?,
        }))
    }
}
