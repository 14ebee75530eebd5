//! The bearer-token check of every walshard HTTP API (feature `http`): a request must carry
//! `Authorization: Bearer <token>`; the token is compared in constant time, and a refusal is a
//! 401 with the code `unauthorized` in the failure format.
//!
//! As a layer: `axum::middleware::from_fn_with_state(BearerToken::new(token), require_bearer)`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// The message of every refusal.
pub const UNAUTHORIZED_MESSAGE: &str = "missing or wrong bearer token";

/// A token requests must present.
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// The token `token`.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>` (constant-time comparison).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| given.as_bytes().ct_eq(self.0.as_bytes()).into())
    }

    /// `Ok` if `headers` carry this token, else the 401 answer.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.admits(headers) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                UNAUTHORIZED_MESSAGE,
            ))
        }
    }
}

/// Middleware: runs the request only if it carries the token.
pub async fn require_bearer(
    State(token): State<BearerToken>,
    req: Request,
    next: Next,
) -> Response {
    match token.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(a).expect("header"),
            );
        }
        h
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = BearerToken::new("s3cret");
        assert!(token.admits(&headers(Some("Bearer s3cret"))));
        for refused in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            assert!(!token.admits(&headers(refused)), "{refused:?}");
        }
        let e = token.check(&headers(None)).expect_err("refused");
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (401, crate::ErrorCode::Unauthorized, UNAUTHORIZED_MESSAGE)
        );
    }
}
