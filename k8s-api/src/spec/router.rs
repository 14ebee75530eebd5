//! `spec.router`: the router Deployment and its Service.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MAX_ROUTER_REPLICAS, SecretKeyRef, rules};

/// The router: a Deployment behind a Service.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new(rules::ROUTER_TOKEN_EXPOSED.rule).message(rules::ROUTER_TOKEN_EXPOSED.message))]
pub struct RouterSpec {
    /// Router pods.
    #[serde(default = "default_router_replicas")]
    #[schemars(range(min = 1, max = MAX_ROUTER_REPLICAS))]
    pub replicas: i32,
    /// The router Service's type.
    #[serde(default)]
    pub service_type: ServiceType,
    /// A Secret key holding the API token clients must send (`Authorization: Bearer`); none:
    /// the API is open to anything that reaches the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_secret_ref: Option<SecretKeyRef>,
    /// The router container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_router_replicas() -> i32 {
    2
}

impl Default for RouterSpec {
    fn default() -> Self {
        Self {
            replicas: default_router_replicas(),
            service_type: ServiceType::default(),
            api_token_secret_ref: None,
            resources: None,
        }
    }
}

/// The type of the router's Service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through the cloud's load balancer (needs `router.apiTokenSecretRef`).
    LoadBalancer,
}
