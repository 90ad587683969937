//! # index::retention — how long a folder keeps the versions it kept
//!
//! Owns the per-folder retention policy (namespace `folder.versions`, key
//! the folder id, value `0x01` + postcard [`Policy`]) and the pure
//! decision of which kept versions go ([`plan`]): everything for N days,
//! or *staggered* — every version for a day, then the newest of each day
//! for a month, the newest of each week for a year, nothing older — and
//! then, over a cap in bytes, the oldest first. It decides only; the
//! runtime removes the bytes and forgets the versions. No clock is read:
//! `now` is given. It also owns the per-folder switch for keeping versions
//! of edits made on this device (`folder.local-versions`, on by default).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{FolderError, decode, encode};
use crate::store::Store;

/// Namespace of retention policies.
pub const RETENTION_NS: &str = "folder.versions";

const FORMAT: u8 = 1;
const DAY: u64 = 86_400 * 1_000_000_000;

/// Which versions a folder keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versions {
    /// Every version, for this many days.
    Days(u32),
    /// Every version for a day, the newest of each day for 30 days, the
    /// newest of each week for 365 days.
    Staggered,
}

/// A limit on what the kept versions of a folder take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cap {
    /// Bytes.
    Bytes(u64),
    /// Percent of the folder's disk.
    Percent(u8),
}

/// A folder's retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Which versions it keeps.
    pub versions: Versions,
    /// What they may take at most.
    pub cap: Option<Cap>,
}

impl Policy {
    /// Every version for `days` days, no cap (the default, with the
    /// agent's `trash_days`).
    pub fn days(days: u32) -> Policy {
        Policy {
            versions: Versions::Days(days),
            cap: None,
        }
    }

    /// Read `versions` ("30d", "staggered") and an optional `cap` ("10GB",
    /// "500MiB", "5%") as people write them.
    pub fn parse(versions: &str, cap: Option<&str>) -> Result<Policy, String> {
        let versions = match versions {
            "staggered" => Versions::Staggered,
            v => match v.strip_suffix('d').and_then(|d| d.parse::<u32>().ok()) {
                Some(d) if d > 0 => Versions::Days(d),
                _ => {
                    return Err(format!(
                        "versions: give \"staggered\" or a number of days like \"30d\", not {v:?}"
                    ));
                }
            },
        };
        let cap = cap.map(parse_cap).transpose()?;
        Ok(Policy { versions, cap })
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.versions {
            Versions::Days(d) => write!(f, "every version for {d} days")?,
            Versions::Staggered => write!(
                f,
                "staggered (all for a day, daily for 30 days, weekly for a year)"
            )?,
        }
        match self.cap {
            Some(Cap::Bytes(b)) => write!(f, ", at most {b} bytes"),
            Some(Cap::Percent(p)) => write!(f, ", at most {p}% of the disk"),
            None => Ok(()),
        }
    }
}

fn parse_cap(text: &str) -> Result<Cap, String> {
    let bad = || {
        format!(
            "cap: give a size like \"10GB\" or \"500MiB\", or a share like \"5%\", not {text:?}"
        )
    };
    if let Some(p) = text.strip_suffix('%') {
        return match p.trim().parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Cap::Percent(p)),
            _ => Err(bad()),
        };
    }
    crate::core::parse_size(text)
        .map(Cap::Bytes)
        .ok_or_else(bad)
}

/// Folder `folder`'s policy, if one was set.
pub fn get(store: &Store, folder: &str) -> Result<Option<Policy>, FolderError> {
    let Some(e) = store.get(RETENTION_NS, folder) else {
        return Ok(None);
    };
    match e.value.as_deref().and_then(|v| v.split_first()) {
        Some((&FORMAT, rest)) => decode(folder, rest).map(Some),
        _ => Err(FolderError::Corruption {
            key: folder.to_string(),
            reason: "retention policy in a format this release does not read".into(),
        }),
    }
}

/// Set folder `folder`'s policy.
pub fn set(store: &mut Store, folder: &str, policy: &Policy) -> Result<(), FolderError> {
    let mut value = vec![FORMAT];
    value.extend(encode(policy));
    store.put(RETENTION_NS, folder, value)?;
    Ok(())
}

/// Folders that keep no versions of what edits and deletions made on this
/// device replace ([`keeps_local_edits`]): `0x01` + one byte, 0 for off.
pub const LOCAL_EDITS_NS: &str = "folder.local-versions";

/// Whether folder `folder` keeps the versions that edits and deletions
/// made on this device replace (on unless switched off).
pub fn keeps_local_edits(store: &Store, folder: &str) -> bool {
    store
        .get(LOCAL_EDITS_NS, folder)
        .and_then(|e| e.value)
        .is_none_or(|v| v != [FORMAT, 0])
}

/// Switch keeping versions of local edits for folder `folder`.
pub fn set_keeps_local_edits(store: &mut Store, folder: &str, on: bool) -> Result<(), FolderError> {
    store.put(LOCAL_EDITS_NS, folder, vec![FORMAT, u8::from(on)])?;
    Ok(())
}

/// One kept version, as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    /// The file.
    pub path: &'a str,
    /// When it was kept, ns since the epoch.
    pub kept_at: u64,
    /// Its bytes.
    pub size: u64,
}

/// Which of `items` to keep at `now` under `policy`, with `cap_bytes`
/// (the policy's cap, resolved to bytes): one flag per item, in order.
pub fn plan(now: u64, items: &[Item<'_>], policy: &Policy, cap_bytes: Option<u64>) -> Vec<bool> {
    let mut keep = vec![true; items.len()];
    match policy.versions {
        Versions::Days(d) => {
            for (k, it) in keep.iter_mut().zip(items) {
                *k = now.saturating_sub(it.kept_at) < u64::from(d) * DAY;
            }
        }
        Versions::Staggered => {
            // The newest version of each (path, bucket) stays.
            let mut newest: HashMap<(&str, u64), usize> = HashMap::new();
            for (i, it) in items.iter().enumerate() {
                match bucket(now, it.kept_at) {
                    Bucket::All => {}
                    Bucket::Gone => keep[i] = false,
                    Bucket::Of(b) => {
                        keep[i] = false;
                        let slot = newest.entry((it.path, b)).or_insert(i);
                        if items[*slot].kept_at < it.kept_at {
                            *slot = i;
                        }
                    }
                }
            }
            for i in newest.into_values() {
                keep[i] = true;
            }
        }
    }
    if let Some(cap) = cap_bytes {
        let mut order: Vec<usize> = (0..items.len()).filter(|&i| keep[i]).collect();
        order.sort_by_key(|&i| (items[i].kept_at, i));
        let mut total: u64 = order.iter().map(|&i| items[i].size).sum();
        for i in order {
            if total <= cap {
                break;
            }
            keep[i] = false;
            total -= items[i].size;
        }
    }
    keep
}

/// Where a version of age `now - kept_at` falls under the staggered
/// policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    /// Under a day: every version stays.
    All,
    /// The newest of this bucket stays (days 1–29, then weeks to a year;
    /// the two ranges are numbered apart).
    Of(u64),
    /// A year or more: none stays.
    Gone,
}

fn bucket(now: u64, kept_at: u64) -> Bucket {
    let age = now.saturating_sub(kept_at);
    match age / DAY {
        0 => Bucket::All,
        d @ 1..30 => Bucket::Of(d),
        d @ 30..365 => Bucket::Of(1_000 + d / 7),
        _ => Bucket::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The staggered policy said another way: a version stays if it is
    /// under a day old, or under a year old with no newer version of the
    /// same file in the same day (under 30 days) or week (after).
    fn model(now: u64, items: &[Item<'_>], policy: &Policy, cap: Option<u64>) -> Vec<bool> {
        let age_days = |it: &Item<'_>| now.saturating_sub(it.kept_at) / DAY;
        let group = |d: u64| if d < 30 { (0, d) } else { (1, d / 7) };
        let mut keep: Vec<bool> = items
            .iter()
            .enumerate()
            .map(|(i, it)| match policy.versions {
                Versions::Days(n) => now.saturating_sub(it.kept_at) < u64::from(n) * DAY,
                Versions::Staggered => {
                    let d = age_days(it);
                    d == 0
                        || (d < 365
                            && !items.iter().enumerate().any(|(j, o)| {
                                j != i
                                    && o.path == it.path
                                    && age_days(o) > 0
                                    && group(age_days(o)) == group(d)
                                    && (o.kept_at, j) > (it.kept_at, i)
                            }))
                }
            })
            .collect();
        if let Some(cap) = cap {
            // Drop the oldest survivor while over the cap.
            loop {
                let total: u64 = (0..items.len())
                    .filter(|&i| keep[i])
                    .map(|i| items[i].size)
                    .sum();
                if total <= cap {
                    break;
                }
                let oldest = (0..items.len())
                    .filter(|&i| keep[i])
                    .min_by_key(|&i| (items[i].kept_at, i));
                match oldest {
                    Some(i) => keep[i] = false,
                    None => break,
                }
            }
        }
        keep
    }

    const PATHS: [&str; 3] = ["a.txt", "b.txt", "c/d.txt"];

    proptest! {
        #[test]
        fn the_plan_keeps_what_the_model_keeps(
            raw in proptest::collection::vec((0usize..3, 0u64..400 * 24, 1u64..1000), 0..60),
            staggered in any::<bool>(),
            days in 1u32..60,
            cap in proptest::option::of(0u64..20_000),
        ) {
            let now = 400 * DAY;
            // Versions kept at distinct instants (hours ago), as the
            // history's keys make them.
            let mut seen = std::collections::HashSet::new();
            let items: Vec<Item<'_>> = raw
                .iter()
                .filter(|(_, h, _)| seen.insert(*h))
                .map(|&(p, hours_ago, size)| Item {
                    path: PATHS[p],
                    kept_at: now - hours_ago * DAY / 24,
                    size,
                })
                .collect();
            let policy = Policy {
                versions: if staggered { Versions::Staggered } else { Versions::Days(days) },
                cap: None,
            };
            let got = plan(now, &items, &policy, cap);
            prop_assert_eq!(&got, &model(now, &items, &policy, cap));
            // And what anyone may rely on:
            for (it, k) in items.iter().zip(&got) {
                let age = now - it.kept_at;
                if cap.is_none() && (age < DAY || (!staggered && age < u64::from(days) * DAY)) {
                    prop_assert!(*k, "a version within the kept span went");
                }
                if staggered && age >= 365 * DAY {
                    prop_assert!(!*k, "a version over a year old stayed");
                }
            }
            if let Some(cap) = cap {
                let total: u64 = items.iter().zip(&got).filter(|(_, k)| **k).map(|(i, _)| i.size).sum();
                prop_assert!(total <= cap);
            }
        }
    }

    #[test]
    fn policies_read_as_people_write_them() {
        assert_eq!(Policy::parse("30d", None).unwrap(), Policy::days(30));
        let p = Policy::parse("staggered", Some("10GB")).unwrap();
        assert_eq!(p.cap, Some(Cap::Bytes(10_000_000_000)));
        assert_eq!(
            Policy::parse("staggered", Some("500MiB")).unwrap().cap,
            Some(Cap::Bytes(500 << 20))
        );
        assert_eq!(
            Policy::parse("7d", Some("5%")).unwrap().cap,
            Some(Cap::Percent(5))
        );
        for (v, c) in [
            ("forever", None),
            ("0d", None),
            ("30d", Some("lots")),
            ("30d", Some("0%")),
            ("30d", Some("5XB")),
        ] {
            assert!(Policy::parse(v, c).is_err(), "{v} {c:?}");
        }
    }

    #[test]
    fn a_policy_is_kept_per_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open_dir(crate::store::StoreConfig::new(dir.path())).unwrap();
        assert_eq!(get(&store, "docs").unwrap(), None);
        let p = Policy::parse("staggered", Some("1GiB")).unwrap();
        set(&mut store, "docs", &p).unwrap();
        assert_eq!(get(&store, "docs").unwrap(), Some(p));
        assert!(p.to_string().contains("staggered"));
    }
}
