//! Output bytes as JSON: UTF-8 text, with the exact bytes in base64 only
//! when they are not valid UTF-8; and a decoder for streams whose chunks
//! may split a character.

use data_encoding::BASE64;

/// The text of `b` (lossy), and its base64 when the text is not exact.
pub(crate) fn text(b: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(b).into_owned(),
            Some(BASE64.encode(b)),
        ),
    }
}

/// Decodes a stream chunk by chunk, holding back an incomplete UTF-8
/// sequence at the end of a chunk for the next one.
#[derive(Debug, Default)]
pub(crate) struct Utf8Carry {
    held: Vec<u8>,
}

impl Utf8Carry {
    /// The bytes of this chunk that are ready: all of them but an
    /// incomplete character at the end (at most 3 bytes).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.held);
        all.extend_from_slice(chunk);
        let keep = incomplete_tail(&all);
        self.held = all.split_off(all.len() - keep);
        all
    }

    /// What is still held at the end of the stream.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// How many bytes at the end of `b` start a UTF-8 character that is not
/// complete yet.
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let byte = b[b.len() - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_text_has_no_base64_and_bad_bytes_do() {
        assert_eq!(text(b"hi\n"), ("hi\n".to_string(), None));
        let (t, b) = text(&[b'a', 0xff]);
        assert_eq!(t, "a\u{fffd}");
        assert_eq!(b.as_deref(), Some("Yf8="));
    }

    #[test]
    fn a_character_split_across_chunks_is_joined() {
        let euro = "€".as_bytes(); // 3 bytes
        let mut c = Utf8Carry::default();
        assert_eq!(c.push(&[b'x', euro[0]]), b"x");
        assert_eq!(c.push(&euro[1..2]), b"");
        assert_eq!(c.push(&[euro[2], b'y']), "€y".as_bytes());
        assert_eq!(c.finish(), b"");
        // A lone lead byte at the end is given back at the finish.
        assert_eq!(c.push(&[b'z', 0xF0]), b"z");
        assert_eq!(c.finish(), vec![0xF0]);
        // Invalid bytes are not held.
        assert_eq!(c.push(&[0xff]), vec![0xff]);
    }
}
