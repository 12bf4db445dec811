//! REST error answers: `{ error: { code, message } }` with the status of
//! the code (docs/protocol.md).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chat_shared::protocol::ErrorResponse;
use chat_shared::ChatError;

#[derive(Debug)]
pub struct ApiError(pub ChatError);

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorResponse { error: self.0 })).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
