//! The system calls std does not offer, each behind a safe function with
//! its SAFETY reasoning.

use super::*;

/// Rename `from` to `to`, which must not exist (`AlreadyExists` if it
/// does): a file created there meanwhile is never replaced. One atomic
/// call on Linux file systems that support it; a check, then the rename,
/// elsewhere.
pub(crate) fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let (f, t) = (c(from)?, c(to)?);
        // SAFETY: both paths are NUL-terminated strings that live across
        // the call; renameat2 only reads them.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        // Not supported by this file system (or kernel): as elsewhere.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
            return Err(e);
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

/// Flush every dirty page of the file system holding `dir`: one device
/// flush for a whole batch of files.
#[cfg(target_os = "linux")]
pub(super) fn syncfs(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)?;
    // SAFETY: syncfs reads nothing from our memory; the descriptor is open
    // for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Start writing `len` bytes at `offset` of `f` to disk without waiting
/// for it: the disk works while the network does, and the fsync that ends
/// a large file finds little left to write (instead of every file's bytes
/// at once at the end of a bulk sync). Linux only; elsewhere the fsync
/// does it all.
#[cfg(target_os = "linux")]
pub(super) fn start_writeback(f: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range reads nothing from our memory; the
    // descriptor is open for the duration of the call. A failure only
    // leaves the work to the fsync.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn start_writeback(_: &std::fs::File, _: u64, _: u64) {}

/// Files at least this large are fsynced on their own as soon as they are
/// assembled; smaller ones are made durable per commit batch.
pub(super) const SYNC_ALONE: u64 = 4 << 20;

pub(super) fn set_times_and_mode(f: &std::fs::File, mtime_ns: i64, mode: u32) {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(mtime_ns.max(0) as u64);
    let _ = f.set_modified(t);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Usually already right (created 0644): one change event fewer
        // for every watcher of the folder, ours included.
        // Permission bits only: a peer never makes a file set-user-id,
        // set-group-id or sticky here.
        let want = mode & 0o777;
        if f.metadata().map(|m| m.permissions().mode() & 0o7777).ok() != Some(want) {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(want));
        }
    }
    #[cfg(not(unix))]
    let _ = mode;
}

/// The space of the file system holding `path`: (bytes available to this
/// user, total bytes).
#[cfg(unix)]
pub(crate) fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: an all-zero statvfs is a valid value of that plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string that lives across the call,
    // which only reads it; `st` is ours to write for the call's duration.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = u64::from(st.f_frsize.max(1) as u32);
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    Ok((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

/// Elsewhere the check is skipped: every file may start.
#[cfg(not(unix))]
pub(crate) fn disk_space(_: &Path) -> std::io::Result<(u64, u64)> {
    Ok((u64::MAX, u64::MAX))
}
