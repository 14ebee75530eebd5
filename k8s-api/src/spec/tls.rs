//! `spec.tls`: HTTPS between the router, the agents and the operator's control plane.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules;

/// HTTPS for the fleet's internal traffic (router → agents, agent → agent, control plane →
/// agents). The router's client API stays plain HTTP (the seed's clients speak it); put an
/// Ingress or a mesh in front of it for TLS there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// A Secret with `ca.crt`, `tls.crt` and `tls.key` (the layout of a cert-manager
    /// Certificate's Secret) whose certificate names `*.<db>-servers.<namespace>.svc`. Without
    /// it the operator generates an authority and a certificate into `<db>-tls` (once; delete
    /// that Secret to have them generated again). The agents re-read renewed files by themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
}

/// The keys of a TLS Secret.
pub mod keys {
    /// The authority's certificate.
    pub const CA: &str = "ca.crt";
    /// The served certificate.
    pub const CERT: &str = "tls.crt";
    /// Its private key.
    pub const KEY: &str = "tls.key";
}
