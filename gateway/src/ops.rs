//! Operational endpoints (`/healthz`, `/readyz`, `/metrics`), the
//! development token endpoint, and the answer to HTTP long-polling.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chat_shared::auth::Identity;
use chat_shared::ids::PoolName;
use chat_shared::metrics::{self, Kind};
use chat_shared::protocol::Role;
use chat_shared::runtime::Readiness;
use chat_shared::{validate, ChatError};
use serde::Deserialize;
use serde_json::json;

use crate::http_caller::json_body;
use crate::http_error::ApiResult;
use crate::state::GatewayState;

/// Lifetime of development tokens.
const DEV_TOKEN_TTL_SECONDS: i64 = 12 * 3600;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Checks both dependencies at once, each bounded.
pub async fn readiness(state: &GatewayState) -> Readiness {
    let draining = state.draining.load(Ordering::Relaxed);
    Readiness::check(draining, &*state.backplane, &*state.store).await
}

pub async fn readyz(State(state): State<Arc<GatewayState>>) -> Response {
    let readiness = readiness(&state).await;
    let status = if readiness.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.body())).into_response()
}

/// The Prometheus text exposition of this process: the gateway's series,
/// those of any other component it runs (the standalone worker), its
/// readiness, and the build info.
pub async fn metrics(State(state): State<Arc<GatewayState>>) -> Response {
    let readiness = readiness(&state).await;
    let mut text = String::with_capacity(16 * 1024);
    state.metrics.render(&mut text);
    state.store.render_metrics(&mut text);
    metrics::single(
        &mut text,
        "chat_gateway_pending_requests",
        Kind::Gauge,
        "Commands waiting for a worker's answer.",
        state.requests.len(),
    );
    metrics::single(
        &mut text,
        "chat_gateway_draining",
        Kind::Gauge,
        "1 while the gateway drains (after SIGTERM), else 0.",
        u8::from(readiness.draining),
    );
    metrics::single(
        &mut text,
        "chat_ready",
        Kind::Gauge,
        "1 while /readyz answers 200: dependencies answer and the process is not draining.",
        u8::from(readiness.ready()),
    );
    let sources = state.metrics_sources();
    let mut components = vec!["gateway"];
    for source in &sources {
        source.render(&mut text);
        components.push(source.component());
    }
    metrics::build_info(&mut text, &components);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// Any `/socket.io/` request that is not a WebSocket upgrade.
pub async fn polling_refused() -> Response {
    let body = json!({
        "code": 3,
        "message": "Bad request: this server speaks the WebSocket transport only; connect with transports: [\"websocket\"]",
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevTokenRequest {
    user_id: String,
    #[serde(default)]
    name: Option<String>,
    role: String,
    #[serde(default)]
    pools: Option<Vec<String>>,
}

/// `POST /api/dev/token { userId, name, role, pools }` → `{ token }`.
pub async fn dev_token(
    State(state): State<Arc<GatewayState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Some(minter) = &state.minter else {
        return Err(ChatError::not_found("the development token endpoint is disabled").into());
    };
    let request: DevTokenRequest = chat_shared::protocol::from_json(json_body(body)?)?;
    validate::user_id(&request.user_id, "userId")?;
    if let Some(name) = &request.name {
        validate::display_name(name)?;
    }
    let role = Role::parse(&request.role)
        .ok_or_else(|| ChatError::invalid("role must be customer, agent or admin"))?;
    let pools = match role {
        Role::Customer => Vec::new(),
        _ => request
            .pools
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| vec!["default".to_owned()]),
    };
    for pool in &pools {
        PoolName::parse(pool.as_str())?;
    }
    let identity = Identity {
        name: request
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| request.user_id.clone()),
        user_id: request.user_id,
        role,
        pools,
    };
    let token = minter
        .mint(&identity, DEV_TOKEN_TTL_SECONDS)
        .map_err(|e| ChatError::unavailable(e.to_string()))?;
    let user = json!({
        "userId": identity.user_id,
        "name": identity.name,
        "role": identity.role,
        "pools": identity.pools,
    });
    Ok(Json(json!({ "token": token, "user": user })).into_response())
}
