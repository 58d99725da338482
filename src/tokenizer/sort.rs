//! Heapsort for the two parse-time sorts (merge pairs, token bytes).
//!
//! `core`'s pattern-defeating quicksort is faster, but each of its instantiations costs about 10 KB of
//! wasm; this costs well under 1 KB, and sorting 50 000 merges once at load takes milliseconds
//! either way. Not stable: both callers sort by keys that are unique (ties broken by id).

/// Sorts `v` ascending by `less`.
pub(super) fn heap_sort_by<T: Copy>(v: &mut [T], less: &dyn Fn(&T, &T) -> bool) {
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down(v, start, n, less);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, less);
    }
}

/// Restores the max-heap property below `root` in `v[..end]`.
fn sift_down<T: Copy>(v: &mut [T], mut root: usize, end: usize, less: &dyn Fn(&T, &T) -> bool) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if !less(&v[root], &v[child]) {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn sorts_like_core() {
        let mut seed = 12345u64;
        for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 31, 33, 100, 1000] {
            let mut v: Vec<u32> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 50) as u32
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_unstable();
            heap_sort_by(&mut v, &|a, b| a < b);
            assert_eq!(v, expected);
        }
    }
}
