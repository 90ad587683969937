//! Growing the large per-path buffers (a reconcile's map of what it knows:
//! its entries and its packed paths) by a quarter at a time, not by
//! doubling: a doubled buffer is, just after it grew, half empty — at a
//! million paths tens of MB held for nothing at a scan's peak. Growth by a
//! fixed fraction keeps appends amortised constant time; a buffer this
//! large lives in pages of its own, which the system moves rather than
//! copies when it grows. Pure: it only reserves capacity.

/// Below this capacity (in elements) a buffer doubles, as usual: the
/// many small lists of a walk's parts stay small.
const LARGE: usize = 1 << 16;

/// Make room in `v` for `extra` more elements, growing it when full by a
/// quarter of its capacity once [`LARGE`] (doubling it before), or by
/// `extra` if more.
pub fn reserve<T>(v: &mut Vec<T>, extra: usize) {
    if v.capacity() - v.len() < extra {
        v.reserve_exact(step(v.capacity(), extra));
    }
}

fn step(capacity: usize, extra: usize) -> usize {
    let by = if capacity < LARGE {
        capacity.max(8)
    } else {
        capacity / 4
    };
    by.max(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_grow_by_a_quarter_and_always_fit() {
        let mut v: Vec<u32> = Vec::new();
        reserve(&mut v, 1);
        assert_eq!(v.capacity(), 8, "a small buffer stays small");
        for i in 0..200_000u32 {
            reserve(&mut v, 1);
            let before = v.capacity();
            v.push(i);
            assert_eq!(v.capacity(), before, "room was made before the push");
        }
        // Never more than a quarter left over once large.
        assert!(v.capacity() <= 200_000 + 200_000 / 4, "{}", v.capacity());
        // Several elements at a time (a path's bytes).
        let mut s: Vec<u8> = Vec::new();
        for _ in 0..20_000 {
            reserve(&mut s, 7);
            let before = s.capacity();
            s.extend_from_slice(b"abcdefg");
            assert_eq!(s.capacity(), before);
        }
        assert!(s.capacity() <= 140_000 + 140_000 / 4, "{}", s.capacity());
    }
}
