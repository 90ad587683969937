//! fs: observe a folder — walk it, hash what changed, cut files into
//! content-defined chunks. The fs layer reports; it never writes the index.
//!
//! Run: `cargo run -p softadastra --example fs_scan`

use softadastra::fs::chunk::ChunkerConfig;
use softadastra::fs::ignore::IgnoreRules;
use softadastra::fs::scan::{self, ScanProgress, Scope};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("docs"))?;
    std::fs::write(dir.path().join("docs/readme.md"), "# hello\n")?;
    std::fs::write(dir.path().join("big.bin"), vec![42u8; 300_000])?;
    std::fs::write(dir.path().join(".softadastraignore"), "*.tmp\n")?;
    std::fs::write(dir.path().join("scratch.tmp"), "ignored")?;

    let (ignore, warnings) = IgnoreRules::load(dir.path());
    assert!(warnings.is_empty(), "{warnings:?}");
    // Nothing known yet: every file is read and hashed.
    let seen = scan::observe(
        dir.path(),
        &[Scope::All],
        &ignore,
        &|_, _| false,
        ChunkerConfig::default(),
        &ScanProgress::default(),
    );
    for e in &seen.entries {
        let chunks = e.content.as_ref().map_or(0, |c| c.chunks.len());
        println!("{:<22} {:?} {chunks} chunk(s)", e.path, e.stat.kind);
    }
    println!(
        "hashed {} file(s), {} bytes; {} issue(s)",
        seen.hashed_files,
        seen.hashed_bytes,
        seen.issues.len()
    );
    Ok(())
}
