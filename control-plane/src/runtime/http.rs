//! [`HttpAgentApi`]: the agent API over HTTP (docs/replication.md's endpoints and JSON).

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use walshard_contract::{
    AgentStatus, ErrorCode, FenceAccepted, FenceRequest, PromoteRequest, Quorum, ReplicaRef,
    StepDownReply, StepDownRequest,
};

use walshard_contract::http_client::{ClientSettings, TrustedCa};

use super::agent_api::{AgentApi, AgentCallError, FenceReply};

/// Per-call timeouts of [`HttpAgentApi`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// TCP connect timeout of every call (default 200 ms).
    pub connect: Duration,
    /// Whole-call timeout of `GET /status`, the heartbeat (default 300 ms).
    pub status: Duration,
    /// Whole-call timeout of a fence (default 1 s).
    pub fence: Duration,
    /// Whole-call timeout of a promote (default 2 s).
    pub promote: Duration,
    /// Whole-call timeout of a step-down (default 5 s).
    pub step_down: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(200),
            status: Duration::from_millis(300),
            fence: Duration::from_secs(1),
            promote: Duration::from_secs(2),
            step_down: Duration::from_secs(5),
        }
    }
}

/// [`AgentApi`] over HTTP with the cluster's bearer token.
#[derive(Debug, Clone)]
pub struct HttpAgentApi {
    client: reqwest::Client,
    token: String,
    timeouts: HttpTimeouts,
}

impl HttpAgentApi {
    /// A client with these timeouts sending `token` as bearer; fails only if the HTTP client cannot be built.
    pub fn new(token: impl Into<String>, timeouts: HttpTimeouts) -> Result<Self, AgentCallError> {
        Self::trusting(token, timeouts, None)
    }

    /// As [`HttpAgentApi::new`], trusting `trust` (the fleet's authority) for `https://` agents.
    pub fn trusting(
        token: impl Into<String>,
        timeouts: HttpTimeouts,
        trust: Option<TrustedCa>,
    ) -> Result<Self, AgentCallError> {
        let client = ClientSettings {
            connect_timeout: Some(timeouts.connect),
            trust,
            ..ClientSettings::default()
        }
        .build()
        .map_err(|e| AgentCallError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            token: token.into(),
            timeouts,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), AgentCallError> {
        let mut req = self
            .client
            .request(method, url)
            .bearer_auth(&self.token)
            .timeout(timeout);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(classify)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(classify)?;
        Ok((status, bytes.to_vec()))
    }

    async fn shard_call(
        &self,
        server: &ReplicaRef,
        shard: &str,
        action: &str,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), AgentCallError> {
        let url = endpoint(&server.url, &["shards", shard, action])?;
        self.call(reqwest::Method::POST, url, Some(body), timeout)
            .await
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, AgentCallError> {
    serde_json::to_value(value).map_err(|e| AgentCallError::Decode(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AgentCallError> {
    serde_json::from_slice(body).map_err(|e| AgentCallError::Decode(e.to_string()))
}

impl AgentApi for HttpAgentApi {
    async fn status(&self, server: &ReplicaRef) -> Result<AgentStatus, AgentCallError> {
        let url = endpoint(&server.url, &["status"])?;
        let (status, body) = self
            .call(reqwest::Method::GET, url, None, self.timeouts.status)
            .await?;
        if status != StatusCode::OK {
            return Err(error_answer(status, &body));
        }
        let answer: AgentStatus = parse(&body)?;
        if let Some(actual) = &answer.server
            && *actual != server.name
        {
            return Err(AgentCallError::WrongServer {
                expected: server.name.clone(),
                actual: actual.clone(),
            });
        }
        Ok(answer)
    }

    async fn fence(
        &self,
        server: &ReplicaRef,
        shard: &str,
        epoch: u64,
    ) -> Result<FenceReply, AgentCallError> {
        let body = to_json(&FenceRequest { epoch })?;
        let (status, body) = self
            .shard_call(server, shard, "fence", body, self.timeouts.fence)
            .await?;
        if status == StatusCode::OK {
            return Ok(FenceReply::Accepted(parse::<FenceAccepted>(&body)?));
        }
        match error_answer(status, &body) {
            // The replica promised a higher epoch (or follows a primary of this one).
            AgentCallError::Conflict { epoch, primary, .. } => {
                Ok(FenceReply::Rejected { epoch, primary })
            }
            other => Err(other),
        }
    }

    async fn promote(
        &self,
        server: &ReplicaRef,
        shard: &str,
        epoch: u64,
        replicas: Vec<ReplicaRef>,
        quorum: Quorum,
    ) -> Result<(), AgentCallError> {
        let body = to_json(&PromoteRequest {
            epoch,
            replicas,
            quorum,
        })?;
        let (status, body) = self
            .shard_call(server, shard, "promote", body, self.timeouts.promote)
            .await?;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(error_answer(status, &body))
        }
    }

    async fn step_down(
        &self,
        server: &ReplicaRef,
        shard: &str,
        to: &str,
    ) -> Result<u64, AgentCallError> {
        let body = to_json(&StepDownRequest { to: to.to_owned() })?;
        let (status, body) = self
            .shard_call(server, shard, "step-down", body, self.timeouts.step_down)
            .await?;
        if status == StatusCode::OK {
            Ok(parse::<StepDownReply>(&body)?.last_lsn)
        } else {
            Err(error_answer(status, &body))
        }
    }
}

/// `base` + path segments (each percent-encoded as needed).
pub(super) fn endpoint(base: &str, segments: &[&str]) -> Result<Url, AgentCallError> {
    let bad = |message: String| AgentCallError::BadUrl {
        url: base.to_owned(),
        message,
    };
    let mut url = Url::parse(base).map_err(|e| bad(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| bad("cannot be a base URL".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// A non-2xx answer `{"message", "status": "failure", "code"}` (with `epoch`/`primary` on an
/// epoch conflict), classified by its code (the status's general code when it has none).
pub(super) fn error_answer(status: StatusCode, body: &[u8]) -> AgentCallError {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<ErrorCode>,
        #[serde(default)]
        epoch: Option<u64>,
        #[serde(default)]
        primary: Option<String>,
    }
    let parsed: Option<Body> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|b| b.message.clone())
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            text.chars().take(200).collect()
        });
    let code = parsed
        .as_ref()
        .and_then(|b| b.code)
        .unwrap_or_else(|| ErrorCode::from_status(status.as_u16()));
    let epoch = parsed.as_ref().and_then(|b| b.epoch);
    match (code, epoch) {
        // A conflict that names the replica's epoch is an epoch conflict.
        (ErrorCode::StaleEpoch | ErrorCode::Conflict, Some(epoch)) => AgentCallError::Conflict {
            epoch,
            primary: parsed.and_then(|b| b.primary),
            message,
        },
        (
            ErrorCode::Unavailable
            | ErrorCode::NoMajority
            | ErrorCode::NotReady
            | ErrorCode::NotCommitted
            | ErrorCode::Halted
            | ErrorCode::ShuttingDown,
            _,
        ) => AgentCallError::Unavailable(message),
        _ => AgentCallError::Status {
            status: status.as_u16(),
            message,
        },
    }
}

fn classify(e: reqwest::Error) -> AgentCallError {
    if e.is_timeout() {
        return AgentCallError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return AgentCallError::Refused,
                std::io::ErrorKind::TimedOut => return AgentCallError::Timeout,
                _ => {}
            }
        }
        source = err.source();
    }
    AgentCallError::Transport(error_chain(&e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
