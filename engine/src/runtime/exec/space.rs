//! Free space: a file that cannot fit is not started.
//!
//! Before a file's bytes are fetched, the free space of its folder's file
//! system is checked: the file must fit and leave the minimum free space
//! the node keeps ([`MinFree`], as Syncthing's `minDiskFree`). A file that
//! does not fit fails at once with [`Cause::NoSpace`] — nothing is
//! fetched, so one big file neither fills the disk nor is fetched again
//! and again, and the small files that do fit go on. The work waits until
//! the runtime sees enough space freed (its housekeeping checks every 5 s).
//! This module reads the file system's figures; it never writes.

use std::str::FromStr;

use super::*;
use crate::core::human_bytes;

/// Free space a node keeps on each folder's file system: whichever of a
/// share of the file system and a number of bytes is larger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinFree {
    /// Share of the file system, in percent (0–50).
    pub percent: f64,
    /// Bytes.
    pub bytes: u64,
}

impl Default for MinFree {
    /// 1 % of the file system, as Syncthing.
    fn default() -> Self {
        MinFree {
            percent: 1.0,
            bytes: 0,
        }
    }
}

impl MinFree {
    /// The bytes to keep free on a file system of `total` bytes.
    pub fn keep(&self, total: u64) -> u64 {
        let share = (total as f64 * self.percent / 100.0) as u64;
        share.max(self.bytes)
    }
}

impl FromStr for MinFree {
    type Err = String;

    /// `"1%"`, `"0"`, `"500 MB"`, `"2GiB"` (B, kB/KiB, MB/MiB, GB/GiB, TB/TiB).
    fn from_str(text: &str) -> Result<MinFree, String> {
        let t = text.trim();
        let bad = || format!("{text:?} is not a free space: write e.g. \"1%\" or \"500 MB\"");
        if let Some(p) = t.strip_suffix('%') {
            let percent: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=50.0).contains(&percent) {
                return Err(format!("{text:?}: a share of the disk is 0% to 50%"));
            }
            return Ok(MinFree { percent, bytes: 0 });
        }
        let bytes = crate::core::parse_size(t).ok_or_else(bad)?;
        Ok(MinFree {
            percent: 0.0,
            bytes,
        })
    }
}

/// Free space, per file system, that files of one batch draw on: each
/// file that fits takes its size off what the next may use.
#[derive(Default)]
pub(super) struct SpaceBudget {
    /// Per folder root: bytes left beyond the minimum, and that minimum.
    left: HashMap<PathBuf, Option<(u64, u64)>>,
}

impl SpaceBudget {
    /// Whether a file of `size` bytes fits in the folder at `root`, taking
    /// its size from what is left if so. A file system whose space cannot
    /// be read lets every file start (the write itself will say).
    pub(super) fn take(
        &mut self,
        s: &Shared,
        root: &Path,
        path: &str,
        size: u64,
    ) -> Result<(), WorkError> {
        let left = self
            .left
            .entry(root.to_path_buf())
            .or_insert_with(|| room_and_minimum(root, &s.min_free));
        match left {
            None => Ok(()),
            Some((room, _)) if *room >= size => {
                *room -= size;
                Ok(())
            }
            Some((room, keep)) => Err(WorkError::new(
                Cause::NoSpace { needed: size },
                format!(
                    "not enough free space for {path} in {}: it needs {}, {} {} free beyond the {} kept free ([sync] min_free)",
                    root.display(),
                    human_bytes(size),
                    human_bytes(*room),
                    if *room == 1 { "is" } else { "are" },
                    human_bytes(*keep),
                ),
            )),
        }
    }
}

/// On the file system of `root`: the bytes free beyond the minimum kept,
/// and that minimum (`None` if the file system cannot be read).
fn room_and_minimum(root: &Path, min_free: &MinFree) -> Option<(u64, u64)> {
    let (avail, total) = disk_space(root).ok()?;
    let keep = min_free.keep(total);
    Some((avail.saturating_sub(keep), keep))
}

/// Bytes free beyond the minimum kept, on the file system of `root`
/// (`None` if it cannot be read).
pub fn room_beyond_minimum(root: &Path, min_free: &MinFree) -> Option<u64> {
    room_and_minimum(root, min_free).map(|(room, _)| room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_free_space_is_read_as_people_write_it() {
        let p: MinFree = "1%".parse().unwrap();
        assert_eq!(p.keep(1_000_000), 10_000);
        let b: MinFree = "500 MB".parse().unwrap();
        assert_eq!(b.keep(1 << 40), 500_000_000);
        assert_eq!("2GiB".parse::<MinFree>().unwrap().bytes, 2 << 30);
        assert_eq!("0".parse::<MinFree>().unwrap().keep(1 << 40), 0);
        assert!("60%".parse::<MinFree>().unwrap_err().contains("0% to 50%"));
        assert!("lots".parse::<MinFree>().unwrap_err().contains("\"lots\""));
        assert!("5 parsecs".parse::<MinFree>().is_err());
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let d = tempfile::tempdir().unwrap();
        let (avail, total) = disk_space(d.path()).unwrap();
        assert!(total > 0 && avail <= total, "{avail} of {total}");
        let none = MinFree {
            percent: 0.0,
            bytes: 0,
        };
        assert_eq!(
            room_beyond_minimum(d.path(), &none).map(|r| r > 0),
            Some(true)
        );
    }
}
