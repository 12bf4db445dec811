//! What every HTTP request meets before a handler: a body announced larger
//! than the limit is refused at once (413, nothing read), a request that
//! takes too long as a whole (a body trickling in) is cut off, and every
//! answer says `nosniff`. Pages of the web UI get their CSP in `web`.
//!
//! File uploads (`POST /api/chat/sessions/{id}/attachments`) are the one
//! exception to the body limit and the deadline: `app` lays neither on
//! their route. Their bound is `ATTACHMENT_MAX_BYTES`, and `attachments`
//! gives up on a body that stops coming rather than on one that takes long.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chat_shared::{ChatError, ErrorCode};

use crate::config::MAX_PAYLOAD_BYTES;
use crate::http_error::ApiError;

/// Refuses a request whose `Content-Length` exceeds the body limit before
/// reading any of it; bodies without a length are still cut at the limit
/// by the body extractor.
pub async fn refuse_oversized_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_PAYLOAD_BYTES as u64) {
        return ApiError(ChatError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than 64 KiB",
        ))
        .into_response();
    }
    next.run(request).await
}

/// Bounds a whole REST request, reading its body included: a client that
/// sends its body a byte at a time does not hold a task for ever. The
/// WebSocket upgrade is not under it (its connection lives on its own).
pub async fn bound_request_time(deadline: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = ApiError(ChatError::unavailable(
                "the request took too long; try again",
            ))
            .into_response();
            *response.status_mut() = axum::http::StatusCode::REQUEST_TIMEOUT;
            response
        }
    }
}

/// `X-Content-Type-Options: nosniff` on every answer.
pub async fn no_sniffing(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
