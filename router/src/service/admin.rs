//! The control-plane side of the router: `/init`, `/add` and `/rm` carried out by the control
//! plane, and the fleet view followed from it ([`follow`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tracing::{info, warn};
use walshard_contract::answers::parse_json;
use walshard_contract::{ApiError, Backoff};

use super::handlers::timed;
use super::state::RouterState;
use crate::fleet::{Admin, FleetAdmin, FleetPrimaries, LONG_POLL};
use crate::hashing::HashMode;

/// Pauses between attempts to reach an unreachable control plane.
const FOLLOW_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));

/// Has the control plane carry out `/init`, `/add` or `/rm`, then takes up the fleet view it
/// produced before answering (so the next request sees the change).
async fn administer(state: &RouterState, request: Admin, body: &[u8]) -> Response {
    let endpoint = request.path();
    timed(state, endpoint, async {
        let body = parse_json(body)?;
        let control = state.control.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "this router has no control plane; the fleet is configured elsewhere",
            )
        })?;
        let answer = control.plane.admin(request, &body).await?;
        match control.plane.view(0, Duration::ZERO).await {
            Ok(view) => state.apply_view(&control.primaries, view, control.mode),
            Err(e) => warn!(error = %e, "fleet view not refreshed after {endpoint}"),
        }
        Ok(answer)
    })
    .await
}

pub(super) async fn init(State(state): State<Arc<RouterState>>, body: Bytes) -> Response {
    administer(&state, Admin::Init, &body).await
}

pub(super) async fn add(State(state): State<Arc<RouterState>>, body: Bytes) -> Response {
    administer(&state, Admin::Add, &body).await
}

pub(super) async fn rm(State(state): State<Arc<RouterState>>, body: Bytes) -> Response {
    administer(&state, Admin::Rm, &body).await
}

/// Keeps `state` and `primaries` current from the control plane, forever.
pub async fn follow(
    control: Arc<dyn FleetAdmin>,
    state: Arc<RouterState>,
    primaries: Arc<FleetPrimaries>,
    mode: HashMode,
) {
    let mut version = 0;
    let mut pauses = FOLLOW_RETRY.start();
    loop {
        match control.view(version, LONG_POLL).await {
            Ok(view) => {
                if view.version != version {
                    if version == 0 {
                        info!(version = view.version, "fleet view received");
                    }
                    version = view.version;
                    state.apply_view(&primaries, view, mode);
                }
                pauses.reset();
            }
            Err(e) => {
                warn!(error = %e, "control plane unreachable; retrying");
                tokio::time::sleep(pauses.next_pause()).await;
            }
        }
    }
}
