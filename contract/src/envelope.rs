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
