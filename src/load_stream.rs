//! A package arriving in chunks: the memory it will live in for good, filled front to back and
//! verified as it fills ([`crate::format::PackageVerifier`]).
//!
//! The whole package is allocated once, at the start, where the model will use it in place: each
//! chunk is copied once, into its final place, and checked while it is still in the cache. A
//! package already whole in memory (`load_model`) is the same stream with every byte received, so
//! both ways of loading run one implementation.

use crate::buffer::AlignedBytes;
use crate::error::{Error, Result, Status};
use crate::format::{LoadProgress, Package, PackageVerifier};
use crate::tokenizer::Tokenizer;

pub struct LoadStream {
    bytes: AlignedBytes,
    received: usize,
    verifier: PackageVerifier,
    context_len: u32,
    flags: u32,
}

/// A verified package with what the engine needs to take it as its model.
pub struct VerifiedPackage {
    pub bytes: AlignedBytes,
    pub package: Package,
    pub tokenizer: Tokenizer,
    pub context_len: u32,
    pub flags: u32,
}

impl LoadStream {
    /// A stream of `total` bytes, checked as they arrive; the bytes checked with none received (an
    /// empty package) already fail here.
    pub fn begin(total: u32, context_len: u32, flags: u32) -> Result<LoadStream> {
        let bytes = AlignedBytes::zeroed(total as usize).map_err(|_| Error::new(Status::OutOfMemory, "total_len", total as u64, "allocation failed"))?;
        let mut stream = LoadStream { bytes, received: 0, verifier: PackageVerifier::for_load(total as usize, context_len), context_len, flags };
        stream.verifier.advance(&[])?;
        Ok(stream)
    }

    /// The stream of a package already whole in `bytes`, every byte received; nothing is checked
    /// yet ([`LoadStream::verify_received`]).
    pub fn whole(bytes: AlignedBytes, context_len: u32, flags: u32) -> LoadStream {
        let total = bytes.len();
        LoadStream { bytes, received: total, verifier: PackageVerifier::for_load(total, context_len), context_len, flags }
    }

    /// Copies `chunk` after the bytes received so far and checks what it completes.
    pub fn append(&mut self, chunk: &[u8]) -> Result<()> {
        let room = self.bytes.len() - self.received;
        if chunk.len() > room {
            return Err(Error::new(Status::InvalidArgument, "len", chunk.len() as u64, "the chunk runs past the total_len given to load_begin"));
        }
        let end = self.received + chunk.len();
        self.bytes.as_mut_slice()[self.received..end].copy_from_slice(chunk);
        self.received = end;
        self.verify_received()
    }

    /// Runs the checks the bytes received so far make possible.
    pub fn verify_received(&mut self) -> Result<()> {
        self.verifier.advance(&self.bytes.as_slice()[..self.received])
    }

    /// The stream's memory, given up (`load_model` hands it back to the host on error).
    pub fn into_bytes(self) -> AlignedBytes {
        self.bytes
    }

    pub fn progress(&self) -> LoadProgress {
        self.verifier.progress()
    }

    /// The verified package; `TRUNCATED` when fewer bytes than announced arrived. On error the
    /// bytes are handed back (`load_model` returns them to the host).
    pub fn finish(mut self) -> core::result::Result<VerifiedPackage, (Error, AlignedBytes)> {
        let tokenizer = self.verifier.take_tokenizer();
        match (self.verifier.finish(), tokenizer) {
            (Ok(package), Some(tokenizer)) => Ok(VerifiedPackage { bytes: self.bytes, package, tokenizer, context_len: self.context_len, flags: self.flags }),
            (Err(e), _) => Err((e, self.bytes)),
            // A finished load verifier has parsed the tokenizer (step 3 runs before the trailer).
            (Ok(_), None) => Err((Error::new(Status::Truncated, "tokenizer", 0, "the tokenizer section was not checked"), self.bytes)),
        }
    }
}
