//! A compact list of folder-relative paths: one text buffer and where each
//! path ends. A scan of an unchanged folder finds nearly every file as it
//! was recorded; it keeps only their names, here — about the length of
//! the name plus 4 bytes each, where an [`Observed`](super::Observed) of
//! its own took some 140 (at a million files, most of a scan's memory).
//! It holds text only; it never touches the disk.

/// Paths, in the order they were pushed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PathList {
    text: String,
    ends: Vec<u32>,
}

impl PathList {
    /// Add `path` at the end.
    pub fn push(&mut self, path: &str) {
        crate::core::grow::reserve_text(&mut self.text, path.len());
        crate::core::grow::reserve(&mut self.ends, 1);
        self.text.push_str(path);
        // A list whose text passes 4 GiB would need wider ends; the paths
        // of one folder part never come near.
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }

    /// How many paths.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th path pushed.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => *self.ends.get(i - 1)? as usize,
        };
        self.text.get(start..end)
    }

    /// The paths, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let end = end as usize;
            let p = self.text.get(start..end).unwrap_or_default();
            start = end;
            p
        })
    }

    /// Keep only the paths `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let mut kept = PathList::default();
        for p in self.iter() {
            if keep(p) {
                kept.push(p);
            }
        }
        *self = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_back_in_order_and_can_be_filtered() {
        let mut l = PathList::default();
        assert!(l.is_empty());
        for p in ["a", "dir/b é.txt", "", "dir/c"] {
            l.push(p);
        }
        assert_eq!(l.len(), 4);
        assert_eq!(
            (l.get(0), l.get(1), l.get(2), l.get(3)),
            (Some("a"), Some("dir/b é.txt"), Some(""), Some("dir/c"))
        );
        assert_eq!(l.get(4), None);
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            ["a", "dir/b é.txt", "", "dir/c"]
        );
        l.retain(|p| p.starts_with("dir/"));
        assert_eq!(l.iter().collect::<Vec<_>>(), ["dir/b é.txt", "dir/c"]);
    }
}
