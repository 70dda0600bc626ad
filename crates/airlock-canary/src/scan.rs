//! Finding canaries in bytes, streams and DNS names.
//!
//! Every needle of every canary is turned into its patterns (see
//! [`crate::encode`]) and all of them go into one Aho-Corasick automaton
//! (a second, case-insensitive one for DNS names), so a search is one
//! linear pass whatever the number of canaries and encodings. Text is searched as is, then normalized ([`Transform`]:
//! percent escapes and JSON escapes decoded, whitespace dropped) and
//! searched again, then normalized a second time when escapes remain
//! (`%252F`). A pass runs only when its input has something to undo, so
//! text costs at most three linear passes, and usually two.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use serde::Serialize;

use crate::canary::{Canary, CanaryKind};
use crate::decode::{escapes_in, Transform};
use crate::encode;

/// How the needle itself was encoded where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// As planted.
    Raw,
    /// Hexadecimal, lower or upper case.
    Hex,
    /// Standard base64 (`+/`), padded or not, at any byte alignment.
    Base64,
    /// URL-safe base64 (`-_`), padded or not, at any byte alignment.
    Base64Url,
    /// RFC 4648 base32, upper or lower case, padded or not, at any byte
    /// alignment.
    Base32,
    /// Standard base64 of standard base64.
    DoubleBase64,
}

impl Encoding {
    /// The kebab-case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Hex => "hex",
            Self::Base64 => "base64",
            Self::Base64Url => "base64url",
            Self::Base32 => "base32",
            Self::DoubleBase64 => "double-base64",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What surrounded the encoded needle and had to be undone to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wrapping {
    /// Nothing, or only whitespace (line wrapping).
    Plain,
    /// Percent-encoded (`%2F`, `%0A` between lines).
    UrlEncoded,
    /// Inside a JSON string, with escapes (`\/`, `\n`, `\u0041`).
    JsonEscaped,
    /// Escapes that decode to more escapes: percent-encoded twice
    /// (`%252F`), or a JSON escape percent-encoded (`%5Cu0041`).
    EscapedTwice,
    /// Spread over the labels of a DNS name, in any letter case.
    DnsName,
}

impl Wrapping {
    /// The kebab-case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::UrlEncoded => "url-encoded",
            Self::JsonEscaped => "json-escaped",
            Self::EscapedTwice => "escaped-twice",
            Self::DnsName => "dns-name",
        }
    }
}

impl fmt::Display for Wrapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A canary found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// The canary's id.
    pub canary_id: String,
    /// What it imitates.
    pub kind: CanaryKind,
    /// How the needle was encoded.
    pub encoding: Encoding,
    /// What was undone around it (the first, most direct form found).
    pub wrapping: Wrapping,
    /// Byte offset in the scanned input (for a stream, from its start; for a
    /// DNS name, in the name as given) where the encoded needle begins.
    pub offset: u64,
}

impl fmt::Display for Hit {
    /// `canary aws-secret (aws-secret-access-key) as base64, url-encoded, at byte 120`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "canary {} ({}) as {}",
            self.canary_id, self.kind, self.encoding
        )?;
        if self.wrapping != Wrapping::Plain {
            write!(f, ", {}", self.wrapping)?;
        }
        write!(f, ", at byte {}", self.offset)
    }
}

/// Finds canaries in any of the covered encodings.
///
/// Built once per set (the automata are the only costly part); cheap to
/// clone and share between threads. A scan reports at most one [`Hit`] per
/// canary and encoding, in order of offset.
#[derive(Debug, Clone)]
pub struct Scanner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    canaries: Vec<(String, CanaryKind)>,
    /// Case-sensitive, for text.
    text: Automaton,
    /// ASCII case-insensitive, for DNS names.
    dns: Automaton,
    /// Bytes a [`StreamScanner`] keeps between chunks.
    window: usize,
}

/// Patterns behind an Aho-Corasick automaton of their first
/// [`PREFIX_LEN`] bytes. Prefixes keep the automaton small (a few hundred
/// patterns of up to ~600 bytes become a few thousand states), so it can be
/// a DFA that is quick to build; each prefix hit is then checked against
/// the whole pattern, which is rare and cheap.
#[derive(Debug)]
struct Automaton {
    /// A contiguous NFA: quick to build (every sandbox builds one, most
    /// scan little).
    ac: AhoCorasick,
    /// The prefixes, for building [`Automaton::dfa`].
    prefixes: Vec<Vec<u8>>,
    /// A DFA over the same prefixes, about twice as fast to search but
    /// ~7 ms to build: built once [`DFA_AFTER`] bytes were searched, when
    /// the prefixes are few enough ([`MAX_DFA_BYTES`]).
    dfa: std::sync::OnceLock<Option<AhoCorasick>>,
    /// Bytes searched so far.
    searched: std::sync::atomic::AtomicUsize,
    /// For each automaton pattern (a prefix), the patterns that start with it.
    groups: Vec<Vec<usize>>,
    patterns: Vec<Pattern>,
    case_insensitive: bool,
}

#[derive(Debug)]
struct Pattern {
    canary: usize,
    encoding: Encoding,
    bytes: Vec<u8>,
}

/// (canary index, encoding): at most one hit each.
type Key = (usize, Encoding);

type Span = std::ops::Range<usize>;

/// A needle's patterns: [`encode::text_patterns`] or [`encode::dns_patterns`].
type PatternsOf = fn(&[u8]) -> Vec<(Encoding, Vec<u8>)>;

/// Bytes of each pattern in the automaton. Every pattern is at least this
/// long (a needle has at least 16 characters, its encodings more).
const PREFIX_LEN: usize = 16;

/// Up to this many prefix bytes in all, a text automaton that has searched
/// [`DFA_AFTER`] bytes gets a DFA (about 1.7 MB and 7 ms to build for the
/// built-in set); beyond, it keeps its contiguous NFA.
const MAX_DFA_BYTES: usize = 8 * 1024;

/// Bytes searched with the NFA (at ~40 MiB/s, about 100 ms) before the DFA
/// (~75 MiB/s) is built.
const DFA_AFTER: usize = 4 << 20;

/// Input bytes per output byte that a stream's window allows for: `\u0041`
/// and `%2541` fit; `%5Cu0041` and long runs of whitespace may not.
const MAX_EXPANSION: usize = 6;

impl Automaton {
    fn build(canaries: &[Canary], patterns_of: PatternsOf, case_insensitive: bool) -> Self {
        let fold = |b: &[u8]| {
            if case_insensitive {
                b.to_ascii_lowercase()
            } else {
                b.to_vec()
            }
        };
        let mut seen = BTreeSet::new();
        let mut patterns = Vec::new();
        let mut prefixes: Vec<Vec<u8>> = Vec::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of = std::collections::BTreeMap::new();
        for (index, canary) in canaries.iter().enumerate() {
            for needle in canary.needles() {
                for (encoding, bytes) in patterns_of(needle.as_bytes()) {
                    if bytes.is_empty() || !seen.insert(fold(&bytes)) {
                        continue;
                    }
                    let prefix = fold(&bytes[..bytes.len().min(PREFIX_LEN)]);
                    let group = *group_of.entry(prefix.clone()).or_insert_with(|| {
                        prefixes.push(prefix);
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[group].push(patterns.len());
                    patterns.push(Pattern {
                        canary: index,
                        encoding,
                        bytes,
                    });
                }
            }
        }
        let ac = Self::automaton(&prefixes, case_insensitive, AhoCorasickKind::ContiguousNFA);
        let total: usize = prefixes.iter().map(Vec::len).sum();
        let dfa = std::sync::OnceLock::new();
        if case_insensitive || total > MAX_DFA_BYTES {
            let _ = dfa.set(None);
        }
        Self {
            ac,
            prefixes,
            dfa,
            searched: std::sync::atomic::AtomicUsize::new(0),
            groups,
            patterns,
            case_insensitive,
        }
    }

    fn automaton(
        prefixes: &[Vec<u8>],
        case_insensitive: bool,
        kind: AhoCorasickKind,
    ) -> AhoCorasick {
        AhoCorasick::builder()
            .ascii_case_insensitive(case_insensitive)
            .kind(Some(kind))
            .build(prefixes)
            // Building fails only past u32::MAX automaton states; canaries
            // come from `mint`, whose needles are few (a set has at most a
            // few thousand prefixes of 16 bytes).
            .expect("canary patterns fit in an Aho-Corasick automaton")
    }

    /// The automaton to search `len` more bytes with.
    fn searcher(&self, len: usize) -> &AhoCorasick {
        use std::sync::atomic::Ordering;
        if let Some(Some(dfa)) = self.dfa.get() {
            return dfa;
        }
        let before = self.searched.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) < DFA_AFTER {
            return &self.ac;
        }
        self.dfa
            .get_or_init(|| {
                Some(Self::automaton(
                    &self.prefixes,
                    self.case_insensitive,
                    AhoCorasickKind::DFA,
                ))
            })
            .as_ref()
            .unwrap_or(&self.ac)
    }

    /// Longest pattern.
    fn max_len(&self) -> usize {
        self.patterns
            .iter()
            .map(|p| p.bytes.len())
            .max()
            .unwrap_or(0)
    }

    /// Patterns found in `buf` whose key is not in `found` yet, as
    /// (span in `buf`, key), ordered by start; their keys are added to
    /// `found`. Prefix matches may overlap, so none is missed however the
    /// text around it is made.
    fn search(&self, buf: &[u8], found: &mut BTreeSet<Key>) -> Vec<(Span, Key)> {
        let mut new = Vec::new();
        for m in self.searcher(buf.len()).find_overlapping_iter(buf) {
            for &index in &self.groups[m.pattern().as_usize()] {
                let pattern = &self.patterns[index];
                let span = m.start()..m.start() + pattern.bytes.len();
                let Some(text) = buf.get(span.clone()) else {
                    continue;
                };
                let whole = if self.case_insensitive {
                    text.eq_ignore_ascii_case(&pattern.bytes)
                } else {
                    text == pattern.bytes
                };
                let key = (pattern.canary, pattern.encoding);
                if whole && found.insert(key) {
                    new.push((span, key));
                }
            }
        }
        new.sort_by_key(|(span, _)| span.start);
        new
    }
}

impl Scanner {
    /// A scanner for these canaries (usually [`CanarySet::scanner`](crate::CanarySet::scanner)).
    pub fn new(canaries: &[Canary]) -> Self {
        let text = Automaton::build(canaries, encode::text_patterns, false);
        let dns = Automaton::build(canaries, encode::dns_patterns, true);
        let window = text.max_len().max(1) * MAX_EXPANSION;
        Self {
            inner: Arc::new(Inner {
                canaries: canaries
                    .iter()
                    .map(|c| (c.id().to_owned(), c.kind()))
                    .collect(),
                text,
                dns,
                window,
            }),
        }
    }

    /// Every canary in `bytes`: raw, hex, base64, base64url, base32 or
    /// double base64; as is, line-wrapped, percent-encoded (once or twice)
    /// or JSON-escaped.
    pub fn scan(&self, bytes: &[u8]) -> Vec<Hit> {
        let mut hits = self.scan_into(bytes, &mut BTreeSet::new(), 0);
        hits.sort_by(|a, b| {
            (a.offset, &a.canary_id, a.encoding).cmp(&(b.offset, &b.canary_id, b.encoding))
        });
        hits
    }

    /// [`Scanner::scan`] of a string.
    pub fn scan_str(&self, text: &str) -> Vec<Hit> {
        self.scan(text.as_bytes())
    }

    /// Every canary in a DNS name (a query name, a CONNECT host, an SNI).
    ///
    /// The labels are joined (dots removed), so a value split over labels at
    /// any points is found, and matched ignoring ASCII case: raw, hex,
    /// base32 (the usual DNS tunnel encoding), base64 and base64url.
    pub fn scan_dns_name(&self, name: &str) -> Vec<Hit> {
        let name = name.as_bytes();
        let joined = Transform::RemoveDots.decode(name);
        let new = self.inner.dns.search(&joined, &mut BTreeSet::new());
        let mut hits = self.hits(new, &[(Transform::RemoveDots, name)], 0, |_| {
            Wrapping::DnsName
        });
        hits.sort_by_key(|h| h.offset);
        hits
    }

    /// Bytes of context a chunked scan must keep so that no encoded needle
    /// split across chunks is missed: six times the longest pattern (room
    /// for `%2541` and `\u0041` escapes). A few hundred bytes for the
    /// built-in set, under 4 KiB with the longest extras.
    pub fn window(&self) -> usize {
        self.inner.window
    }

    /// A scanner for one stream (a process's output, a request body).
    pub fn stream(&self) -> StreamScanner {
        StreamScanner::new(self.clone())
    }

    /// Searches `bytes` as is, normalized, and normalized twice, skipping
    /// keys in `found` and adding the new ones; offsets are shifted by
    /// `base`.
    fn scan_into(&self, bytes: &[u8], found: &mut BTreeSet<Key>, base: u64) -> Vec<Hit> {
        const NORMALIZE: Transform = Transform::Normalize;
        let text = &self.inner.text;
        let mut hits = self.hits(text.search(bytes, found), &[], base, |_| Wrapping::Plain);
        if !NORMALIZE.applies_to(bytes) {
            return hits;
        }
        let once = NORMALIZE.decode(bytes);
        let new = text.search(&once, found);
        hits.extend(self.hits(new, &[(NORMALIZE, bytes)], base, |span| {
            match escapes_in(&bytes[span]) {
                (true, _) => Wrapping::UrlEncoded,
                (false, true) => Wrapping::JsonEscaped,
                (false, false) => Wrapping::Plain,
            }
        }));
        if NORMALIZE.applies_to(&once) {
            let twice = NORMALIZE.decode(&once);
            let new = text.search(&twice, found);
            let chain = [(NORMALIZE, bytes), (NORMALIZE, &once[..])];
            hits.extend(self.hits(new, &chain, base, |_| Wrapping::EscapedTwice));
        }
        hits
    }

    /// Turns new (span, key) pairs into hits, mapping spans back through
    /// `chain` ((transform, its input), outermost first) to the scanned
    /// input; `wrapping` names what was undone, given the span there.
    fn hits(
        &self,
        new: Vec<(Span, Key)>,
        chain: &[(Transform, &[u8])],
        base: u64,
        wrapping: impl Fn(Span) -> Wrapping,
    ) -> Vec<Hit> {
        if new.is_empty() {
            return Vec::new();
        }
        // Start and end of each match, mapped together in one walk per
        // transform (positions must be ascending).
        let mut points: Vec<(usize, usize)> = new
            .iter()
            .enumerate()
            .flat_map(|(i, (span, _))| [(span.start, 2 * i), (span.end, 2 * i + 1)])
            .collect();
        points.sort_unstable();
        let mut positions: Vec<usize> = points.iter().map(|&(at, _)| at).collect();
        for &(transform, src) in chain.iter().rev() {
            transform.map_positions(src, &mut positions);
        }
        let mut mapped = vec![0; points.len()];
        for (&(_, slot), at) in points.iter().zip(positions) {
            mapped[slot] = at;
        }
        new.into_iter()
            .enumerate()
            .map(|(i, (_, (canary, encoding)))| {
                let (start, end) = (mapped[2 * i], mapped[2 * i + 1]);
                let (id, kind) = &self.inner.canaries[canary];
                Hit {
                    canary_id: id.clone(),
                    kind: *kind,
                    encoding,
                    wrapping: wrapping(start..end),
                    offset: base + start as u64,
                }
            })
            .collect()
    }
}

/// Scans a stream chunk by chunk, so that a canary split across two writes
/// is still found.
///
/// It keeps the last bytes of the stream (six times the longest pattern, a
/// few hundred bytes for the built-in set, at most a few KiB with long
/// extras) and scans them again with the next chunk; large chunks are
/// scanned in 64 KiB pieces. Memory stays below that window plus 64 KiB
/// (times the decoding passes) however long the stream. Each canary and
/// encoding is reported once per stream. An encoded needle spread over more
/// than the window (say, split by a megabyte of whitespace) is missed.
///
/// Each chunk costs a rescan of the window, so feed it reads, not bytes.
#[derive(Debug, Clone)]
pub struct StreamScanner {
    scanner: Scanner,
    /// The last bytes seen, at most `window`.
    tail: Vec<u8>,
    /// Stream offset of `tail[0]`.
    tail_start: u64,
    found: BTreeSet<Key>,
}

/// Largest piece of a chunk scanned at once.
const PIECE: usize = 64 * 1024;

impl StreamScanner {
    /// A fresh stream (usually [`Scanner::stream`]).
    pub fn new(scanner: Scanner) -> Self {
        Self {
            scanner,
            tail: Vec::new(),
            tail_start: 0,
            found: BTreeSet::new(),
        }
    }

    /// Scans the next chunk; returns the hits not reported before in this
    /// stream, with offsets from the start of the stream.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Hit> {
        let window = self.scanner.inner.window;
        let mut hits = Vec::new();
        for piece in chunk.chunks(PIECE) {
            // The tail's buffer is reused: its capacity stays at most
            // `window + PIECE`.
            let mut buf = std::mem::take(&mut self.tail);
            buf.reserve_exact(piece.len());
            buf.extend_from_slice(piece);
            let mut new = self
                .scanner
                .scan_into(&buf, &mut self.found, self.tail_start);
            new.sort_by_key(|h| h.offset);
            hits.extend(new);
            let drop = buf.len().saturating_sub(window);
            buf.drain(..drop);
            self.tail = buf;
            self.tail_start += drop as u64;
        }
        hits
    }

    /// (tail length, tail capacity, window), for tests of the memory cap.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> (usize, usize, usize) {
        (
            self.tail.len(),
            self.tail.capacity(),
            self.scanner.inner.window,
        )
    }

    /// Bytes pushed so far.
    pub fn position(&self) -> u64 {
        self.tail_start + self.tail.len() as u64
    }
}
