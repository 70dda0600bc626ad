//! Undoing the escapes and wrapping that sit around an encoded needle, so
//! that the patterns can be searched again in the result.
//!
//! Every transform only shrinks its input, byte by byte from left to right,
//! and reports for each output byte where in the input it came from. That
//! lets a hit in the decoded text be mapped back to an offset in what was
//! scanned, without keeping a position table: positions are mapped by
//! running the transform again, once per pass that has new hits.

/// One way to undo what surrounds an encoded needle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    /// Everything a text channel adds around a value, undone in one pass:
    /// `%XX` to the byte (either case of hex digits); JSON string escapes
    /// (`\" \\ \/ \b \f \n \r \t`, and `\uXXXX` for ASCII); and ASCII
    /// whitespace dropped, whether written or escaped (`%0A`, `\n`), which
    /// joins line-wrapped base64 (`base64`, PEM, MIME), hex dumps with
    /// spaces and values split over lines. `+` stays `+`: no needle pattern
    /// contains a space, so reading `+` as one could only break a match.
    ///
    /// No needle or pattern contains whitespace, and only an extra's prefix
    /// can hold `%` or `\`, so this removes what stood between a pattern's
    /// characters, not the characters. (A raw needle right after a stray
    /// escape, as in `\n` + a needle starting with `n`, can lose a character
    /// here; the as-is pass still finds it.)
    Normalize,
    /// Drop `.`: a DNS name's labels joined back into one string.
    RemoveDots,
}

impl Transform {
    /// Whether the transform can change `src` at all; the pass is skipped
    /// when it cannot.
    pub(crate) fn applies_to(self, src: &[u8]) -> bool {
        match self {
            Self::Normalize => src
                .iter()
                .any(|&b| b == b'%' || b == b'\\' || b.is_ascii_whitespace()),
            Self::RemoveDots => src.contains(&b'.'),
        }
    }

    pub(crate) fn decode(self, src: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(src.len());
        self.run(src, |b, _| out.push(b));
        out
    }

    /// Replaces each position in `positions` (ascending, in the output of
    /// this transform over `src`) with the position in `src` of the input
    /// that produced that byte; the end of the output maps to the end of
    /// `src`. Mapping a match's end this way gives the end of the input
    /// that produced it (or a little after, across dropped whitespace).
    pub(crate) fn map_positions(self, src: &[u8], positions: &mut [usize]) {
        debug_assert!(positions.is_sorted());
        let mut next = 0;
        let mut out_index = 0;
        self.run(src, |_, from| {
            while next < positions.len() && positions[next] == out_index {
                positions[next] = from;
                next += 1;
            }
            out_index += 1;
        });
        positions[next..].fill(src.len());
    }

    /// Calls `emit(byte, source offset)` for each output byte, in order.
    fn run(self, src: &[u8], mut emit: impl FnMut(u8, usize)) {
        match self {
            Self::RemoveDots => {
                for (i, &b) in src.iter().enumerate() {
                    if b != b'.' {
                        emit(b, i);
                    }
                }
            }
            Self::Normalize => {
                let mut i = 0;
                while i < src.len() {
                    let (byte, len) = match src[i] {
                        b'%' => match percent_escape(&src[i..]) {
                            Some(b) => (Some(b), 3),
                            None => (Some(b'%'), 1),
                        },
                        b'\\' => match json_escape(&src[i..]) {
                            Some((b, len)) => (Some(b), len),
                            None => (Some(b'\\'), 1),
                        },
                        b => (Some(b), 1),
                    };
                    if let Some(b) = byte.filter(|b| !b.is_ascii_whitespace()) {
                        emit(b, i);
                    }
                    i += len;
                }
            }
        }
    }
}

/// Whether `span` (of the input of [`Transform::Normalize`]) holds a
/// percent escape, a JSON escape, or neither.
pub(crate) fn escapes_in(span: &[u8]) -> (bool, bool) {
    let url = (0..span.len()).any(|i| span[i] == b'%' && percent_escape(&span[i..]).is_some());
    let json = (0..span.len()).any(|i| span[i] == b'\\' && json_escape(&span[i..]).is_some());
    (url, json)
}

/// `%XX` at the start of `s`: the byte.
fn percent_escape(s: &[u8]) -> Option<u8> {
    match s {
        [b'%', hi, lo, ..] => Some(hex_val(*hi)? << 4 | hex_val(*lo)?),
        _ => None,
    }
}

/// A JSON escape at the start of `s`: the byte and the escape's length.
/// `\u` escapes beyond ASCII are not decoded (no needle has such bytes).
fn json_escape(s: &[u8]) -> Option<(u8, usize)> {
    let b = match s.get(1)? {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => {
            let code = hex4(s.get(2..6)?)?;
            return u8::try_from(code).ok().filter(u8::is_ascii).map(|b| (b, 6));
        }
        _ => return None,
    };
    Some((b, 2))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex4(digits: &[u8]) -> Option<u16> {
    digits
        .iter()
        .try_fold(0u16, |acc, &d| Some(acc << 4 | u16::from(hex_val(d)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(t: Transform, s: &str) -> String {
        String::from_utf8(t.decode(s.as_bytes())).unwrap()
    }

    #[test]
    fn normalize_undoes_escapes_and_wrapping() {
        let n = Transform::Normalize;
        assert_eq!(decode(n, "ab c\r\nd\te"), "abcde");
        assert_eq!(decode(n, "a%2Fb%2fc%zz%4"), "a/b/c%zz%4");
        assert_eq!(decode(n, "%2541+"), "%41+");
        assert_eq!(decode(n, "QUJD%0ARE%0d%0aVG"), "QUJDREVG");
        assert_eq!(
            decode(n, r#"a\/b\nc\"d\\e\u0041\u00e9\q\"#),
            "a/bc\"d\\eA\\u00e9\\q\\"
        );
        assert_eq!(decode(n, r"x\u000ay\u0020z"), "xyz");
        assert_eq!(decode(Transform::RemoveDots, "ab.c.d."), "abcd");
        assert!(!n.applies_to(b"plain-text"));
        assert!(n.applies_to(b"a b"));
        assert!(n.applies_to(b"a%"));
        assert!(n.applies_to(b"a\\"));
    }

    #[test]
    fn positions_map_back() {
        let src = b"x%41%42y%43";
        let mut pos = [0, 1, 2, 3, 4];
        Transform::Normalize.map_positions(src, &mut pos);
        assert_eq!(pos, [0, 1, 4, 7, 8]);
        let src = b"ab\n\ncd";
        let mut pos = [1, 2, 2];
        Transform::Normalize.map_positions(src, &mut pos);
        assert_eq!(pos, [1, 4, 4]);
        let src = b"a.b..c";
        let mut pos = [0, 1, 2, 3];
        Transform::RemoveDots.map_positions(src, &mut pos);
        assert_eq!(pos, [0, 2, 5, 6]);
    }

    #[test]
    fn escapes_are_told_apart() {
        assert_eq!(escapes_in(b"abc"), (false, false));
        assert_eq!(escapes_in(b"a%2Fb"), (true, false));
        assert_eq!(escapes_in(b"a%zz\\/"), (false, true));
        assert_eq!(escapes_in(b"a\\q"), (false, false));
    }
}
