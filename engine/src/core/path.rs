//! Folder-relative paths: the one place that says what a valid path is.
//!
//! Inside the engine a path in a shared folder is a `/`-separated, UTF-8,
//! normalized relative path (`docs/report.txt`). Paths from the local disk
//! are converted with [`relative`]; paths from anywhere else — a peer above
//! all — are checked with [`validate`] before they touch the disk.

use std::path::{Component, Path, PathBuf};

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty path.
    #[error("empty path")]
    Empty,
    /// Starts with `/`, a drive letter or a UNC prefix.
    #[error("absolute path {0:?}")]
    Absolute(String),
    /// Contains a `..` component.
    #[error("path {0:?} climbs out with '..'")]
    ParentDir(String),
    /// Contains `.`, an empty component, a backslash or a NUL.
    #[error("path {0:?} is not normalized (empty or '.' component, backslash or NUL)")]
    NotNormalized(String),
    /// Not valid UTF-8 (cannot be synced).
    #[error("path {0:?} is not valid UTF-8")]
    NotUtf8(String),
    /// Not inside the folder root.
    #[error("path {0:?} is outside the folder")]
    Outside(String),
}

/// Check a folder-relative path received from elsewhere.
pub fn validate(rel: &str) -> Result<(), PathError> {
    if rel.is_empty() {
        return Err(PathError::Empty);
    }
    let bytes = rel.as_bytes();
    let drive = bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic();
    if rel.starts_with('/') || rel.starts_with("\\\\") || drive {
        return Err(PathError::Absolute(rel.to_string()));
    }
    if rel.contains('\0') || rel.contains('\\') {
        return Err(PathError::NotNormalized(rel.to_string()));
    }
    for part in rel.split('/') {
        match part {
            ".." => return Err(PathError::ParentDir(rel.to_string())),
            "" | "." => return Err(PathError::NotNormalized(rel.to_string())),
            _ => {}
        }
    }
    Ok(())
}

/// The folder-relative form of `abs`, which must be inside `root`.
pub fn relative(root: &Path, abs: &Path) -> Result<String, PathError> {
    let rest = abs
        .strip_prefix(root)
        .map_err(|_| PathError::Outside(abs.display().to_string()))?;
    let mut parts = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| PathError::NotUtf8(abs.display().to_string()))?,
            ),
            _ => return Err(PathError::NotNormalized(abs.display().to_string())),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    let rel = parts.join("/");
    validate(&rel)?;
    Ok(rel)
}

/// The absolute path of a validated relative path under `root`.
pub fn absolute(root: &Path, rel: &str) -> Result<PathBuf, PathError> {
    validate(rel)?;
    Ok(rel
        .split('/')
        .fold(root.to_path_buf(), |p, part| p.join(part)))
}

/// Whether the folder-relative path `rel` is `dir` or inside it; `dir`
/// empty is the folder's root, which holds every path.
pub fn is_within(rel: &str, dir: &str) -> bool {
    dir.is_empty()
        || rel == dir
        || (rel.starts_with(dir) && rel.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// The longest file name (one path component, in bytes) the file systems
/// folders live on accept: ext4, btrfs, XFS and APFS all stop at 255.
pub const NAME_MAX: usize = 255;

/// `stem` followed by `suffix`, the stem cut (at a character boundary) so
/// the whole stays within [`NAME_MAX`] bytes. Names the agent derives from
/// a user's name — conflict copies, kept versions — use it, so a name that
/// fits the file system never yields one that does not.
pub fn fit_name(stem: &str, suffix: &str) -> String {
    let room = NAME_MAX.saturating_sub(suffix.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &stem[..cut])
}

/// What marks a conflict copy's name: `NAME.sync-conflict-<when>-<device>.EXT`.
pub const CONFLICT_MARKER: &str = ".sync-conflict-";

/// Whether `path` is a conflict copy (such files never get copies of their own).
pub fn is_conflict_copy(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|f| f.contains(CONFLICT_MARKER))
}

/// The path a conflict copy was made for, and the stamp and short device
/// id its name carries: `dir/NAME.sync-conflict-20261203-194612-abc1234 (2).txt`
/// → (`dir/NAME.txt`, `20261203-194612`, `abc1234`). `None` for a path
/// that is not a conflict copy.
pub fn original_of_copy(path: &str) -> Option<(String, String, String)> {
    let (dir, file) = match path.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, path),
    };
    let at = file.find(CONFLICT_MARKER)?;
    let (stem, rest) = (&file[..at], &file[at + CONFLICT_MARKER.len()..]);
    // `<date>-<time>-<device>`, then maybe ` (n)`, then maybe `.ext`.
    let ext = rest.find('.').map_or("", |i| &rest[i..]);
    let tag = rest[..rest.len() - ext.len()]
        .split(' ')
        .next()
        .unwrap_or_default();
    let mut parts = tag.splitn(3, '-');
    let (date, time, device) = (parts.next()?, parts.next()?, parts.next()?);
    let name = format!("{stem}{ext}");
    let original = match dir {
        Some(d) => format!("{d}/{name}"),
        None => name,
    };
    Some((original, format!("{date}-{time}"), device.to_string()))
}

/// Per-folder directory the agent owns (trash, transfer state).
pub const META_DIR: &str = ".softadastra";
/// Prefix of temporary files the agent writes while assembling a download.
pub const TEMP_PREFIX: &str = ".softadastra-tmp-";

/// The agent's own files, whatever the ignore file says.
pub fn is_builtin_ignored(rel: &str) -> bool {
    rel == META_DIR
        || rel.starts_with(".softadastra/")
        || rel.split('/').any(|part| part.starts_with(TEMP_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_copy_names_its_original() {
        assert_eq!(
            original_of_copy("a/report.sync-conflict-20261203-194612-abc1234.txt"),
            Some((
                "a/report.txt".into(),
                "20261203-194612".into(),
                "abc1234".into()
            ))
        );
        assert_eq!(
            original_of_copy("notes.sync-conflict-20261203-194612-abc1234 (2)").map(|o| o.0),
            Some("notes".into())
        );
        assert_eq!(
            original_of_copy("x.tar.sync-conflict-20261203-194612-abc1234 (3).gz").map(|o| o.0),
            Some("x.tar.gz".into())
        );
        assert_eq!(original_of_copy("a/report.txt"), None);
        assert_eq!(original_of_copy("bad.sync-conflict-nodash"), None);
    }

    #[test]
    fn derived_names_fit_whatever_the_name_length() {
        assert_eq!(fit_name("report", ".~2~"), "report.~2~");
        let long = "é".repeat(127); // 254 bytes
        let fitted = fit_name(&long, ".~12~");
        assert!(fitted.len() <= NAME_MAX, "{}", fitted.len());
        assert!(fitted.ends_with(".~12~"));
        assert!(fitted.starts_with("é"));
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../../etc/passwd",
            "a/../../b",
            "a//b",
            "./a",
            "a/./b",
            "a\\b",
            "C:/x",
            "c:evil",
            "\\\\server\\share",
            "a\0b",
            "a/",
            "..",
        ] {
            assert!(validate(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "a",
            "docs/report.txt",
            "a/b/c d/é.txt",
            "..hidden",
            "a..b/c",
        ] {
            assert_eq!(validate(good), Ok(()), "{good:?} refused");
        }
    }

    #[test]
    fn within_is_by_whole_components_and_the_root_holds_everything() {
        assert!(is_within("a/b", "a"));
        assert!(is_within("a", "a"));
        assert!(!is_within("ab", "a"));
        assert!(!is_within("a", "a/b"));
        assert!(is_within("a/b", ""), "the folder's root");
        assert!(is_within("", ""));
    }

    #[test]
    fn relative_and_absolute_round_trip() {
        let root = Path::new("/data/folder");
        let rel = relative(root, Path::new("/data/folder/x/y.txt")).unwrap();
        assert_eq!(rel, "x/y.txt");
        assert_eq!(
            absolute(root, &rel).unwrap(),
            Path::new("/data/folder/x/y.txt")
        );
        assert!(relative(root, Path::new("/data/other")).is_err());
        assert!(relative(root, root).is_err());
    }
}
