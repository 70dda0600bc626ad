//! A fake OpenSSH ed25519 key in the real `openssh-key-v1` layout
//! (PROTOCOL.key), unencrypted:
//!
//! ```text
//! "openssh-key-v1\0"  string "none"  string "none"  string ""  uint32 1
//! string (string "ssh-ed25519", string pk[32])
//! string (uint32 check, uint32 check, string "ssh-ed25519", string pk[32],
//!         string seed[32] || pk[32], string comment, padding 1, 2, 3, ...)
//! ```
//!
//! The public key is random rather than derived from the seed, so the key
//! does not work; it parses and looks real. Only the seed is secret: the
//! public key also sits in `id_ed25519.pub` (at the same base64 alignment as
//! one of its copies here), and the check words are not worth a needle. The
//! needles are therefore the base64 characters that encode seed bytes only,
//! taken line by line so that they match the file as written.

use data_encoding::BASE64;

use crate::canary::MIN_NEEDLE_LEN;
use crate::rng::Rng;

/// Line width of the base64 body, as ssh-keygen writes it.
const WRAP: usize = 70;

#[derive(Debug)]
pub(crate) struct SshKey {
    pub(crate) private_pem: String,
    pub(crate) public_line: String,
    pub(crate) needles: Vec<String>,
}

/// The blob under construction, with which bytes are secret.
#[derive(Default)]
struct Blob {
    bytes: Vec<u8>,
    secret: Vec<bool>,
}

impl Blob {
    fn raw(&mut self, data: &[u8], secret: bool) {
        self.bytes.extend_from_slice(data);
        self.secret.extend(std::iter::repeat_n(secret, data.len()));
    }

    fn u32(&mut self, v: u32) {
        self.raw(&v.to_be_bytes(), false);
    }

    fn string(&mut self, data: &[u8]) {
        self.u32(data.len() as u32);
        self.raw(data, false);
    }
}

pub(crate) fn ed25519(rng: &mut Rng, comment: &str) -> SshKey {
    let seed = rng.bytes::<32>();
    let pk = rng.bytes::<32>();
    let check = rng.bytes::<4>();

    let mut public = Blob::default();
    public.string(b"ssh-ed25519");
    public.string(&pk);

    let mut private = Blob::default();
    private.raw(&check, false);
    private.raw(&check, false);
    private.string(b"ssh-ed25519");
    private.string(&pk);
    private.u32(64);
    private.raw(&seed, true);
    private.raw(&pk, false);
    private.string(comment.as_bytes());
    let mut pad = 1u8;
    while private.bytes.len() % 8 != 0 {
        private.raw(&[pad], false);
        pad += 1;
    }

    let mut blob = Blob::default();
    blob.raw(b"openssh-key-v1\0", false);
    blob.string(b"none");
    blob.string(b"none");
    blob.string(b"");
    blob.u32(1);
    blob.string(&public.bytes);
    blob.u32(private.bytes.len() as u32);
    blob.raw(&private.bytes, false);
    // Restore the secret marks of the private section's bytes.
    let start = blob.bytes.len() - private.bytes.len();
    blob.secret[start..].copy_from_slice(&private.secret);

    let body = BASE64.encode(&blob.bytes);
    let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(WRAP) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");

    let public_line = format!("ssh-ed25519 {} {comment}\n", BASE64.encode(&public.bytes));
    SshKey {
        private_pem: pem,
        public_line,
        needles: needles(&body, &blob.secret),
    }
}

/// Runs of base64 characters, within one wrapped line, that encode secret
/// bytes only; a run of 32 or more is cut in two, so that half a key
/// leaked is still found.
fn needles(body: &str, secret: &[bool]) -> Vec<String> {
    let char_is_secret = |i: usize| {
        let (first, last) = (6 * i / 8, (6 * i + 5) / 8);
        last < secret.len() && secret[first..=last].iter().all(|&s| s)
    };
    let mut out = Vec::new();
    for (line_no, line) in body.as_bytes().chunks(WRAP).enumerate() {
        let base = line_no * WRAP;
        let mut i = 0;
        while i < line.len() {
            if !char_is_secret(base + i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < line.len() && char_is_secret(base + i) {
                i += 1;
            }
            let run = &line[start..i];
            if run.len() >= 2 * MIN_NEEDLE_LEN {
                let (a, b) = run.split_at(run.len() / 2);
                out.push(String::from_utf8_lossy(a).into_owned());
                out.push(String::from_utf8_lossy(b).into_owned());
            } else if run.len() >= MIN_NEEDLE_LEN {
                out.push(String::from_utf8_lossy(run).into_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an SSH `string` at `*at`.
    fn read_string<'a>(data: &'a [u8], at: &mut usize) -> &'a [u8] {
        let len = u32::from_be_bytes(data[*at..*at + 4].try_into().unwrap()) as usize;
        let s = &data[*at + 4..*at + 4 + len];
        *at += 4 + len;
        s
    }

    #[test]
    fn the_key_parses_as_openssh_key_v1() {
        let key = ed25519(&mut Rng::from_seed(11), "sam@devbox");
        let pem = &key.private_pem;
        assert!(pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(pem.ends_with("\n-----END OPENSSH PRIVATE KEY-----\n"));
        let lines: Vec<&str> = pem.lines().collect();
        let body_lines = &lines[1..lines.len() - 1];
        assert!(body_lines[..body_lines.len() - 1]
            .iter()
            .all(|l| l.len() == WRAP));
        let body: String = body_lines.concat();
        assert!(body
            .starts_with("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"));
        let blob = BASE64.decode(body.as_bytes()).unwrap();

        let mut at = 15;
        assert_eq!(&blob[..at], b"openssh-key-v1\0");
        assert_eq!(read_string(&blob, &mut at), b"none");
        assert_eq!(read_string(&blob, &mut at), b"none");
        assert_eq!(read_string(&blob, &mut at), b"");
        assert_eq!(&blob[at..at + 4], &[0, 0, 0, 1]);
        at += 4;
        let public = read_string(&blob, &mut at).to_vec();
        let private = read_string(&blob, &mut at).to_vec();
        assert_eq!(at, blob.len());
        assert_eq!(private.len() % 8, 0);

        let mut p = 0;
        assert_eq!(read_string(&public, &mut p), b"ssh-ed25519");
        let pk = read_string(&public, &mut p).to_vec();
        assert_eq!(pk.len(), 32);

        assert_eq!(private[..4], private[4..8]);
        let mut p = 8;
        assert_eq!(read_string(&private, &mut p), b"ssh-ed25519");
        assert_eq!(read_string(&private, &mut p), pk.as_slice());
        let sk = read_string(&private, &mut p).to_vec();
        assert_eq!(sk.len(), 64);
        assert_eq!(&sk[32..], pk.as_slice());
        assert_eq!(read_string(&private, &mut p), b"sam@devbox");
        for (i, &b) in private[p..].iter().enumerate() {
            assert_eq!(usize::from(b), i + 1);
        }

        let expected_pub = format!("ssh-ed25519 {} sam@devbox\n", BASE64.encode(&public));
        assert_eq!(key.public_line, expected_pub);
        assert!(key
            .public_line
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));
    }

    #[test]
    fn needles_cover_only_the_seed_and_stay_within_a_line() {
        for seed in 0..20 {
            let key = ed25519(&mut Rng::from_seed(seed), "alex@laptop");
            assert!(key.needles.len() >= 2, "{:?}", key.needles);
            for n in &key.needles {
                assert!(n.len() >= MIN_NEEDLE_LEN);
                assert!(key.private_pem.lines().any(|l| l.contains(n.as_str())));
                assert!(!key.public_line.contains(n.as_str()));
            }
        }
    }
}
