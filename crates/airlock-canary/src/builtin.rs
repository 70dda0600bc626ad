//! The built-in canaries, each shaped like the real credential and planted
//! where real tools keep it.

use data_encoding::{BASE64, BASE64URL_NOPAD};

use crate::canary::{Canary, CanaryKind, CanarySet};
use crate::config::Location;
use crate::rng::{Rng, ALNUM, BASE32_UPPER, BASE64_CHARS};
use crate::ssh;

/// Ids of the built-in canaries; extras may not take them.
pub(crate) const IDS: &[&str] = &[
    AWS_KEY_ID,
    AWS_SECRET,
    SSH_KEY,
    GITHUB_TOKEN,
    DB_PASSWORD,
    KUBE_TOKEN,
];

const AWS_KEY_ID: &str = "aws-key-id";
const AWS_SECRET: &str = "aws-secret";
const SSH_KEY: &str = "ssh-key";
const GITHUB_TOKEN: &str = "github-token";
const DB_PASSWORD: &str = "db-password";
const KUBE_TOKEN: &str = "kube-token";

/// Environment variables the built-ins set, with the canary that owns each.
pub(crate) const ENV_VARS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", AWS_KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
    ("AWS_DEFAULT_REGION", AWS_KEY_ID),
];

/// Files the built-ins plant, in planting order, with the canary that owns
/// each (for clash checks against extras).
pub(crate) fn files() -> [(Location, &'static str); 7] {
    [
        (Location::home(".aws/credentials"), AWS_KEY_ID),
        (Location::home(".aws/config"), AWS_KEY_ID),
        (Location::home(".ssh/id_ed25519"), SSH_KEY),
        (Location::home(".ssh/id_ed25519.pub"), SSH_KEY),
        (Location::home(".config/gh/hosts.yml"), GITHUB_TOKEN),
        (Location::workspace(".env"), DB_PASSWORD),
        (Location::home(".kube/config"), KUBE_TOKEN),
    ]
}

const USERS: &[&str] = &[
    "alex", "jordan", "sam", "priya", "wei", "maria", "tomas", "deploy",
];
const HOSTS: &[&str] = &["devbox", "build-01", "laptop", "ws-042", "ci-runner"];
const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"];

/// Mints and plants every built-in canary.
pub(crate) fn mint_all(rng: &mut Rng, set: &mut CanarySet) {
    let user = rng.pick(USERS);
    let host = rng.pick(HOSTS);
    aws(rng, set);
    ssh_key(rng, set, &format!("{user}@{host}"));
    github(rng, set, user);
    database(rng, set);
    kube(rng, set);
}

/// `AKIA` + 16 of `A-Z2-7`, and a 40-character secret of `A-Za-z0-9/+`
/// with at least one `/` or `+`.
fn aws(rng: &mut Rng, set: &mut CanarySet) {
    let key_id = format!("AKIA{}", rng.string(BASE32_UPPER, 16));
    // At least one '/' or '+' (about 72% of real ones have one), so that
    // URL-quoting the secret always changes it.
    let secret = loop {
        let s = rng.string(BASE64_CHARS, 40);
        if s.contains(['/', '+']) {
            break s;
        }
    };
    let region = rng.pick(REGIONS);
    set.add(Canary::new(
        AWS_KEY_ID,
        CanaryKind::AwsAccessKeyId,
        "AWS access key id",
        key_id.as_str(),
        vec![key_id.clone()],
    ));
    set.add(Canary::new(
        AWS_SECRET,
        CanaryKind::AwsSecretAccessKey,
        "AWS secret access key",
        secret.as_str(),
        vec![secret.clone()],
    ));
    set.plant(
        Location::home(".aws/credentials"),
        format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
        0o600,
        &[AWS_KEY_ID, AWS_SECRET],
    );
    set.plant(
        Location::home(".aws/config"),
        format!("[default]\nregion = {region}\noutput = json\n"),
        0o600,
        &[],
    );
    set.set_env("AWS_ACCESS_KEY_ID", &key_id);
    set.set_env("AWS_SECRET_ACCESS_KEY", &secret);
    set.set_env("AWS_DEFAULT_REGION", region);
}

/// An OpenSSH ed25519 key pair; the needles are chunks of the private
/// part of the base64 body (see [`ssh`]).
fn ssh_key(rng: &mut Rng, set: &mut CanarySet, comment: &str) {
    let key = ssh::ed25519(rng, comment);
    set.add(Canary::new(
        SSH_KEY,
        CanaryKind::SshPrivateKey,
        "SSH private key (ed25519)",
        key.private_pem.as_str(),
        key.needles,
    ));
    set.plant(
        Location::home(".ssh/id_ed25519"),
        key.private_pem,
        0o600,
        &[SSH_KEY],
    );
    set.plant(
        Location::home(".ssh/id_ed25519.pub"),
        key.public_line,
        0o644,
        &[],
    );
}

/// `ghp_` + 30 random base62 + the 6-character base62 CRC32 of those 30,
/// as GitHub's current token format has it.
fn github(rng: &mut Rng, set: &mut CanarySet, user: &str) {
    let token = github_token(rng);
    set.add(Canary::new(
        GITHUB_TOKEN,
        CanaryKind::GithubToken,
        "GitHub personal access token",
        token.as_str(),
        vec![token.clone()],
    ));
    set.plant(
        Location::home(".config/gh/hosts.yml"),
        format!(
            "github.com:\n    oauth_token: {token}\n    user: {user}\n    git_protocol: https\n"
        ),
        0o600,
        &[GITHUB_TOKEN],
    );
}

/// The base62 alphabet of GitHub tokens, digits first.
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub(crate) fn github_token(rng: &mut Rng) -> String {
    let entropy = rng.string(BASE62, 30);
    let mut check = crc32(entropy.as_bytes());
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(check % 62) as usize];
        check /= 62;
    }
    format!("ghp_{entropy}{}", String::from_utf8_lossy(&digits))
}

/// CRC-32 (IEEE 802.3, reflected, as zlib).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 24-character password in `DATABASE_URL`, among harmless settings.
fn database(rng: &mut Rng, set: &mut CanarySet) {
    let password = rng.string(ALNUM, 24);
    set.add(Canary::new(
        DB_PASSWORD,
        CanaryKind::DatabasePassword,
        "database password (DATABASE_URL in .env)",
        password.as_str(),
        vec![password.clone()],
    ));
    set.plant(
        Location::workspace(".env"),
        format!(
            "# local development settings\n\
             APP_ENV=development\n\
             LOG_LEVEL=info\n\
             DATABASE_URL=postgres://app:{password}@db.internal:5432/app\n\
             REDIS_URL=redis://localhost:6379/0\n"
        ),
        0o600,
        &[DB_PASSWORD],
    );
}

/// A legacy (secret-based, non-expiring) service account token, the kind
/// found in hand-made kubeconfigs: an RS256 JWT whose 256-byte signature is
/// random. The needles are three 32-character chunks of the signature.
fn kube(rng: &mut Rng, set: &mut CanarySet) {
    let token = kube_token(rng);
    let signature = token.rsplit('.').next().unwrap_or_default();
    let needles = [0, signature.len() / 2 - 16, signature.len() - 32]
        .iter()
        .map(|&at| signature[at..at + 32].to_owned())
        .collect();
    set.add(Canary::new(
        KUBE_TOKEN,
        CanaryKind::KubernetesToken,
        "Kubernetes service account token",
        token.as_str(),
        needles,
    ));
    let ca = fake_ca_pem(rng);
    set.plant(
        Location::home(".kube/config"),
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - cluster:\n    \
             certificate-authority-data: {ca}\n    \
             server: https://api.prod-cluster.internal:6443\n  \
             name: prod-cluster\n\
             contexts:\n\
             - context:\n    \
             cluster: prod-cluster\n    \
             namespace: default\n    \
             user: deployer\n  \
             name: deployer@prod-cluster\n\
             current-context: deployer@prod-cluster\n\
             preferences: {{}}\n\
             users:\n\
             - name: deployer\n  \
             user:\n    \
             token: {token}\n",
            ca = BASE64.encode(ca.as_bytes()),
        ),
        0o600,
        &[KUBE_TOKEN],
    );
}

pub(crate) fn kube_token(rng: &mut Rng) -> String {
    let kid = BASE64URL_NOPAD.encode(&rng.bytes::<32>());
    let header = format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#);
    let suffix = rng.string(b"abcdefghijklmnopqrstuvwxyz0123456789", 5);
    let uid = uuid_v4(rng);
    let payload = format!(
        concat!(
            r#"{{"iss":"kubernetes/serviceaccount","#,
            r#""kubernetes.io/serviceaccount/namespace":"default","#,
            r#""kubernetes.io/serviceaccount/secret.name":"deployer-token-{suffix}","#,
            r#""kubernetes.io/serviceaccount/service-account.name":"deployer","#,
            r#""kubernetes.io/serviceaccount/service-account.uid":"{uid}","#,
            r#""sub":"system:serviceaccount:default:deployer"}}"#
        ),
        suffix = suffix,
        uid = uid,
    );
    let signature = rng.vec(256);
    format!(
        "{}.{}.{}",
        BASE64URL_NOPAD.encode(header.as_bytes()),
        BASE64URL_NOPAD.encode(payload.as_bytes()),
        BASE64URL_NOPAD.encode(&signature)
    )
}

fn uuid_v4(rng: &mut Rng) -> String {
    let mut b = rng.bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = data_encoding::HEXLOWER.encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A PEM "certificate" whose DER is a SEQUENCE header and random bytes:
/// it looks right in a kubeconfig and is not meant to parse.
fn fake_ca_pem(rng: &mut Rng) -> String {
    let len = 0x2f0 + rng.below(0x40);
    let mut der = vec![0x30, 0x82, (len >> 8) as u8, len as u8, 0x30, 0x82];
    der.extend(rng.vec(len + 4 - der.len()));
    let body = BASE64.encode(&der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn github_tokens_carry_their_checksum() {
        let mut rng = Rng::from_seed(3);
        for _ in 0..50 {
            let t = github_token(&mut rng);
            assert_eq!(t.len(), 40);
            let (entropy, check) = t[4..].split_at(30);
            let decoded = check.bytes().fold(0u64, |acc, c| {
                acc * 62 + BASE62.iter().position(|&d| d == c).unwrap() as u64
            });
            assert_eq!(decoded, u64::from(crc32(entropy.as_bytes())));
        }
    }
}
