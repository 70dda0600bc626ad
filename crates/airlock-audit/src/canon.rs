//! Canonical JSON: the one byte form of a value that the writer produces
//! and the verifier insists on.
//!
//! - compact (no whitespace);
//! - object keys sorted by their UTF-8 bytes, recursively, no duplicates;
//! - strings escaped as serde_json escapes them: `\"`, `\\`, `\b`, `\t`,
//!   `\n`, `\f`, `\r`, the other control characters as `\u00xx` (lowercase
//!   hex), everything else literal;
//! - integers in plain decimal (those that fit `u64` or `i64`); other
//!   numbers are `f64`s written with the shortest digits that read back
//!   to the same value, laid out by [`write_f64`]'s rule (fixed notation
//!   with at least one decimal for exponents -5 to 15, else `1.5e+16`
//!   style). That is serde_json 1.0.15x's output, but written here so that
//!   a change of serde_json's float printer cannot change the format;
//! - at most [`MAX_DEPTH`] nested arrays and objects.
//!
//! [`write_object`] produces that form from a `serde_json::Value`;
//! [`Scanner`] checks bytes against it without building a value tree (the
//! verifier's hot path).

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

/// Deepest nesting of arrays and objects accepted in event data.
pub(crate) const MAX_DEPTH: usize = 64;

/// Why a value has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CanonError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Appends the canonical form of the object `m` to `out`.
pub(crate) fn write_object(m: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), CanonError> {
    write_map(m, out, 1)
}

fn write_map(m: &Map<String, Value>, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonError> {
    if depth > MAX_DEPTH {
        return Err(CanonError::TooDeep);
    }
    // Sort explicitly: serde_json's map order depends on a cargo feature
    // that any crate in the build may switch on.
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    if !entries.is_sorted_by(|a, b| a.0 < b.0) {
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        write_value(v, out, depth)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_value(v: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_str(s, out),
        Value::Array(a) => {
            if depth + 1 > MAX_DEPTH {
                return Err(CanonError::TooDeep);
            }
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(x, out, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(m) => write_map(m, out, depth + 1)?,
    }
    Ok(())
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        write_f64(f, out);
    }
}

/// Appends the canonical form of a finite `f`: the shortest digits that
/// round-trip (Rust's `{:e}`), in fixed notation with at least one
/// decimal when the decimal exponent is in -5..=15, otherwise as
/// `d[.ddd]e+X` / `d[.ddd]e-X`.
pub(crate) fn write_f64(f: f64, out: &mut Vec<u8>) {
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if f.is_sign_negative() {
        out.push(b'-');
    }
    if (-5..16).contains(&exp) {
        if exp < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits.as_bytes());
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits.as_bytes());
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits.as_bytes()[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits.as_bytes()[int_len..]);
            }
        }
    } else {
        out.extend_from_slice(mantissa.as_bytes());
        out.push(b'e');
        if exp > 0 {
            out.push(b'+');
        }
        out.extend_from_slice(exp.to_string().as_bytes());
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a canonical JSON string (with quotes).
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Bytes that end a plain run inside a string: '"', '\\' and controls.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Length of the leading run of `b` without '"', '\\' or a control
/// character, eight bytes at a time.
fn plain_run(b: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        // Per byte, the high bit of `(x - 1) & !x` is set when x is zero,
        // and of `(w - 0x20) & !w` when w < 0x20. Borrows can only set
        // bits above a true match, so the lowest set bit is exact.
        let q = w ^ (LO * u64::from(b'"'));
        let s = w ^ (LO * u64::from(b'\\'));
        let hits =
            (q.wrapping_sub(LO) & !q | s.wrapping_sub(LO) & !s | w.wrapping_sub(LO * 0x20) & !w)
                & HI;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !SPECIAL[usize::from(b[i])] {
        i += 1;
    }
    i
}

/// Where and why bytes are not canonical JSON. The scanner cannot tell
/// "not JSON" from "JSON in another form"; the caller asks serde_json
/// when it needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    /// Byte offset in the scanned input.
    pub(crate) pos: usize,
    /// What was expected there.
    pub(crate) expected: &'static str,
}

/// A strict, allocation-free reader of canonical JSON over a byte slice
/// that is already known to be UTF-8.
#[derive(Debug)]
pub(crate) struct Scanner<'a> {
    b: &'a [u8],
    pub(crate) pos: usize,
}

/// A scanned string: the bytes between the quotes, still escaped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawStr<'a> {
    pub(crate) raw: &'a [u8],
    pub(crate) escaped: bool,
}

impl<'a> RawStr<'a> {
    /// The decoded string. Only canonical escapes can occur here.
    pub(crate) fn decode(&self) -> Cow<'a, str> {
        if !self.escaped {
            // The scanner only runs on UTF-8 input and splits at ASCII quotes.
            return Cow::Borrowed(std::str::from_utf8(self.raw).unwrap_or_default());
        }
        let mut s = Vec::with_capacity(self.raw.len());
        let mut i = 0;
        while i < self.raw.len() {
            let c = self.raw[i];
            if c != b'\\' {
                s.push(c);
                i += 1;
                continue;
            }
            let e = self.raw.get(i + 1).copied().unwrap_or(b'\\');
            i += 2;
            s.push(match e {
                b'b' => 0x08,
                b't' => b'\t',
                b'n' => b'\n',
                b'f' => 0x0c,
                b'r' => b'\r',
                b'u' => {
                    // Canonical \u escapes are \u00xx.
                    let h = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                    let v = self
                        .raw
                        .get(i + 2..i + 4)
                        .map_or(0, |x| h(x[0]) << 4 | h(x[1]));
                    i += 4;
                    v
                }
                other => other,
            });
        }
        Cow::Owned(String::from_utf8(s).unwrap_or_default())
    }
}

type Scan<T> = Result<T, Reject>;

impl<'a> Scanner<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Scanner { b, pos: 0 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.b.len()
    }

    pub(crate) fn reject<T>(&self, expected: &'static str) -> Scan<T> {
        Err(Reject {
            pos: self.pos,
            expected,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Consumes `lit` exactly. Inlined so that the comparison with a
    /// constant literal compiles to a few loads instead of a memcmp call.
    #[inline(always)]
    pub(crate) fn lit(&mut self, lit: &'static [u8], expected: &'static str) -> Scan<()> {
        if self.b.len() - self.pos >= lit.len() && &self.b[self.pos..self.pos + lit.len()] == lit {
            self.pos += lit.len();
            Ok(())
        } else {
            self.reject(expected)
        }
    }

    /// A canonical unsigned integer that fits `u64`.
    pub(crate) fn u64(&mut self) -> Scan<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.pos > start && self.b[start] == b'0' {
                return self.reject("no leading zero");
            }
            v = match v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
            {
                Some(v) => v,
                None => return self.reject("an integer below 2^64"),
            };
            self.pos += 1;
        }
        if self.pos == start {
            return self.reject("an unsigned integer");
        }
        Ok(v)
    }

    /// Exactly `N` lowercase hex digits between quotes, decoded.
    pub(crate) fn hex_str<const N: usize>(&mut self) -> Scan<[u8; N]> {
        self.lit(b"\"", "'\"'")?;
        let Some(digits) = self.b.get(self.pos..self.pos + 2 * N) else {
            return self.reject("lowercase hex digits");
        };
        let Some(v) = crate::hex::decode_array::<N>(digits) else {
            return self.reject("lowercase hex digits");
        };
        self.pos += 2 * N;
        self.lit(b"\"", "'\"' after the hex digits")?;
        Ok(v)
    }

    /// A canonical string (with quotes).
    pub(crate) fn string(&mut self) -> Scan<RawStr<'a>> {
        self.lit(b"\"", "'\"'")?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Skip the plain run at once.
            self.pos += plain_run(&self.b[self.pos..]);
            let Some(c) = self.peek() else {
                return self.reject("closing '\"'");
            };
            match c {
                b'"' => break,
                0..=0x1f => return self.reject("no raw control character in a string"),
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.pos + 1) {
                        Some(b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r') => self.pos += 2,
                        Some(b'u') => {
                            // Only control characters without a short form.
                            let ok = match self.b.get(self.pos + 2..self.pos + 6) {
                                Some([b'0', b'0', hi @ (b'0' | b'1'), lo]) => {
                                    let lo = match lo {
                                        b'0'..=b'9' => lo - b'0',
                                        b'a'..=b'f' => lo - b'a' + 10,
                                        _ => 0xff,
                                    };
                                    let v = (hi - b'0') << 4 | lo;
                                    lo != 0xff && !matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
                                }
                                _ => false,
                            };
                            if !ok {
                                return self.reject("a canonical escape");
                            }
                            self.pos += 6;
                        }
                        _ => return self.reject("a canonical escape"),
                    }
                }
                _ => self.pos += 1,
            }
        }
        let raw = &self.b[start..self.pos];
        self.pos += 1;
        Ok(RawStr { raw, escaped })
    }

    /// A canonical object (keys sorted, unique).
    pub(crate) fn object(&mut self) -> Scan<()> {
        self.map(1)
    }

    fn map(&mut self, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return self.reject("less nesting");
        }
        self.lit(b"{", "'{'")?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let mut prev: Option<RawStr<'a>> = None;
        loop {
            let key_pos = self.pos;
            let key = self.string()?;
            if let Some(p) = prev {
                let ordered = if p.escaped || key.escaped {
                    p.decode() < key.decode()
                } else {
                    p.raw < key.raw
                };
                if !ordered {
                    return Err(Reject {
                        pos: key_pos,
                        expected: "object keys in sorted order, each once",
                    });
                }
            }
            prev = Some(key);
            self.lit(b":", "':'")?;
            self.value(depth)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.reject("',' or '}'"),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Scan<()> {
        match self.peek() {
            Some(b'{') => self.map(depth + 1),
            Some(b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return self.reject("less nesting");
                }
                self.pos += 1;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return self.reject("',' or ']'"),
                    }
                }
            }
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.lit(b"true", "a value"),
            Some(b'f') => self.lit(b"false", "a value"),
            Some(b'n') => self.lit(b"null", "a value"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.reject("a value"),
        }
    }

    fn number(&mut self) -> Scan<()> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        let tok = &self.b[start..self.pos];
        if canonical_number(tok) {
            Ok(())
        } else {
            Err(Reject {
                pos: start,
                expected: "a number in canonical form",
            })
        }
    }
}

/// Is `tok` exactly the canonical form of the number it denotes (as
/// serde_json would read it)?
fn canonical_number(tok: &[u8]) -> bool {
    let (neg, digits) = match tok.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, tok),
    };
    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        if digits.len() > 1 && digits[0] == b'0' {
            return false;
        }
        // Integers: serde_json keeps those that fit u64 (or i64 when
        // negative) and prints them back verbatim; "-0" and larger ones
        // become floats.
        let Ok(s) = std::str::from_utf8(tok) else {
            return false;
        };
        return if neg {
            s.parse::<i64>().is_ok_and(|v| v != 0)
        } else {
            s.parse::<u64>().is_ok()
        };
    }
    // Floats: JSON grammar first (Rust's parser is laxer), then compare
    // with the canonical form of the (correctly rounded) value.
    if !json_number_grammar(tok) {
        return false;
    }
    let Ok(f) = std::str::from_utf8(tok).unwrap_or("x").parse::<f64>() else {
        return false;
    };
    if !f.is_finite() {
        return false;
    }
    let mut out = Vec::with_capacity(tok.len());
    write_f64(f, &mut out);
    out == tok
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn json_number_grammar(t: &[u8]) -> bool {
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - s
    };
    if t.first() == Some(&b'-') {
        i += 1;
    }
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if let Some(b'e' | b'E') = t.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = t.get(i) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == t.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        let mut out = Vec::new();
        write_object(v.as_object().unwrap(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn scan_ok(s: &str) -> bool {
        let mut sc = Scanner::new(s.as_bytes());
        sc.object().is_ok() && sc.at_end()
    }

    /// The slow definition the scanner must agree with: parse, then
    /// re-serialize canonically, then compare bytes.
    fn slow_ok(s: &str) -> bool {
        match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => {
                let mut out = Vec::new();
                write_object(v.as_object().unwrap(), &mut out).is_ok() && out == s.as_bytes()
            }
            _ => false,
        }
    }

    #[test]
    fn strings_escape_like_serde_json() {
        let mut all = String::new();
        for c in (0u32..0x250).chain([0x2028, 0x2029, 0xfeff, 0x1f600]) {
            all.push(char::from_u32(c).unwrap());
        }
        let mut ours = Vec::new();
        write_str(&all, &mut ours);
        assert_eq!(
            String::from_utf8(ours.clone()).unwrap(),
            serde_json::to_string(&all).unwrap()
        );
        let mut sc = Scanner::new(&ours);
        let raw = sc.string().unwrap();
        assert!(sc.at_end());
        assert_eq!(raw.decode(), all);
    }

    #[test]
    fn plain_run_finds_the_first_special_byte() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let b: Vec<u8> = (0..len)
                .map(|i| {
                    let r = (x >> (i % 8 * 8)) as u8 ^ (i as u8).wrapping_mul(37);
                    // Mostly plain bytes, sometimes special ones.
                    match r % 16 {
                        0 => b'"',
                        1 => b'\\',
                        2 => r % 0x20,
                        3 => 0x20,
                        4 => 0x1f,
                        5 => 0x80 | r,
                        _ => b'a' + r % 26,
                    }
                })
                .collect();
            let want = b
                .iter()
                .position(|&c| SPECIAL[usize::from(c)])
                .unwrap_or(b.len());
            assert_eq!(plain_run(&b), want, "{b:?}");
        }
    }

    #[test]
    fn keys_sorted_recursively_and_compact() {
        let v = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": null}, "é": "x", "Z": true});
        let c = canon(&v);
        assert_eq!(
            c,
            r#"{"Z":true,"a":{"c":null,"z":[1,{"x":3,"y":2}]},"b":1,"é":"x"}"#
        );
        assert!(scan_ok(&c));
        // Reparsing and re-canonicalizing is stable.
        assert_eq!(canon(&serde_json::from_str(&c).unwrap()), c);
    }

    #[test]
    fn numbers() {
        for (tok, ok) in [
            ("0", true),
            ("-1", true),
            ("18446744073709551615", true),
            ("18446744073709551616", false),
            ("-9223372036854775808", true),
            ("-9223372036854775809", false),
            ("-0", false),
            ("01", false),
            ("1.5", true),
            ("1.50", false),
            ("1.0", true),
            ("1", true),
            ("1e+20", true),
            ("1E+20", false),
            ("1e20", false),
            ("1e-6", true),
            ("0.00001", true),
            ("1e-5", false),
            ("9999000000000000.0", true),
            ("1e+16", true),
            ("1.5e+300", true),
            ("5e-324", true),
            ("100000.0", true),
            ("1e5", false),
            ("0.1", true),
            ("-0.0", true),
            ("1e400", false),
            (".5", false),
            ("1.", false),
            ("+1", false),
            ("--1", false),
        ] {
            let doc = format!("{{\"n\":{tok}}}");
            assert_eq!(scan_ok(&doc), ok, "{tok}");
            assert_eq!(slow_ok(&doc), ok, "slow path disagrees on {tok}");
        }
    }

    #[test]
    fn floats_round_trip_in_the_canonical_layout() {
        for (f, want) in [
            (1e-4, "0.0001"),
            (1.5e-5, "0.000015"),
            (1e-6, "1e-6"),
            (9.999e15, "9999000000000000.0"),
            (1e16, "1e+16"),
            (1.234567e16, "1.234567e+16"),
            (12345.678, "12345.678"),
            (-0.0, "-0.0"),
            (-2.5, "-2.5"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (123456789012345.6, "123456789012345.6"),
            (1.0, "1.0"),
        ] {
            let mut out = Vec::new();
            write_f64(f, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
        // Random bit patterns: read back exactly, and accepted by the scanner.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if !f.is_finite() {
                continue;
            }
            let mut out = Vec::new();
            write_f64(f, &mut out);
            let s = std::str::from_utf8(&out).unwrap();
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{s}");
            assert!(canonical_number(&out), "{s}");
        }
    }

    #[test]
    fn too_deep_is_refused_both_ways() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!([v]);
        }
        let mut out = Vec::new();
        assert_eq!(
            write_object(json!({ "a": v }).as_object().unwrap(), &mut out),
            Err(CanonError::TooDeep)
        );
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(!scan_ok(&deep));
        let ok = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(scan_ok(&ok));
        assert!(slow_ok(&ok));
    }

    #[test]
    fn scanner_agrees_with_the_slow_definition_under_mutation() {
        let base = canon(&json!({
            "argv": ["/bin/sh", "-c", "echo \"hi\"\n\u{1}"],
            "cwd": "/workspace",
            "env": {"A": "1", "B": "é\\x"},
            "exit": -3,
            "ok": true,
            "ratio": 0.25,
            "big": 18446744073709551615u64,
            "none": null,
            "empty": {},
            "list": [],
        }));
        assert!(scan_ok(&base));
        let alphabet = b"{}[]\":,\\ 0123456789.-eE+abtnfrul\x01\xc3\xa9";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut agree = 0;
        for _ in 0..20_000 {
            let mut b = base.as_bytes().to_vec();
            for _ in 0..1 + rnd() % 3 {
                let at = (rnd() as usize) % (b.len() + 1);
                match rnd() % 3 {
                    0 if at < b.len() => {
                        b.remove(at);
                    }
                    1 if at < b.len() => b[at] = alphabet[(rnd() as usize) % alphabet.len()],
                    _ => b.insert(at, alphabet[(rnd() as usize) % alphabet.len()]),
                }
            }
            let Ok(s) = String::from_utf8(b) else {
                continue;
            };
            assert_eq!(scan_ok(&s), slow_ok(&s), "disagree on {s}");
            agree += 1;
        }
        assert!(agree > 10_000);
    }
}
