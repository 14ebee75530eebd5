//! Why a spec or a document is refused.

use thiserror::Error;
use walshard_control_plane::placement::PlacementError;

use super::{API_VERSION, KIND};

/// Why a document or a spec is refused; [`SpecError::code`] classifies it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// The text is not YAML (or JSON) of a `ShardedDatabase`; the parser's message.
    #[error("not a ShardedDatabase document: {0}")]
    Parse(String),
    /// `apiVersion` is not [`API_VERSION`]; the one given.
    #[error("apiVersion must be {API_VERSION}, got {0:?}")]
    ApiVersion(String),
    /// `kind` is not [`KIND`]; the one given.
    #[error("kind must be {KIND}, got {0:?}")]
    Kind(String),
    /// A field breaks a rule of the CRD (schema, CEL) or a Rust-only one.
    #[error("spec.{field}: {reason}")]
    Invalid {
        /// The field's path under `spec`, e.g. `storage.size`.
        field: &'static str,
        /// Which rule it breaks (the CEL rule's message when there is one).
        reason: String,
    },
    /// An explicit placement does not fit the shards.
    #[error("spec.servers: {0}")]
    Placement(#[from] PlacementError),
    /// The generated CRD did not serialize (a bug).
    #[error("serializing the CRD: {0}")]
    Crd(String),
}

impl SpecError {
    /// A machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            SpecError::Parse(_) | SpecError::ApiVersion(_) | SpecError::Kind(_) => {
                "invalid-document"
            }
            SpecError::Invalid { .. } | SpecError::Placement(_) => "invalid-spec",
            SpecError::Crd(_) => "internal",
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
