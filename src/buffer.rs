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
    fn copy_keeps_bytes() {
        let data: Vec<u8> = (0..100u8).collect();
        let b = AlignedBytes::copy_from(&data).unwrap();
        assert_eq!(b.as_slice(), &data[..]);
    }
}
