//! Byte buffers whose first byte is 32-byte aligned, without `unsafe`.
//!
//! Packages are used in place, and SLM1 aligns tensor data to 32 bytes relative to the start of
//! the file, so the file itself must start on a 32-byte boundary for tensors to be aligned in
//! memory. A `Vec<u8>` has no alignment guarantee, so we over-allocate by 31 bytes and start at
//! the first aligned byte. The vector is never resized, so the address is stable for its life.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

pub const BUFFER_ALIGN: usize = 32;

#[derive(Debug)]
pub struct AlignedBytes {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBytes {
    /// A zero-filled buffer of `len` bytes; fails (instead of aborting) when memory runs out.
    pub fn zeroed(len: usize) -> Result<Self, TryReserveError> {
        let total = len.saturating_add(BUFFER_ALIGN - 1);
        let mut storage = Vec::new();
        storage.try_reserve_exact(total)?;
        storage.resize(total, 0);
        let start = storage.as_ptr().align_offset(BUFFER_ALIGN).min(BUFFER_ALIGN - 1);
        Ok(AlignedBytes { storage, start, len })
    }

    /// A copy of `bytes` in aligned storage.
    pub fn copy_from(bytes: &[u8]) -> Result<Self, TryReserveError> {
        let mut out = Self::zeroed(bytes.len())?;
        out.as_mut_slice().copy_from_slice(bytes);
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of the first byte, for handing to a host.
    pub fn as_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    /// Bytes of memory this buffer holds (for diagnostics).
    pub fn capacity_bytes(&self) -> usize {
        self.storage.capacity()
    }
}

/// An [`AlignedBytes`] filled front to back (a streaming load) without being zeroed first: its
/// memory is reserved whole at the start, so the address never moves, and its length grows only by
/// what is appended. Skipping the zeroing saves a pass over the whole package.
#[derive(Debug)]
pub struct AlignedFill {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedFill {
    /// Room for `len` bytes, none filled; fails (instead of aborting) when memory runs out.
    pub fn with_capacity(len: usize) -> Result<Self, TryReserveError> {
        let total = len.saturating_add(BUFFER_ALIGN - 1);
        let mut storage: Vec<u8> = Vec::new();
        storage.try_reserve_exact(total)?;
        let start = storage.as_ptr().align_offset(BUFFER_ALIGN).min(BUFFER_ALIGN - 1);
        storage.resize(start, 0);
        Ok(AlignedFill { storage, start, len })
    }

    /// The bytes appended so far.
    pub fn filled(&self) -> &[u8] {
        &self.storage[self.start..]
    }

    /// Bytes that may still be appended.
    pub fn room(&self) -> usize {
        self.len - self.filled().len()
    }

    /// Appends `chunk`; `false` (nothing appended) when it does not fit in the room left.
    pub fn append(&mut self, chunk: &[u8]) -> bool {
        if chunk.len() > self.room() {
            return false;
        }
        // Within the reserved capacity: no reallocation, the address stays.
        self.storage.extend_from_slice(chunk);
        true
    }

    /// The filled buffer, once every byte has been appended.
    pub fn into_bytes(self) -> Option<AlignedBytes> {
        (self.room() == 0).then_some(AlignedBytes { storage: self.storage, start: self.start, len: self.len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_aligned_and_zeroed() {
        for len in [0usize, 1, 31, 32, 33, 1000] {
            let b = AlignedBytes::zeroed(len).unwrap();
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % BUFFER_ALIGN, 0);
            assert!(b.as_slice().iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn a_fill_stays_aligned_in_place_and_becomes_the_bytes_when_full() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut fill = AlignedFill::with_capacity(data.len()).unwrap();
        let at = fill.filled().as_ptr();
        assert_eq!(at as usize % BUFFER_ALIGN, 0);
        assert!(fill.append(&data[..1]) && fill.append(&data[1..60]));
        assert_eq!(fill.filled(), &data[..60]);
        assert!(!fill.append(&[0u8; 41]), "past the length");
        assert_eq!(fill.room(), 40);
        assert!(fill.append(&data[60..]));
        assert_eq!(fill.filled().as_ptr(), at, "the address never moves");
        let bytes = fill.into_bytes().unwrap();
        assert_eq!(bytes.as_slice(), &data[..]);
        assert_eq!(bytes.as_ptr() as usize % BUFFER_ALIGN, 0);
        assert!(AlignedFill::with_capacity(2).unwrap().into_bytes().is_none(), "not full");
    }

    #[test]
    fn copy_keeps_bytes() {
        let data: Vec<u8> = (0..100u8).collect();
        let b = AlignedBytes::copy_from(&data).unwrap();
        assert_eq!(b.as_slice(), &data[..]);
    }
}
