//! Canary inspection: every place a sandbox can put bytes on the way out
//! (DNS names, CONNECT names, TLS SNI, the request line, headers and body
//! of plain HTTP, the client side of a plain captured stream) is scanned
//! for the run's canary values, raw or encoded (see `airlock-canary`).
//!
//! Streams are scanned with a hold-back: the last [`HOLD_BACK`] bytes of
//! what arrived are released only with the next read (or at the end), so a
//! value split across reads is found before its first byte is forwarded.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use airlock_canary::{Hit, Scanner};
use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, ReadBuf};

use crate::flow::{now_ms, Flow, FlowProto, GatewayEvent};
use crate::gateway::Gateway;

/// Bytes held back at the end of a stream until more arrive: longer than
/// any encoded canary value.
pub(crate) const HOLD_BACK: usize = 4096;

/// Where in a flow a canary value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// A name asked of the sandbox's DNS server.
    DnsName,
    /// A CONNECT target or an absolute-form request's host.
    TargetName,
    /// The TLS SNI.
    Sni,
    /// The HTTP request line (method, URL).
    RequestLine,
    /// An HTTP header.
    Headers,
    /// An HTTP request body.
    Body,
    /// The bytes of a plain (non-TLS) captured connection.
    Stream,
}

/// A canary value seen leaving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryFlow {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The flow's sequence number (as in its [`crate::FlowRecord`]).
    pub seq: u64,
    /// The canary's id.
    pub canary: String,
    /// How the value was encoded (raw, base64, hex, url, dns labels...).
    pub encoding: String,
    /// Where it was.
    pub place: Place,
    /// How the flow went out.
    pub proto: FlowProto,
    /// The destination name, when known.
    pub name: Option<String>,
    /// The destination port, when known.
    pub port: Option<u16>,
    /// Whether the flow was refused (or cut) for it.
    pub blocked: bool,
}

/// Which flow a hit belongs to, and where in it.
struct Origin<'a> {
    seq: u64,
    proto: FlowProto,
    name: Option<&'a str>,
    port: Option<u16>,
    place: Place,
}

/// The run's canaries as the gateway sees them.
#[derive(Debug)]
pub(crate) struct Canaries {
    pub(crate) scanner: Scanner,
    pub(crate) block: bool,
}

fn encoding_name(h: &Hit) -> String {
    hit_encoding(h)
}

/// How a hit was encoded, e.g. "base64" or "hex+url-encoded".
pub fn hit_encoding(h: &Hit) -> String {
    match h.wrapping {
        airlock_canary::Wrapping::Plain => h.encoding.as_str().to_owned(),
        w => format!("{}+{}", h.encoding.as_str(), w.as_str()),
    }
}

impl Gateway {
    fn report_hits(&self, hits: &[Hit], at: &Origin<'_>, blocked: bool) {
        for h in hits {
            let _ = self.events.send(GatewayEvent::Canary(CanaryFlow {
                time_ms: now_ms(),
                seq: at.seq,
                canary: h.canary_id.clone(),
                encoding: encoding_name(h),
                place: at.place,
                proto: at.proto,
                name: at.name.map(str::to_owned),
                port: at.port,
                blocked,
            }));
        }
    }

    fn settle(&self, flow: &mut Flow, hits: Vec<Hit>, place: Place) -> bool {
        let Some(c) = &self.canaries else {
            return false;
        };
        if hits.is_empty() {
            return false;
        }
        let r = &flow.record;
        let at = Origin {
            seq: r.seq,
            proto: r.proto,
            name: r.name.as_deref(),
            port: r.port,
            place,
        };
        self.report_hits(&hits, &at, c.block);
        if c.block {
            let h = &hits[0];
            flow.decide(
                crate::Verdict::Deny,
                format!(
                    "canary {} ({}) in the {}: exfiltration blocked",
                    h.canary_id,
                    encoding_name(h),
                    place_name(place)
                ),
            );
        }
        c.block
    }

    /// Scans bytes of a flow; records every hit. `true`: refuse the flow.
    pub(crate) fn inspect(&self, flow: &mut Flow, place: Place, bytes: &[u8]) -> bool {
        let Some(c) = &self.canaries else {
            return false;
        };
        let hits = c.scanner.scan(bytes);
        self.settle(flow, hits, place)
    }

    /// Scans a name (case-insensitive, across labels). `true`: refuse.
    pub(crate) fn inspect_name(&self, flow: &mut Flow, place: Place, name: &str) -> bool {
        let Some(c) = &self.canaries else {
            return false;
        };
        let hits = c.scanner.scan_dns_name(name);
        self.settle(flow, hits, place)
    }

    /// A stream scanner for the bytes of `flow`, when there are canaries.
    pub(crate) fn stream_guard(self: &Arc<Self>, flow: &Flow, place: Place) -> Option<Guard> {
        let r = &flow.record;
        self.guard_for(
            r.seq,
            r.proto,
            r.name.clone(),
            r.port,
            place,
            Arc::default(),
        )
    }

    /// A stream scanner for a flow described by its parts, sharing
    /// `tripped` (when there are canaries).
    pub(crate) fn guard_for(
        self: &Arc<Self>,
        seq: u64,
        proto: FlowProto,
        name: Option<String>,
        port: Option<u16>,
        place: Place,
        tripped: Arc<Mutex<Option<String>>>,
    ) -> Option<Guard> {
        self.canaries.as_ref()?;
        Some(Guard {
            gw: Arc::clone(self),
            seq,
            proto,
            name,
            port,
            place,
            pending: Vec::new(),
            hold_all: false,
            window: Vec::new(),
            tripped,
        })
    }
}

pub(crate) fn place_name(p: Place) -> &'static str {
    match p {
        Place::DnsName => "DNS name",
        Place::TargetName => "destination name",
        Place::Sni => "TLS SNI",
        Place::RequestLine => "request line",
        Place::Headers => "request headers",
        Place::Body => "request body",
        Place::Stream => "connection's data",
    }
}

/// Scans a stream with a hold-back; once a blocking hit is seen, the
/// stream fails and `tripped` carries the refusal reason.
#[derive(Debug)]
pub(crate) struct Guard {
    gw: Arc<Gateway>,
    seq: u64,
    proto: FlowProto,
    name: Option<String>,
    port: Option<u16>,
    place: Place,
    /// Scanned bytes not yet released.
    pending: Vec<u8>,
    /// Keep every scanned byte (a plain request being read ahead whole,
    /// see [`GuardedRead`]) instead of only the last [`HOLD_BACK`].
    pub(crate) hold_all: bool,
    /// The last released bytes, kept so a value split across reads is
    /// still seen whole.
    window: Vec<u8>,
    pub(crate) tripped: Arc<Mutex<Option<String>>>,
}

impl Guard {
    /// Takes new bytes; returns what may be released now, or `Err` with the
    /// reason when the flow must be cut. `eof` releases everything.
    pub(crate) fn feed(&mut self, data: &[u8], eof: bool) -> Result<Vec<u8>, String> {
        self.pending.extend_from_slice(data);
        let Some(c) = &self.gw.canaries else {
            return Ok(std::mem::take(&mut self.pending));
        };
        let mut scan = Vec::with_capacity(self.window.len() + self.pending.len());
        scan.extend_from_slice(&self.window);
        scan.extend_from_slice(&self.pending);
        let hits = c.scanner.scan(&scan);
        if !hits.is_empty() {
            let already = self.tripped.lock().map(|t| t.is_some()).unwrap_or(false);
            if !already {
                let at = Origin {
                    seq: self.seq,
                    proto: self.proto,
                    name: self.name.as_deref(),
                    port: self.port,
                    place: self.place,
                };
                self.gw.report_hits(&hits, &at, c.block);
            }
            if c.block {
                let h = &hits[0];
                let reason = format!(
                    "canary {} ({}) in the {}: exfiltration blocked, connection cut",
                    h.canary_id,
                    encoding_name(h),
                    place_name(self.place)
                );
                if let Ok(mut t) = self.tripped.lock() {
                    t.get_or_insert(reason.clone());
                }
                return Err(reason);
            }
            if let Ok(mut t) = self.tripped.lock() {
                t.get_or_insert(String::new());
            }
        }
        let keep = if eof {
            0
        } else if self.hold_all && self.pending.len() <= READ_AHEAD {
            self.pending.len()
        } else {
            self.pending.len().min(HOLD_BACK)
        };
        let release = self.pending.len() - keep;
        let out: Vec<u8> = self.pending.drain(..release).collect();
        self.remember(&out);
        Ok(out)
    }

    fn remember(&mut self, released: &[u8]) {
        self.window.extend_from_slice(released);
        if self.window.len() > HOLD_BACK {
            let cut = self.window.len() - HOLD_BACK;
            self.window.drain(..cut);
        }
    }

    /// Releases every scanned byte (the client paused). A value split
    /// across a pause is still found when its rest arrives, and the flow is
    /// cut then; what left before the pause has left.
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        let out = std::mem::take(&mut self.pending);
        self.remember(&out);
        out
    }
}

/// A plain HTTP request on a captured stream is read ahead whole, up to
/// this many bytes, before any of it is released (as the proxy does).
pub(crate) const READ_AHEAD: usize = 64 * 1024;

/// How long a captured request may take to arrive whole before what came
/// is released (a client streaming its body and waiting for an answer).
pub(crate) const READ_AHEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An `AsyncRead` that passes bytes through a [`Guard`].
///
/// When the client pauses (it may be waiting for an answer), what was
/// scanned is released, except while the unreleased bytes are the start
/// of a plain HTTP/1 request that is not complete yet (its head, or the
/// body its Content-Length or chunked encoding announces) and fits in
/// [`READ_AHEAD`]: that is held for up to [`READ_AHEAD_WAIT`], so a
/// request carrying a canary is refused before its head leaves. A client
/// that sent `Expect: 100-continue` is waiting for the upstream and is not
/// held. Anything that is not HTTP is released at each pause.
#[derive(Debug)]
pub(crate) struct GuardedRead<R> {
    pub(crate) inner: R,
    pub(crate) guard: Guard,
    ready: Vec<u8>,
    done: bool,
    /// When the request being held must be released anyway.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The unreleased bytes start a request (the stream's start, or right
    /// after a whole request was released).
    at_boundary: bool,
}

impl<R> GuardedRead<R> {
    pub(crate) fn new(inner: R, mut guard: Guard) -> Self {
        guard.hold_all = true;
        Self {
            inner,
            guard,
            ready: Vec::new(),
            done: false,
            deadline: None,
            at_boundary: true,
        }
    }
}

/// What the unreleased bytes at a request boundary are.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// An HTTP/1 request still arriving (a partial head, or less body
    /// than its Content-Length or chunked encoding announces) that fits in
    /// [`READ_AHEAD`]: held.
    Incomplete,
    /// Exactly one whole request, nothing after it: what follows starts
    /// the next one.
    Whole,
    /// Anything else (not HTTP, too long, a client waiting for `100
    /// Continue`, pipelined requests): released.
    Other,
}

fn request_state(buf: &[u8]) -> Request {
    if buf.is_empty() || buf.len() > READ_AHEAD {
        return Request::Other;
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Request::Incomplete,
        Ok(httparse::Status::Complete(n)) => n,
        Err(_) => return Request::Other,
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if header("expect").is_some_and(|v| v == "100-continue") {
        return Request::Other;
    }
    let end = if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        // Ends with the last chunk and the empty trailer.
        match buf[head..].windows(5).position(|w| w == b"0\r\n\r\n") {
            Some(i) => head + i + 5,
            None => return Request::Incomplete,
        }
    } else {
        match header("content-length").map(|v| v.parse::<usize>()) {
            Some(Ok(len)) if head.saturating_add(len) > READ_AHEAD => return Request::Other,
            Some(Ok(len)) => head + len,
            Some(Err(_)) => return Request::Other,
            None => head,
        }
    };
    match buf.len().cmp(&end) {
        std::cmp::Ordering::Less => Request::Incomplete,
        std::cmp::Ordering::Equal => Request::Whole,
        std::cmp::Ordering::Greater => Request::Other,
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for GuardedRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.ready.is_empty() {
                let n = self.ready.len().min(buf.remaining());
                buf.put_slice(&self.ready[..n]);
                self.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    // The client paused. An HTTP request still arriving is
                    // held (until its deadline); otherwise what was scanned
                    // leaves now, and its tail stays in the scan window for
                    // the next bytes.
                    let this = &mut *self;
                    let state = if this.at_boundary {
                        request_state(&this.guard.pending)
                    } else {
                        Request::Other
                    };
                    if state == Request::Incomplete {
                        let deadline = this
                            .deadline
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(READ_AHEAD_WAIT)));
                        if deadline.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    this.deadline = None;
                    if !this.guard.pending.is_empty() {
                        this.at_boundary = state == Request::Whole;
                    }
                    let out = this.guard.flush();
                    if out.is_empty() {
                        return Poll::Pending;
                    }
                    this.ready = out;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let data = rb.filled().to_vec();
                    let eof = data.is_empty();
                    match self.guard.feed(&data, eof) {
                        Ok(out) => {
                            if !out.is_empty() {
                                // Past READ_AHEAD: the request streams.
                                self.at_boundary = false;
                            }
                            self.ready = out
                        }
                        Err(reason) => {
                            return Poll::Ready(Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionAborted,
                                reason,
                            )))
                        }
                    }
                    self.done = eof;
                }
            }
        }
    }
}

impl<R: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for GuardedRead<R> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An HTTP request body passed through a [`Guard`]: a blocking hit ends
/// the body with an error, so the request is never completed upstream.
#[derive(Debug)]
pub(crate) struct GuardedBody<B> {
    inner: B,
    guard: Option<Guard>,
    done: bool,
    /// Frames read ahead by [`GuardedBody::prefill`], released first.
    ready: std::collections::VecDeque<Frame<Bytes>>,
    /// The body's length was known up front (Content-Length). A body of
    /// unknown length stays so, even once read ahead, so it is forwarded
    /// chunked as the client sent it.
    sized: bool,
}

impl<B: Body> GuardedBody<B> {
    pub(crate) fn new(inner: B, guard: Option<Guard>) -> Self {
        let sized = inner.size_hint().exact().is_some();
        Self {
            inner,
            guard,
            done: false,
            ready: std::collections::VecDeque::new(),
            sized,
        }
    }
}

impl<B> GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// Reads the body ahead, through the guard, until `limit` bytes were
    /// read, the body ended or `wait` passed. A request whose body fits is
    /// thus scanned whole before its head is sent anywhere: a canary in it
    /// is refused without the upstream ever seeing the request. `Err` is
    /// the guard's refusal or the client's error.
    pub(crate) async fn prefill(
        &mut self,
        limit: usize,
        wait: std::time::Duration,
    ) -> Result<(), BodyError> {
        if self.guard.is_none() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut read = 0usize;
        while read < limit && !self.done {
            let step = std::future::poll_fn(|cx| self.poll_inner(cx));
            match tokio::time::timeout_at(deadline, step).await {
                Err(_) => break,
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok((frame, n)))) => {
                    read += n;
                    if let Some(f) = frame {
                        self.ready.push_back(f);
                    }
                }
            }
        }
        Ok(())
    }

    /// One step of the inner body through the guard: `Some(Ok((frame,
    /// bytes read)))`, where the frame is `None` when the guard held all
    /// of it back; `None` at the end.
    #[allow(clippy::type_complexity)]
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(Option<Frame<Bytes>>, usize), BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError(e.to_string())))),
            Poll::Ready(Some(Ok(frame))) => {
                let Some(guard) = self.guard.as_mut() else {
                    return Poll::Ready(Some(Ok((Some(frame), 0))));
                };
                match frame.into_data() {
                    Ok(data) => match guard.feed(&data, false) {
                        Ok(out) if out.is_empty() => Poll::Ready(Some(Ok((None, data.len())))),
                        Ok(out) => {
                            Poll::Ready(Some(Ok((Some(Frame::data(Bytes::from(out))), data.len()))))
                        }
                        Err(reason) => Poll::Ready(Some(Err(BodyError(reason)))),
                    },
                    Err(frame) => Poll::Ready(Some(Ok((Some(frame), 0)))),
                }
            }
            Poll::Ready(None) => {
                self.done = true;
                let Some(guard) = self.guard.as_mut() else {
                    return Poll::Ready(None);
                };
                match guard.feed(&[], true) {
                    Ok(out) if out.is_empty() => Poll::Ready(None),
                    Ok(out) => Poll::Ready(Some(Ok((Some(Frame::data(Bytes::from(out))), 0)))),
                    Err(reason) => Poll::Ready(Some(Err(BodyError(reason)))),
                }
            }
        }
    }
}

/// The error of a guarded body.
#[derive(Debug)]
pub(crate) struct BodyError(pub(crate) String);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyError {}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(f) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        loop {
            match this.poll_inner(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok((None, _)))) => continue,
                Poll::Ready(Some(Ok((Some(f), _)))) => return Poll::Ready(Some(Ok(f))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        // Every byte is released in the end: what the inner body has left,
        // plus what was read ahead or is held back.
        let ahead: usize = self
            .ready
            .iter()
            .map(|f| f.data_ref().map_or(0, Bytes::len))
            .sum::<usize>()
            + self.guard.as_ref().map_or(0, |g| g.pending.len());
        let ahead = ahead as u64;
        let inner = self.inner.size_hint();
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(inner.lower() + ahead);
        if let (true, Some(upper)) = (self.sized, inner.upper()) {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::{request_state, Request, READ_AHEAD};

    #[test]
    fn requests_are_held_until_whole() {
        let head = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(request_state(b"POS"), Request::Incomplete);
        assert_eq!(request_state(&head[..20]), Request::Incomplete);
        assert_eq!(request_state(head), Request::Incomplete);
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"abc");
        assert_eq!(request_state(&whole), Request::Incomplete);
        whole.extend_from_slice(b"de");
        assert_eq!(request_state(&whole), Request::Whole);
        whole.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(request_state(&whole), Request::Other, "pipelined");
        assert_eq!(
            request_state(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Request::Whole
        );
    }

    #[test]
    fn chunked_bodies_end_at_the_last_chunk() {
        let head = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut b = head.clone();
        b.extend_from_slice(b"2\r\nab\r\n");
        assert_eq!(request_state(&b), Request::Incomplete);
        b.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(request_state(&b), Request::Whole);
    }

    #[test]
    fn what_is_not_held() {
        // Not HTTP, a client waiting for 100 Continue, a body past the
        // read-ahead, a bad length.
        assert_eq!(request_state(b"\x16\x03\x01\x02\x00"), Request::Other);
        assert_eq!(request_state(b"*1\r\n$4\r\nPING\r\n"), Request::Other);
        assert_eq!(
            request_state(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n"),
            Request::Other
        );
        let big = format!("POST / HTTP/1.1\r\nContent-Length: {READ_AHEAD}\r\n\r\n");
        assert_eq!(request_state(big.as_bytes()), Request::Other);
        assert_eq!(
            request_state(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Request::Other
        );
        assert_eq!(request_state(b""), Request::Other);
    }
}
