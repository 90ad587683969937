//! Which paths of a folder never enter the store.
//!
//! Two sources: built-in rules for the agent's own files (the per-folder
//! `.softadastra/` directory with trash and transfer state, and temporary
//! files named `.softadastra-tmp-*` used while assembling downloads), and
//! the folder's `.softadastraignore` file in gitignore syntax. The ignore
//! file itself is synced like any other file, so every node applies the same
//! rules.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

pub use crate::core::path::{META_DIR, TEMP_PREFIX, is_builtin_ignored};
/// Name of the per-folder ignore file.
pub const IGNORE_FILE: &str = ".softadastraignore";

/// The ignore rules of one folder.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    matcher: Gitignore,
    file: PathBuf,
}

impl IgnoreRules {
    /// Built-in rules only.
    pub fn builtin() -> Self {
        IgnoreRules {
            matcher: Gitignore::empty(),
            file: PathBuf::new(),
        }
    }

    /// Built-in rules plus `root/.softadastraignore` if present. Lines that
    /// do not parse are returned as warnings and skipped; the rest apply.
    pub fn load(root: &Path) -> (Self, Vec<String>) {
        let file = root.join(IGNORE_FILE);
        let mut warnings = Vec::new();
        if !file.is_file() {
            return (
                IgnoreRules {
                    file,
                    ..Self::builtin()
                },
                warnings,
            );
        }
        let mut builder = GitignoreBuilder::new(root);
        if let Some(err) = builder.add(&file) {
            warnings.push(format!("{}: {err}", file.display()));
        }
        let matcher = builder.build().unwrap_or_else(|e| {
            warnings.push(format!(
                "{}: {e}; using built-in rules only",
                file.display()
            ));
            Gitignore::empty()
        });
        (IgnoreRules { matcher, file }, warnings)
    }

    /// Whether the folder-relative path `rel` is ignored (by itself or
    /// because a parent directory is).
    pub fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        self.is_ignored_with(rel, || is_dir)
    }

    /// [`IgnoreRules::is_ignored`], asking whether `rel` is a directory only when
    /// a rule needs to know (the watcher would otherwise stat every event).
    pub fn is_ignored_with(&self, rel: &str, is_dir: impl FnOnce() -> bool) -> bool {
        if is_builtin_ignored(rel) {
            return true;
        }
        !self.matcher.is_empty()
            && self
                .matcher
                .matched_path_or_any_parents(rel, is_dir())
                .is_ignore()
    }

    /// The ignore file these rules were read from.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// Whether the directory `dir` is a Softadastra node's home: it holds a
/// store (`store/LOCK`, made by a node's first write) or an identity
/// (`identity/cert.der` and `identity/key.der`). A home inside a shared
/// folder — this node's own, or any other — is never indexed or synced,
/// whatever the ignore file says: it holds a private key, and its log
/// changes with every change recorded (a loop, were it synced).
pub fn is_node_home(dir: &Path) -> bool {
    let exists = |p: PathBuf| std::fs::symlink_metadata(p).is_ok();
    exists(dir.join("store").join("LOCK"))
        || (exists(dir.join("identity").join("key.der"))
            && exists(dir.join("identity").join("cert.der")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_home_is_recognised_by_its_store_or_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("h");
        std::fs::create_dir_all(home.join("identity")).unwrap();
        std::fs::write(home.join("identity/key.der"), b"k").unwrap();
        assert!(!is_node_home(&home), "a key alone is not an identity");
        std::fs::write(home.join("identity/cert.der"), b"c").unwrap();
        assert!(is_node_home(&home));
        let other = dir.path().join("o");
        std::fs::create_dir_all(other.join("store")).unwrap();
        assert!(!is_node_home(&other));
        std::fs::write(other.join("store/LOCK"), b"").unwrap();
        assert!(is_node_home(&other));
        assert!(!is_node_home(dir.path()));
    }

    #[test]
    fn builtin_and_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), "*.log\nbuild/\n!keep.log\n").unwrap();
        let (rules, warnings) = IgnoreRules::load(dir.path());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(rules.is_ignored("a.log", false));
        assert!(rules.is_ignored("deep/x/a.log", false));
        assert!(!rules.is_ignored("keep.log", false));
        assert!(rules.is_ignored("build", true));
        assert!(rules.is_ignored("build/out.o", false));
        assert!(!rules.is_ignored("src/main.rs", false));
        assert!(rules.is_ignored(".softadastra/trash/x", false));
        assert!(rules.is_ignored("docs/.softadastra-tmp-123-report.txt", false));
        assert!(
            !rules.is_ignored(IGNORE_FILE, false),
            "the ignore file itself syncs"
        );
    }
}
