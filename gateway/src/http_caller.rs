//! Who makes a REST request and what it brings: the caller its bearer
//! token names (`Caller`), the same caller charged against the cluster-wide
//! write budget (`Writer`), and its JSON body. Shared by every route, the
//! chat's and the operational ones.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chat_shared::auth::Identity;
use chat_shared::{ChatError, ErrorCode};
use serde_json::Value;

use crate::http_error::ApiError;
use crate::state::GatewayState;

/// The authenticated caller of a REST request (`Authorization: Bearer`).
pub struct Caller(pub Identity);

impl FromRequestParts<Arc<GatewayState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<GatewayState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        state.verifier.verify(token).map(Caller).map_err(|error| {
            // The verifier's reason (algorithms, key ids) helps an
            // attacker more than a client: it goes to the log only.
            tracing::debug!(%error, "REST token refused");
            ApiError(ChatError::new(
                ErrorCode::Unauthorized,
                unauthorized_message(&error),
            ))
        })
    }
}

/// What a refused token's caller is told: which of §1's cases it is, no more.
fn unauthorized_message(error: &chat_shared::auth::AuthError) -> &'static str {
    match error {
        chat_shared::auth::AuthError::MissingToken => "a bearer token is required",
        chat_shared::auth::AuthError::InvalidToken(_) => "the token is not valid",
        chat_shared::auth::AuthError::TokenExpired => "the token has expired",
    }
}

/// The caller of a REST write, charged against its budget: the
/// `send-message` budget per user, shared by every gateway through the
/// backplane (a fixed window of `RATE_LIMIT_BURST` writes lasting as long
/// as the burst takes to refill). Over it: 429 `rate_limited` with
/// `Retry-After`.
pub struct Writer(pub Identity);

impl FromRequestParts<Arc<GatewayState>> for Writer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<GatewayState>,
    ) -> Result<Self, Self::Rejection> {
        let Caller(caller) = Caller::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let config = &state.config;
        if config.rate_limit_per_sec == 0 {
            return Ok(Writer(caller));
        }
        let window_secs = (config.rate_limit_burst.max(1))
            .div_ceil(config.rate_limit_per_sec)
            .max(1);
        let window = std::time::Duration::from_secs(u64::from(window_secs));
        let key = state.hub.names().rest_write_window(&caller.user_id);
        match state.backplane.count_in_window(&key, window).await {
            Ok(count) if count > u64::from(config.rate_limit_burst.max(1)) => {
                state.metrics.rate_limited.inc();
                let mut response = ApiError(ChatError::new(
                    ErrorCode::RateLimited,
                    "too many requests; slow down",
                ))
                .into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    axum::http::HeaderValue::from(window_secs),
                );
                Err(response)
            }
            Ok(_) => Ok(Writer(caller)),
            // The budget is a guard, not a gate: without the backplane the
            // write fails further on anyway, with its own error.
            Err(error) => {
                tracing::warn!(%error, "REST write budget not checked");
                Ok(Writer(caller))
            }
        }
    }
}

/// Parses a JSON body; an empty body is `{}`, an oversized one 413.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ChatError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ChatError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than 64 KiB",
            )
        } else {
            tracing::debug!(%rejection, "request body not read");
            ChatError::invalid("the request body could not be read")
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ChatError::invalid(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}
