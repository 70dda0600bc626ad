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
pub(crate) mod tests {
    use super::*;

    /// A minimal TLS 1.2 ClientHello with an SNI extension.
    pub(crate) fn hello_with_sni(name: &str) -> Vec<u8> {
        let n = name.as_bytes();
        let mut sni = Vec::new();
        let list_len = 3 + n.len();
        sni.extend_from_slice(&[0x00, 0x00]); // type server_name
        sni.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        sni.extend_from_slice(&(list_len as u16).to_be_bytes());
        sni.push(0); // host_name
        sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
        sni.extend_from_slice(n);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        body.extend_from_slice(&sni);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

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
