//! A package arriving in chunks: the memory it will live in for good, filled front to back and
//! verified as it fills ([`crate::format::PackageVerifier`]).
//!
//! The whole package is reserved once, at the start, where the model will use it in place (and not
//! zeroed first: it only ever holds what has arrived): each chunk is copied once, into its final
//! place, and checked while it is still in the cache. A package already whole in memory
//! (`load_model`, [`verify_whole`]) goes through the same verifier with every byte at once, so both
//! ways of loading run one set of checks in one order.

use crate::buffer::{AlignedBytes, AlignedFill};
use crate::error::{Error, Result, Status};
use crate::format::{LoadProgress, Package, PackageVerifier};
use crate::tokenizer::Tokenizer;

pub struct LoadStream {
    fill: AlignedFill,
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

/// The package and tokenizer of a verifier that has seen every byte.
fn verified(mut verifier: PackageVerifier) -> Result<(Package, Tokenizer)> {
    let tokenizer = verifier.take_tokenizer();
    let package = verifier.finish()?;
    // A finished load verifier has run step 3, which parses the tokenizer.
    let tokenizer = tokenizer.ok_or_else(|| Error::new(Status::Truncated, "tokenizer", 0, "the tokenizer section was not checked"))?;
    Ok((package, tokenizer))
}

/// Verifies a package already whole in `bytes` (`load_model`); on error the bytes are handed back.
/// The progress of the check is returned either way.
pub fn verify_whole(bytes: AlignedBytes, context_len: u32, flags: u32) -> (core::result::Result<VerifiedPackage, (Error, AlignedBytes)>, LoadProgress) {
    let mut verifier = PackageVerifier::for_load(bytes.len(), context_len);
    let checked = verifier.advance(bytes.as_slice());
    let progress = verifier.progress();
    let result = match checked.and_then(|()| verified(verifier)) {
        Ok((package, tokenizer)) => Ok(VerifiedPackage { bytes, package, tokenizer, context_len, flags }),
        Err(e) => Err((e, bytes)),
    };
    (result, progress)
}

impl LoadStream {
    /// A stream of `total` bytes, checked as they arrive; the bytes checked with none received (an
    /// empty package) already fail here.
    pub fn begin(total: u32, context_len: u32, flags: u32) -> Result<LoadStream> {
        let fill = AlignedFill::with_capacity(total as usize).map_err(|_| Error::new(Status::OutOfMemory, "total_len", total as u64, "allocation failed"))?;
        let mut stream = LoadStream { fill, verifier: PackageVerifier::for_load(total as usize, context_len), context_len, flags };
        stream.verifier.advance(&[])?;
        Ok(stream)
    }

    /// Copies `chunk` after the bytes received so far and checks what it completes.
    pub fn append(&mut self, chunk: &[u8]) -> Result<()> {
        if !self.fill.append(chunk) {
            return Err(Error::new(Status::InvalidArgument, "len", chunk.len() as u64, "the chunk runs past the total_len given to load_begin"));
        }
        self.verifier.advance(self.fill.filled())
    }

    pub fn progress(&self) -> LoadProgress {
        self.verifier.progress()
    }

    /// The verified package; `TRUNCATED` when fewer bytes than announced arrived.
    pub fn finish(self) -> Result<VerifiedPackage> {
        let (package, tokenizer) = verified(self.verifier)?;
        // The verifier finished, so every announced byte arrived and the fill is full.
        let bytes = self.fill.into_bytes().ok_or_else(|| Error::new(Status::Truncated, "load.received", 0, "the package was not received whole"))?;
        Ok(VerifiedPackage { bytes, package, tokenizer, context_len: self.context_len, flags: self.flags })
    }
}
