//! The random source behind every minted value: a ChaCha20 keystream keyed
//! either from getrandom(2) (real runs) or from a `u64` seed (tests and
//! evaluations that need reproducible canaries).
//!
//! One generator for both paths, so the seeded tests exercise the same code
//! that real runs use. Only the key differs. ChaCha20 is the RFC 8439 block
//! function; the keystream is used as a plain byte source, never to encrypt.

use std::io;

/// `A-Z a-z 0-9`.
pub(crate) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// The RFC 4648 base32 alphabet, `A-Z 2-7`.
pub(crate) const BASE32_UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// The standard base64 alphabet, `A-Z a-z 0-9 + /`.
pub(crate) const BASE64_CHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Bytes of key material read from the kernel for one mint.
const KEY_LEN: usize = 32;

/// "expand 32-byte k", the ChaCha constant.
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A deterministic byte generator (ChaCha20 with a 64-bit block counter).
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    key: [u32; 8],
    counter: u64,
    block: [u8; 64],
    used: usize,
}

impl Rng {
    /// Keyed from 32 bytes of getrandom(2).
    pub(crate) fn from_os() -> io::Result<Self> {
        let mut key = [0u8; KEY_LEN];
        fill_from_os(&mut key)?;
        Ok(Self::from_key(key))
    }

    /// Keyed from a seed: the same seed gives the same stream, forever.
    pub(crate) fn from_seed(seed: u64) -> Self {
        let mut key = [0u8; KEY_LEN];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        // A domain tag, so a seed is not simply a short key.
        key[8..24].copy_from_slice(b"airlock-canary-1");
        Self::from_key(key)
    }

    fn from_key(key: [u8; KEY_LEN]) -> Self {
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().zip(key.chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Self {
            key: words,
            counter: 0,
            block: [0; 64],
            used: 64,
        }
    }

    /// The next byte of the keystream.
    pub(crate) fn byte(&mut self) -> u8 {
        if self.used == self.block.len() {
            let lo = self.counter as u32;
            let hi = (self.counter >> 32) as u32;
            self.block = chacha20_block(&self.key, [lo, hi, 0, 0]);
            self.counter = self.counter.wrapping_add(1);
            self.used = 0;
        }
        let b = self.block[self.used];
        self.used += 1;
        b
    }

    /// `N` fresh bytes.
    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.iter_mut().for_each(|b| *b = self.byte());
        out
    }

    /// `len` fresh bytes.
    pub(crate) fn vec(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    /// A uniform number in `0..n`, for `1 <= n <= 256` (rejection sampling,
    /// no modulo bias).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        debug_assert!((1..=256).contains(&n));
        let limit = 256 - 256 % n;
        loop {
            let b = usize::from(self.byte());
            if b < limit {
                return b % n;
            }
        }
    }

    /// `len` characters drawn uniformly from `alphabet` (ASCII, at most 256).
    pub(crate) fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

/// Fills `buf` from getrandom(2), retrying short reads and EINTR.
fn fill_from_os(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The ChaCha20 block function (RFC 8439 §2.3): 20 rounds over the key and
/// the four words of counter and nonce.
fn chacha20_block(key: &[u32; 8], counter_nonce: [u32; 4]) -> [u8; 64] {
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&SIGMA);
    init[4..12].copy_from_slice(key);
    init[12..].copy_from_slice(&counter_nonce);
    let mut s = init;
    for _ in 0..10 {
        quarter_round(&mut s, 0, 4, 8, 12);
        quarter_round(&mut s, 1, 5, 9, 13);
        quarter_round(&mut s, 2, 6, 10, 14);
        quarter_round(&mut s, 3, 7, 11, 15);
        quarter_round(&mut s, 0, 5, 10, 15);
        quarter_round(&mut s, 1, 6, 11, 12);
        quarter_round(&mut s, 2, 7, 8, 13);
        quarter_round(&mut s, 3, 4, 9, 14);
    }
    let mut out = [0u8; 64];
    for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&s[i].wrapping_add(init[i]).to_le_bytes());
    }
    out
}

fn quarter_round(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 §2.3.2: key 00..1f, counter 1, nonce 00:00:00:09 00:00:00:4a
    /// 00:00:00:00.
    #[test]
    fn chacha20_block_matches_rfc_8439() {
        let mut key = [0u32; 8];
        for (i, word) in key.iter_mut().enumerate() {
            let b = (i * 4) as u8;
            *word = u32::from_le_bytes([b, b + 1, b + 2, b + 3]);
        }
        let out = chacha20_block(&key, [1, 0x0900_0000, 0x4a00_0000, 0]);
        let expected: [u8; 64] = [
            0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15, 0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20,
            0x71, 0xc4, 0xc7, 0xd1, 0xf4, 0xc7, 0x33, 0xc0, 0x68, 0x03, 0x04, 0x22, 0xaa, 0x9a,
            0xc3, 0xd4, 0x6c, 0x4e, 0xd2, 0x82, 0x64, 0x46, 0x07, 0x9f, 0xaa, 0x09, 0x14, 0xc2,
            0xd7, 0x05, 0xd9, 0x8b, 0x02, 0xa2, 0xb5, 0x12, 0x9c, 0xd1, 0xde, 0x16, 0x4e, 0xb9,
            0xcb, 0xd0, 0x83, 0xe8, 0xa2, 0x50, 0x3c, 0x4e,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn seeded_streams_repeat_and_differ() {
        let a: Vec<u8> = Rng::from_seed(7).vec(200);
        let b: Vec<u8> = Rng::from_seed(7).vec(200);
        let c: Vec<u8> = Rng::from_seed(8).vec(200);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn os_streams_differ() {
        let a = Rng::from_os().unwrap().vec(32);
        let b = Rng::from_os().unwrap().vec(32);
        assert_ne!(a, b);
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut rng = Rng::from_seed(1);
        let mut seen = [false; 62];
        for _ in 0..5000 {
            let v = rng.below(62);
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
