//! `spec.credentials` and the Secret key references the spec uses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules;

/// A key of a Secret in the database's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// The key; `password` for MySQL, `token` for tokens when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::SECRET_KEY_PATTERN))]
    pub key: Option<String>,
}

impl SecretKeyRef {
    /// The key, or `default` when not set.
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.key.as_deref().unwrap_or(default)
    }
}

/// Secrets to use instead of generated ones (generated Secrets are never overwritten).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSpec {
    /// The MySQL root password (key default `password`); the agent connects as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql_secret_ref: Option<SecretKeyRef>,
    /// The cluster token the agents, the router and the control plane authenticate each other
    /// with (key default `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_token_secret_ref: Option<SecretKeyRef>,
}
