//! Reading the server name from a TLS ClientHello without terminating TLS.

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_plaintext, SNIType, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};

/// Largest prefix the gateway buffers while looking for a ClientHello: one
/// full TLS record.
pub const MAX_HELLO: usize = 5 + (1 << 14) + 2048;

/// What the first bytes of a stream say about TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not enough bytes yet.
    Incomplete,
    /// Not a TLS handshake record.
    NotTls,
    /// A ClientHello without a server name.
    NoSni,
    /// A ClientHello naming this server (lowercase, no trailing dot).
    Sni(String),
}

/// Parses the start of a client's stream.
pub fn client_hello(buf: &[u8]) -> Hello {
    if buf.is_empty() {
        return Hello::Incomplete;
    }
    if buf[0] != 0x16 {
        return Hello::NotTls;
    }
    let record = match parse_tls_plaintext(buf) {
        Ok((_, r)) => r,
        Err(tls_parser::Err::Incomplete(_)) if buf.len() < MAX_HELLO => return Hello::Incomplete,
        Err(_) => return Hello::NotTls,
    };
    for msg in &record.msg {
        if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = msg {
            let Some(ext) = ch.ext else {
                return Hello::NoSni;
            };
            let Ok((_, exts)) = parse_tls_client_hello_extensions(ext) else {
                return Hello::NotTls;
            };
            for e in exts {
                if let TlsExtension::SNI(names) = e {
                    for (kind, name) in names {
                        if kind == SNIType::HostName {
                            return match std::str::from_utf8(name) {
                                Ok(n) => Hello::Sni(
                                    n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase(),
                                ),
                                Err(_) => Hello::NotTls,
                            };
                        }
                    }
                }
            }
            return Hello::NoSni;
        }
    }
    Hello::NotTls
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fuzzing::hello_with_sni;

    #[test]
    fn reads_sni_and_waits_for_more() {
        let h = hello_with_sni("Example.COM");
        assert_eq!(client_hello(&h), Hello::Sni("example.com".into()));
        assert_eq!(client_hello(&h[..20]), Hello::Incomplete);
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(
            client_hello(&[0x16, 0x03, 0x01, 0x00, 0x01, 0x02]),
            Hello::NotTls
        );
    }
}
