//! A large sparse file, end to end (issue 21): announced without its
//! chunk list (too long for a control frame), which the receiver fetches
//! on a bulk stream; its holes are neither read, sent nor written — the
//! copy stays sparse — and a one-byte change sends about one chunk. Real
//! `softadastra run` processes on 127.0.0.1.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::node::{Node, sharing};
use common::{json, run, wait};

const GIB: u64 = 1 << 30;
/// 6 GiB: 24,000 chunks of zeros, a list of ~1 MB — far over what an
/// index page carries.
const SIZE: u64 = 6 * GIB;
/// Where alpha's data is: a MiB of random bytes at each.
const MARKS: [u64; 3] = [0, GIB + 12_345, 5 * GIB];

fn status(n: &Node) -> serde_json::Value {
    json(&run(n.home.path(), &["status", "--json"]))
}

/// The MiB at `at` in `path` (shorter at the end), if it can be read.
fn mib_at(path: &Path, at: u64) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(at)).ok()?;
    let mut v = Vec::new();
    f.take(1 << 20).read_to_end(&mut v).ok()?;
    Some(v)
}

/// Bytes `path` takes on disk.
fn on_disk(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

fn write_at(path: &Path, at: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_large_sparse_file_syncs_stays_sparse_and_a_byte_costs_a_chunk() {
    let (mut a, da) = sharing("alpha", &[]);
    let image = da.join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(SIZE))
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(21);
    for at in MARKS {
        let data: Vec<u8> = (0..1 << 20).map(|_| rng.u8(..)).collect();
        write_at(&image, at, &data);
    }
    // Indexed again by the running agent's catch-up scan.
    let (mut b, db) = sharing("beta", &[]);
    a.trust(&b);
    b.trust(&a);
    a.start();
    b.start();
    let copy = db.join("disk.img");
    let same = || {
        std::fs::metadata(&copy).is_ok_and(|m| m.len() == SIZE)
            && MARKS
                .iter()
                .all(|&at| mib_at(&image, at) == mib_at(&copy, at))
    };
    wait("the large file on beta", Duration::from_secs(120), same);
    let fetched = status(&b)["sync_bytes_fetched"].as_u64().unwrap();
    assert!(
        fetched < 16 << 20,
        "{fetched} bytes fetched for 3 MiB of data and the rest holes"
    );
    // Where the source is sparse, so is the copy.
    if on_disk(&image) < 64 << 20 {
        assert!(
            on_disk(&copy) < 64 << 20,
            "the copy takes {} bytes on disk",
            on_disk(&copy)
        );
    }

    // One byte in a hole, in the middle.
    let at = 3 * GIB + 777;
    write_at(&image, at, b"Z");
    let changed = || mib_at(&copy, at).is_some_and(|v| v.first() == Some(&b'Z'));
    wait(
        "the one-byte change on beta",
        Duration::from_secs(120),
        changed,
    );
    let more = status(&b)["sync_bytes_fetched"].as_u64().unwrap() - fetched;
    assert!(
        more <= 2 << 20,
        "{more} bytes fetched for a one-byte change of a 6 GiB file"
    );
    assert!(same(), "the rest of the file is as it was");
    // The replaced version is kept on beta (its history), not lost.
    let history = json(&run(
        b.home.path(),
        &["history", copy.to_str().unwrap(), "--json"],
    ));
    let kept = &history[0];
    assert!(
        kept["why"] == "replaced" && kept["size"] == SIZE && kept["here"] == true,
        "beta keeps the version it replaced: {history}"
    );
    // Alpha keeps the version its own edit replaced, gathered from its
    // chunks: the zeros stay holes there too.
    let gathered = || {
        let h = json(&run(
            a.home.path(),
            &["history", image.to_str().unwrap(), "--json"],
        ));
        h.as_array()
            .is_some_and(|v| v.iter().any(|k| k["size"] == SIZE && k["here"] == true))
    };
    wait(
        "alpha keeps the version it edited",
        Duration::from_secs(120),
        gathered,
    );
    assert!(
        on_disk_under(&da) < 64 << 20,
        "alpha's folder takes {} bytes on disk",
        on_disk_under(&da)
    );
    a.signal("-TERM");
    b.signal("-TERM");
}

/// Bytes the files under `dir` take on disk, the agent's own included.
fn on_disk_under(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| on_disk(e.path()))
        .sum()
}
