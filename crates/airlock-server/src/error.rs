//! The API's errors: every failure is `{"error": {"code", "message"}}`
//! with an HTTP status chosen from what went wrong, never from where.

use airlock_runtime::{FileError, LiveError, RuntimeError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {code}: {message}")]
pub struct ApiError {
    /// Its HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`bad_request`, `not_found`, ...).
    pub code: &'static str,
    /// What went wrong, for people; names the field or path.
    pub message: String,
    /// A finer, machine-readable cause within the code, when there is
    /// one (`no_sandbox`, `is_a_directory`, `outside`, ...).
    pub reason: Option<&'static str>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `bad_request`, `invalid_profile`, `unauthorized`,
    /// `forbidden_path`, `not_found`, `sandbox_closed`, `conflict`,
    /// `too_large`, `cannot_start`, `over_capacity`, `no_space`,
    /// `timeout`, `internal`.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// A finer cause within the code, for clients that act on it:
    /// `no_sandbox`, `no_process`, `no_checkpoint`, `no_route` (404);
    /// `is_a_directory`, `not_a_directory` (409 `wrong_kind`); `outside`,
    /// `link`, `hard_link`, `permission` (403 `forbidden_path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            reason: None,
        }
    }

    /// The same error with a finer cause.
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// 400 naming a field.
    pub fn field(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{field}: {reason}"),
        )
    }

    /// 400 for a malformed request.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                reason: self.reason.map(String::from),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        use StatusCode as S;
        let (status, code, reason) = match &e {
            FileError::NotFound(_) => (S::NOT_FOUND, "not_found", None),
            FileError::IsADirectory(_) => (S::CONFLICT, "wrong_kind", Some("is_a_directory")),
            FileError::NotADirectory(_) => (S::CONFLICT, "wrong_kind", Some("not_a_directory")),
            FileError::Outside { .. } => (S::FORBIDDEN, "forbidden_path", Some("outside")),
            FileError::Link(_) => (S::FORBIDDEN, "forbidden_path", Some("link")),
            FileError::HardLink(_) => (S::FORBIDDEN, "forbidden_path", Some("hard_link")),
            FileError::Permission(_) => (S::FORBIDDEN, "forbidden_path", Some("permission")),
            FileError::BadPath { .. } => (S::BAD_REQUEST, "bad_path", None),
            FileError::NotRegular(_) => (S::UNPROCESSABLE_ENTITY, "not_regular", None),
            FileError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "too_large", None),
            FileError::Exists(_) | FileError::NotEmpty(_) => (S::CONFLICT, "conflict", None),
            FileError::NoSpace(_) => (S::INSUFFICIENT_STORAGE, "no_space", None),
            _ => (S::INTERNAL_SERVER_ERROR, "internal", None),
        };
        let err = ApiError::new(status, code, e.to_string());
        match reason {
            Some(r) => err.with_reason(r),
            None => err,
        }
    }
}

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            LiveError::Closed | LiveError::Gone(_) => (S::CONFLICT, "sandbox_closed"),
            LiveError::BadRequest { .. } => (S::BAD_REQUEST, "bad_request"),
            LiveError::NoProcess(_) => {
                return ApiError::new(S::NOT_FOUND, "not_found", e.to_string())
                    .with_reason("no_process")
            }
            LiveError::StdinClosed(_) => (S::CONFLICT, "conflict"),
            LiveError::NoAnswer { .. } => (S::GATEWAY_TIMEOUT, "timeout"),
            // init answers a reset to a checkpoint it does not hold with
            // this text (`init.rs`); every other reset failure is ours.
            LiveError::Reset(m) if m.starts_with("no checkpoint named") => {
                return ApiError::new(S::NOT_FOUND, "not_found", e.to_string())
                    .with_reason("no_checkpoint")
            }
            _ => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        use StatusCode as S;
        match e {
            RuntimeError::File(f) => f.into(),
            RuntimeError::Jail(airlock_runtime::JailError::Live(l)) => l.into(),
            RuntimeError::Jail(airlock_runtime::JailError::File(f)) => f.into(),
            RuntimeError::Request { field, reason } => ApiError::field(field, reason),
            RuntimeError::SandboxId(_) => ApiError::field("id", &e),
            RuntimeError::Workspace { .. } => {
                ApiError::new(S::BAD_REQUEST, "bad_request", format!("workspace: {e}"))
            }
            RuntimeError::Closed { .. } => {
                ApiError::new(S::CONFLICT, "sandbox_closed", e.to_string())
            }
            RuntimeError::Exec(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "cannot_start", e.to_string())
            }
            RuntimeError::Jail(airlock_runtime::JailError::Spec(_)) => {
                ApiError::new(S::BAD_REQUEST, "invalid_profile", e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// The answer of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
