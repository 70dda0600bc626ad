//! RFC 3339 timestamps in UTC with milliseconds: `2026-12-01T21:30:00.123Z`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of every timestamp in the log.
pub(crate) const LEN: usize = 24;

/// Formats `t` (clamped to the Unix epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(LEN);
    format_into(t, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn push_num(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 4];
    let mut v = v;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Appends the timestamp of `t` to `out`.
pub(crate) fn format_into(t: SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, dd) = civil_from_days(days);
    // Years past 9999 do not fit the format; such a clock is broken anyway.
    push_num(out, y.clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_num(out, u64::from(m), 2);
    out.push(b'-');
    push_num(out, u64::from(dd), 2);
    out.push(b'T');
    push_num(out, rem / 3600, 2);
    out.push(b':');
    push_num(out, rem / 60 % 60, 2);
    out.push(b':');
    push_num(out, rem % 60, 2);
    out.push(b'.');
    push_num(out, u64::from(d.subsec_millis()), 3);
    out.push(b'Z');
}

/// Is `s` a timestamp of exactly the form [`format`] produces, naming a
/// real calendar date?
pub(crate) fn is_valid(s: &[u8]) -> bool {
    if s.len() != LEN {
        return false;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        s[from..to].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ];
    if seps.iter().any(|&(i, c)| s[i] != c) {
        return false;
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se), Some(_ms)) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
        num(20, 23),
    ) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let mdays = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=mdays).contains(&d) && h < 24 && mi < 60 && se < 60
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        format(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_796_160_600, 123), "2026-12-01T21:30:00.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn every_day_for_ten_years_formats_valid_and_increasing() {
        let mut last = String::new();
        for day in 19_000..19_000 + 3_700 {
            let s = at(day * 86_400 + 86_399, 999);
            assert!(is_valid(s.as_bytes()), "{s}");
            assert!(s > last);
            last = s;
        }
    }

    #[test]
    fn validation() {
        assert!(is_valid(b"2024-02-29T23:59:59.999Z"));
        assert!(!is_valid(b"2023-02-29T00:00:00.000Z"));
        assert!(!is_valid(b"2024-13-01T00:00:00.000Z"));
        assert!(!is_valid(b"2024-01-01T24:00:00.000Z"));
        assert!(!is_valid(b"2024-01-01T00:00:00.000+00:00"));
        assert!(!is_valid(b"2024-01-01 00:00:00.000Z"));
        assert!(!is_valid(b"2024-01-01T00:00:00.00Z"));
        assert!(!is_valid(b"2024-01-01T00:00:0a.000Z"));
    }
}
