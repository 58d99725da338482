//! Bounds-checked little-endian reads over untrusted bytes, shared by the package
//! ([`crate::format`]), tokenizer-section and adapter parsers.
//!
//! Every read names its field the way the error reports it: the section, the entry being read (by
//! index, or by name once the name is known) and the field, e.g. `header.n_layers`,
//! `tokenizer.tokens[17].len`, `target[blk.0.attn_q.weight].rank`. Bytes that end inside a field are
//! the parser's truncation status (`TRUNCATED` or `ADAPTER_TRUNCATED`) with the field's offset as the
//! value. Counts read from the bytes are checked against the bytes left ([`Reader::room_for`]) before
//! anything is allocated for them.

use crate::error::{Error, Field, Result, Status};
use crate::field;

/// Which entry of its section a reader is in, for the field names of errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    /// A field of the section itself: `header.n_layers`.
    None,
    /// The entry at this position: `tokenizer.tokens[17].len`.
    Index(usize),
    /// An entry known by its name: `target[blk.0.attn_q.weight].rank`.
    Name(&'a str),
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Where `bytes` starts in what error values count offsets from (the file, or the tokenizer
    /// section, whose position in the file the tokenizer parser does not know).
    base: usize,
    /// The status of a read past the end.
    truncated: Status,
    section: &'static str,
    entry: Entry<'a>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize, section: &'static str, truncated: Status) -> Self {
        Reader { bytes, pos: 0, base, truncated, section, entry: Entry::None }
    }

    /// Names the fields read from here on `section[entry].field`.
    pub(crate) fn enter(&mut self, section: &'static str, entry: Entry<'a>) {
        self.section = section;
        self.entry = entry;
    }

    /// The full name of `leaf` in the current section and entry; an empty `leaf` names the entry
    /// itself (`tokenizer.eog_ids[3]`, `tensor[blk.0.attn_q.weight]`).
    pub(crate) fn field(&self, leaf: &str) -> Field {
        let (section, dot) = (self.section, if leaf.is_empty() { "" } else { "." });
        match self.entry {
            Entry::None if leaf.is_empty() => Field::from(section),
            Entry::None => field!("{section}.{leaf}"),
            Entry::Index(i) => field!("{section}[{i}]{dot}{leaf}"),
            Entry::Name(name) => field!("{section}[{name}]{dot}{leaf}"),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Offset of the next byte, counted from the reader's base.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn take(&mut self, n: usize, leaf: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::new(self.truncated, self.field(leaf), self.offset() as u64, "the bytes end inside this field (value = its offset)"));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, leaf: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, leaf)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, leaf: &str) -> Result<u8> {
        Ok(self.take(1, leaf)?[0])
    }

    pub(crate) fn u16(&mut self, leaf: &str) -> Result<u16> {
        self.array(leaf).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, leaf: &str) -> Result<u32> {
        self.array(leaf).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, leaf: &str) -> Result<u64> {
        self.array(leaf).map(u64::from_le_bytes)
    }

    pub(crate) fn f32(&mut self, leaf: &str) -> Result<f32> {
        self.u32(leaf).map(f32::from_bits)
    }

    /// Whether `count` entries of at least `entry_len` bytes each fit in the bytes left (the product
    /// computed without overflow).
    pub(crate) fn fits(&self, count: u64, entry_len: u64) -> bool {
        count.checked_mul(entry_len).is_some_and(|need| need <= self.remaining() as u64)
    }

    /// [`Reader::fits`], or the truncation status naming `field` (the count that does not fit).
    pub(crate) fn room_for(&self, count: u64, entry_len: u64, field: impl Into<Field>, value: u64, rule: &'static str) -> Result<()> {
        if self.fits(count, entry_len) {
            Ok(())
        } else {
            Err(Error::new(self.truncated, field, value, rule))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields_in_order() {
        let bytes = [1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f];
        let mut r = Reader::new(&bytes, 0, "header", Status::Truncated);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16("b").unwrap(), 2);
        assert_eq!(r.u32("c").unwrap(), 3);
        assert_eq!(r.u64("d").unwrap(), 4);
        assert_eq!(r.f32("e").unwrap(), 1.0);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn a_short_read_names_section_entry_and_field_with_its_offset() {
        let bytes = [0u8; 5];
        let mut r = Reader::new(&bytes, 100, "tokenizer.tokens", Status::Truncated);
        r.enter("tokenizer.tokens", Entry::Index(17));
        r.u16("len").unwrap();
        let e = r.u32("score").unwrap_err();
        assert_eq!((e.status, e.field.as_str(), e.value), (Status::Truncated, "tokenizer.tokens[17].score", 102));
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 3);

        let mut r = Reader::new(&bytes, 56, "target", Status::AdapterTruncated);
        r.enter("target", Entry::Name("blk.0.attn_q.weight"));
        let e = r.take(7, "rows").unwrap_err();
        assert_eq!((e.status, e.field.as_str(), e.value), (Status::AdapterTruncated, "target[blk.0.attn_q.weight].rows", 56));
        let e = Reader::new(&[], 0, "header", Status::Truncated).u64("n_params").unwrap_err();
        assert_eq!(e.field, "header.n_params");
    }

    #[test]
    fn an_empty_leaf_names_the_entry() {
        let mut r = Reader::new(&[], 0, "tokenizer.eog_ids", Status::Truncated);
        r.enter("tokenizer.eog_ids", Entry::Index(3));
        assert_eq!(r.field(""), "tokenizer.eog_ids[3]");
        r.enter("tokenizer", Entry::None);
        assert_eq!(r.field(""), "tokenizer");
        assert_eq!(r.field("kind"), "tokenizer.kind");
    }

    #[test]
    fn counts_are_checked_against_the_bytes_left_without_overflow() {
        let bytes = [0u8; 30];
        let mut r = Reader::new(&bytes, 0, "directory", Status::Truncated);
        r.take(5, "x").unwrap();
        assert!(r.fits(1, 25));
        assert!(!r.fits(2, 13));
        assert!(r.fits(0, u64::MAX));
        assert!(!r.fits(u64::MAX, 2));
        let e = r.room_for(u64::MAX, 2, "header.n_tensors", 9, "too many").unwrap_err();
        assert_eq!((e.status, e.field.as_str(), e.value), (Status::Truncated, "header.n_tensors", 9));
        assert!(r.room_for(5, 5, "header.n_tensors", 5, "fits").is_ok());
    }

    #[test]
    fn tensor_names_follow_the_slm1_rule_with_the_callers_status() {
        let entry = |name: &[u8]| {
            let mut b = (name.len() as u16).to_le_bytes().to_vec();
            b.extend_from_slice(name);
            b
        };
        let read = |bytes: &[u8], status| {
            let mut r = Reader::new(bytes, 0, "target", Status::AdapterTruncated);
            r.enter("target", Entry::Index(2));
            crate::format::read_tensor_name(&mut r, status).map(alloc::string::String::from)
        };
        assert_eq!(read(&entry(b"blk.0.attn_q.weight"), Status::BadTensorName).unwrap(), "blk.0.attn_q.weight");
        assert_eq!(read(&entry(&[b'a'; 64]), Status::BadTensorName).unwrap().len(), 64);
        for (bytes, field, value) in [
            (entry(b""), "target[2].name_len", 0),
            (entry(&[b'a'; 65]), "target[2].name_len", 65),
            (entry(b"Blk.0"), "target[2].name", 5),
            (entry(b"a-b"), "target[2].name", 3),
            (entry("é".as_bytes()), "target[2].name", 2),
        ] {
            let e = read(&bytes, Status::AdapterUnknownTarget).unwrap_err();
            assert_eq!((e.status, e.field.as_str(), e.value), (Status::AdapterUnknownTarget, field, value));
        }
        // A name cut short is the reader's truncation status, whatever the caller's.
        let e = read(&entry(b"abc")[..4], Status::BadTensorName).unwrap_err();
        assert_eq!((e.status, e.field.as_str(), e.value), (Status::AdapterTruncated, "target[2].name", 2));
    }
}
