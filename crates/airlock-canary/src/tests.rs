//! Tests across modules: minted shapes, detection in every encoding, random
//! placement (proptest), DNS label splits, streams, and no false positives.

use data_encoding::{
    BASE32, BASE32_NOPAD, BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXUPPER,
};
use proptest::prelude::*;

use crate::rng::Rng;
use crate::*;

fn config_with_extras() -> CanaryConfig {
    CanaryConfig {
        builtin: true,
        extras: vec![
            ExtraCanary {
                name: "stripe".to_owned(),
                env: Some("STRIPE_SECRET_KEY".to_owned()),
                file: None,
                prefix: "sk_live_".to_owned(),
                length: 24,
                template: None,
            },
            ExtraCanary {
                name: "npm".to_owned(),
                env: None,
                file: Some("~/.npmrc".to_owned()),
                prefix: "npm_".to_owned(),
                length: 36,
                template: Some("//registry.npmjs.org/:_authToken={value}\n".to_owned()),
            },
            ExtraCanary {
                name: "service-key".to_owned(),
                env: Some("SERVICE_KEY".to_owned()),
                file: Some("config/service.json".to_owned()),
                prefix: String::new(),
                length: 16,
                template: Some("{\"key\": \"{value}\"}\n".to_owned()),
            },
        ],
    }
}

fn seeded(seed: u64) -> CanarySet {
    mint_with_seed(&config_with_extras(), seed).unwrap()
}

/// Sets and scanners for seeds 0..4, built once (scanner construction is
/// the slow part in debug builds).
fn fixture(seed: u64) -> &'static (CanarySet, Scanner) {
    static FIXTURES: std::sync::OnceLock<Vec<(CanarySet, Scanner)>> = std::sync::OnceLock::new();
    let all = FIXTURES.get_or_init(|| {
        (0..4)
            .map(|seed| {
                let set = seeded(seed);
                let scanner = set.scanner();
                (set, scanner)
            })
            .collect()
    });
    &all[seed as usize]
}

fn file<'a>(set: &'a CanarySet, location: &str) -> &'a PlantedFile {
    let location = Location::parse(location).unwrap();
    set.files
        .iter()
        .find(|f| f.location == location)
        .unwrap_or_else(|| panic!("no file {location}"))
}

fn text(f: &PlantedFile) -> &str {
    std::str::from_utf8(&f.contents).unwrap()
}

fn env<'a>(set: &'a CanarySet, name: &str) -> &'a str {
    &set.env.iter().find(|(n, _)| n == name).unwrap().1
}

fn all(s: &str, alphabet: &[u8]) -> bool {
    s.bytes().all(|b| alphabet.contains(&b))
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The text a canary is planted in: the file holding it, else its value.
fn source(set: &CanarySet, canary: &Canary) -> Vec<u8> {
    set.files
        .iter()
        .find(|f| f.canary_ids.iter().any(|id| id == canary.id()))
        .map_or_else(
            || canary.value().as_bytes().to_vec(),
            |f| f.contents.clone(),
        )
}

// ---------------------------------------------------------------- minting

#[test]
fn builtin_canaries_look_like_the_real_thing() {
    for set in [seeded(1), mint(&config_with_extras()).unwrap()] {
        let key_id = set.get("aws-key-id").unwrap().value();
        assert_eq!(key_id.len(), 20);
        assert!(key_id.starts_with("AKIA"));
        assert!(all(&key_id[4..], b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
        let secret = set.get("aws-secret").unwrap().value();
        assert_eq!(secret.len(), 40);
        assert!(all(secret, &[ALNUM, b"+/"].concat()));
        let creds = file(&set, "~/.aws/credentials");
        assert_eq!(creds.mode, 0o600);
        assert_eq!(creds.canary_ids, ["aws-key-id", "aws-secret"]);
        assert_eq!(
            text(creds),
            format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
        );
        assert_eq!(env(&set, "AWS_ACCESS_KEY_ID"), key_id);
        assert_eq!(env(&set, "AWS_SECRET_ACCESS_KEY"), secret);
        assert!(env(&set, "AWS_DEFAULT_REGION").contains('-'));
        assert!(file(&set, "~/.aws/config").canary_ids.is_empty());

        let ssh = set.get("ssh-key").unwrap();
        let key = file(&set, "~/.ssh/id_ed25519");
        assert_eq!(key.mode, 0o600);
        assert_eq!(text(key), ssh.value());
        assert!(ssh
            .value()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE"));
        let public = file(&set, "~/.ssh/id_ed25519.pub");
        assert_eq!(public.mode, 0o644);
        assert!(public.canary_ids.is_empty());
        assert!(text(public).starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));

        let token = set.get("github-token").unwrap().value();
        assert_eq!(token.len(), 40);
        assert!(token.starts_with("ghp_") && all(&token[4..], ALNUM));
        let hosts = text(file(&set, "~/.config/gh/hosts.yml"));
        assert!(hosts.starts_with("github.com:\n    oauth_token: ghp_"));
        assert!(hosts.contains(&format!("oauth_token: {token}\n    user: ")));
        assert!(hosts.ends_with("    git_protocol: https\n"));

        let password = set.get("db-password").unwrap().value();
        assert_eq!(password.len(), 24);
        assert!(all(password, ALNUM));
        let dotenv = file(&set, ".env");
        assert_eq!(dotenv.location, Location::Workspace(".env".into()));
        assert!(text(dotenv).contains(&format!(
            "\nDATABASE_URL=postgres://app:{password}@db.internal:5432/app\n"
        )));

        let jwt = set.get("kube-token").unwrap().value();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(jwt.starts_with("eyJ"));
        let header = BASE64URL_NOPAD.decode(parts[0].as_bytes()).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(header["alg"], "RS256");
        let payload = BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(payload["sub"], "system:serviceaccount:default:deployer");
        assert_eq!(
            BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap().len(),
            256
        );
        let kubeconfig = text(file(&set, "~/.kube/config"));
        assert!(kubeconfig.starts_with("apiVersion: v1\nkind: Config\n"));
        assert!(kubeconfig.ends_with(&format!("  user:\n    token: {jwt}\n")));
        let ca = kubeconfig
            .lines()
            .find_map(|l| l.strip_prefix("    certificate-authority-data: "))
            .unwrap();
        let ca = BASE64.decode(ca.as_bytes()).unwrap();
        assert!(ca.starts_with(b"-----BEGIN CERTIFICATE-----\nMII"));
    }
}

#[test]
fn the_clash_list_is_what_is_planted() {
    let set = mint_with_seed(&CanaryConfig::default(), 1).unwrap();
    let planted: Vec<&Location> = set.files.iter().map(|f| &f.location).collect();
    let listed: Vec<Location> = crate::builtin::files()
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert_eq!(planted, listed.iter().collect::<Vec<_>>());
    let env: Vec<&str> = set.env.iter().map(|(n, _)| n.as_str()).collect();
    let listed: Vec<&str> = crate::builtin::ENV_VARS.iter().map(|&(n, _)| n).collect();
    assert_eq!(env, listed);
}

#[test]
fn extras_are_prefix_plus_random_alphanumerics() {
    let set = seeded(2);
    let stripe = set.get("stripe").unwrap();
    assert_eq!(stripe.kind(), CanaryKind::Extra);
    assert!(stripe.value().starts_with("sk_live_"));
    assert_eq!(stripe.value().len(), 8 + 24);
    assert!(all(&stripe.value()[8..], ALNUM));
    assert_eq!(env(&set, "STRIPE_SECRET_KEY"), stripe.value());
    assert!(!set.files.iter().any(|f| f.canary_ids == ["stripe"]));

    let npm = set.get("npm").unwrap();
    let npmrc = file(&set, "~/.npmrc");
    assert_eq!(npmrc.mode, 0o600);
    assert_eq!(npmrc.canary_ids, ["npm"]);
    assert_eq!(
        text(npmrc),
        format!("//registry.npmjs.org/:_authToken={}\n", npm.value())
    );
    let service = file(&set, "config/service.json");
    assert_eq!(
        service.location,
        Location::Workspace("config/service.json".into())
    );
    assert_eq!(env(&set, "SERVICE_KEY").len(), 16);

    let ids: Vec<&str> = set.canaries.iter().map(Canary::id).collect();
    assert_eq!(
        ids,
        [
            "aws-key-id",
            "aws-secret",
            "ssh-key",
            "github-token",
            "db-password",
            "kube-token",
            "stripe",
            "npm",
            "service-key"
        ]
    );
}

#[test]
fn builtin_off_mints_only_extras() {
    let mut config = config_with_extras();
    config.builtin = false;
    let set = mint_with_seed(&config, 3).unwrap();
    assert_eq!(set.canaries.len(), 3);
    assert_eq!(set.files.len(), 2);
    assert_eq!(set.env.len(), 2);
    let empty = mint_with_seed(
        &CanaryConfig {
            builtin: false,
            extras: vec![],
        },
        3,
    )
    .unwrap();
    assert!(empty.canaries.is_empty());
    assert!(empty.scanner().scan(b"anything").is_empty());
    assert!(empty.scanner().scan_dns_name("a.b.c").is_empty());
}

#[test]
fn invalid_config_is_refused_before_minting() {
    let mut config = config_with_extras();
    config.extras[1].length = 4;
    let err = mint(&config).unwrap_err();
    assert!(matches!(err, CanaryError::Config(_)));
    assert_eq!(
        err.to_string(),
        "extra[1].length: 4 is out of range: use 16 to 256 random characters"
    );
    assert_eq!(
        mint_with_seed(&config, 1).unwrap_err().field(),
        "extra[1].length"
    );
}

#[test]
fn every_mint_is_unique_and_seeds_repeat() {
    let a = mint(&config_with_extras()).unwrap();
    let b = mint(&config_with_extras()).unwrap();
    for (x, y) in a.canaries.iter().zip(&b.canaries) {
        assert_eq!(x.id(), y.id());
        assert_ne!(x.value(), y.value());
        for n in x.needles() {
            assert!(!y.needles().contains(n));
        }
    }
    assert_eq!(seeded(5), seeded(5));
    assert_ne!(seeded(5), seeded(6));
}

/// Every needle: at least 16 characters, at least 12 of them random (two
/// seeds differ in at least 12 positions), part of the value, present
/// wherever the canary is planted, and unique in the set.
#[test]
fn every_needle_is_long_random_and_planted() {
    for seed in 0..40 {
        let set = seeded(seed);
        let other = seeded(seed + 1000);
        let mut all_needles = std::collections::BTreeSet::new();
        for (canary, twin) in set.canaries.iter().zip(&other.canaries) {
            assert!(!canary.needles().is_empty());
            assert_eq!(canary.needles().len(), twin.needles().len());
            for (n, m) in canary.needles().iter().zip(twin.needles()) {
                assert!(n.len() >= MIN_NEEDLE_LEN, "{} {n}", canary.id());
                let differing = n.bytes().zip(m.bytes()).filter(|(a, b)| a != b).count();
                assert!(differing >= 12, "{} {n} {m}", canary.id());
                assert!(canary.value().contains(n.as_str()));
                assert!(all_needles.insert(n.clone()));
                for f in set
                    .files
                    .iter()
                    .filter(|f| f.canary_ids.iter().any(|id| id == canary.id()))
                {
                    assert!(
                        text(f).contains(n.as_str()),
                        "{} not in {}",
                        canary.id(),
                        f.location
                    );
                }
            }
        }
    }
}

#[test]
fn canaries_round_trip_through_serde_and_bad_ones_are_refused() {
    let set = seeded(7);
    let json = serde_json::to_string(&set.canaries).unwrap();
    let back: Vec<Canary> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, set.canaries);
    assert_eq!(
        Scanner::new(&back).scan_str(set.get("db-password").unwrap().value())[0].canary_id,
        "db-password"
    );
    let mut bad = serde_json::to_value(&set.canaries[0]).unwrap();
    bad["needles"] = serde_json::json!(["AKIA"]);
    let err = serde_json::from_value::<Canary>(bad.clone()).unwrap_err();
    assert!(err.to_string().contains("at least 16 bytes"), "{err}");
    bad["needles"] = serde_json::json!([]);
    assert!(serde_json::from_value::<Canary>(bad.clone()).is_err());
    bad["needles"] = serde_json::json!(["0123456789abcdefghij"]);
    assert!(
        serde_json::from_value::<Canary>(bad).is_err(),
        "not part of the value"
    );
}

// ---------------------------------------------------------------- encodings

/// One way to exfiltrate bytes, with what the scanner should call it.
#[derive(Debug, Clone, Copy)]
enum Exfil {
    Raw,
    HexLower,
    HexUpper,
    Base64,
    Base64NoPad,
    Base64Url,
    Base64UrlNoPad,
    Base32,
    Base32Lower,
    DoubleBase64,
    Base64Wrapped,
    HexWrapped,
    UrlEncodedAll,
    UrlEncodedBase64,
    DoubleUrlEncoded,
    JsonBase64Wrapped,
    JsonUnicode,
    UrlEncodedWrappedBase64,
    UrlEncodedJson,
}

const EXFILS: [Exfil; 19] = [
    Exfil::Raw,
    Exfil::HexLower,
    Exfil::HexUpper,
    Exfil::Base64,
    Exfil::Base64NoPad,
    Exfil::Base64Url,
    Exfil::Base64UrlNoPad,
    Exfil::Base32,
    Exfil::Base32Lower,
    Exfil::DoubleBase64,
    Exfil::Base64Wrapped,
    Exfil::HexWrapped,
    Exfil::UrlEncodedAll,
    Exfil::UrlEncodedBase64,
    Exfil::DoubleUrlEncoded,
    Exfil::JsonBase64Wrapped,
    Exfil::JsonUnicode,
    Exfil::UrlEncodedWrappedBase64,
    Exfil::UrlEncodedJson,
];

fn percent_all(data: &[u8]) -> Vec<u8> {
    data.iter()
        .flat_map(|b| format!("%{b:02X}").into_bytes())
        .collect()
}

fn json_unicode(data: &[u8]) -> Vec<u8> {
    data.iter()
        .flat_map(|b| format!("\\u{b:04x}").into_bytes())
        .collect()
}

fn wrap(s: &str, width: usize) -> String {
    s.as_bytes()
        .chunks(width)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Exfil {
    fn apply(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Raw => data.to_vec(),
            Self::HexLower => HEXLOWER.encode(data).into_bytes(),
            Self::HexUpper => HEXUPPER.encode(data).into_bytes(),
            Self::Base64 => BASE64.encode(data).into_bytes(),
            Self::Base64NoPad => BASE64_NOPAD.encode(data).into_bytes(),
            Self::Base64Url => BASE64URL.encode(data).into_bytes(),
            Self::Base64UrlNoPad => BASE64URL_NOPAD.encode(data).into_bytes(),
            Self::Base32 => BASE32.encode(data).into_bytes(),
            Self::Base32Lower => BASE32_NOPAD.encode(data).to_ascii_lowercase().into_bytes(),
            Self::DoubleBase64 => BASE64.encode(BASE64.encode(data).as_bytes()).into_bytes(),
            // `base64` (coreutils) and `xxd -p` wrap at 76 and 60.
            Self::Base64Wrapped => wrap(&BASE64.encode(data), 76).into_bytes(),
            Self::HexWrapped => wrap(&HEXLOWER.encode(data), 60).into_bytes(),
            Self::UrlEncodedAll => percent_all(data),
            Self::UrlEncodedBase64 => percent_all(BASE64.encode(data).as_bytes()),
            Self::DoubleUrlEncoded => percent_all(&percent_all(data)),
            Self::JsonBase64Wrapped => {
                let b64 = wrap(&BASE64.encode(data), 76);
                serde_json::to_vec(&serde_json::json!({ "file": b64 }))
                    .unwrap()
                    .iter()
                    .flat_map(|&b| if b == b'/' { b"\\/".to_vec() } else { vec![b] })
                    .collect()
            }
            Self::JsonUnicode => json_unicode(data),
            // curl --data-urlencode "d=$(base64 file)": %0A between lines.
            Self::UrlEncodedWrappedBase64 => percent_all(wrap(&BASE64.encode(data), 76).as_bytes()),
            Self::UrlEncodedJson => percent_all(&json_unicode(data)),
        }
    }

    /// The encodings the scanner may report (base64url without `-`/`_` in
    /// the needle's part is the same text as base64) and the wrappings (a
    /// base64 line with no `/` needs no JSON unescaping).
    fn expected(self) -> (&'static [Encoding], &'static [Wrapping]) {
        use Encoding as E;
        const PLAIN: &[Wrapping] = &[Wrapping::Plain];
        match self {
            Self::Raw => (&[E::Raw], PLAIN),
            Self::HexLower | Self::HexUpper | Self::HexWrapped => (&[E::Hex], PLAIN),
            Self::Base64 | Self::Base64NoPad | Self::Base64Wrapped => (&[E::Base64], PLAIN),
            Self::Base64Url | Self::Base64UrlNoPad => (&[E::Base64Url, E::Base64], PLAIN),
            Self::Base32 | Self::Base32Lower => (&[E::Base32], PLAIN),
            Self::DoubleBase64 => (&[E::DoubleBase64], PLAIN),
            Self::UrlEncodedAll => (&[E::Raw], &[Wrapping::UrlEncoded]),
            Self::UrlEncodedBase64 => (&[E::Base64], &[Wrapping::UrlEncoded]),
            Self::DoubleUrlEncoded | Self::UrlEncodedJson => (&[E::Raw], &[Wrapping::EscapedTwice]),
            Self::UrlEncodedWrappedBase64 => (&[E::Base64], &[Wrapping::UrlEncoded]),
            Self::JsonBase64Wrapped => (&[E::Base64], &[Wrapping::JsonEscaped, Wrapping::Plain]),
            Self::JsonUnicode => (&[E::Raw], &[Wrapping::JsonEscaped]),
        }
    }
}

fn assert_found(hits: &[Hit], id: &str, exfil: Exfil) {
    let (encodings, wrappings) = exfil.expected();
    assert!(
        hits.iter().any(|h| h.canary_id == id
            && encodings.contains(&h.encoding)
            && wrappings.contains(&h.wrapping)),
        "{id} via {exfil:?} not found; hits: {hits:?}"
    );
}

#[test]
fn every_encoding_is_found_for_every_kind() {
    for seed in [1, 2, 3] {
        let set = seeded(seed);
        let scanner = set.scanner();
        for canary in &set.canaries {
            for data in [source(&set, canary), canary.value().as_bytes().to_vec()] {
                for exfil in EXFILS {
                    let hits = scanner.scan(&exfil.apply(&data));
                    assert_found(&hits, canary.id(), exfil);
                    // Nothing but the canaries of this text.
                    for h in &hits {
                        let needles = set.get(&h.canary_id).unwrap().needles();
                        assert!(
                            needles.iter().any(|n| contains(&data, n.as_bytes())),
                            "{h:?}"
                        );
                    }
                }
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn hits_have_offsets_and_are_deduplicated() {
    let set = seeded(4);
    let scanner = set.scanner();
    let token = set.get("github-token").unwrap().value();
    let body = format!("a={token}&b={token}&c={}", BASE64.encode(token.as_bytes()));
    let hits = scanner.scan_str(&body);
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].offset, 2);
    assert_eq!(hits[0].encoding, Encoding::Raw);
    assert_eq!(hits[1].encoding, Encoding::Base64);
    assert_eq!(hits[1].offset, 2 * (2 + 40 + 1) as u64 + 2);

    // Offsets map back through decoding.
    let body = format!(
        "q=%25{}",
        String::from_utf8(percent_all(token.as_bytes())).unwrap()
    );
    let hits = scanner.scan_str(&body);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].wrapping, Wrapping::UrlEncoded);
    assert_eq!(hits[0].offset, 5);

    let hit = &hits[0];
    assert_eq!(
        hit.to_string(),
        "canary github-token (github-token) as raw, url-encoded, at byte 5"
    );
    assert_eq!(
        serde_json::to_value(hit).unwrap(),
        serde_json::json!({
            "canary_id": "github-token",
            "kind": "github-token",
            "encoding": "raw",
            "wrapping": "url-encoded",
            "offset": 5,
        })
    );
}

/// Extras with long, repetitive or shared prefixes: every automaton prefix
/// hit is checked against the whole pattern, overlapping hits included.
#[test]
fn periodic_and_shared_prefixes_are_found() {
    let extra = |name: &str, env: &str, prefix: &str| ExtraCanary {
        name: name.to_owned(),
        env: Some(env.to_owned()),
        file: None,
        prefix: prefix.to_owned(),
        length: 16,
        template: None,
    };
    let config = CanaryConfig {
        builtin: false,
        extras: vec![
            extra("periodic", "A1", &"a".repeat(40)),
            extra("shared-1", "B1", "sk_live_0000000000000000_"),
            extra("shared-2", "B2", "sk_live_0000000000000000_"),
        ],
    };
    let set = mint_with_seed(&config, 13).unwrap();
    let scanner = set.scanner();
    assert!(scanner.window() < 4096);
    for c in &set.canaries {
        let body = format!("{}{}", "a".repeat(57), c.value());
        let hits = scanner.scan_str(&body);
        assert_eq!(hits.len(), 1, "{}: {hits:?}", c.id());
        assert_eq!(hits[0].canary_id, c.id());
        assert_eq!(hits[0].offset, 57);
        // The prefix alone, or cut short at the end, is no hit.
        let cut = &c.value()[..c.value().len() - 1];
        assert!(scanner.scan_str(&format!("{cut}{cut}")).is_empty());
    }
}

/// The egress gateway holds back 4 KiB of a stream; the longest extra
/// (64-byte prefix, 256 random characters: 640 hex characters) fits.
#[test]
fn the_window_stays_under_4_kib() {
    let config = CanaryConfig {
        builtin: true,
        extras: vec![ExtraCanary {
            name: "longest".to_owned(),
            env: Some("LONGEST".to_owned()),
            file: None,
            prefix: "p".repeat(64),
            length: MAX_EXTRA_LENGTH,
            template: None,
        }],
    };
    let set = mint_with_seed(&config, 1).unwrap();
    let window = set.scanner().window();
    assert!((6 * 640..4096).contains(&window), "{window}");
}

#[test]
fn raw_needle_in_a_url_is_plain_not_url_encoded() {
    let set = seeded(4);
    let password = set.get("db-password").unwrap().value();
    let hits = set.scanner().scan_str(&format!(
        "GET /?x=%20&pw={password} HTTP/1.1\r\nHost: a\r\n"
    ));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].wrapping, Wrapping::Plain);
}

#[test]
fn a_needle_split_over_lines_is_found() {
    let set = seeded(8);
    let secret = set.get("aws-secret").unwrap().value();
    let (a, b) = secret.split_at(17);
    let hits = set.scanner().scan_str(&format!("echo {a}\r\n  {b}"));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].offset, 5);
}

#[test]
fn dns_names_split_anywhere_and_in_any_case() {
    let set = seeded(9);
    let scanner = set.scanner();
    let key_id = set.get("aws-key-id").unwrap().value();
    let hex = HEXLOWER.encode(key_id.as_bytes());
    let name = format!(
        "{}.{}.{}.exfil.example.com.",
        &hex[..7],
        &hex[7..30],
        &hex[30..]
    );
    let hits = scanner.scan_dns_name(&name);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].encoding, Encoding::Hex);
    assert_eq!(hits[0].wrapping, Wrapping::DnsName);
    assert_eq!(hits[0].offset, 0);

    let b32 = BASE32_NOPAD.encode(format!("x{key_id}").as_bytes());
    let name = format!("www.{}.{}.t.example", &b32[..20], &b32[20..]).to_ascii_uppercase();
    let hits = scanner.scan_dns_name(&name);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].encoding, Encoding::Base32);

    let name = format!("{}.example", key_id.to_ascii_lowercase());
    assert_eq!(scanner.scan_dns_name(&name)[0].encoding, Encoding::Raw);
    assert!(scanner.scan_dns_name("www.example.com").is_empty());
}

// ---------------------------------------------------------------- proptest

/// Printable text without `%` and `\`, which would pair up with an escape
/// that follows (real encoders escape them too).
fn filler(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![0x20u8..0x25, 0x26u8..0x5c, 0x5du8..0x7f, Just(b'\n')],
        0..max,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random bytes around the secret text shift its alignment inside the
    /// encoding; random text around the encoding hides it in a larger body.
    #[test]
    fn found_at_random_offsets(
        seed in 0u64..4,
        which in 0usize..9,
        exfil in 0usize..EXFILS.len(),
        inner_prefix in proptest::collection::vec(any::<u8>(), 0..40),
        inner_suffix in proptest::collection::vec(any::<u8>(), 0..40),
        prefix in filler(300),
        suffix in filler(300),
    ) {
        let (set, scanner) = fixture(seed);
        let canary = &set.canaries[which];
        let exfil = EXFILS[exfil];
        let mut data = inner_prefix;
        data.extend_from_slice(canary.value().as_bytes());
        data.extend_from_slice(&inner_suffix);
        let mut body = prefix;
        body.extend_from_slice(&exfil.apply(&data));
        body.extend_from_slice(&suffix);
        assert_found(&scanner.scan(&body), canary.id(), exfil);
    }

    #[test]
    fn dns_split_at_random_points(
        seed in 0u64..4,
        which in 0usize..9,
        encoding in 0usize..4,
        lead in proptest::collection::vec(any::<u8>(), 0..5),
        cuts in proptest::collection::vec(1usize..40, 1..12),
        flips in proptest::collection::vec(any::<bool>(), 64),
    ) {
        let (set, scanner) = fixture(seed);
        let canary = &set.canaries[which];
        // A needle, not the whole value: a DNS name holds at most 255 bytes.
        let needle = canary.needles()[0].as_bytes();
        let mut data = lead;
        data.extend_from_slice(needle);
        let (payload, expected): (String, &[Encoding]) = match encoding {
            0 => (String::from_utf8(needle.to_vec()).unwrap(), &[Encoding::Raw]),
            1 => (HEXLOWER.encode(&data), &[Encoding::Hex]),
            2 => (BASE32_NOPAD.encode(&data).to_ascii_lowercase(), &[Encoding::Base32]),
            _ => (BASE64URL_NOPAD.encode(&data), &[Encoding::Base64Url, Encoding::Base64]),
        };
        let mut labels = Vec::new();
        let mut rest = payload.as_str();
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (label, tail) = rest.split_at((*cut).min(rest.len()));
            labels.push(label);
            rest = tail;
        }
        let mut name: String = labels.join(".");
        name = name
            .chars()
            .zip(flips.iter().cycle())
            .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect();
        name.push_str(".t.attacker.example.");
        let hits = scanner.scan_dns_name(&name);
        prop_assert!(
            hits.iter().any(|h| h.canary_id == canary.id()
                && expected.contains(&h.encoding)
                && h.wrapping == Wrapping::DnsName),
            "{name}: {hits:?}"
        );
    }

    /// Any split of a stream into chunks finds the same canaries, once
    /// each, at stream offsets, with a bounded tail.
    #[test]
    fn stream_finds_values_across_chunks(
        seed in 0u64..4,
        which in 0usize..9,
        url in any::<bool>(),
        prefix in filler(2000),
        cuts in proptest::collection::vec(1usize..300, 1..40),
    ) {
        let (set, scanner) = fixture(seed);
        let canary = &set.canaries[which];
        let value = canary.value().as_bytes();
        let encoded = if url { percent_all(value) } else { value.to_vec() };
        let mut body = prefix.clone();
        body.extend_from_slice(&encoded);
        body.extend_from_slice(b" trailing text\n");
        body.extend_from_slice(&encoded);

        let whole = scanner.scan(&body);
        let mut stream = scanner.stream();
        let mut streamed = Vec::new();
        let mut rest = &body[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
            streamed.extend(stream.push(chunk));
            let (kept, _, window) = stream.buffered();
            prop_assert!(kept <= window);
            rest = tail;
        }
        prop_assert_eq!(stream.position(), body.len() as u64);
        let key = |h: &Hit| (h.canary_id.clone(), h.encoding);
        let mut keys: Vec<_> = streamed.iter().map(key).collect();
        let count = keys.len();
        keys.sort();
        keys.dedup();
        prop_assert_eq!(keys.len(), count, "duplicates: {:?}", streamed);
        // The first needle in the value is the one reported.
        let first = canary
            .needles()
            .iter()
            .map(|n| canary.value().find(n.as_str()).unwrap())
            .min()
            .unwrap();
        let scale = if url { 3 } else { 1 };
        let hit = streamed.iter().find(|h| h.canary_id == canary.id()).unwrap();
        prop_assert_eq!(hit.offset, (prefix.len() + scale * first) as u64);
        prop_assert_eq!(hit.wrapping, if url { Wrapping::UrlEncoded } else { Wrapping::Plain });
        let mut whole_keys: Vec<_> = whole.iter().map(key).collect();
        whole_keys.sort();
        prop_assert_eq!(keys, whole_keys);
    }
}

#[test]
fn stream_memory_is_capped() {
    let set = seeded(10);
    let mut stream = set.scanner().stream();
    let big = vec![b'a'; 1 << 20];
    assert!(stream.push(&big).is_empty());
    let (tail, capacity, window) = stream.buffered();
    assert!(tail <= window);
    assert!(capacity <= window + 64 * 1024);
    assert!(window < 1024, "{window}");
    assert_eq!(window, set.scanner().window());
    let secret = set.get("aws-secret").unwrap().value().as_bytes();
    let (a, b) = secret.split_at(9);
    assert!(stream.push(a).is_empty());
    let hits = stream.push(b);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].offset, 1 << 20);
    assert!(stream.push(secret).is_empty(), "reported once per stream");
}

// ---------------------------------------------------------------- no false positives

/// Pseudo-random benign text: base64 and hex blobs, token-like strings,
/// words, URLs with escapes, JSON with escapes.
fn benign_corpus(rng: &mut Rng, size: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "sandbox",
        "request",
        "token",
        "password",
        "key",
        "secret",
        "AKIA",
        "ghp_",
        "eyJ",
        "BEGIN",
        "OPENSSH",
        "PRIVATE",
        "KEY",
        "aws_access_key_id",
        "=",
        "\n",
        "http://",
        "%2F",
        "\\n",
        "\\/",
        "ssh-ed25519",
        "postgres://",
        "base64",
        "AAAA",
        "0000",
    ];
    let mut out = Vec::with_capacity(size + 1024);
    while out.len() < size {
        match rng.below(8) {
            0 => {
                let len = 64 + rng.below(200);
                let blob = rng.vec(len);
                out.extend(wrap(&BASE64.encode(&blob), 76).bytes());
            }
            1 => {
                let len = 32 + rng.below(64);
                out.extend(HEXLOWER.encode(&rng.vec(len)).bytes());
            }
            2 => {
                out.extend(b"AKIA");
                out.extend(rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16).bytes());
            }
            3 => {
                out.extend(b"ghp_");
                out.extend(rng.string(ALNUM, 36).bytes());
            }
            4 => {
                let len = 16 + rng.below(48);
                out.extend(percent_all(&rng.vec(len)));
            }
            5 => out.extend(BASE64URL_NOPAD.encode(&rng.vec(200)).bytes()),
            6 => out.extend(
                BASE32_NOPAD
                    .encode(&rng.vec(40))
                    .to_ascii_lowercase()
                    .bytes(),
            ),
            _ => {
                for _ in 0..20 {
                    out.extend(rng.pick(WORDS).bytes());
                    out.push(b' ');
                }
            }
        }
        out.push(if rng.below(2) == 0 { b'\n' } else { b' ' });
    }
    out
}

#[test]
fn no_false_positives_on_benign_text() {
    // Four sets' canaries in one scanner: more needles, more chances.
    let sets: Vec<CanarySet> = (100..104).map(seeded).collect();
    let canaries: Vec<Canary> = sets.iter().flat_map(|s| s.canaries.clone()).collect();
    let scanner = Scanner::new(&canaries);
    let mut rng = Rng::from_seed(0xbe9);
    let corpus = benign_corpus(&mut rng, 10 << 20);
    assert_eq!(scanner.scan(&corpus), []);
    assert_eq!(
        scanner.scan(&HEXUPPER.encode(&corpus[..1 << 20]).into_bytes()),
        []
    );

    for _ in 0..20_000 {
        let labels: Vec<String> = (0..1 + rng.below(4))
            .map(|_| {
                let len = 1 + rng.below(63);
                rng.string(b"abcdefghijklmnopqrstuvwxyz0123456789-", len)
            })
            .collect();
        let name = format!("{}.example.com", labels.join("."));
        assert_eq!(scanner.scan_dns_name(&name), [], "{name}");
    }
}

#[test]
fn no_false_positives_on_lookalikes_and_harmless_files() {
    let set = seeded(11);
    let scanner = set.scanner();
    let lookalikes = [
        // AWS documentation examples.
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "postgres://app:password@db.internal:5432/app",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n",
        "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0.",
        "",
    ];
    for text in lookalikes {
        assert_eq!(scanner.scan_str(text), [], "{text}");
        assert_eq!(scanner.scan_str(&BASE64.encode(text.as_bytes())), []);
        assert_eq!(scanner.scan_dns_name(text), []);
    }
    // Files planted for realism hold no secret.
    for f in set.files.iter().filter(|f| f.canary_ids.is_empty()) {
        assert_eq!(scanner.scan(&f.contents), [], "{}", f.location);
    }
    // Another run's canaries are not this run's.
    let other = seeded(12);
    for f in &other.files {
        assert_eq!(scanner.scan(&f.contents), [], "{}", f.location);
    }
}

#[test]
fn the_dfa_built_after_megabytes_finds_what_the_nfa_finds() {
    // Scanning starts on the NFA; past DFA_AFTER bytes the DFA takes over.
    // Both must find a value placed before and after the switch.
    let (set, _) = fixture(2);
    let scanner = set.scanner();
    let secret = set
        .canaries
        .iter()
        .find(|c| c.id() == "aws-secret")
        .unwrap()
        .value()
        .to_owned();
    let b64 = BASE64.encode(secret.as_bytes());
    let mut filler = Vec::new();
    let mut r = Rng::from_seed(9);
    while filler.len() < 1 << 20 {
        filler.push(b"abcdefghijklmnopqrstuvwxyz0123456789 \n"[r.below(38)]);
    }
    let mut found = 0;
    for round in 0..8 {
        let mut chunk = filler.clone();
        if round % 3 == 0 {
            chunk.extend_from_slice(b" key=");
            chunk.extend_from_slice(b64.as_bytes());
        }
        let hits = scanner.scan(&chunk);
        let want = usize::from(round % 3 == 0);
        assert_eq!(hits.len(), want, "round {round}: {hits:?}");
        found += hits.len();
    }
    assert_eq!(found, 3);
}
