//! UTF-8 facts shared by the pre-tokenizer (which classifies arbitrary bytes) and the stream decoder
//! (which must never emit half a character). Source: Unicode 16.0 §3.9, Table 3-7 "Well-Formed UTF-8
//! Byte Sequences".

/// Byte length of a sequence that starts with `lead`, or 0 if `lead` never starts one (continuation
/// bytes 80..BF, the overlong leads C0 and C1, and F5..FF).
pub(super) fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

/// Whether `b` may stand at position `index` (1, 2 or 3) of a sequence led by `lead`. The second
/// byte's range is narrower after E0 and F0 (no overlong forms), ED (no surrogates) and F4 (nothing
/// above U+10FFFF); later bytes are any continuation byte.
pub(super) fn continues(lead: u8, index: usize, b: u8) -> bool {
    let (lo, hi) = match (index, lead) {
        (1, 0xE0) => (0xA0, 0xBF),
        (1, 0xED) => (0x80, 0x9F),
        (1, 0xF0) => (0x90, 0xBF),
        (1, 0xF4) => (0x80, 0x8F),
        _ => (0x80, 0xBF),
    };
    lo <= b && b <= hi
}

/// The character starting at `text[i]`: `Some((code point, byte length))`, or `None` when the bytes
/// there are not a well-formed sequence (callers then treat the one byte `text[i]` as a character of
/// its own) or `i` is past the end.
pub(super) fn decode_at(text: &[u8], i: usize) -> Option<(u32, usize)> {
    let lead = *text.get(i)?;
    let len = sequence_len(lead);
    match len {
        0 => None,
        1 => Some((lead as u32, 1)),
        _ => {
            let tail = text.get(i + 1..i + len)?;
            // The lead byte carries 7 - len payload bits.
            let mut cp = (lead & (0x7F >> len)) as u32;
            for (k, &b) in tail.iter().enumerate() {
                if !continues(lead, k + 1, b) {
                    return None;
                }
                cp = (cp << 6) | (b & 0x3F) as u32;
            }
            Some((cp, len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_core_on_every_short_sequence() {
        // Every 1- and 2-byte string, and every 3-byte string led by a multi-byte lead; core's
        // validator is the reference.
        let check = |bytes: &[u8]| {
            let ours = decode_at(bytes, 0);
            let theirs = match core::str::from_utf8(bytes) {
                Ok(s) => s.chars().next().map(|c| (c as u32, c.len_utf8())),
                Err(e) if e.valid_up_to() > 0 => {
                    let s = core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap();
                    s.chars().next().map(|c| (c as u32, c.len_utf8()))
                }
                Err(_) => None,
            };
            assert_eq!(ours, theirs, "{bytes:02x?}");
        };
        for a in 0..=255u8 {
            check(&[a]);
            for b in 0..=255u8 {
                check(&[a, b]);
                if sequence_len(a) >= 3 {
                    for c in [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF] {
                        check(&[a, b, c]);
                        check(&[a, b, c, 0x80]);
                        check(&[a, b, c, 0xC0]);
                    }
                }
            }
        }
        check(&[0xF4, 0x8F, 0xBF, 0xBF]);
        check(&[0xF4, 0x90, 0x80, 0x80]);
        check(&[0xED, 0xA0, 0x80]);
    }
}
