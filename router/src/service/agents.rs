//! The router's calls to the agents: one call ([`RouterState::call`]); a call to a shard's
//! primary that follows failovers and retries in-doubt failures until [`WRITE_DEADLINE`]
//! ([`RouterState::to_primary`]); reads of a replica with fallback around the ring, and strong
//! reads on the primary, both through coalesced read batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value as Json_;
use tracing::debug;
use walshard_contract::batch::BatchedRead;
use walshard_contract::{ApiError, Backoff, ErrorCode, Ident, KeyRange, code_of};

use super::batches::ReadKey;
use super::state::RouterState;

/// How long a write keeps retrying through failovers before it answers 503.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Pauses between attempts to reach a shard's primary.
const PRIMARY_RETRY: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(100));
/// A call to a primary slower than this starts watching for a failover ...
const MOVED_CHECK_AFTER: Duration = Duration::from_millis(100);
/// ... this often, and is resent to the new primary at once.
const MOVED_CHECK_EVERY: Duration = Duration::from_millis(10);
/// Header of the agent's data answers: the log position the answer reflects.
const LSN_HEADER: &str = "x-walshard-lsn";
/// Header carrying the operation id (the agent's `x-walshard-op-id`).
const OP_ID_HEADER: &str = "x-walshard-op-id";
/// How long a replica may wait to reach a session read's position before the router tries the
/// next one (a replica lags its primary by about one round trip).
const REPLICA_SESSION_WAIT_MS: u64 = 50;
/// How long the primary may wait for it (it has applied all it acknowledged, unless it was
/// elected a moment ago).
pub(super) const PRIMARY_SESSION_WAIT_MS: u64 = 2000;

impl RouterState {
    /// One call to an agent: `(status, body)`, or the transport error.
    pub(super) async fn call(
        &self,
        url: &str,
        method: reqwest::Method,
        path: &str,
        body: &Json_,
        op_id: Option<&str>,
    ) -> Result<(u16, Json_), reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{url}{path}"))
            .bearer_auth(&self.token)
            .json(body);
        if let Some(id) = op_id {
            req = req.header(OP_ID_HEADER, id);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let lsn = resp
            .headers()
            .get(LSN_HEADER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let mut value = resp.json::<Json_>().await.unwrap_or(Json_::Null);
        // The answer's log position travels in a header; the router reads it as `"lsn"`.
        if let (Some(lsn), Some(obj)) = (lsn, value.as_object_mut()) {
            obj.insert("lsn".into(), lsn.into());
        }
        Ok((status, value))
    }

    /// One call to the server `who` at `url`, answered for sure: its 200 body, or its error
    /// relayed with `who` in front, or 503 when it cannot be reached.
    pub(super) async fn call_once(
        &self,
        who: &str,
        url: &str,
        method: reqwest::Method,
        path: &str,
        body: &Json_,
    ) -> Result<Json_, ApiError> {
        match self.call(url, method, path, body, None).await {
            Ok((200, v)) => Ok(v),
            Ok((status, v)) => Err(relayed(
                status,
                code_of(status, &v),
                &v,
                &format!("{who}: "),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{who} unreachable: {e}"),
            )),
        }
    }

    /// Sends `body` to the shard's primary until it answers for sure or [`WRITE_DEADLINE`]
    /// passes: follows 421 hints, asks the topology again, retries in-doubt failures with the
    /// same `op_id`.
    pub(super) async fn to_primary(
        &self,
        shard: &Ident,
        method: reqwest::Method,
        path: &str,
        body: &Json_,
        op_id: Option<&str>,
    ) -> Result<Json_, ApiError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut hint: Option<String> = None;
        let mut last_error = format!("shard {shard} has no primary");
        let mut pauses = PRIMARY_RETRY.start();
        while Instant::now() < deadline {
            let primary = hint
                .take()
                .or_else(|| self.primaries.primary(shard.as_str()));
            let routes = self.routes()?;
            let Some((server, url)) =
                primary.and_then(|p| routes.url(&p).map(|u| (p.clone(), u.to_owned())))
            else {
                self.metrics.retry("no-primary");
                tokio::time::sleep(pauses.next_pause()).await;
                continue;
            };
            let sent = tokio::select! {
                answer = self.call(&url, method.clone(), path, body, op_id) => Some(answer),
                () = self.primary_moved(shard, &server) => None,
            };
            let Some(answer) = sent else {
                // The control plane elected another primary while this call hung (a frozen or
                // partitioned primary): resend to it now; the op id makes that safe.
                self.metrics.retry("primary-moved");
                last_error = format!("{server} stopped answering and was replaced");
                continue;
            };
            match answer {
                Ok((200, v)) => return Ok(v),
                // Branch on the agent's error code, never on its message.
                Ok((status, v)) => match code_of(status, &v) {
                    ErrorCode::NotPrimary => {
                        self.metrics.retry("not-primary");
                        hint = v["primary"]
                            .as_str()
                            .filter(|p| *p != server)
                            .map(str::to_owned);
                        last_error = message_of(&v);
                    }
                    code if code.is_transient() => {
                        self.metrics.retry("unavailable");
                        last_error = format!("{server} answered {code}: {}", message_of(&v));
                    }
                    code => return Err(relayed(status, code, &v, "")),
                },
                Err(e) => {
                    self.metrics.retry("unreachable");
                    last_error = format!("{server} unreachable: {e}");
                }
            }
            debug!(%shard, %last_error, "retrying the primary");
            tokio::time::sleep(pauses.next_pause()).await;
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "shard {shard}: {last_error}; gave up after {}s (a retry is safe)",
                WRITE_DEADLINE.as_secs()
            ),
        ))
    }

    /// Resolves once the published primary of `shard` is another server than `server`. Checked
    /// only after [`MOVED_CHECK_AFTER`], when a call is slower than any healthy one.
    async fn primary_moved(&self, shard: &Ident, server: &str) {
        tokio::time::sleep(MOVED_CHECK_AFTER).await;
        loop {
            if self
                .primaries
                .primary(shard.as_str())
                .is_some_and(|p| p != server)
            {
                return;
            }
            tokio::time::sleep(MOVED_CHECK_EVERY).await;
        }
    }

    /// A read of one shard that sees at least log position `min_lsn` (0: any committed state):
    /// the ring's pick first, then the other replicas, each waiting a moment for the position;
    /// for a session read the primary last, which may wait longer. Returns the rows and the
    /// position the read was served at. Each attempt travels in its server's next read batch.
    pub(super) async fn read_from(
        self: &Arc<Self>,
        shard: &Ident,
        range: KeyRange,
        request_id: u64,
        min_lsn: Option<u64>,
    ) -> Result<(Vec<Json_>, u64), ApiError> {
        let routes = self.routes()?;
        let mut read = BatchedRead {
            shard: shard.clone(),
            range,
            min_lsn: min_lsn.unwrap_or(0),
            wait_ms: if min_lsn.is_some() {
                REPLICA_SESSION_WAIT_MS
            } else {
                0
            },
            strong: false,
        };
        let mut last_error = format!("shard {shard} has no replica");
        for server in routes.read_order(shard, request_id) {
            let Some(url) = routes.url(server) else {
                continue;
            };
            let key = ReadKey::Server(url.to_owned());
            match self.read_op(key, read.clone()).await {
                Ok(v) => return Ok(rows_and_position(v)),
                Err(e) => last_error = format!("{server} answered {}: {}", e.status, e.message),
            }
            self.metrics.retry("read-fallback");
        }
        if min_lsn.is_some() {
            read.wait_ms = PRIMARY_SESSION_WAIT_MS;
            let v = self.read_op(ReadKey::Primary(shard.clone()), read).await?;
            return Ok(rows_and_position(v));
        }
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, last_error))
    }

    /// A strong (linearizable) read of one shard on its primary: rows and the position read at.
    /// Strong reads in one batch share the primary's read-index check, which starts after each
    /// of them arrived.
    pub(super) async fn read_strong(
        self: &Arc<Self>,
        shard: &Ident,
        range: KeyRange,
    ) -> Result<(Vec<Json_>, u64), ApiError> {
        let read = BatchedRead {
            shard: shard.clone(),
            range,
            min_lsn: 0,
            wait_ms: 0,
            strong: true,
        };
        let v = self.read_op(ReadKey::Primary(shard.clone()), read).await?;
        Ok(rows_and_position(v))
    }
}

/// The log position an agent's data answer reflects (its `x-walshard-lsn` header).
pub(super) fn applied_of(v: &Json_) -> u64 {
    v["lsn"].as_u64().unwrap_or(0)
}

/// An agent's error answer relayed as the router's own (its status, code and message, and the
/// server and shard it names, e.g. of a full disk).
pub(super) fn relayed(status: u16, code: ErrorCode, v: &Json_, prefix: &str) -> ApiError {
    let mut e = ApiError::new(status, format!("{prefix}{}", message_of(v))).with_code(code);
    for field in ["server", "shard"] {
        if let Some(x) = v.get(field) {
            e.extra.insert(field.into(), x.clone());
        }
    }
    e
}

/// The message of an agent's answer (the whole answer if it has none).
pub(super) fn message_of(v: &Json_) -> String {
    v["message"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_owned)
}

/// The rows of an agent's read answer (moved out of it) and the position it was served at.
pub(super) fn rows_and_position(mut v: Json_) -> (Vec<Json_>, u64) {
    let at = applied_of(&v);
    let rows = match v.get_mut("data").map(Json_::take) {
        Some(Json_::Array(rows)) => rows,
        _ => Vec::new(),
    };
    (rows, at)
}
