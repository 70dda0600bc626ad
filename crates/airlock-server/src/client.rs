//! A small blocking client of the API (for `airlock sandbox` and tests):
//! one HTTP/1.1 connection per request over the unix socket or TCP, on a
//! current-thread tokio runtime of its own.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("connecting to {target}: {source}")]
    Connect {
        /// The socket or address.
        target: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("talking to {target}: {reason}")]
    Http {
        /// The socket or address.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// A `--url` that is not `http://HOST:PORT`.
    #[error("url {0:?}: give http://HOST:PORT")]
    Url(String),
    /// The client's runtime could not start.
    #[error("starting the client's runtime: {0}")]
    Runtime(std::io::Error),
}

#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

/// Sees a streamed body's bytes as they arrive.
pub type OnChunk<'a> = &'a mut dyn FnMut(&[u8]);

/// A server's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Its status.
    pub status: u16,
    /// Its Content-Type.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client of one server.
#[derive(Debug)]
pub struct Client {
    target: Target,
    token: Option<String>,
    rt: tokio::runtime::Runtime,
}

impl Client {
    fn new(target: Target, token: Option<String>) -> Result<Client, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        Ok(Client { target, token, rt })
    }

    /// A client of the server on the unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Result<Client, ClientError> {
        Self::new(Target::Unix(path.into()), None)
    }

    /// A client of the server at `http://HOST:PORT`, sending `token`.
    pub fn url(url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::Url(url.into()))?;
        let hostport = rest.trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
            return Err(ClientError::Url(url.into()));
        }
        Self::new(Target::Tcp(hostport.into()), token)
    }

    /// Sends one request; `on_chunk` sees the body as it arrives (the
    /// reply's body is then empty). Any status is a reply, not an error.
    pub fn send(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        mut on_chunk: Option<OnChunk<'_>>,
    ) -> Result<Reply, ClientError> {
        let http = |reason: String| ClientError::Http {
            target: self.target.to_string(),
            reason,
        };
        let host = match &self.target {
            Target::Unix(_) => "localhost".to_string(),
            Target::Tcp(a) => a.clone(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, host);
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http(e.to_string()))?;
        self.rt.block_on(async {
            let connect_err = |source| ClientError::Connect {
                target: self.target.to_string(),
                source,
            };
            let mut sender = match &self.target {
                Target::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p)
                        .await
                        .map_err(connect_err)?;
                    handshake(s).await
                }
                Target::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a)
                        .await
                        .map_err(connect_err)?;
                    handshake(s).await
                }
            }
            .map_err(|e| http(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| http(e.to_string()))?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let mut body = resp.into_body();
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| http(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    match on_chunk.as_mut() {
                        Some(f) => f(&data),
                        None => out.extend_from_slice(&data),
                    }
                }
            }
            Ok(Reply {
                status,
                content_type,
                body: out,
            })
        })
    }

    /// A JSON request (`body` `None`: no body).
    pub fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        match body {
            Some(b) => self.send(
                method,
                path,
                Some("application/json"),
                serde_json::to_vec(b).unwrap_or_default(),
                None,
            ),
            None => self.send(method, path, None, Vec::new(), None),
        }
    }
}

async fn handshake<S>(
    s: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Percent-encodes a query value.
pub fn encode_query(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
