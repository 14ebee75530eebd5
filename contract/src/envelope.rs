//! The seed API's JSON envelope: every answer carries `status`; failures carry a `message`.

use serde::{Deserialize, Serialize};

/// `status` of a successful answer.
pub const STATUS_SUCCESS: &str = "success";
/// `status` the seed uses for `/add` and `/rm`.
pub const STATUS_SUCCESSFUL: &str = "successful";
/// `status` of every error answer.
pub const STATUS_FAILURE: &str = "failure";

/// The body of every 4xx/5xx answer: `{"message": "...", "status": "failure"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub message: String,
    pub status: String,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: STATUS_FAILURE.to_owned(),
        }
    }
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
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Invalid(_) => 400,
            RequestError::NotFound(_) => 404,
            RequestError::Conflict(_) => 409,
        }
    }
}

/// An error answer: a status code and the failure body, with extra fields where a caller needs
/// them (the current epoch and primary, a replica's last LSN, the keys a write did write).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// `status` is a `u16` or an `http::StatusCode`.
    pub fn new(status: impl Into<u16>, message: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            message: message.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// `{"message": ..., "status": "failure", ...extra}`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("message".into(), self.message.clone().into());
        body.insert("status".into(), STATUS_FAILURE.into());
        body.extend(self.extra.clone());
        serde_json::Value::Object(body)
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        ApiError::new(e.status(), e.to_string())
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
