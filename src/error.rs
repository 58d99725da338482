//! The error type every fallible runtime function returns, and its status codes (defined, as part of
//! the ABI, in [`crate::abi_facts`] and listed in `abi/tinyrustlm.h` with the condition that
//! produces each one). An [`Error`] names the field that broke a rule, the offending value and the rule,
//! so a host can tell a user exactly what is wrong with a file.

use core::fmt;
use core::ops::Deref;

/// Stable numeric status codes (the return value of every export): defined with the other ABI
/// tables in [`crate::abi_facts`].
pub use crate::abi_facts::Status;

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
    /// How `value` reads in the message.
    pub value_form: ValueForm,
}

/// How an [`Error`]'s value is printed after `field = `.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValueForm {
    /// One number.
    #[default]
    Number,
    /// A matrix shape, printed `[rows, cols]`; `value` holds `rows << 32 | cols` so the error stays
    /// one machine word (tests compare it).
    Shape,
}

impl Error {
    pub fn new(status: Status, field: impl Into<Field>, value: u64, rule: &'static str) -> Self {
        Error { status, field: field.into(), value, rule, value_form: ValueForm::Number }
    }

    /// An error whose value is a matrix shape (`last_error` prints `[rows, cols]`).
    pub fn shape(status: Status, field: impl Into<Field>, rows: u32, cols: u32, rule: &'static str) -> Self {
        Error { value_form: ValueForm::Shape, ..Error::new(status, field, (u64::from(rows) << 32) | u64::from(cols), rule) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} = ", self.status.name(), self.field)?;
        match self.value_form {
            ValueForm::Number => write!(f, "{}", self.value)?,
            ValueForm::Shape => write!(f, "[{}, {}]", self.value >> 32, self.value & 0xFFFF_FFFF)?,
        }
        write!(f, ": {}", self.rule)
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
    fn shapes_print_as_two_numbers() {
        let e = Error::shape(Status::AdapterShapeMismatch, "target[a.weight].shape", 64, 258, "must equal the tensor's");
        assert_eq!(alloc::format!("{e}"), "ADAPTER_SHAPE_MISMATCH: target[a.weight].shape = [64, 258]: must equal the tensor's");
        let e = Error::new(Status::BadTensorShape, "x", 7, "r");
        assert_eq!(alloc::format!("{e}"), "BAD_TENSOR_SHAPE: x = 7: r");
    }

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
