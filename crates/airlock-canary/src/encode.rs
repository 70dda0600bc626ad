//! The patterns a needle turns into, one per encoding and alignment.
//!
//! Hex is per byte, so the hex of a needle is a substring of the hex of any
//! text that contains it. Base64 and base32 are not: a needle inside a larger
//! blob starts at one of 3 (base64) or 5 (base32) byte offsets within an
//! encoding group, and the characters at either end of its encoding also
//! carry bits of the unknown neighbours. For each offset we keep only the
//! characters made entirely of needle bits, the *stable inner part*: it
//! appears in the encoding of every text that contains the needle at that
//! offset, padded or not. A 16-byte needle keeps at least 19 base64 or 24
//! base32 characters.

use data_encoding::{Encoding as Codec, BASE32, BASE64, BASE64URL, HEXLOWER, HEXUPPER};

use crate::scan::Encoding;

/// The patterns searched for in text (case-sensitive): raw, hex in both
/// cases, base64 and base64url at 3 offsets, base32 upper and lower case at
/// 5 offsets, and base64 of base64 at 9 offset pairs. Duplicates (a base64url
/// pattern without `-` or `_` is also the base64 one) are left in; the
/// caller removes them.
pub(crate) fn text_patterns(needle: &[u8]) -> Vec<(Encoding, Vec<u8>)> {
    let mut out = vec![
        (Encoding::Raw, needle.to_vec()),
        (Encoding::Hex, HEXLOWER.encode(needle).into_bytes()),
        (Encoding::Hex, HEXUPPER.encode(needle).into_bytes()),
    ];
    for align in 0..3 {
        out.push((Encoding::Base64, base64(needle, align)));
    }
    for align in 0..3 {
        out.push((Encoding::Base64Url, stable(&BASE64URL, 6, 3, needle, align)));
    }
    for align in 0..5 {
        let upper = stable(&BASE32, 5, 5, needle, align);
        out.push((Encoding::Base32, upper.to_ascii_lowercase()));
        out.push((Encoding::Base32, upper));
    }
    for outer in 0..3 {
        for inner in 0..3 {
            let once = base64(needle, inner);
            out.push((Encoding::DoubleBase64, base64(&once, outer)));
        }
    }
    out
}

/// The patterns searched for in DNS names (ASCII case-insensitive): raw,
/// hex, base32 at 5 offsets, base64 and base64url at 3 offsets.
pub(crate) fn dns_patterns(needle: &[u8]) -> Vec<(Encoding, Vec<u8>)> {
    let mut out = vec![
        (Encoding::Raw, needle.to_vec()),
        (Encoding::Hex, HEXLOWER.encode(needle).into_bytes()),
    ];
    for align in 0..5 {
        out.push((Encoding::Base32, stable(&BASE32, 5, 5, needle, align)));
    }
    for align in 0..3 {
        out.push((Encoding::Base64, base64(needle, align)));
    }
    for align in 0..3 {
        out.push((Encoding::Base64Url, stable(&BASE64URL, 6, 3, needle, align)));
    }
    out
}

pub(crate) fn base64(needle: &[u8], align: usize) -> Vec<u8> {
    stable(&BASE64, 6, 3, needle, align)
}

/// The stable inner part of the encoding of `needle` when it starts `align`
/// bytes into a group of `group` bytes, for a codec of `bits` bits a
/// character.
fn stable(codec: &Codec, bits: usize, group: usize, needle: &[u8], align: usize) -> Vec<u8> {
    let mut buf = vec![0u8; align];
    buf.extend_from_slice(needle);
    buf.resize(buf.len().div_ceil(group) * group, 0);
    let encoded = codec.encode(&buf).into_bytes();
    // Character i holds bits [bits*i, bits*i + bits) of `buf`; keep those
    // that lie within the needle's bits [8*align, 8*(align + len)).
    let first = (8 * align).div_ceil(bits);
    let end = 8 * (align + needle.len()) / bits;
    encoded[first..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stable part must occur in the encoding of the needle surrounded by
    /// arbitrary bytes, whatever those bytes are.
    #[test]
    fn stable_parts_survive_any_neighbours() {
        let needle = b"AKIAQWERTYUIOPASDFGH";
        for prefix_len in 0..10 {
            for fill in [0u8, 0xff, 0x5a] {
                let mut text = vec![fill; prefix_len];
                text.extend_from_slice(needle);
                text.extend_from_slice(&[fill ^ 0x33; 7]);
                let checks: [(&Codec, usize, usize); 3] =
                    [(&BASE64, 6, 3), (&BASE64URL, 6, 3), (&BASE32, 5, 5)];
                for (codec, bits, group) in checks {
                    let encoded = codec.encode(&text).into_bytes();
                    let pattern = stable(codec, bits, group, needle, prefix_len % group);
                    assert!(pattern.len() >= 8 * needle.len() / bits - 2);
                    assert!(
                        encoded
                            .windows(pattern.len())
                            .any(|w| w == pattern.as_slice()),
                        "prefix {prefix_len} fill {fill}"
                    );
                }
            }
        }
    }

    #[test]
    fn aligned_needles_keep_their_whole_encoding() {
        assert_eq!(base64(b"abcdef", 0), b"YWJjZGVm");
        assert_eq!(base64(b"abcd", 0), b"YWJjZ");
        assert_eq!(stable(&BASE32, 5, 5, b"hello", 0), b"NBSWY3DP");
    }
}
