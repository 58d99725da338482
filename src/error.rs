//! Status codes and the error type every fallible runtime function returns.
//!
//! Codes are stable: they are part of the ABI and listed in `abi/tinyrustlm.h` with the condition that
//! produces each one. An [`Error`] names the field that broke a rule, the offending value and the rule,
//! so a host can tell a user exactly what is wrong with a file.

use core::fmt;
use core::ops::Deref;

/// Stable numeric status codes (the return value of every export).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,

    // --- Call-level errors (1..=15) ---
    /// A pointer/length pair does not lie inside linear memory, or `ptr + len` overflows.
    OutOfBounds = 1,
    /// An argument value is outside its documented range.
    InvalidArgument = 2,
    /// The call is not allowed in the current state (no model loaded, model already loaded, ...).
    WrongState = 3,
    /// An allocation failed; nothing was changed.
    OutOfMemory = 4,
    /// The KV cache has no room for another token.
    ContextFull = 5,
    /// A sampling parameter is out of range (NaN, negative temperature, top-p outside (0, 1], ...).
    InvalidSampling = 6,
    /// The destination buffer is too small; the needed length is reported.
    BufferTooSmall = 7,

    // --- SLM1 package errors (16..=47) ---
    Truncated = 16,
    BadMagic = 17,
    UnsupportedVersion = 18,
    BadHeaderLength = 19,
    BadFlags = 20,
    BadHyperparameter = 21,
    BadSectionBounds = 22,
    BadAlignment = 23,
    BadPadding = 24,
    BadTensorName = 25,
    UnsupportedDtype = 26,
    BadTensorShape = 27,
    MissingTensor = 28,
    DuplicateTensor = 29,
    UnknownTensor = 30,
    BadTensorData = 31,
    BadQuantMode = 32,
    BadParameterCount = 33,
    TokenizerChecksum = 34,
    TensorLayoutChecksum = 35,
    ArtifactChecksum = 36,
    LimitExceeded = 37,
    BadTokenizerKind = 40,
    BadToken = 41,
    BadMerge = 42,
    BadSpecialToken = 43,

    // --- Adapter errors (64..=79; see FORMAT.md "Adapters") ---
    AdapterBadMagic = 64,
    AdapterUnsupportedVersion = 65,
    AdapterBadHeader = 66,
    AdapterTruncated = 67,
    AdapterChecksum = 68,
    /// The adapter names another parent; the field says which part of the identity differs.
    AdapterParentMismatch = 69,
    AdapterUnknownTarget = 70,
    AdapterDuplicateTarget = 71,
    AdapterShapeMismatch = 72,
    AdapterBadRank = 73,
    AdapterBadIndex = 74,
    AdapterNonFinite = 75,
    AdapterBadEncoding = 76,
    AdapterLimitExceeded = 77,

    // --- Eval case-file errors (80..=95; see FORMAT.md "Eval cases and sidecars") ---
    /// A line is not valid JSON (the field names the line and column).
    EvalBadJson = 80,
    /// The header line is missing or a header field is missing or invalid.
    EvalBadHeader = 81,
    /// A case field is missing, has the wrong type or is out of range.
    EvalBadCase = 82,
    EvalUnknownField = 83,
    EvalDuplicateField = 84,
    EvalDuplicateId = 85,
    EvalBadMatchRule = 86,
    /// A cap on the file, the number of cases, a string's length or nesting was exceeded.
    EvalLimitExceeded = 87,
    EvalNoCases = 88,
}

impl Status {
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// Short upper-case name, the suffix of the `TRL_STATUS_*` constant in the header.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::OutOfBounds => "OUT_OF_BOUNDS",
            Status::InvalidArgument => "INVALID_ARGUMENT",
            Status::WrongState => "WRONG_STATE",
            Status::OutOfMemory => "OUT_OF_MEMORY",
            Status::ContextFull => "CONTEXT_FULL",
            Status::InvalidSampling => "INVALID_SAMPLING",
            Status::BufferTooSmall => "BUFFER_TOO_SMALL",
            Status::Truncated => "TRUNCATED",
            Status::BadMagic => "BAD_MAGIC",
            Status::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Status::BadHeaderLength => "BAD_HEADER_LENGTH",
            Status::BadFlags => "BAD_FLAGS",
            Status::BadHyperparameter => "BAD_HYPERPARAMETER",
            Status::BadSectionBounds => "BAD_SECTION_BOUNDS",
            Status::BadAlignment => "BAD_ALIGNMENT",
            Status::BadPadding => "BAD_PADDING",
            Status::BadTensorName => "BAD_TENSOR_NAME",
            Status::UnsupportedDtype => "UNSUPPORTED_DTYPE",
            Status::BadTensorShape => "BAD_TENSOR_SHAPE",
            Status::MissingTensor => "MISSING_TENSOR",
            Status::DuplicateTensor => "DUPLICATE_TENSOR",
            Status::UnknownTensor => "UNKNOWN_TENSOR",
            Status::BadTensorData => "BAD_TENSOR_DATA",
            Status::BadQuantMode => "BAD_QUANT_MODE",
            Status::BadParameterCount => "BAD_PARAMETER_COUNT",
            Status::TokenizerChecksum => "TOKENIZER_CHECKSUM",
            Status::TensorLayoutChecksum => "TENSOR_LAYOUT_CHECKSUM",
            Status::ArtifactChecksum => "ARTIFACT_CHECKSUM",
            Status::LimitExceeded => "LIMIT_EXCEEDED",
            Status::BadTokenizerKind => "BAD_TOKENIZER_KIND",
            Status::BadToken => "BAD_TOKEN",
            Status::BadMerge => "BAD_MERGE",
            Status::BadSpecialToken => "BAD_SPECIAL_TOKEN",
            Status::AdapterBadMagic => "ADAPTER_BAD_MAGIC",
            Status::AdapterUnsupportedVersion => "ADAPTER_UNSUPPORTED_VERSION",
            Status::AdapterBadHeader => "ADAPTER_BAD_HEADER",
            Status::AdapterTruncated => "ADAPTER_TRUNCATED",
            Status::AdapterChecksum => "ADAPTER_CHECKSUM",
            Status::AdapterParentMismatch => "ADAPTER_PARENT_MISMATCH",
            Status::AdapterUnknownTarget => "ADAPTER_UNKNOWN_TARGET",
            Status::AdapterDuplicateTarget => "ADAPTER_DUPLICATE_TARGET",
            Status::AdapterShapeMismatch => "ADAPTER_SHAPE_MISMATCH",
            Status::AdapterBadRank => "ADAPTER_BAD_RANK",
            Status::AdapterBadIndex => "ADAPTER_BAD_INDEX",
            Status::AdapterNonFinite => "ADAPTER_NON_FINITE",
            Status::AdapterBadEncoding => "ADAPTER_BAD_ENCODING",
            Status::AdapterLimitExceeded => "ADAPTER_LIMIT_EXCEEDED",
            Status::EvalBadJson => "EVAL_BAD_JSON",
            Status::EvalBadHeader => "EVAL_BAD_HEADER",
            Status::EvalBadCase => "EVAL_BAD_CASE",
            Status::EvalUnknownField => "EVAL_UNKNOWN_FIELD",
            Status::EvalDuplicateField => "EVAL_DUPLICATE_FIELD",
            Status::EvalDuplicateId => "EVAL_DUPLICATE_ID",
            Status::EvalBadMatchRule => "EVAL_BAD_MATCH_RULE",
            Status::EvalLimitExceeded => "EVAL_LIMIT_EXCEEDED",
            Status::EvalNoCases => "EVAL_NO_CASES",
        }
    }
}

/// A failed check: which field, what value it had, and which rule it broke.
///
/// Building one never allocates: an out-of-memory error has to be reportable when the allocator has
/// nothing left, so the field name is held inline ([`Field`]) and the rule is static text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    /// The offending field, e.g. `header.n_kv_heads` or `tensor[blk.3.attn_q.weight].dims`.
    pub field: Field,
    /// The offending value (for fields that are not numbers: an index or length that locates it).
    pub value: u64,
    /// The rule, phrased as what was required, e.g. `must divide n_heads`.
    pub rule: &'static str,
}

impl Error {
    pub fn new(status: Status, field: impl Into<Field>, value: u64, rule: &'static str) -> Self {
        Error { status, field: field.into(), value, rule }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} = {}: {}", self.status.name(), self.field, self.value, self.rule)
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// Bytes a [`Field`] holds: a tensor or target name at its 64-byte cap with its `tensor[…].dims`
/// decoration, or an eval-file location with a key, fit with room to spare.
pub const FIELD_CAP: usize = 112;

/// An error's field name, held inline (see [`Error`]).
pub type Field = InlineStr<FIELD_CAP>;

/// Text held in `N` inline bytes, cut at a character boundary (and marked with `…`) when longer.
/// Build one from a `&str`, with [`field!`](crate::field), or with `core::fmt::write`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InlineStr<const N: usize> {
    len: u16,
    /// Text was cut (and `…` appended); later writes are dropped.
    cut: bool,
    bytes: [u8; N],
}

const ELLIPSIS: &str = "…";

impl<const N: usize> InlineStr<N> {
    const FITS: () = assert!(N >= ELLIPSIS.len() && N <= u16::MAX as usize);

    pub const fn empty() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        InlineStr { len: 0, cut: false, bytes: [0; N] }
    }

    /// The formatted arguments, cut to fit.
    pub fn from_fmt(args: fmt::Arguments<'_>) -> Self {
        let mut f = Self::empty();
        // `write_str` below never fails; a full buffer just stops taking text.
        let _ = fmt::write(&mut f, args);
        f
    }

    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in, so this cannot fail; "" keeps it panic-free.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    /// Appends as many whole characters of `s` as fit below `cap`; returns false when something
    /// was cut.
    fn push(&mut self, s: &str, cap: usize) -> bool {
        let at = self.len as usize;
        let mut n = s.len().min(cap.saturating_sub(at));
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[at..at + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len = (at + n) as u16;
        n == s.len()
    }
}

impl<const N: usize> fmt::Write for InlineStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !self.cut && !self.push(s, N - ELLIPSIS.len()) {
            self.cut = true;
            self.push(ELLIPSIS, N);
        }
        Ok(())
    }
}

impl<const N: usize> From<&str> for InlineStr<N> {
    fn from(s: &str) -> Self {
        let mut f = Self::empty();
        let _ = fmt::Write::write_str(&mut f, s);
        f
    }
}

impl<const N: usize> Deref for InlineStr<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> PartialEq<str> for InlineStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for InlineStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> PartialEq<alloc::string::String> for InlineStr<N> {
    fn eq(&self, other: &alloc::string::String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// `format!` for error field names, without allocating (see [`Field`]).
#[macro_export]
macro_rules! field {
    ($($arg:tt)*) => {
        $crate::error::Field::from_fmt(core::format_args!($($arg)*))
    };
}

/// An allocation of `bytes` bytes failed: the host capped memory below what the input needs.
/// Building the error never allocates (see [`Error`]).
pub fn oom(field: &'static str, bytes: usize) -> Error {
    Error::new(Status::OutOfMemory, field, bytes as u64, "allocation failed (value = bytes requested)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_holds_short_names_exactly() {
        let f = crate::field!("tensor[{}].{}", "blk.3.attn_q.weight", "dims");
        assert_eq!(f, "tensor[blk.3.attn_q.weight].dims");
        assert_eq!(Field::from("header.dim"), "header.dim");
    }

    #[test]
    fn field_cuts_long_names_at_a_character_boundary() {
        // 'é' is two bytes: a cut inside one must back off to the boundary before it.
        let long: alloc::string::String = core::iter::repeat_n('é', 200).collect();
        let f = crate::field!("line 7 key {long} and more");
        assert!(f.len() <= FIELD_CAP, "{}", f.len());
        assert!(f.starts_with("line 7 key éé"));
        assert!(f.ends_with(ELLIPSIS), "{f}");
        assert!(!f.contains("more"));
        // Everything before the ellipsis is whole 'é's.
        assert!(f["line 7 key ".len()..f.len() - ELLIPSIS.len()].chars().all(|c| c == 'é'));
    }

    #[test]
    fn field_fills_to_exactly_the_cap_without_cutting() {
        let exact = "x".repeat(FIELD_CAP - ELLIPSIS.len());
        let f = Field::from(exact.as_str());
        assert_eq!(f.as_str(), exact);
        let f = crate::field!("{exact}y");
        assert_eq!(f.len(), FIELD_CAP);
        assert!(f.ends_with(ELLIPSIS));
    }
}
