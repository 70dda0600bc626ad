//! The HTTP proxy inside the sandbox (127.0.0.1:3128): absolute-form HTTP
//! requests, each decided on its own, and CONNECT tunnels, whose TLS SNI
//! must match the CONNECT name on port 443. A refusal is a 403 whose body
//! says why.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::flow::{Flow, FlowProto};
use crate::gateway::{refuse_tls_mock, Authz, Gateway};
use crate::inspect::{GuardedBody, Place};

/// The body type of every proxy response.
pub(crate) type BoxedBody = BoxBody<Bytes, hyper::Error>;

/// Header carrying the gateway's reason on a refusal.
pub const REASON_HEADER: &str = "x-airlock-reason";

/// A plain-text response.
pub(crate) fn text(status: StatusCode, msg: &str) -> Response<BoxedBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn refuse(flow: &Flow, status: StatusCode) -> Response<BoxedBody> {
    let reason = format!("airlock egress: {}", flow.record.reason);
    let mut r = text(status, &reason);
    if let Ok(v) = HeaderValue::from_str(&flow.record.reason) {
        r.headers_mut().insert(REASON_HEADER, v);
    }
    r
}

/// Hop-by-hop headers never forwarded.
const HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// The target of a proxy request: (host, port), or why there is none.
pub fn request_target(method: &Method, uri: &Uri) -> Result<(String, u16), String> {
    if method == Method::CONNECT {
        let auth = uri
            .authority()
            .ok_or_else(|| "CONNECT needs host:port".to_owned())?;
        let port = auth
            .port_u16()
            .ok_or_else(|| "CONNECT needs an explicit port".to_owned())?;
        return Ok((strip_brackets(auth.host()).to_owned(), port));
    }
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err("absolute-form https:// requests are not supported: use CONNECT".into())
        }
        Some(other) => return Err(format!("scheme {other:?} is not supported")),
        None => {
            return Err(
                "this is an HTTP proxy: send absolute-form requests (http://host/path) or CONNECT"
                    .into(),
            )
        }
    }
    let auth = uri
        .authority()
        .ok_or_else(|| "the request URL has no host".to_owned())?;
    if auth.as_str().contains('@') {
        return Err("credentials in the request URL are refused".into());
    }
    Ok((
        strip_brackets(auth.host()).to_owned(),
        auth.port_u16().unwrap_or(80),
    ))
}

fn strip_brackets(h: &str) -> &str {
    h.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h)
}

/// Serves one client connection of the proxy.
pub(crate) async fn serve_conn(gw: Arc<Gateway>, stream: TcpStream) {
    serve_io(gw, TokioIo::new(stream)).await;
}

/// Serves HTTP/1 proxy requests on any byte stream (fuzzing uses a pipe).
pub async fn serve_io<I>(gw: Arc<Gateway>, io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let gw = Arc::clone(&gw);
        async move { Ok::<_, Infallible>(handle(gw, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .serve_connection(io, svc)
        .with_upgrades()
        .await;
}

/// A request body up to this size is read and scanned whole before the
/// upstream is connected: a canary in it is refused with nothing sent.
/// Longer bodies stream, held back by [`crate::inspect::HOLD_BACK`].
const PREFILL: usize = 64 * 1024;

/// How long a request body may take to arrive before its head is sent
/// ahead of it (a client that streams and waits for the answer).
const PREFILL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<BoxedBody> {
    let connect = req.method() == Method::CONNECT;
    let proto = if connect {
        FlowProto::Connect
    } else {
        FlowProto::Http
    };
    let mut flow = gw.flow(proto, None, None);
    if !connect {
        flow.record.detail = Some(format!(
            "{} {}",
            req.method(),
            req.uri().path_and_query().map_or("/", |p| p.as_str())
        ));
    }
    let (host, port) = match request_target(req.method(), req.uri()) {
        Ok(t) => t,
        Err(reason) => {
            flow.decide(crate::Verdict::Deny, reason);
            return refuse(&flow, StatusCode::BAD_REQUEST);
        }
    };
    let authz = gw.authorize(&mut flow, &host, port).await;
    let name = flow.record.name.clone().unwrap_or(host);
    if !matches!(authz, Authz::Deny) && gw.inspect_request_head(&mut flow, &req) {
        return refuse(&flow, StatusCode::FORBIDDEN);
    }
    let guard = if connect {
        None
    } else {
        gw.stream_guard(&flow, Place::Body)
    };
    let tripped = guard.as_ref().map(|g| Arc::clone(&g.tripped));
    let mut req = req.map(|b| GuardedBody::new(b, guard));
    let cut = |flow: &mut Flow| -> bool {
        let reason = tripped
            .as_ref()
            .and_then(|t| t.lock().ok().and_then(|t| t.clone()))
            .filter(|r| !r.is_empty());
        match reason {
            Some(r) => {
                flow.decide(crate::Verdict::Deny, r);
                true
            }
            None => false,
        }
    };
    match authz {
        Authz::Deny => refuse(&flow, StatusCode::FORBIDDEN),
        Authz::Mock(index) => {
            if connect {
                refuse_tls_mock(&mut flow, &name);
                return refuse(&flow, StatusCode::FORBIDDEN);
            }
            let resp = crate::mock::answer(&gw, index, &name, req, &tripped).await;
            if cut(&mut flow) {
                return refuse(&flow, StatusCode::FORBIDDEN);
            }
            resp
        }
        Authz::Allow(addrs) => {
            if !connect {
                if let Err(e) = req.body_mut().prefill(PREFILL, PREFILL_WAIT).await {
                    if cut(&mut flow) {
                        return refuse(&flow, StatusCode::FORBIDDEN);
                    }
                    flow.decide(
                        crate::Verdict::Deny,
                        format!("the client's request body failed: {e}"),
                    );
                    return refuse(&flow, StatusCode::BAD_REQUEST);
                }
            }
            let (upstream, addr) = match gw.connect(&addrs).await {
                Ok(x) => x,
                Err(e) => {
                    flow.record.reason.push_str(&format!("; {e}"));
                    return refuse(&flow, StatusCode::BAD_GATEWAY);
                }
            };
            flow.record.addr = Some(addr);
            if connect {
                tokio::spawn(async move {
                    match hyper::upgrade::on(req).await {
                        Ok(upgraded) => {
                            gw.tunnel(
                                flow,
                                TokioIo::new(upgraded),
                                &name,
                                port,
                                Vec::new(),
                                None,
                                Some(upstream),
                            )
                            .await
                        }
                        Err(e) => flow
                            .record
                            .reason
                            .push_str(&format!("; upgrade failed: {e}")),
                    }
                });
                Response::new(BoxBody::default())
            } else {
                forward(gw, flow, upstream, req, &name, port, tripped).await
            }
        }
    }
}

/// Sends one absolute-form request to the destination in origin form and
/// streams the response back. The flow's record is sent when the upstream
/// connection ends (after the response body).
async fn forward(
    gw: Arc<Gateway>,
    flow: Flow,
    upstream: TcpStream,
    mut req: Request<GuardedBody<Incoming>>,
    name: &str,
    port: u16,
    tripped: Option<Arc<std::sync::Mutex<Option<String>>>>,
) -> Response<BoxedBody> {
    let cut_reason = move || {
        tripped
            .as_ref()
            .and_then(|t| t.lock().ok().and_then(|t| t.clone()))
            .filter(|r| !r.is_empty())
    };
    let metered = gw.meter(upstream, Arc::clone(&flow.counters));
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(metered)).await {
            Ok(x) => x,
            Err(e) => {
                let mut flow = flow;
                flow.record.reason.push_str(&format!("; {e}"));
                return refuse(&flow, StatusCode::BAD_GATEWAY);
            }
        };
    let reason_at_end = cut_reason.clone();
    tokio::spawn(async move {
        let _ = conn.await;
        let mut flow = flow;
        if let Some(r) = reason_at_end() {
            flow.decide(crate::Verdict::Deny, r);
        }
        drop(flow);
    });
    let origin = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.to_string());
    *req.uri_mut() = origin.parse().unwrap_or_else(|_| Uri::from_static("/"));
    let headers = req.headers_mut();
    for h in HOP {
        headers.remove(*h);
    }
    let host_value = if port == 80 {
        name.to_owned()
    } else {
        format!("{name}:{port}")
    };
    if let Ok(v) = HeaderValue::from_str(&host_value) {
        headers.insert(HOST, v);
    }
    match sender.send_request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            for h in HOP {
                parts.headers.remove(*h);
            }
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => {
            if let Some(r) = cut_reason() {
                let mut resp = text(StatusCode::FORBIDDEN, &format!("airlock egress: {r}"));
                if let Ok(v) = HeaderValue::from_str(&r) {
                    resp.headers_mut().insert(REASON_HEADER, v);
                }
                return resp;
            }
            text(
                StatusCode::BAD_GATEWAY,
                &format!("airlock egress: {name}:{port}: {e}"),
            )
        }
    }
}

impl Gateway {
    /// Scans the request line and headers; `true`: refuse.
    fn inspect_request_head<B>(&self, flow: &mut Flow, req: &Request<B>) -> bool {
        let line = format!("{} {}", req.method(), req.uri());
        if self.inspect(flow, Place::RequestLine, line.as_bytes()) {
            return true;
        }
        let mut head = Vec::new();
        for (k, v) in req.headers() {
            head.extend_from_slice(k.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        self.inspect(flow, Place::Headers, &head)
    }
}
