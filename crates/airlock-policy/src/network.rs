//! Network policy: host patterns, the name decision (allow, deny, mock) and
//! the address check that stops DNS rebinding to internal services.
//!
//! Everything here is pure: the egress gateway asks, this module answers
//! with a verdict and the rule or reason that decided it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use crate::size::ByteSize;

/// Port of the HTTP proxy inside the sandbox (127.0.0.1).
pub const PROXY_PORT: u16 = 3128;
/// Port of the DNS server inside the sandbox (127.0.0.53).
pub const DNS_PORT: u16 = 53;

/// What happens to a name no rule allows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnDeny {
    /// Refuse it.
    #[default]
    Deny,
    /// Pause the connection and ask a person (an escalation request); a
    /// grant is scoped to that host and port and expires by itself.
    Ask,
}

/// How the sandbox reaches the network.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A network namespace with only loopback: nothing leaves.
    #[default]
    None,
    /// Default deny, with the egress gateway applying `allow`/`deny` rules.
    Allowlist,
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Allowlist => "allowlist",
        })
    }
}

impl FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "allowlist" => Ok(Self::Allowlist),
            other => Err(format!(
                "unknown network mode {other:?}: expected \"none\" or \"allowlist\""
            )),
        }
    }
}

/// Which names a pattern covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostMatch {
    /// Exactly this name (or IP literal).
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix`, not `suffix` itself.
    Suffix(String),
}

/// A host pattern: `name`, `*.suffix`, either with an optional `:port`.
/// Names are compared lowercase without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

impl HostPattern {
    /// Whether the pattern covers `name` (normalized) on `port`. A pattern
    /// without a port covers `default_ports`.
    fn matches(&self, name: &str, port: u16, default_ports: &[u16]) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => default_ports.is_empty() || default_ports.contains(&port),
        };
        port_ok && self.matches_name(name)
    }

    fn matches_name(&self, name: &str) -> bool {
        match &self.host {
            HostMatch::Exact(h) => h == name,
            HostMatch::Suffix(s) => {
                name.len() > s.len() + 1 && name.ends_with(s.as_str()) && {
                    let cut = name.len() - s.len();
                    name.as_bytes()[cut - 1] == b'.'
                }
            }
        }
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostMatch::Exact(h) => f.write_str(h)?,
            HostMatch::Suffix(s) => write!(f, "*.{s}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty host pattern".into());
        }
        if s.contains("://") || s.contains('/') {
            return Err(format!(
                "host pattern {s:?} is a URL: give a host name, `*.suffix`, optionally with `:port`"
            ));
        }
        // [v6]:port, v6 literal, host:port, host
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("host pattern {s:?}: missing ']'"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("host pattern {s:?}: expected ':port' after ']'"))?,
                ),
            };
            (h, port)
        } else if s.matches(':').count() > 1 {
            (s, None)
        } else if let Some((h, p)) = s.rsplit_once(':') {
            (h, Some(p))
        } else {
            (s, None)
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("host pattern {s:?}: port {p:?} is not 1..=65535"))?,
            ),
        };
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            let suffix = normalize_name(suffix).map_err(|e| format!("host pattern {s:?}: {e}"))?;
            if suffix.parse::<IpAddr>().is_ok() {
                return Err(format!("host pattern {s:?}: a wildcard needs a name"));
            }
            if !suffix.contains('.') {
                return Err(format!(
                    "host pattern {s:?}: a wildcard over a top-level domain is too broad"
                ));
            }
            HostMatch::Suffix(suffix)
        } else if host.contains('*') {
            return Err(format!(
                "host pattern {s:?}: '*' is only allowed as a leading `*.`"
            ));
        } else {
            HostMatch::Exact(normalize_name(host).map_err(|e| format!("host pattern {s:?}: {e}"))?)
        };
        Ok(Self { host, port })
    }
}

/// Lowercases a host name and strips one trailing dot, checking its shape:
/// at most 253 bytes, labels of 1 to 63 letters, digits, '-' or '_'. An IP
/// literal is returned in canonical form.
pub fn normalize_name(name: &str) -> Result<String, String> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a host name (1 to 253 bytes)"));
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{name:?} is not a host name (labels of 1 to 63 letters, digits, '-', '_')"
            ));
        }
    }
    Ok(name)
}

/// What a mock answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MockKind {
    /// Fixed responses per path; 404 for any other path.
    Static {
        /// The responses, matched in order.
        routes: Vec<MockResponse>,
    },
    /// Records every request and answers `status` with `body`.
    Sink {
        /// Status of every answer (default 200).
        status: u16,
        /// Body of every answer (default `{"ok":true}`).
        body: String,
    },
}

/// A static mock's response for a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MockResponse {
    /// Exact path (query ignored), or a prefix ending in `*`.
    pub path: String,
    /// Status code, 100..=599.
    pub status: u16,
    /// Headers (names checked).
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: String,
}

impl MockResponse {
    /// Whether this route answers `path` (without query).
    pub fn matches(&self, path: &str) -> bool {
        match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.path,
        }
    }
}

/// A hostname routed to a built-in mock instead of the internet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MockRoute {
    /// The names (and port; default 80) served by the mock.
    pub host: HostPattern,
    /// What it answers.
    #[serde(flatten)]
    pub kind: MockKind,
}

impl MockRoute {
    fn port(&self) -> u16 {
        self.host.port.unwrap_or(80)
    }
}

/// Network access of a sandbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkPolicy {
    /// The mode (default none).
    pub mode: NetworkMode,
    /// Names that may be reached. A pattern without a port covers 80 and 443.
    pub allow: Vec<HostPattern>,
    /// Names that may not be reached; deny wins over allow. A pattern
    /// without a port covers every port.
    pub deny: Vec<HostPattern>,
    /// Address ranges that may be reached although they are private,
    /// loopback, link-local, CGNAT, multicast or metadata.
    #[serde(serialize_with = "serialize_display_list")]
    pub allow_cidr: Vec<IpNet>,
    /// Fixed host-side resolutions (name → address) used instead of the
    /// host's resolver. The address is still checked.
    pub hosts: BTreeMap<String, IpAddr>,
    /// Names served by built-in mocks.
    #[serde(rename = "mock")]
    pub mocks: Vec<MockRoute>,
    /// Cap on bytes sent out by the sandbox; `None` = unlimited.
    #[serde(serialize_with = "crate::wire::serialize_or_unlimited")]
    pub max_bytes_out: Option<ByteSize>,
    /// Cap on bytes received by the sandbox; `None` = unlimited.
    #[serde(serialize_with = "crate::wire::serialize_or_unlimited")]
    pub max_bytes_in: Option<ByteSize>,
    /// Cap on connections open at once (1..=4096).
    pub max_connections: u32,
    /// Cap on new connections per second (1..=100000).
    pub max_connections_per_sec: u32,
    /// What happens to a name no rule allows.
    pub on_deny: OnDeny,
    /// How long a paused connection waits for an approver's answer; no
    /// answer in time means deny.
    #[serde(serialize_with = "crate::duration::serialize_duration")]
    pub ask_timeout: std::time::Duration,
    /// Longest time-box of a grant (an approver's longer ttl is cut).
    #[serde(serialize_with = "crate::duration::serialize_duration")]
    pub max_grant_ttl: std::time::Duration,
}

fn serialize_display_list<T: fmt::Display, S: Serializer>(
    v: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| x.to_string()))
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        Self {
            mode: NetworkMode::None,
            allow: Vec::new(),
            deny: Vec::new(),
            allow_cidr: Vec::new(),
            hosts: BTreeMap::new(),
            mocks: Vec::new(),
            max_bytes_out: Some(ByteSize::gib(1)),
            max_bytes_in: Some(ByteSize::gib(8)),
            max_connections: 64,
            max_connections_per_sec: 100,
            on_deny: OnDeny::Deny,
            ask_timeout: std::time::Duration::from_secs(60),
            max_grant_ttl: std::time::Duration::from_secs(3600),
        }
    }
}

/// Ports a pattern without `:port` covers in `allow`.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// The verdict on a name and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameVerdict {
    /// Allowed by this rule.
    Allow {
        /// The allow rule, as written.
        rule: String,
    },
    /// Denied by an explicit deny rule (no escalation is offered).
    DenyRule {
        /// The deny rule, as written.
        rule: String,
    },
    /// No rule allows it (an escalation may be asked for).
    NoRule,
    /// Served by the mock at this index of `mocks`.
    Mock {
        /// Index into [`NetworkPolicy::mocks`].
        index: usize,
    },
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedAddr {
    /// The address.
    pub addr: IpAddr,
    /// The range it falls in ("loopback", "cloud metadata", ...).
    pub range: &'static str,
}

impl fmt::Display for BlockedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is a {} address (allow it with an allow_cidr rule)",
            self.addr, self.range
        )
    }
}

impl NetworkPolicy {
    /// The verdict on connecting to `name` (normalized) on `port`. Mocks
    /// come first, then deny rules, then allow rules.
    pub fn decide(&self, name: &str, port: u16) -> NameVerdict {
        if let Some(index) = self
            .mocks
            .iter()
            .position(|m| m.host.matches_name(name) && (m.port() == port || port == 443))
        {
            // 443 to a mock name is reported as a mock so the gateway can
            // refuse it with the right reason (no TLS termination).
            return NameVerdict::Mock { index };
        }
        if let Some(rule) = self.deny.iter().find(|d| d.matches(name, port, &[])) {
            return NameVerdict::DenyRule {
                rule: rule.to_string(),
            };
        }
        match self
            .allow
            .iter()
            .find(|a| a.matches(name, port, &DEFAULT_PORTS))
        {
            Some(rule) => NameVerdict::Allow {
                rule: rule.to_string(),
            },
            None => NameVerdict::NoRule,
        }
    }

    /// The verdict on resolving `name` in the sandbox's DNS: a mock name,
    /// or allowed on some port and not denied on every port.
    pub fn decide_dns(&self, name: &str) -> NameVerdict {
        if let Some(index) = self.mocks.iter().position(|m| m.host.matches_name(name)) {
            return NameVerdict::Mock { index };
        }
        if let Some(rule) = self
            .deny
            .iter()
            .find(|d| d.port.is_none() && d.matches_name(name))
        {
            return NameVerdict::DenyRule {
                rule: rule.to_string(),
            };
        }
        match self.allow.iter().find(|a| a.matches_name(name)) {
            Some(rule) => NameVerdict::Allow {
                rule: rule.to_string(),
            },
            None => NameVerdict::NoRule,
        }
    }

    /// Checks a resolved address: refused when in a blocked range that no
    /// `allow_cidr` rule covers.
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), BlockedAddr> {
        if self.allow_cidr.iter().any(|net| net.contains(&addr)) {
            return Ok(());
        }
        match blocked_range(addr) {
            Some(range) => Err(BlockedAddr { addr, range }),
            None => Ok(()),
        }
    }

    /// Ports the gateway captures inside the sandbox: every port an allow
    /// rule or mock names, 80 and 443 for rules without a port.
    pub fn capture_ports(&self) -> BTreeSet<u16> {
        let mut ports = BTreeSet::new();
        for a in &self.allow {
            match a.port {
                Some(p) => {
                    ports.insert(p);
                }
                None => ports.extend(DEFAULT_PORTS),
            }
        }
        for m in &self.mocks {
            ports.insert(m.port());
        }
        ports
    }

    /// The fixed resolution of `name`, if the profile pins one.
    pub fn pinned(&self, name: &str) -> Option<IpAddr> {
        self.hosts.get(name).copied()
    }

    /// Checks that ports do not collide with the gateway's own listeners.
    pub(crate) fn check_ports(&self) -> Result<(), String> {
        for p in self.allow.iter().chain(&self.deny) {
            if let Some(port @ (DNS_PORT | PROXY_PORT)) = p.port {
                return Err(format!(
                    "{p}: port {port} is taken inside the sandbox by the gateway's {}",
                    if port == DNS_PORT {
                        "DNS server"
                    } else {
                        "HTTP proxy"
                    }
                ));
            }
        }
        for m in &self.mocks {
            if let Some(port @ (DNS_PORT | PROXY_PORT | 443)) = m.host.port {
                return Err(format!(
                    "mock {}: port {port} cannot be mocked{}",
                    m.host,
                    if port == 443 {
                        " (mocks speak plain HTTP; HTTPS would need TLS termination)"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(())
    }
}

/// The blocked range `addr` is in, if any.
pub fn blocked_range(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn in_v4(a: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(a) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn blocked_v4(a: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([169, 254, 169, 254], 32, "cloud metadata"),
        ([100, 100, 100, 200], 32, "cloud metadata"),
        ([0, 0, 0, 0], 8, "\"this network\""),
        ([10, 0, 0, 0], 8, "private (RFC 1918)"),
        ([100, 64, 0, 0], 10, "CGNAT"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private (RFC 1918)"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 168, 0, 0], 16, "private (RFC 1918)"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    RANGES
        .iter()
        .find(|(net, bits, _)| in_v4(a, *net, *bits))
        .map(|(_, _, name)| *name)
}

fn blocked_v6(a: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = a.to_ipv4_mapped() {
        return blocked_v4(v4);
    }
    let seg = a.segments();
    if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata")
    } else if a.is_loopback() {
        Some("loopback")
    } else if a.is_unspecified() {
        Some("unspecified")
    } else if seg[0] & 0xfe00 == 0xfc00 {
        Some("unique local (ULA)")
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if seg[0] & 0xff00 == 0xff00 {
        Some("multicast")
    } else if seg[0] == 0x64 && seg[1] == 0xff9b {
        // NAT64 can reach any IPv4 address, including private ones.
        Some("NAT64")
    } else if seg[0] == 0x2002 {
        Some("6to4")
    } else if seg[..6] == [0, 0, 0, 0, 0, 0] {
        Some("IPv4-compatible")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    fn policy(allow: &[&str], deny: &[&str]) -> NetworkPolicy {
        NetworkPolicy {
            mode: NetworkMode::Allowlist,
            allow: allow.iter().map(|s| pat(s)).collect(),
            deny: deny.iter().map(|s| pat(s)).collect(),
            ..NetworkPolicy::default()
        }
    }

    #[test]
    fn patterns_parse_and_print() {
        for s in [
            "pypi.org",
            "*.pythonhosted.org:443",
            "10.0.0.1:8080",
            "[::1]:80",
            "::1",
        ] {
            let p = pat(s);
            assert_eq!(pat(&p.to_string()), p, "{s}");
        }
        assert_eq!(pat("PyPI.Org.").to_string(), "pypi.org");
        for bad in [
            "", "*", "*.com", "a*.b.c", "x:0", "x:99999", "http://x", "a..b", "-_/",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        let p = policy(&["*.example.com"], &[]);
        assert!(matches!(
            p.decide("a.example.com", 443),
            NameVerdict::Allow { .. }
        ));
        assert!(matches!(
            p.decide("a.b.example.com", 80),
            NameVerdict::Allow { .. }
        ));
        assert_eq!(p.decide("example.com", 443), NameVerdict::NoRule);
        assert_eq!(p.decide("badexample.com", 443), NameVerdict::NoRule);
        assert_eq!(p.decide("a.example.com", 22), NameVerdict::NoRule);
    }

    #[test]
    fn deny_wins_and_ports_count() {
        let p = policy(&["*.example.com", "api.test:8080"], &["evil.example.com"]);
        assert!(matches!(
            p.decide("evil.example.com", 443),
            NameVerdict::DenyRule { .. }
        ));
        assert!(matches!(
            p.decide_dns("evil.example.com"),
            NameVerdict::DenyRule { .. }
        ));
        assert!(matches!(
            p.decide("api.test", 8080),
            NameVerdict::Allow { .. }
        ));
        assert_eq!(p.decide("api.test", 80), NameVerdict::NoRule);
        assert!(matches!(
            p.decide_dns("api.test"),
            NameVerdict::Allow { .. }
        ));
        assert_eq!(p.decide_dns("other.test"), NameVerdict::NoRule);
        assert_eq!(p.capture_ports(), BTreeSet::from([80, 443, 8080]));
    }

    #[test]
    fn internal_addresses_are_blocked_unless_allowed() {
        let mut p = policy(&[], &[]);
        for a in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert!(p.check_addr(ip).is_err(), "{a} was not blocked");
        }
        for a in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(p.check_addr(a.parse().unwrap()).is_ok(), "{a} was blocked");
        }
        assert_eq!(
            p.check_addr("169.254.169.254".parse().unwrap())
                .unwrap_err()
                .range,
            "cloud metadata"
        );
        p.allow_cidr = vec!["10.200.0.0/16".parse().unwrap()];
        assert!(p.check_addr("10.200.3.4".parse().unwrap()).is_ok());
        assert!(p.check_addr("10.201.3.4".parse().unwrap()).is_err());
    }
}
