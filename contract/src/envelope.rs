//! The seed API's JSON envelope: every answer carries `status`; failures carry a `message` and a
//! machine-readable [`ErrorCode`] under `"code"`:
//! `{"message": "...", "status": "failure", "code": "no-majority"}`.
//!
//! Callers branch on the code, never on the message text. An answer without a code (a peer
//! older than the codes, or a proxy) is read as [`ErrorCode::from_status`] of its HTTP status.

use serde::{Deserialize, Serialize};

pub use crate::error_code::ErrorCode;

/// `status` of a successful answer.
pub const STATUS_SUCCESS: &str = "success";
/// `status` the seed uses for `/add` and `/rm`.
pub const STATUS_SUCCESSFUL: &str = "successful";
/// `status` of every error answer.
pub const STATUS_FAILURE: &str = "failure";

/// A success answer: the fields of `body`, then `"status": "success"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Success<T> {
    /// The answer's own fields, flattened beside `status`.
    #[serde(flatten)]
    pub body: T,
    /// Always [`STATUS_SUCCESS`].
    pub status: &'static str,
}

impl<T> Success<T> {
    /// Wraps `body` with `"status": "success"`.
    pub fn new(body: T) -> Self {
        Self {
            body,
            status: STATUS_SUCCESS,
        }
    }
}

/// The body of every 4xx/5xx answer: `{"message": "...", "status": "failure", "code": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Human-readable reason; for people, never branched on.
    pub message: String,
    /// Always [`STATUS_FAILURE`] (`"failure"`).
    pub status: String,
    /// Absent only in answers of peers older than the codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}

impl Failure {
    /// A failure body with `code`, `message` and `"status": "failure"`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: STATUS_FAILURE.to_owned(),
            code: Some(code),
        }
    }
}

/// The code of an error answer: its `"code"`, or the one its HTTP status implies when it has
/// none.
pub fn code_of(status: u16, body: &serde_json::Value) -> ErrorCode {
    body.get("code")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_else(|| ErrorCode::from_status(status))
}

/// Why a request was refused; each kind has one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// 400
    #[error("{0}")]
    Invalid(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
}

impl From<crate::RowError> for RequestError {
    fn from(e: crate::RowError) -> Self {
        RequestError::Invalid(e.to_string())
    }
}

impl From<crate::ShardError> for RequestError {
    fn from(e: crate::ShardError) -> Self {
        RequestError::Invalid(e.to_string())
    }
}

impl RequestError {
    /// The [`ErrorCode`] of this kind: `invalid-request`, `not-found` or `conflict`.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::Invalid(_) => ErrorCode::InvalidRequest,
            RequestError::NotFound(_) => ErrorCode::NotFound,
            RequestError::Conflict(_) => ErrorCode::Conflict,
        }
    }

    /// The HTTP status of this kind: 400, 404 or 409.
    pub fn status(&self) -> u16 {
        self.code().status()
    }
}

/// An error answer: a status code, an [`ErrorCode`] and the failure body, with extra fields where
/// a caller needs them (the current epoch and primary, a replica's last LSN, the keys a write did
/// write).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The answer's `"code"`.
    pub code: ErrorCode,
    /// The answer's `"message"`.
    pub message: String,
    /// Extra top-level fields of the body (e.g. `epoch`, `primary`, `last_lsn`); empty by default.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// `status` is a `u16` or an `http::StatusCode`; the code is the one the status implies
    /// ([`ErrorCode::from_status`]) until [`ApiError::with_code`] names a precise one.
    pub fn new(status: impl Into<u16>, message: impl Into<String>) -> Self {
        let status = status.into();
        Self {
            status,
            code: ErrorCode::from_status(status),
            message: message.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// An error with `code` and the code's HTTP status.
    pub fn coded(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code.status(), message).with_code(code)
    }

    /// Names the code (the HTTP status stays).
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// `{"message": ..., "status": "failure", "code": ..., ...extra}`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("message".into(), self.message.clone().into());
        body.insert("status".into(), STATUS_FAILURE.into());
        body.insert("code".into(), self.code.as_str().into());
        body.extend(self.extra.clone());
        serde_json::Value::Object(body)
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        ApiError::coded(e.code(), e.to_string())
    }
}

#[cfg(feature = "http")]
impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_body_carries_a_code() {
        let e = ApiError::new(400u16, "bad");
        assert_eq!(e.body()["code"], "invalid-request");
        let e = ApiError::coded(ErrorCode::NoMajority, "no majority").with("shard", "sh1");
        assert_eq!(e.status, 503);
        assert_eq!(
            e.body(),
            serde_json::json!({"message": "no majority", "status": "failure", "code": "no-majority", "shard": "sh1"})
        );
        let r: ApiError = RequestError::NotFound("x".into()).into();
        assert_eq!((r.status, r.code), (404, ErrorCode::NotFound));
    }

    #[test]
    fn answers_without_a_code_are_read_by_their_status() {
        let coded = serde_json::json!({"message": "m", "code": "stale-epoch"});
        assert_eq!(code_of(409, &coded), ErrorCode::StaleEpoch);
        assert_eq!(code_of(409, &serde_json::json!({})), ErrorCode::Conflict);
        assert_eq!(
            code_of(503, &serde_json::json!({"code": "bogus"})),
            ErrorCode::Unavailable
        );
        let f: Failure =
            serde_json::from_value(serde_json::json!({"message": "m", "status": "failure"}))
                .expect("old failure");
        assert_eq!(f.code, None);
    }
}
