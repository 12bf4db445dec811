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
use chat_shared::protocol::Role;
use chat_shared::{validate, ChatError};
use serde::Deserialize;
use serde_json::json;

use crate::http_error::ApiResult;
use crate::rest::json_body;
use crate::state::GatewayState;

/// Lifetime of development tokens.
const DEV_TOKEN_TTL_SECONDS: i64 = 12 * 3600;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<Arc<GatewayState>>) -> Response {
    let draining = state.draining.load(Ordering::Relaxed);
    let backplane = state.backplane.ping().await.is_ok();
    let store = state.store.ping().await.is_ok();
    let ready = !draining && backplane && store;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body =
        json!({ "ready": ready, "draining": draining, "backplane": backplane, "store": store });
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<Arc<GatewayState>>) -> Response {
    let mut text = state.metrics.render();
    text.push_str(&format!(
        "# HELP chat_gateway_pending_requests Commands waiting for the worker's answer.\n# TYPE chat_gateway_pending_requests gauge\nchat_gateway_pending_requests {}\n",
        state.hub.requests.len()
    ));
    text.push_str(&format!(
        "# HELP chat_build_info Build information.\n# TYPE chat_build_info gauge\nchat_build_info{{version=\"{}\",component=\"gateway\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
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
        validate::pool(pool)?;
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
    Ok(Json(json!({ "token": token, "user": identity })).into_response())
}
