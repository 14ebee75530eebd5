//! The `"code"` of every error answer of the agent and the router: one kebab-case word per
//! reason a request failed, each with one HTTP status.
//!
//! | code | HTTP | meaning | what a caller does |
//! | --- | --- | --- | --- |
//! | `invalid-request` | 400 | malformed JSON, a missing or mistyped field or header, a key outside every shard | fix the request |
//! | `not-configured` | 400 | no schema yet: `POST /init` (router) or `/config` (agent) first | configure |
//! | `unauthorized` | 401 | missing or wrong bearer token | send the cluster's token |
//! | `not-found` | 404 | no such endpoint, shard, server or key | – |
//! | `method-not-allowed` | 405 | wrong method for the endpoint | – |
//! | `conflict` | 409 | duplicate key, schema or range mismatch, a change refused as a whole | – |
//! | `stale-epoch` | 409 | a replica promised a higher epoch or follows another primary (`epoch`, `primary`) | stop acting for the old epoch |
//! | `log-mismatch` | 412 | an append does not continue the replica's log (`last_lsn`, `last_epoch`) | send from earlier |
//! | `too-large` | 413 | request body over the limit | split it |
//! | `not-primary` | 421 | this replica does not take writes for the shard (`primary`, `epoch`: a hint) | resend to the primary |
//! | `internal` | 500 | a bug or an unexpected failure | report it |
//! | `bad-gateway` | 502 | the router got an answer from an agent it cannot use | retry |
//! | `unavailable` | 503 | nothing could serve it now (no replica reachable, MySQL down, deadline passed) | retry (writes: same op id) |
//! | `no-majority` | 503 | the shard has no majority: writes refused, eventual reads served | wait for replicas to return |
//! | `not-ready` | 503 | the primary's no-op of its epoch is not committed yet, or it is stepping down | retry shortly |
//! | `replica-behind` | 503 | a session read needs a log position this replica has not applied yet (`applied_lsn`, `wanted_lsn`) | read another replica or the primary |
//! | `catching-up` | 503 | this replica restarted or installs a snapshot and serves no reads yet | read another replica |
//! | `not-committed` | 503 | a write is durable on this primary but not committed and applied in time | retry with the same op id |
//! | `halted` | 503 | the shard stopped on a broken invariant (see the message) | operator action |
//! | `shutting-down` | 503 | the process is stopping | retry elsewhere |
//! | `disk-full` | 507 | the WAL or MySQL cannot write: no space | free space; writes resume |

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a request failed (the `"code"` of an error answer). See the module docs for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// 400: malformed JSON, a missing or mistyped field or header, a key outside every shard.
    InvalidRequest,
    /// 400: no schema yet; `POST /init` (router) or `/config` (agent) first.
    NotConfigured,
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 404: no such endpoint, shard, server or key.
    NotFound,
    /// 405: wrong method for the endpoint.
    MethodNotAllowed,
    /// 409: duplicate key, schema or range mismatch, a change refused as a whole.
    Conflict,
    /// 409: the replica promised a higher epoch or follows another primary (`epoch`, `primary`).
    StaleEpoch,
    /// 412: an append does not continue the replica's log (`last_lsn`, `last_epoch`).
    LogMismatch,
    /// 413: the request body is over the limit.
    TooLarge,
    /// 421: this replica does not take writes for the shard (`primary`, `epoch`: a hint).
    NotPrimary,
    /// 500: a bug or an unexpected failure.
    Internal,
    /// 502: the router got an answer from an agent it cannot use.
    BadGateway,
    /// 503: nothing could serve it now (no replica reachable, MySQL down, deadline passed).
    Unavailable,
    /// 503: the shard has no majority; writes are refused, eventual reads served.
    NoMajority,
    /// 503: the primary's no-op of its epoch is not committed yet, or it is stepping down.
    NotReady,
    /// 503: a session read needs a log position this replica has not applied yet (`applied_lsn`, `wanted_lsn`).
    ReplicaBehind,
    /// 503: the replica restarted or installs a snapshot and serves no reads yet.
    CatchingUp,
    /// 503: the write is durable on this primary but not committed and applied in time; retry with the same op id.
    NotCommitted,
    /// 503: the shard stopped on a broken invariant (see the message).
    Halted,
    /// 503: the process is stopping.
    ShuttingDown,
    /// 507: the WAL or MySQL cannot write for lack of space.
    DiskFull,
}

impl ErrorCode {
    /// Every code, in the order of the table.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidRequest,
        ErrorCode::NotConfigured,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::StaleEpoch,
        ErrorCode::LogMismatch,
        ErrorCode::TooLarge,
        ErrorCode::NotPrimary,
        ErrorCode::Internal,
        ErrorCode::BadGateway,
        ErrorCode::Unavailable,
        ErrorCode::NoMajority,
        ErrorCode::NotReady,
        ErrorCode::ReplicaBehind,
        ErrorCode::CatchingUp,
        ErrorCode::NotCommitted,
        ErrorCode::Halted,
        ErrorCode::ShuttingDown,
        ErrorCode::DiskFull,
    ];

    /// The kebab-case word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid-request",
            ErrorCode::NotConfigured => "not-configured",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not-found",
            ErrorCode::MethodNotAllowed => "method-not-allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::StaleEpoch => "stale-epoch",
            ErrorCode::LogMismatch => "log-mismatch",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::NotPrimary => "not-primary",
            ErrorCode::Internal => "internal",
            ErrorCode::BadGateway => "bad-gateway",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NoMajority => "no-majority",
            ErrorCode::NotReady => "not-ready",
            ErrorCode::ReplicaBehind => "replica-behind",
            ErrorCode::CatchingUp => "catching-up",
            ErrorCode::NotCommitted => "not-committed",
            ErrorCode::Halted => "halted",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::DiskFull => "disk-full",
        }
    }

    /// The HTTP status an answer with this code has.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::NotConfigured => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::StaleEpoch => 409,
            ErrorCode::LogMismatch => 412,
            ErrorCode::TooLarge => 413,
            ErrorCode::NotPrimary => 421,
            ErrorCode::Internal => 500,
            ErrorCode::BadGateway => 502,
            ErrorCode::Unavailable
            | ErrorCode::NoMajority
            | ErrorCode::NotReady
            | ErrorCode::ReplicaBehind
            | ErrorCode::CatchingUp
            | ErrorCode::NotCommitted
            | ErrorCode::Halted
            | ErrorCode::ShuttingDown => 503,
            ErrorCode::DiskFull => 507,
        }
    }

    /// The code an answer without one is read as: the general code of its HTTP status.
    pub fn from_status(status: u16) -> ErrorCode {
        match status {
            401 | 403 => ErrorCode::Unauthorized,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            412 => ErrorCode::LogMismatch,
            413 => ErrorCode::TooLarge,
            421 => ErrorCode::NotPrimary,
            502 => ErrorCode::BadGateway,
            503 | 504 => ErrorCode::Unavailable,
            507 => ErrorCode::DiskFull,
            400..=499 => ErrorCode::InvalidRequest,
            _ => ErrorCode::Internal,
        }
    }

    /// The same request may succeed later, on this replica or another, without being changed:
    /// a router retries these (writes with their op id) until its deadline.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::NotPrimary
                | ErrorCode::Internal
                | ErrorCode::BadGateway
                | ErrorCode::Unavailable
                | ErrorCode::NotReady
                | ErrorCode::ReplicaBehind
                | ErrorCode::CatchingUp
                | ErrorCode::NotCommitted
                | ErrorCode::Halted
                | ErrorCode::ShuttingDown
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kebab_case_words_with_their_status() {
        for code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).expect("serialize");
            assert_eq!(wire, code.as_str());
            let back: ErrorCode = serde_json::from_value(wire).expect("parse");
            assert_eq!(back, code);
            // The general code of a status reads back to a code of that status.
            assert_eq!(
                ErrorCode::from_status(code.status()).status(),
                code.status()
            );
        }
    }

    #[test]
    fn the_docs_table_lists_every_code() {
        let docs = include_str!("error_code.rs");
        for code in ErrorCode::ALL {
            let row = format!("//! | `{}` | {} |", code.as_str(), code.status());
            assert!(docs.contains(&row), "missing row for {code}");
        }
    }
}
