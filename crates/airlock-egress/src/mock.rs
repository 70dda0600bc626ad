//! Built-in mock endpoints: `static` answers fixed responses per path,
//! `sink` records every request and answers 200. Nothing leaves the host.

use std::convert::Infallible;
use std::sync::Arc;

use airlock_policy::MockKind;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::flow::{now_ms, Flow, GatewayEvent, SinkRecord};
use crate::gateway::Gateway;
use crate::proxy::{text, BoxedBody};

/// Answers `req` with the mock at `index`; `host` is the name the request
/// was for.
pub(crate) async fn answer<B>(
    gw: &Gateway,
    index: usize,
    host: &str,
    req: Request<B>,
    tripped: &Option<Arc<std::sync::Mutex<Option<String>>>>,
) -> Response<BoxedBody>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mock = &gw.cfg.policy.mocks[index];
    match &mock.kind {
        MockKind::Static { routes } => {
            let path = req.uri().path().to_owned();
            match routes.iter().find(|r| r.matches(&path)) {
                Some(r) => {
                    let mut b = Response::builder()
                        .status(StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK));
                    if !r
                        .headers
                        .keys()
                        .any(|k| k.eq_ignore_ascii_case("content-type"))
                    {
                        b = b.header("content-type", "text/plain; charset=utf-8");
                    }
                    for (k, v) in &r.headers {
                        b = b.header(k.as_str(), v.as_str());
                    }
                    b.body(full(r.body.clone())).unwrap_or_else(|_| {
                        text(StatusCode::INTERNAL_SERVER_ERROR, "bad mock response")
                    })
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    &format!("airlock mock {}: no route for {path}", mock.host),
                ),
            }
        }
        MockKind::Sink { status, body } => {
            let method = req.method().to_string();
            let path = req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.to_string());
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let cap = gw.cfg.sink_body_cap;
            let (bytes, body_len, truncated) = read_capped(req.into_body(), cap).await;
            let blocked = tripped
                .as_ref()
                .and_then(|t| t.lock().ok().and_then(|t| t.clone()))
                .is_some_and(|r| !r.is_empty());
            if blocked {
                // The request carried a canary: the sink records nothing.
                return text(
                    StatusCode::FORBIDDEN,
                    "airlock egress: canary value refused",
                );
            }
            let record = SinkRecord {
                time_ms: now_ms(),
                mock: mock.host.to_string(),
                host: host.to_owned(),
                method,
                path,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
                body_len,
                truncated,
            };
            let _ = gw.events.send(GatewayEvent::Sink(record));
            Response::builder()
                .status(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK))
                .header("content-type", "application/json")
                .body(full(body.clone()))
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "bad mock response"))
        }
    }
}

/// Reads up to `cap` bytes of the body and counts the rest.
async fn read_capped<B>(mut body: B, cap: usize) -> (Vec<u8>, u64, bool)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut kept = Vec::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            let room = cap.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    let truncated = total > kept.len() as u64;
    (kept, total, truncated)
}

fn full(s: String) -> BoxedBody {
    Full::new(Bytes::from(s))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// Serves HTTP/1 on a captured connection with the mock at `index`.
pub(crate) async fn serve_conn(gw: Arc<Gateway>, client: TcpStream, index: usize, mut flow: Flow) {
    let host = flow.record.name.clone().unwrap_or_default();
    let (seq, proto, port) = (flow.record.seq, flow.record.proto, flow.record.port);
    let tripped: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let shared = Arc::clone(&tripped);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let gw = Arc::clone(&gw);
        let host = host.clone();
        let shared = Arc::clone(&shared);
        async move {
            let guard_for = |place| {
                gw.guard_for(
                    seq,
                    proto,
                    Some(host.clone()),
                    port,
                    place,
                    Arc::clone(&shared),
                )
            };
            if let Some(mut g) = guard_for(crate::inspect::Place::Headers) {
                let mut head = format!("{} {}\r\n", req.method(), req.uri()).into_bytes();
                for (k, v) in req.headers() {
                    head.extend_from_slice(k.as_str().as_bytes());
                    head.extend_from_slice(b": ");
                    head.extend_from_slice(v.as_bytes());
                    head.extend_from_slice(b"\r\n");
                }
                if g.feed(&head, true).is_err() {
                    return Ok::<_, Infallible>(text(
                        StatusCode::FORBIDDEN,
                        "airlock egress: canary value refused",
                    ));
                }
            }
            let guard = guard_for(crate::inspect::Place::Body);
            let tripped = guard.as_ref().map(|g| Arc::clone(&g.tripped));
            let req = req.map(|b| crate::inspect::GuardedBody::new(b, guard));
            Ok::<_, Infallible>(answer(&gw, index, &host, req, &tripped).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), svc)
        .await;
    let cut = tripped.lock().ok().and_then(|t| t.clone());
    if let Some(reason) = cut.filter(|r| !r.is_empty()) {
        flow.decide(crate::Verdict::Deny, reason);
    }
    drop(flow);
}
