//! The dependency rules of ARCHITECTURE.md, checked: each module of the
//! engine may name only the modules below it (`crate::<module>` in code,
//! doc comments aside). A new arrow that the rules do not allow fails
//! here, naming the file and line; an arrow the rules allow but the code no
//! longer draws is reported too, so this table and the document stay true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the modules it may use. Mirrors ARCHITECTURE.md's dependency
/// order: `core ← store ← index`, `core, index ← fs`, `wal ← store`,
/// `fs, index ← folder`, `index, store ← sync`, `core ← transport`,
/// `core ← discovery`, `transport ← metadata`, and the runtime and the
/// SDK client above all of them.
const ALLOWED: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("index", &["core", "store"]),
    ("fs", &["core", "index"]),
    ("wal", &["core"]),
    ("store", &["core", "wal"]),
    ("folder", &["core", "fs", "index", "store", "wal"]),
    // Nothing that reads the disk: the records and keys are `index`'s,
    // the path checks `core::path`'s.
    ("sync", &["core", "index", "store"]),
    // Transport only asks "is this id trusted?" (`tls::TrustedIds`); the
    // list is persisted by `runtime::trust`.
    ("transport", &["core"]),
    ("discovery", &["core"]),
    ("metadata", &["core", "transport"]),
    (
        "runtime",
        &[
            "core",
            "discovery",
            "folder",
            "fs",
            "index",
            "metadata",
            "store",
            "sync",
            "transport",
            "wal",
        ],
    ),
    (
        "client",
        &[
            "core",
            "discovery",
            "folder",
            "fs",
            "index",
            "metadata",
            "runtime",
            "store",
            "sync",
            "transport",
            "wal",
        ],
    ),
];

/// Every `crate::<module>` a source file names in code, with its line.
fn uses(file: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((name, n + 1));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_use_only_the_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut wrong = Vec::new();
    let mut drawn: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" {
            continue;
        }
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module {module} is not in the layering table",
                rel.display()
            ));
            continue;
        };
        for (used, line) in uses(&file) {
            if used == module {
                continue;
            }
            drawn
                .entry(module.clone())
                .or_default()
                .insert(used.clone());
            if !may.contains(used.as_str()) {
                wrong.push(format!(
                    "{}:{line}: {module} uses {used}, which is not below it",
                    rel.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "wrong arrows:\n{}", wrong.join("\n"));
    // The layers above all (runtime, client) may use any of them.
    let unused: Vec<String> = ALLOWED
        .iter()
        .filter(|(m, _)| !matches!(*m, "runtime" | "client"))
        .flat_map(|(m, deps)| {
            let drawn = drawn.get(*m);
            deps.iter()
                .filter(move |d| drawn.is_none_or(|set| !set.contains(**d)))
                .map(move |d| format!("{m} → {d}"))
        })
        .collect();
    assert!(
        unused.is_empty(),
        "allowed but no longer used (tighten the table and ARCHITECTURE.md): {unused:?}"
    );
}
