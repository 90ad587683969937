//! Unit tests for the log: recovery of torn tails, corruption, rotation,
//! compaction, group commit and failure handling.

use std::time::Duration;

use super::*;
use crate::core::ManualClock;

fn cfg(durability: Durability) -> WalConfig {
    WalConfig {
        dir: PathBuf::from("/wal"),
        durability,
        segment_bytes: 64 << 20,
    }
}

/// Records seen at recovery: (sequence, payload).
type Seen = Vec<(u64, Vec<u8>)>;

fn open(storage: &MemStorage, config: WalConfig) -> Result<(Wal, RecoveryReport, Seen), WalError> {
    let mut seen = Vec::new();
    let (wal, report) = Wal::open(
        Arc::new(storage.clone()),
        config,
        Arc::new(ManualClock::new()),
        Seq(1),
        |r| {
            seen.push((r.seq.0, r.payload.to_vec()));
            Ok(())
        },
    )?;
    Ok((wal, report, seen))
}

fn payload(i: u64) -> Vec<u8> {
    format!("record number {i} with some padding").into_bytes()
}

fn segment_path(storage: &MemStorage) -> PathBuf {
    let names = storage.list(Path::new("/wal")).unwrap();
    Path::new("/wal").join(names.last().unwrap())
}

#[test]
fn records_and_sequences_survive_reopen() {
    let storage = MemStorage::new();
    let (mut wal, _, _) = open(&storage, cfg(Durability::EveryAppend)).unwrap();
    for i in 1..=10 {
        assert_eq!(wal.append(7, &payload(i)).unwrap(), Seq(i));
    }
    drop(wal);
    let (mut wal, report, seen) = open(&storage, cfg(Durability::EveryAppend)).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(seen.len(), 10);
    assert_eq!(seen[3], (4, payload(4)));
    assert_eq!(wal.append(7, b"next").unwrap(), Seq(11));
}

/// Issue #2: truncate the last record at every byte offset — every earlier
/// record is recovered, the tail is reported, nothing panics.
#[test]
fn torn_tail_truncated_at_every_offset() {
    let storage = MemStorage::new();
    let (mut wal, _, _) = open(&storage, cfg(Durability::EveryAppend)).unwrap();
    for i in 1..=5 {
        wal.append(1, &payload(i)).unwrap();
    }
    drop(wal);
    let path = segment_path(&storage);
    let full = storage.read(&path).unwrap();
    let last_len = format::RECORD_HEADER_LEN + payload(5).len();
    let last_start = full.len() - last_len;
    for cut in last_start..full.len() {
        let s = MemStorage::new();
        s.set_contents(&path, full[..cut].to_vec());
        let (mut wal, report, seen) = open(&s, cfg(Durability::EveryAppend)).unwrap();
        assert_eq!(seen.len(), 4, "cut at {cut}");
        assert_eq!(report.last_seq, Seq(4));
        if cut > last_start {
            let torn = report.truncated.expect("torn tail reported");
            assert_eq!(torn.offset, last_start as u64);
            assert_eq!(torn.discarded, (cut - last_start) as u64);
        } else {
            assert!(report.truncated.is_none());
        }
        // The log continues where the valid data ended.
        assert_eq!(wal.append(1, b"after").unwrap(), Seq(5));
        drop(wal);
        let (_, _, seen) = open(&s, cfg(Durability::EveryAppend)).unwrap();
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[4].1, b"after");
    }
}

/// Issue #2: flip each byte of the last record — earlier records recovered,
/// the damaged one cut as a torn tail.
#[test]
fn torn_tail_every_byte_flipped() {
    let storage = MemStorage::new();
    let (mut wal, _, _) = open(&storage, cfg(Durability::EveryAppend)).unwrap();
    for i in 1..=5 {
        wal.append(1, &payload(i)).unwrap();
    }
    drop(wal);
    let path = segment_path(&storage);
    let full = storage.read(&path).unwrap();
    let last_start = full.len() - (format::RECORD_HEADER_LEN + payload(5).len());
    for at in last_start..full.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bytes = full.clone();
            bytes[at] ^= mask;
            let s = MemStorage::new();
            s.set_contents(&path, bytes);
            let (_, report, seen) = open(&s, cfg(Durability::EveryAppend))
                .unwrap_or_else(|e| panic!("flip at {at} mask {mask:#x}: {e}"));
            assert_eq!(seen.len(), 4, "flip at {at}");
            assert!(report.truncated.is_some(), "flip at {at}");
        }
    }
}

/// Issue #2: a damaged record with valid records after it is corruption,
/// named by segment and offset — never skipped.
#[test]
fn corrupt_middle_record_is_an_error() {
    let storage = MemStorage::new();
    let (mut wal, _, _) = open(&storage, cfg(Durability::EveryAppend)).unwrap();
    for i in 1..=5 {
        wal.append(1, &payload(i)).unwrap();
    }
    drop(wal);
    let path = segment_path(&storage);
    let mut bytes = storage.read(&path).unwrap();
    let rec_len = format::RECORD_HEADER_LEN + payload(1).len();
    let third = format::SEGMENT_HEADER_LEN + 2 * rec_len;
    for at in [third, third + 5, third + 20] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        storage.set_contents(&path, damaged);
        match open(&storage, cfg(Durability::EveryAppend)) {
            Err(WalError::Corruption {
                segment, offset, ..
            }) => {
                assert_eq!(segment, path);
                assert_eq!(offset, third as u64);
            }
            other => panic!("expected corruption for flip at {at}, got {other:?}"),
        }
        let verify = Wal::verify(&storage, Path::new("/wal")).unwrap();
        assert!(verify.corruption.is_some());
    }
    bytes.truncate(bytes.len());
}

#[test]
fn rotation_compaction_and_sequence_floor() {
    let storage = MemStorage::new();
    let mut config = cfg(Durability::EveryAppend);
    config.segment_bytes = 200;
    let (mut wal, _, _) = open(&storage, config.clone()).unwrap();
    for i in 1..=20 {
        wal.append(1, &payload(i)).unwrap();
    }
    assert!(wal.segment_count() > 3);
    let removed = wal.compact(Seq(10)).unwrap();
    assert!(removed > 0);
    assert!(wal.first_seq() <= Seq(11));
    drop(wal);
    // Reopen replaying from 11: everything after the snapshot point is there.
    let mut seen = Vec::new();
    let (mut wal, _) = Wal::open(
        Arc::new(storage.clone()),
        config.clone(),
        Arc::new(ManualClock::new()),
        Seq(11),
        |r| {
            seen.push(r.seq.0);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen, (11..=20).collect::<Vec<_>>());
    assert_eq!(wal.append(1, b"x").unwrap(), Seq(21));
    let verify = Wal::verify(&storage, Path::new("/wal")).unwrap();
    assert_eq!(verify.last_seq, Seq(21));
    assert!(verify.corruption.is_none());
}

#[test]
fn floor_above_log_starts_numbering_there() {
    let storage = MemStorage::new();
    let (wal, _) = Wal::open(
        Arc::new(storage.clone()),
        cfg(Durability::EveryAppend),
        Arc::new(ManualClock::new()),
        Seq(501),
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(wal.next_seq(), Seq(501));
}

#[test]
fn group_commit_flushes_on_batch_size_and_deadline() {
    let storage = MemStorage::new();
    let clock = ManualClock::new();
    let durability = Durability::Group {
        max_batch: 3,
        max_delay: Duration::from_millis(10),
    };
    let (mut wal, _) = Wal::open(
        Arc::new(storage.clone()),
        cfg(durability),
        Arc::new(clock.clone()),
        Seq(1),
        |_| Ok(()),
    )
    .unwrap();
    wal.append(1, b"a").unwrap();
    wal.append(1, b"b").unwrap();
    assert_eq!(wal.durable_seq(), Seq(0));
    wal.append(1, b"c").unwrap();
    assert_eq!(wal.durable_seq(), Seq(3), "batch size reached");
    wal.append(1, b"d").unwrap();
    let deadline = wal.flush_deadline().unwrap();
    assert_eq!(wal.poll_flush(clock.now()).unwrap(), Seq(3));
    clock.advance(Duration::from_millis(10));
    assert!(clock.now() >= deadline);
    assert_eq!(wal.poll_flush(clock.now()).unwrap(), Seq(4));
    assert!(wal.flush_deadline().is_none());
    // A crash loses nothing that was reported durable.
    wal.append(1, b"e").unwrap();
    storage.crash(1);
    drop(wal);
    let (_, _, seen) = open(&storage, cfg(durability)).unwrap();
    assert!(seen.len() >= 4);
}

/// Group commit by the caller: inside a held span appends are written but
/// not synced; the span's end makes all of them durable with one fsync.
#[test]
fn held_span_syncs_once_at_its_end() {
    let base = MemStorage::new();
    let counting = FaultyStorage::new(
        base.clone(),
        Fault::Sync {
            nth: u64::MAX,
            errno: 5,
        },
    );
    let (mut wal, _) = Wal::open(
        Arc::new(counting.clone()),
        cfg(Durability::EveryAppend),
        Arc::new(ManualClock::new()),
        Seq(1),
        |_| Ok(()),
    )
    .unwrap();
    wal.append(1, b"before").unwrap();
    let syncs = counting.syncs();
    let durable = wal
        .hold(|wal| {
            for i in 1..=20 {
                wal.append(1, &payload(i)).unwrap();
                wal.append_batch(&[(1, b"x"), (1, b"y")]).unwrap();
            }
            // Nested spans end with the outermost.
            wal.hold(|wal| wal.append(1, b"inner").unwrap()).unwrap();
            assert_eq!(wal.durable_seq(), Seq(1), "nothing held is durable yet");
            wal.durable_seq()
        })
        .unwrap();
    assert_eq!(durable, Seq(1));
    assert_eq!(counting.syncs(), syncs + 1, "one fsync for the whole span");
    assert_eq!(wal.durable_seq(), Seq(62));
    // Outside a span, every append syncs again.
    wal.append(1, b"after").unwrap();
    assert_eq!(counting.syncs(), syncs + 2);
    // A crash inside a span loses only what the span had not yet synced.
    let _ = wal.hold(|wal| {
        wal.append(1, b"lost").unwrap();
        base.crash(7);
    });
    drop(wal);
    let (_, _, seen) = open(&base, cfg(Durability::EveryAppend)).unwrap();
    assert!(
        seen.len() >= 63,
        "every record synced by a span's end survives"
    );
}

#[test]
fn failed_fsync_poisons_and_loses_nothing_acknowledged() {
    for nth in 1..=6 {
        let base = MemStorage::new();
        let faulty = FaultyStorage::new(base.clone(), Fault::Sync { nth, errno: 5 });
        let (mut wal, _) = Wal::open(
            Arc::new(faulty),
            cfg(Durability::EveryAppend),
            Arc::new(ManualClock::new()),
            Seq(1),
            |_| Ok(()),
        )
        .map(|x| (Some(x.0), x.1))
        .unwrap_or((None, RecoveryReport::default()));
        let Some(wal) = wal.as_mut() else { continue };
        let mut acked = Vec::new();
        for i in 1..=5 {
            match wal.append(1, &payload(i)) {
                Ok(seq) => acked.push(seq.0),
                Err(e) => {
                    assert!(matches!(e, WalError::Io { op: "fsync", .. }), "{e}");
                    assert!(matches!(wal.append(1, b"more"), Err(WalError::Poisoned(_))));
                    break;
                }
            }
        }
        let (_, _, seen) = open(&base, cfg(Durability::EveryAppend)).unwrap();
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            acked,
            "fsync #{nth} failing"
        );
    }
}

#[test]
fn oversized_payload_is_refused() {
    let storage = MemStorage::new();
    let (mut wal, _, _) = open(&storage, cfg(Durability::None)).unwrap();
    let big = vec![0u8; format::MAX_RECORD_PAYLOAD + 1];
    assert!(matches!(
        wal.append(1, &big),
        Err(WalError::TooLarge { .. })
    ));
    assert_eq!(wal.append(1, b"ok").unwrap(), Seq(1));
}

#[test]
fn torn_segment_header_is_removed_at_open() {
    let storage = MemStorage::new();
    let (mut wal, _, _) = open(&storage, cfg(Durability::EveryAppend)).unwrap();
    wal.append(1, b"one").unwrap();
    drop(wal);
    storage.set_contents(
        Path::new("/wal/seg-00000000000000000002.wal"),
        b"SDAW".to_vec(),
    );
    let (mut wal, report, seen) = open(&storage, cfg(Durability::EveryAppend)).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(report.removed_empty_segments.len(), 1);
    assert_eq!(wal.append(1, b"two").unwrap(), Seq(2));
    drop(wal);
    // Regression: removing the torn segment once deleted the older ones too.
    let (_, _, seen) = open(&storage, cfg(Durability::EveryAppend)).unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2]);
}

/// The fsync taken out of the log (`pending_sync`) runs while appends go
/// on; only its outcome, handed back, moves `durable_seq`.
#[test]
fn a_deferred_fsync_runs_away_from_the_log_and_is_counted_when_handed_back() {
    let base = MemStorage::new();
    let (mut wal, _, _) = open(&base, cfg(Durability::EveryAppend)).unwrap();
    wal.append(1, b"before").unwrap();
    let was = wal.hold_begin();
    for i in 1..=5 {
        wal.append(1, &payload(i)).unwrap();
    }
    let mut first = wal
        .hold_end_deferred(was)
        .unwrap()
        .expect("records pending");
    assert_eq!(first.upto(), Seq(6));
    assert_eq!(
        wal.durable_seq(),
        Seq(1),
        "nothing is durable before the fsync"
    );
    // The log goes on meanwhile.
    let was = wal.hold_begin();
    wal.append(1, b"later").unwrap();
    let mut second = wal.hold_end_deferred(was).unwrap().expect("pending");
    let outcome = first.sync();
    assert_eq!(wal.synced(first, outcome).unwrap(), Seq(6));
    assert!(
        wal.pending_sync().unwrap().is_some(),
        "seq 7 still counts as pending"
    );
    let outcome = second.sync();
    assert_eq!(wal.synced(second, outcome).unwrap(), Seq(7));
    assert!(wal.pending_sync().unwrap().is_none());
    base.crash(3);
    drop(wal);
    let (_, _, seen) = open(&base, cfg(Durability::EveryAppend)).unwrap();
    assert_eq!(seen.len(), 7);

    // Two taken in a row: the later one's fsync covers both.
    let (mut wal, _, _) = open(&base, cfg(Durability::EveryAppend)).unwrap();
    let was = wal.hold_begin();
    wal.append(1, b"a").unwrap();
    let a = wal.hold_end_deferred(was).unwrap().unwrap();
    let was = wal.hold_begin();
    wal.append(1, b"b").unwrap();
    let b = wal.hold_end_deferred(was).unwrap().unwrap();
    let mut both = a.merge(b);
    let outcome = both.sync();
    assert_eq!(wal.synced(both, outcome).unwrap(), Seq(9));

    // Nothing pending, nothing handed out; none under `Durability::None`.
    assert!(wal.pending_sync().unwrap().is_none());
    let (mut loose, _, _) = open(&MemStorage::new(), cfg(Durability::None)).unwrap();
    let was = loose.hold_begin();
    loose.append(1, b"x").unwrap();
    assert!(loose.hold_end_deferred(was).unwrap().is_none());
}

/// A rotation between taking the fsync and handing it back already made
/// the old segment durable: the late outcome changes nothing, and the new
/// segment's records are still pending.
#[test]
fn a_deferred_fsync_across_a_rotation_is_harmless() {
    let base = MemStorage::new();
    let (mut wal, _, _) = open(&base, cfg(Durability::EveryAppend)).unwrap();
    let was = wal.hold_begin();
    wal.append(1, b"old segment").unwrap();
    let mut p = wal.hold_end_deferred(was).unwrap().unwrap();
    wal.rotate().unwrap();
    assert_eq!(
        wal.durable_seq(),
        Seq(1),
        "the rotation synced the old segment"
    );
    let was = wal.hold_begin();
    wal.append(1, b"new segment").unwrap();
    wal.held = was;
    let outcome = p.sync();
    assert_eq!(wal.synced(p, outcome).unwrap(), Seq(1));
    assert!(
        wal.pending_sync().unwrap().is_some(),
        "seq 2 is not durable yet"
    );
    assert_eq!(wal.flush().unwrap(), Seq(2));
}

/// A deferred fsync that fails poisons the log as its own would: nothing
/// it covered is reported durable or comes back after a reopen.
#[test]
fn a_failed_deferred_fsync_poisons_and_loses_nothing_acknowledged() {
    let start = |fault| {
        let base = MemStorage::new();
        let faulty = FaultyStorage::new(base.clone(), fault);
        let (mut wal, _) = Wal::open(
            Arc::new(faulty.clone()),
            cfg(Durability::EveryAppend),
            Arc::new(ManualClock::new()),
            Seq(1),
            |_| Ok(()),
        )
        .unwrap();
        wal.append(1, b"acknowledged").unwrap();
        (base, faulty, wal)
    };
    // How many syncs opening and the acknowledged append take: the next
    // one is the deferred fsync's.
    let (_, probe, _) = start(Fault::Sync {
        nth: u64::MAX,
        errno: 5,
    });
    let (base, _, mut wal) = start(Fault::Sync {
        nth: probe.syncs() + 1,
        errno: 5,
    });
    let was = wal.hold_begin();
    wal.append(1, b"never acknowledged").unwrap();
    let mut p = wal.hold_end_deferred(was).unwrap().unwrap();
    let outcome = p.sync();
    assert!(outcome.is_err());
    assert!(matches!(
        wal.synced(p, outcome),
        Err(WalError::Io { op: "fsync", .. })
    ));
    assert_eq!(wal.durable_seq(), Seq(1));
    assert!(matches!(wal.append(1, b"more"), Err(WalError::Poisoned(_))));
    drop(wal);
    let (_, _, seen) = open(&base, cfg(Durability::EveryAppend)).unwrap();
    assert_eq!(seen, vec![(1, b"acknowledged".to_vec())]);
}
