//! The sandbox's DNS server: parsing queries and building answers. The
//! decision itself is the gateway's; this module only speaks the protocol
//! (hickory-proto), so that it can be fuzzed on its own.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

/// TTL of the fake addresses (they never change within a sandbox).
pub const TTL: u32 = 60;

/// A query the gateway can decide on: one question of class IN.
#[derive(Debug, Clone)]
pub struct Question {
    message: Message,
    /// The name as asked, lowercase, without the trailing dot.
    pub name: String,
    /// The query type ("A", "AAAA", ...).
    pub qtype: RecordType,
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The name does not exist (denied names).
    NxDomain,
    /// The name exists but has no record of this type (AAAA of an allowed
    /// name: the sandbox reaches names over IPv4 fake addresses only).
    NoData,
    /// One A record.
    A(Ipv4Addr),
    /// The server failed (the fake address pool is exhausted).
    ServFail,
}

/// Why a message could not be decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswerable {
    /// Not even a DNS header: drop it.
    Garbage,
    /// A header, but not a single standard query: answer with this code.
    Reply(Vec<u8>),
}

fn error_reply(id: u16, code: ResponseCode) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_available(true)
        .set_response_code(code);
    m.to_vec().unwrap_or_default()
}

/// Parses a query. Responses, non-QUERY opcodes and anything but exactly
/// one question get FORMERR, NOTIMP or are dropped.
pub fn parse(bytes: &[u8]) -> Result<Question, Unanswerable> {
    if bytes.len() < 12 {
        return Err(Unanswerable::Garbage);
    }
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    if bytes[2] & 0x80 != 0 {
        // A response: never answer it (no reflection loops).
        return Err(Unanswerable::Garbage);
    }
    let message = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => return Err(Unanswerable::Reply(error_reply(id, ResponseCode::FormErr))),
    };
    if message.message_type() != MessageType::Query {
        return Err(Unanswerable::Garbage);
    }
    if message.op_code() != OpCode::Query {
        return Err(Unanswerable::Reply(error_reply(id, ResponseCode::NotImp)));
    }
    let [q] = message.queries() else {
        return Err(Unanswerable::Reply(error_reply(id, ResponseCode::FormErr)));
    };
    let ascii = q.name().to_ascii();
    let name = ascii
        .strip_suffix('.')
        .unwrap_or(&ascii)
        .to_ascii_lowercase();
    let qtype = q.query_type();
    Ok(Question {
        message,
        name,
        qtype,
    })
}

/// Builds the response to `q`.
pub fn respond(q: &Question, answer: Answer) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(q.message.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(q.message.recursion_desired())
        .set_recursion_available(true);
    for query in q.message.queries() {
        m.add_query(query.clone());
    }
    match answer {
        Answer::NxDomain => {
            m.set_response_code(ResponseCode::NXDomain);
        }
        Answer::NoData => {
            m.set_response_code(ResponseCode::NoError);
        }
        Answer::ServFail => {
            m.set_response_code(ResponseCode::ServFail);
        }
        Answer::A(ip) => {
            m.set_response_code(ResponseCode::NoError);
            let name = q.message.queries()[0].name().clone();
            m.add_answer(Record::from_rdata(name, TTL, RData::A(A(ip))));
        }
    }
    m.to_vec()
        .unwrap_or_else(|_| error_reply(q.message.id(), ResponseCode::ServFail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    pub(crate) fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    #[test]
    fn answers_and_nxdomain() {
        let q = parse(&query("PyPI.org.", RecordType::A)).unwrap();
        assert_eq!(q.name, "pypi.org");
        assert_eq!(q.qtype, RecordType::A);
        let r = Message::from_vec(&respond(&q, Answer::A(Ipv4Addr::new(127, 10, 0, 1)))).unwrap();
        assert_eq!(r.id(), 0x1234);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 1);
        let r = Message::from_vec(&respond(&q, Answer::NxDomain)).unwrap();
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        assert!(r.answers().is_empty());
    }

    #[test]
    fn garbage_and_responses_are_not_answered() {
        assert_eq!(parse(b"short").unwrap_err(), Unanswerable::Garbage);
        let mut resp = query("a.b", RecordType::A);
        resp[2] |= 0x80;
        assert_eq!(parse(&resp).unwrap_err(), Unanswerable::Garbage);
        let mut bad = query("a.b", RecordType::A);
        bad.truncate(14);
        assert!(matches!(parse(&bad), Err(Unanswerable::Reply(_))));
    }
}
