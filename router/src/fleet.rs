//! The router's view of the fleet, learned from its control plane: the configuration (layout and
//! server URLs) and the live topology (primaries and epochs).
//!
//! A [`FleetAdmin`] publishes [`FleetView`]s and carries out the seed's `/init`, `/add` and `/rm`,
//! which only the control plane may do; `service::follow` keeps a router current from
//! one. Two implementations: [`LocalFleetClient`], the local fleet's control API (`GET
//! /v1/fleet?after=<version>` as a long poll: it answers at once when its version is newer than
//! `after`, else when the fleet changes or after [`LONG_POLL`]), and
//! [`crate::kube_mode::KubeFleet`], a `ShardedDatabase` on Kubernetes.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use thiserror::Error;
use walshard_contract::Topology;
use walshard_contract::http_client::{ClientError, ClientSettings, TrustedCa};
use walshard_contract::{ApiError, Ident, code_of};

use crate::hashing::HashMode;
use crate::requests;
use crate::routes::{Primaries, Routes};

/// How long the control plane holds a `GET /v1/fleet` without news.
pub const LONG_POLL: Duration = Duration::from_secs(20);
/// Timeout of the administrative calls (`/init` starts servers and waits for elections).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(300);

/// What the control plane publishes to routers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    /// Grows with every change of the configuration or the topology.
    pub version: u64,
    /// The seed configuration (`N`, `schema`, `shards`, `servers`), absent before `/init`.
    pub config: Option<Json>,
    /// Each server's agent base URL.
    pub urls: BTreeMap<String, String>,
    /// Primaries and epochs, from the control plane's last tick.
    pub topology: Topology,
}

impl FleetView {
    /// The routing view of the configuration, if configured.
    pub fn routes(&self, mode: HashMode) -> Result<Option<Routes>, String> {
        let Some(config) = &self.config else {
            return Ok(None);
        };
        let layout = requests::parse_init(config).map_err(|e| format!("fleet config: {e}"))?;
        let urls = self
            .urls
            .iter()
            .filter_map(|(name, url)| Ident::new(name).ok().map(|n| (n, url.clone())))
            .collect();
        Routes::new(layout, urls, mode)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// The primaries of the latest [`FleetView`].
#[derive(Debug, Default)]
pub struct FleetPrimaries(RwLock<Topology>);

impl FleetPrimaries {
    /// Replaces the topology (a new fleet view).
    pub(crate) fn set(&self, topology: Topology) {
        match self.0.write() {
            Ok(mut t) => *t = topology,
            Err(poisoned) => *poisoned.into_inner() = topology,
        }
    }
}

impl Primaries for FleetPrimaries {
    fn primary(&self, shard: &str) -> Option<String> {
        let t = match self.0.read() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        t.primary(shard).map(str::to_owned)
    }
}

/// The seed's administrative requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `POST /init`.
    Init,
    /// `POST /add`.
    Add,
    /// `DELETE /rm`.
    Rm,
}

impl Admin {
    /// The seed API's path.
    pub fn path(self) -> &'static str {
        match self {
            Admin::Init => "/init",
            Admin::Add => "/add",
            Admin::Rm => "/rm",
        }
    }

    /// The seed API's method.
    pub fn method(self) -> reqwest::Method {
        match self {
            Admin::Init | Admin::Add => reqwest::Method::POST,
            Admin::Rm => reqwest::Method::DELETE,
        }
    }
}

/// Why a fleet view could not be had.
#[derive(Debug, Error)]
pub enum FleetError {
    /// The request for the view failed: no connection, a timeout, a non-2xx status or a body
    /// that is not a fleet view.
    #[error("control plane unreachable: {0}")]
    Http(#[from] reqwest::Error),
}

/// The control plane a router follows: it publishes the fleet view and carries out `/init`,
/// `/add` and `/rm`.
pub trait FleetAdmin: Send + Sync + 'static {
    /// The fleet view newer than `after`, waiting up to `wait` for one; the current one after
    /// that.
    fn view(&self, after: u64, wait: Duration) -> BoxFuture<'_, Result<FleetView, FleetError>>;

    /// Carries out `request` (its body as the client sent it) and answers as the seed does, once
    /// [`Self::view`] shows the change.
    fn admin<'a>(&'a self, request: Admin, body: &'a Json)
    -> BoxFuture<'a, Result<Json, ApiError>>;
}

/// HTTP client of the control plane's API.
#[derive(Debug, Clone)]
pub struct LocalFleetClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl LocalFleetClient {
    /// `base` is the control API's URL, e.g. `http://127.0.0.1:5900`; `token` its bearer token.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Result<Self, ClientError> {
        Self::trusting(base, token, None)
    }

    /// As [`LocalFleetClient::new`], trusting `trust` (the fleet's authority) for an
    /// `https://` control API.
    pub fn trusting(
        base: impl Into<String>,
        token: impl Into<String>,
        trust: Option<TrustedCa>,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http: ClientSettings {
                trust,
                ..ClientSettings::default()
            }
            .build()?,
        })
    }

    /// The fleet view newer than `after`, waiting up to `wait` for one.
    pub async fn fleet(&self, after: u64, wait: Duration) -> Result<FleetView, reqwest::Error> {
        self.http
            .get(format!(
                "{}/v1/fleet?after={after}&wait_ms={}",
                self.base,
                wait.as_millis()
            ))
            .bearer_auth(&self.token)
            .timeout(wait + Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// Forwards an administrative seed request (`/init`, `/add`, `/rm`) and relays the answer.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Json,
    ) -> Result<Json, ApiError> {
        let resp = self
            .http
            .request(method, format!("{}/v1{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(ADMIN_TIMEOUT)
            .json(body)
            .send()
            .await
            .map_err(|e| ApiError::new(503u16, format!("control plane unreachable: {e}")))?;
        let status = resp.status().as_u16();
        let value: Json = resp.json().await.unwrap_or(Json::Null);
        if status == 200 {
            return Ok(value);
        }
        let message = value["message"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        Err(ApiError::new(status, message).with_code(code_of(status, &value)))
    }
}

impl FleetAdmin for LocalFleetClient {
    fn view(&self, after: u64, wait: Duration) -> BoxFuture<'_, Result<FleetView, FleetError>> {
        Box::pin(async move { Ok(self.fleet(after, wait).await?) })
    }

    fn admin<'a>(
        &'a self,
        request: Admin,
        body: &'a Json,
    ) -> BoxFuture<'a, Result<Json, ApiError>> {
        Box::pin(LocalFleetClient::admin(
            self,
            request.method(),
            request.path(),
            body,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Json {
        json!({
            "N": 2,
            "schema": {"columns": ["Stud_id", "Stud_name"], "dtypes": ["Number", "String"]},
            "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 100, "primary": null}],
            "servers": {"Server0": ["sh1"], "Server1": ["sh1"]}
        })
    }

    fn urls() -> BTreeMap<String, String> {
        [("Server0", 7000), ("Server1", 7001)]
            .into_iter()
            .map(|(s, p)| (s.to_owned(), format!("http://127.0.0.1:{p}")))
            .collect()
    }

    #[test]
    fn a_view_becomes_routes_once_configured() {
        let mut view = FleetView {
            version: 1,
            config: None,
            urls: urls(),
            topology: Topology::default(),
        };
        assert!(matches!(view.routes(HashMode::Default), Ok(None)));
        view.config = Some(config());
        let routes = view
            .routes(HashMode::Default)
            .expect("valid")
            .expect("configured");
        assert_eq!(routes.url("Server1"), Some("http://127.0.0.1:7001"));
        assert_eq!(routes.layout.shards().len(), 1);
    }

    #[test]
    fn a_view_missing_a_server_url_is_refused() {
        let mut urls = urls();
        urls.remove("Server1");
        let view = FleetView {
            version: 1,
            config: Some(config()),
            urls,
            topology: Topology::default(),
        };
        let err = view.routes(HashMode::Default).expect_err("no URL");
        assert!(err.contains("Server1"), "{err}");
    }
}
