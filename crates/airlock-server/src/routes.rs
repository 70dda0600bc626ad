//! The routes: each handler checks its request once, then makes one
//! runtime call on the blocking pool, so a slow sandbox or a slow client
//! holds up nothing else.

use std::time::Duration;

use airlock_runtime::{ExecRequest, Sandbox, Stream};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use crate::api::*;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::text::{text, Utf8Carry};

/// Runs a blocking runtime call on the blocking pool.
async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    F: FnOnce() -> ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the request's worker failed: {e}")))?
}

/// A JSON body: malformed JSON, a wrong type or an unknown field is a
/// 400 naming the field; an empty body is `T::default()` when `empty` is
/// given.
fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    empty: Option<T>,
) -> ApiResult<T> {
    let body = body_bytes(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        if let Some(d) = empty {
            return Ok(d);
        }
        return Err(ApiError::bad("the request needs a JSON body"));
    }
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let r: Result<T, _> = serde_path_to_error::deserialize(de);
    r.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || path == "." {
            ApiError::bad(format!("malformed JSON body: {inner}"))
        } else {
            ApiError::field(&path, inner)
        }
    })
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is over the server's limit for this route",
            )
        } else {
            ApiError::bad(format!("reading the request body: {}", e.body_text()))
        }
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad(format!("query: {}", e.body_text())))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::not_found(format!("path: {}", e.body_text())))
}

/// A query flag: `1`/`true`/`yes` or `0`/`false`/`no`.
fn flag(v: &Option<String>, name: &str) -> ApiResult<bool> {
    match v.as_deref() {
        None => Ok(false),
        Some("1" | "true" | "yes" | "") => Ok(true),
        Some("0" | "false" | "no") => Ok(false),
        Some(other) => Err(ApiError::field(name, format!("{other:?} is not 1 or 0"))),
    }
}

fn json<T: serde::Serialize>(t: T) -> Response {
    Json(t).into_response()
}

// ---- health and documents ----------------------------------------------

/// Whether the server is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz(State(st): State<AppState>) -> Response {
    let (live, _) = st.usage();
    json(Health {
        status: "ok",
        live,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "the OpenAPI 3.1 document")))]
async fn openapi() -> Response {
    json(ApiDoc::openapi())
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such route; see GET /openapi.json").with_reason("no_route")
}

async fn no_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see GET /openapi.json",
    )
}

// ---- sandboxes ----------------------------------------------------------

/// Creates a sandbox.
#[utoipa::path(post, path = "/v1/sandboxes", request_body = CreateSandbox,
    responses((status = 200, body = SandboxView), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn create(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let req: CreateSandbox = parse(body, Some(CreateSandbox::default()))?;
    let ttl = req.ttl.as_ref().map(|d| d.to_duration("ttl")).transpose()?;
    let idle = req
        .idle_timeout
        .as_ref()
        .map(|d| d.to_duration("idle_timeout"))
        .transpose()?;
    let cfg = st.config.clone();
    // Profiles may be files: read them off the async threads too.
    let profile_value = req.profile.clone();
    let mut profile = blocking(move || {
        crate::profiles::resolve(profile_value.as_ref(), cfg.profiles_dir.as_deref())
    })
    .await?;
    if let Some(env) = &req.env {
        let overrides = airlock_policy::Overrides {
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ..airlock_policy::Overrides::default()
        };
        profile = profile
            .with_overrides(&overrides)
            .map_err(|e| ApiError::field("env", e))?;
    }
    let id = req
        .id
        .clone()
        .unwrap_or_else(airlock_runtime::new_sandbox_id);
    if !id_ok(&id) {
        return Err(ApiError::field(
            "id",
            airlock_runtime::RuntimeError::SandboxId(id),
        ));
    }
    let memory = crate::profiles::budgeted_memory(&profile);
    let slot = st.reserve(memory, Some(&id))?;
    let mut sreq = airlock_runtime::SandboxRequest::new(profile);
    sreq.sandbox_id = Some(id.clone());
    sreq.workspace = req.workspace.clone();
    sreq.ttl = ttl;
    sreq.idle_timeout = idle;
    sreq.cgroup_root = st.config.cgroup_root.clone();
    if let Some(dir) = &st.config.audit_dir {
        sreq.audit = Some(dir.join(format!("{id}.jsonl")));
    }
    let sb = blocking(move || Sandbox::create(sreq).map_err(ApiError::from)).await?;
    let info = sb.info();
    slot.fill(sb);
    tracing::info!(sandbox = %info.id, profile = %info.profile, "sandbox created");
    Ok(json(SandboxView::new(info, memory)))
}

/// The runtime's rule for a caller-chosen sandbox id, checked before the
/// id names the audit file.
fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Lists the sandboxes.
#[utoipa::path(get, path = "/v1/sandboxes", responses((status = 200, body = SandboxList)))]
async fn list(State(st): State<AppState>) -> Response {
    st.sweep();
    let mut sandboxes: Vec<SandboxView> = st
        .all()
        .into_iter()
        .map(|(sb, mem)| SandboxView::new(sb.info(), mem))
        .collect();
    sandboxes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let (live, memory_used) = st.usage();
    json(SandboxList {
        sandboxes,
        live,
        max_sandboxes: st.config.max_sandboxes,
        memory_used,
        memory_budget: st.config.memory_budget,
    })
}

/// A sandbox's state.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", params(("id" = String, Path)),
    responses((status = 200, body = SandboxView), (status = 404, body = ErrorBody)))]
async fn info(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let (sb, mem) = st.get(&path(id)?)?;
    Ok(json(SandboxView::new(sb.info(), mem)))
}

/// Closes a sandbox and answers its close report (network decisions,
/// canaries, the audit log's summary).
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", params(("id" = String, Path)),
    responses((status = 200, description = "the close report"), (status = 404, body = ErrorBody)))]
async fn delete(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = path(id)?;
    let (sb, _) = st.get(&id)?;
    let closing = sb.clone();
    let r = blocking(move || closing.close().map_err(ApiError::from)).await;
    st.remove(&id);
    tracing::info!(sandbox = %id, "sandbox closed");
    let report = r?;
    Ok(json(report))
}

/// The sandbox's audit log so far.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/audit", params(("id" = String, Path)),
    responses((status = 200, body = AuditResponse), (status = 404, body = ErrorBody)))]
async fn audit(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let r = blocking(move || {
        let events = sb.audit_events().map_err(ApiError::from)?;
        Ok(AuditResponse {
            path: sb.audit_path().map(|p| p.to_path_buf()),
            events,
        })
    })
    .await?;
    Ok(json(r))
}

/// Kills every process and restores the writable places (to the state at
/// create, or to a checkpoint).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/reset", params(("id" = String, Path)), request_body = ResetBody,
    responses((status = 200, body = Took), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn reset(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let req: ResetBody = parse(body, Some(ResetBody::default()))?;
    let took =
        blocking(move || sb.reset(req.checkpoint.as_deref()).map_err(ApiError::from)).await?;
    Ok(json(Took {
        ms: took.as_secs_f64() * 1000.0,
    }))
}

/// Saves the writable places as a named checkpoint.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/checkpoint", params(("id" = String, Path)), request_body = CheckpointBody,
    responses((status = 200, body = Took), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn checkpoint(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let req: CheckpointBody = parse(body, None)?;
    let took = blocking(move || sb.checkpoint(&req.name).map_err(ApiError::from)).await?;
    Ok(json(Took {
        ms: took.as_secs_f64() * 1000.0,
    }))
}

// ---- exec and processes -------------------------------------------------

/// An exec's request; its stdin may be up to `file_limit` bytes.
fn exec_request(b: &ExecBody, file_limit: usize) -> ApiResult<ExecRequest> {
    let cmd = b.cmd.argv();
    if cmd.is_empty() || cmd[0].is_empty() {
        return Err(ApiError::field("cmd", "empty command"));
    }
    let stdin = match (&b.stdin, &b.stdin_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "stdin_base64",
                "give stdin or stdin_base64, not both",
            ))
        }
        (Some(s), None) => Some(s.clone().into_bytes()),
        (None, Some(s)) => Some(
            data_encoding::BASE64
                .decode(s.as_bytes())
                .map_err(|e| ApiError::field("stdin_base64", e))?,
        ),
        (None, None) => None,
    };
    if let Some(n) = stdin.as_ref().map(Vec::len).filter(|&n| n > file_limit) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("stdin: {n} bytes, over the server's file limit ({file_limit} bytes)"),
        ));
    }
    if b.background && b.stream {
        return Err(ApiError::field(
            "stream",
            "a background process is not streamed; read its output from .../processes/{pid}/output",
        ));
    }
    if b.output_cap == Some(0) {
        return Err(ApiError::field("output_cap", "must be more than zero"));
    }
    Ok(ExecRequest {
        cmd,
        env: b
            .env
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cwd: b.cwd.clone(),
        stdin_pipe: b.background && stdin.is_none(),
        stdin,
        timeout: b
            .timeout
            .as_ref()
            .map(|t| t.to_duration("timeout"))
            .transpose()?,
        output_cap: b.output_cap,
    })
}

/// Runs a command: to its end (the result), in the background (its pid),
/// or streamed (NDJSON: `{"stdout": ...}` and `{"stderr": ...}` chunks,
/// then `{"result": {...}}` or `{"error": {...}}`).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/exec", params(("id" = String, Path)), request_body = ExecBody,
    responses((status = 200, body = ExecResponse, description = "the result; with background, a Started; with stream, NDJSON"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn exec(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let b: ExecBody = parse(body, None)?;
    let req = exec_request(&b, st.config.file_limit)?;
    if b.background {
        let p = blocking(move || sb.spawn(&req).map_err(ApiError::from)).await?;
        return Ok(json(Started {
            pid: p.id(),
            os_pid: p.pid(),
        }));
    }
    if b.stream {
        return Ok(stream_exec(sb, req));
    }
    let r = blocking(move || sb.exec(&req, &mut |_, _| {}).map_err(ApiError::from)).await?;
    Ok(json(ExecResponse::from_result(&r)))
}

/// A body fed by a channel (the streamed exec).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn ndjson_line(v: &serde_json::Value) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn chunk_line(stream: &str, data: &[u8]) -> Bytes {
    let (t, b64) = text(data);
    let mut m = serde_json::Map::new();
    m.insert(stream.into(), t.into());
    if let Some(b) = b64 {
        m.insert(format!("{stream}_base64"), b.into());
    }
    ndjson_line(&serde_json::Value::Object(m))
}

/// Runs the exec on the blocking pool and streams its output. A client
/// that goes away does not stop the command: it runs to its end or its
/// timeout, and its result is in the audit log.
fn stream_exec(sb: Sandbox, req: ExecRequest) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::task::spawn_blocking(move || {
        let mut out = Utf8Carry::default();
        let mut err = Utf8Carry::default();
        let send = |b: Bytes| {
            let _ = tx.blocking_send(b);
        };
        let r = sb.exec(&req, &mut |s, d| {
            let (name, carry) = match s {
                Stream::Stdout => ("stdout", &mut out),
                Stream::Stderr => ("stderr", &mut err),
            };
            let ready = carry.push(d);
            if !ready.is_empty() {
                send(chunk_line(name, &ready));
            }
        });
        for (name, carry) in [("stdout", &mut out), ("stderr", &mut err)] {
            let rest = carry.finish();
            if !rest.is_empty() {
                send(chunk_line(name, &rest));
            }
        }
        let last = match r {
            Ok(r) => serde_json::json!({"result": ExecResponse::from_result(&r)}),
            Err(e) => serde_json::json!({"error": ApiError::from(e).body().error}),
        };
        send(ndjson_line(&last));
    });
    let mut resp = Response::new(Body::new(ChannelBody(rx)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

fn status_of(sb: &Sandbox, p: &airlock_runtime::Process) -> ProcessStatus {
    let result = sb.process_result(p).map(|r| ExecResponse::from_result(&r));
    ProcessStatus {
        pid: p.id(),
        os_pid: p.pid(),
        state: if result.is_some() {
            "exited"
        } else {
            "running"
        },
        stdout_bytes: p.output(Stream::Stdout, u64::MAX, 0).next,
        stderr_bytes: p.output(Stream::Stderr, u64::MAX, 0).next,
        result,
    }
}

/// The processes still running.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes", params(("id" = String, Path)),
    responses((status = 200, body = ProcessList), (status = 404, body = ErrorBody)))]
async fn processes(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    Ok(json(ProcessList {
        running: sb.info().processes,
    }))
}

fn process_of(st: &AppState, id: &str, pid: u64) -> ApiResult<(Sandbox, airlock_runtime::Process)> {
    let (sb, _) = st.get(id)?;
    let p = sb.process(pid).map_err(ApiError::from)?;
    Ok((sb, p))
}

/// A process's state, and its result once it ended.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes/{pid}", params(("id" = String, Path), ("pid" = u64, Path)),
    responses((status = 200, body = ProcessStatus), (status = 404, body = ErrorBody)))]
async fn process(
    State(st): State<AppState>,
    p: Result<Path<(String, u64)>, PathRejection>,
) -> ApiResult<Response> {
    let (id, pid) = path(p)?;
    let (sb, p) = process_of(&st, &id, pid)?;
    Ok(json(status_of(&sb, &p)))
}

/// `?from=N&stream=stdout|stderr&max=BYTES`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct OutputQuery {
    /// Byte offset to read from (default 0).
    from: Option<u64>,
    /// `stdout` (default) or `stderr`.
    stream: Option<String>,
    /// Most bytes to answer (default and cap 1 MiB).
    max: Option<usize>,
}

/// A stream's bytes from an offset, saying what was dropped.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes/{pid}/output",
    params(("id" = String, Path), ("pid" = u64, Path), OutputQuery),
    responses((status = 200, body = OutputResponse), (status = 404, body = ErrorBody)))]
async fn output(
    State(st): State<AppState>,
    p: Result<Path<(String, u64)>, PathRejection>,
    q: Result<Query<OutputQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (id, pid) = path(p)?;
    let q = query(q)?;
    let (_, p) = process_of(&st, &id, pid)?;
    let (stream, name) = match q.stream.as_deref() {
        None | Some("stdout") => (Stream::Stdout, "stdout"),
        Some("stderr") => (Stream::Stderr, "stderr"),
        Some(other) => {
            return Err(ApiError::field(
                "stream",
                format!("{other:?} is not stdout or stderr"),
            ))
        }
    };
    let asked = q.from.unwrap_or(0);
    let max = q.max.unwrap_or(crate::OUTPUT_PAGE).min(crate::OUTPUT_PAGE);
    // Whether it had ended before the read: then the read saw everything.
    let exited = p.finished();
    let c = p.output(stream, asked, max);
    let (data, data_base64) = text(&c.data);
    Ok(json(OutputResponse {
        stream: name,
        asked_from: asked,
        from: c.from,
        dropped: c.from.saturating_sub(asked),
        next: c.next,
        data,
        data_base64,
        exited,
    }))
}

/// `?eof=1`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct StdinQuery {
    /// Close stdin after writing the body.
    eof: Option<String>,
}

/// Writes the body's raw bytes to a background process's stdin.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes/{pid}/stdin",
    params(("id" = String, Path), ("pid" = u64, Path), StdinQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn stdin(
    State(st): State<AppState>,
    p: Result<Path<(String, u64)>, PathRejection>,
    q: Result<Query<StdinQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (id, pid) = path(p)?;
    let eof = flag(&query(q)?.eof, "eof")?;
    let body = body_bytes(body)?;
    let (_, p) = process_of(&st, &id, pid)?;
    blocking(move || {
        if !body.is_empty() {
            p.write_stdin(&body).map_err(ApiError::from)?;
        }
        if eof {
            p.close_stdin();
        }
        Ok(())
    })
    .await?;
    Ok(json(Done { ok: true }))
}

/// Sends a signal to a process.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes/{pid}/signal",
    params(("id" = String, Path), ("pid" = u64, Path)), request_body = SignalBody,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn signal(
    State(st): State<AppState>,
    p: Result<Path<(String, u64)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (id, pid) = path(p)?;
    let b: SignalBody = parse(body, None)?;
    let n = b.signal.number()?;
    let (_, p) = process_of(&st, &id, pid)?;
    blocking(move || p.signal(n).map_err(ApiError::from)).await?;
    Ok(json(Done { ok: true }))
}

/// `?timeout=30s`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// How long to wait (seconds or with a unit; default 30s, at most 10m).
    timeout: Option<String>,
}

/// Waits for a process to end (up to the timeout); answers its state.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes/{pid}/wait",
    params(("id" = String, Path), ("pid" = u64, Path), WaitQuery),
    responses((status = 200, body = ProcessStatus), (status = 404, body = ErrorBody)))]
async fn wait(
    State(st): State<AppState>,
    p: Result<Path<(String, u64)>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (id, pid) = path(p)?;
    let timeout = match query(q)?.timeout {
        None => Duration::from_secs(30),
        Some(t) => {
            let v = match t.parse::<f64>() {
                Ok(n) => DurationValue::Seconds(n),
                Err(_) => DurationValue::Text(t),
            };
            v.to_duration("timeout")?
        }
    }
    .min(Duration::from_secs(600));
    let (sb, p) = process_of(&st, &id, pid)?;
    let s = blocking(move || {
        p.wait(timeout);
        Ok(status_of(&sb, &p))
    })
    .await?;
    Ok(json(s))
}

// ---- files ---------------------------------------------------------------

/// `?path=P` and the options of each file route.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct FileQuery {
    /// The path inside the sandbox: absolute, or relative to the workspace.
    path: Option<String>,
    /// GET: list the directory instead of reading a file.
    list: Option<String>,
    /// GET: the file's facts instead of its bytes.
    stat: Option<String>,
    /// PUT: permission bits in octal (`755`); default 644.
    mode: Option<String>,
    /// DELETE: a non-empty directory too.
    recursive: Option<String>,
    /// mkdir: the missing parents too.
    parents: Option<String>,
}

impl FileQuery {
    fn path(&self) -> ApiResult<String> {
        match &self.path {
            Some(p) if !p.is_empty() => Ok(p.clone()),
            _ => Err(ApiError::field("path", "missing: give ?path=P")),
        }
    }
}

/// Reads a file (raw bytes), lists a directory (`list=1`) or stats a path
/// (`stat=1`).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files", params(("id" = String, Path), FileQuery),
    responses((status = 200, description = "the file's bytes, or a FileList / FileView"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn get_file(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<FileQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let q = query(q)?;
    let p = q.path()?;
    if flag(&q.list, "list")? {
        let (entries, truncated) = blocking({
            let p = p.clone();
            move || sb.list_files(&p).map_err(ApiError::from)
        })
        .await?;
        return Ok(json(FileList {
            path: p,
            entries: entries.into_iter().map(FileView::from).collect(),
            truncated,
        }));
    }
    if flag(&q.stat, "stat")? {
        let f = blocking(move || sb.stat_file(&p).map_err(ApiError::from)).await?;
        return Ok(json(FileView::from(f)));
    }
    let max = st.config.file_limit as u64;
    let data = blocking(move || sb.read_file(&p, max).map_err(ApiError::from)).await?;
    let mut resp = Response::new(Body::from(data));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// A file's facts.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/stat", params(("id" = String, Path), FileQuery),
    responses((status = 200, body = FileView), (status = 404, body = ErrorBody)))]
async fn stat_file(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<FileQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let p = query(q)?.path()?;
    let f = blocking(move || sb.stat_file(&p).map_err(ApiError::from)).await?;
    Ok(json(FileView::from(f)))
}

/// Writes the body's raw bytes to a file (parents made).
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files", params(("id" = String, Path), FileQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = FileView), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn put_file(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<FileQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let q = query(q)?;
    let p = q.path()?;
    let mode = match &q.mode {
        None => None,
        Some(m) => match u32::from_str_radix(m, 8) {
            Ok(v) if v <= 0o777 => Some(v),
            _ => {
                return Err(ApiError::field(
                    "mode",
                    format!("{m:?}: permission bits in octal, at most 777 (no setuid, setgid or sticky bit)"),
                ))
            }
        },
    };
    let data = body_bytes(body)?;
    let f = blocking(move || sb.write_file(&p, &data, mode).map_err(ApiError::from)).await?;
    Ok(json(FileView::from(f)))
}

/// Removes a file, or a directory (`recursive=1` for a non-empty one).
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/files", params(("id" = String, Path), FileQuery),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_file(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<FileQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let q = query(q)?;
    let p = q.path()?;
    let recursive = flag(&q.recursive, "recursive")?;
    blocking(move || sb.remove_file(&p, recursive).map_err(ApiError::from)).await?;
    Ok(json(Done { ok: true }))
}

/// Makes a directory.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/files/mkdir", params(("id" = String, Path), FileQuery),
    responses((status = 200, body = FileView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn mkdir(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<FileQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (sb, _) = st.get(&path(id)?)?;
    let q = query(q)?;
    let p = q.path()?;
    let parents = flag(&q.parents, "parents")?;
    let f = blocking(move || sb.mkdir(&p, parents).map_err(ApiError::from)).await?;
    Ok(json(FileView::from(f)))
}

// ---- auth, router, document ---------------------------------------------

/// Refuses a request without `Authorization: Bearer TOKEN` (compared in
/// constant time).
async fn require_token(
    State(token): State<std::sync::Arc<String>>,
    req: Request,
    next: Next,
) -> Response {
    use subtle::ConstantTimeEq;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())));
    if !ok {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs an Authorization: Bearer TOKEN header with the token of its --token-file",
        )
        .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    next.run(req).await
}

/// Refuses a body whose Content-Length is over `limit` before reading any
/// of it (the body-limit layer alone reads up to the limit first).
async fn length_limit(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over the server's limit for this route ({limit} bytes)"),
        )
        .into_response();
    }
    next.run(req).await
}

/// The body limit of an exec: its JSON, with a `stdin_base64` of up to
/// `file_limit` bytes.
fn exec_limit(json_limit: usize, file_limit: usize) -> usize {
    file_limit
        .div_ceil(3)
        .saturating_mul(4)
        .saturating_add(json_limit)
}

/// The whole API; with `token`, every route needs it.
pub fn router(state: AppState, token: Option<String>) -> Router {
    let json_limit = state.config.json_limit;
    let file_limit = state.config.file_limit;
    let exec_limit = exec_limit(json_limit, file_limit);
    let exec_routes = Router::new()
        .route("/v1/sandboxes/{id}/exec", post(exec))
        .layer(DefaultBodyLimit::max(exec_limit))
        .layer(axum::middleware::from_fn_with_state(
            exec_limit,
            length_limit,
        ));
    let files = Router::new()
        .route(
            "/v1/sandboxes/{id}/files",
            get(get_file).put(put_file).delete(delete_file),
        )
        .route("/v1/sandboxes/{id}/processes/{pid}/stdin", post(stdin))
        .layer(DefaultBodyLimit::max(file_limit))
        .layer(axum::middleware::from_fn_with_state(
            file_limit,
            length_limit,
        ));
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/v1/sandboxes", post(create).get(list))
        .route("/v1/sandboxes/{id}", get(info).delete(delete))
        .route("/v1/sandboxes/{id}/audit", get(audit))
        .route("/v1/sandboxes/{id}/reset", post(reset))
        .route("/v1/sandboxes/{id}/checkpoint", post(checkpoint))
        .route("/v1/sandboxes/{id}/processes", get(processes))
        .route("/v1/sandboxes/{id}/processes/{pid}", get(process))
        .route("/v1/sandboxes/{id}/processes/{pid}/output", get(output))
        .route("/v1/sandboxes/{id}/processes/{pid}/signal", post(signal))
        .route("/v1/sandboxes/{id}/processes/{pid}/wait", post(wait))
        .route("/v1/sandboxes/{id}/files/stat", get(stat_file))
        .route("/v1/sandboxes/{id}/files/mkdir", post(mkdir))
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(axum::middleware::from_fn_with_state(
            json_limit,
            length_limit,
        ))
        .merge(files)
        .merge(exec_routes)
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .with_state(state);
    match token {
        Some(t) => api.layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(t),
            require_token,
        )),
        None => api,
    }
}

/// The OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "airlock serve",
        description = "Live sandboxes over HTTP: create, exec, files, reset, close. See docs/serve.md."
    ),
    paths(
        healthz,
        openapi,
        create,
        list,
        info,
        delete,
        audit,
        reset,
        checkpoint,
        exec,
        processes,
        process,
        output,
        stdin,
        signal,
        wait,
        get_file,
        stat_file,
        put_file,
        delete_file,
        mkdir
    ),
    components(schemas(
        ErrorBody,
        CreateSandbox,
        ExecBody,
        ExecResponse,
        Started,
        ProcessStatus,
        OutputResponse,
        SignalBody,
        ResetBody,
        CheckpointBody,
        Took,
        SandboxView,
        SandboxList,
        ProcessList,
        FileView,
        FileList,
        AuditResponse,
        Health,
        Done
    ))
)]
pub struct ApiDoc;
