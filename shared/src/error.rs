//! The protocol's error vocabulary: a code, a human message, and the HTTP
//! status each code maps to. Every failure a client can see ends up here.

use serde::{Deserialize, Serialize};

/// Error codes of docs/protocol.md, with their wire spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidPayload,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    SessionClosed,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidPayload => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::SessionClosed => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::SessionClosed => "session_closed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// The `Error` object of the protocol: `{ code, message }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ChatError {
    pub code: ErrorCode,
    pub message: String,
}

impl ChatError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ChatError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn session_closed() -> Self {
        Self::new(ErrorCode::SessionClosed, "the session is closed")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn session_not_found() -> Self {
        Self::not_found("no such session")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_in_snake_case_with_their_status() {
        let all = [
            (ErrorCode::InvalidPayload, "invalid_payload", 400),
            (ErrorCode::Unauthorized, "unauthorized", 401),
            (ErrorCode::Forbidden, "forbidden", 403),
            (ErrorCode::NotFound, "not_found", 404),
            (ErrorCode::Conflict, "conflict", 409),
            (ErrorCode::SessionClosed, "session_closed", 409),
            (ErrorCode::PayloadTooLarge, "payload_too_large", 413),
            (ErrorCode::RateLimited, "rate_limited", 429),
            (ErrorCode::Unavailable, "unavailable", 503),
        ];
        for (code, text, status) in all {
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(text));
            assert_eq!(code.as_str(), text);
            assert_eq!(code.http_status(), status);
        }
    }

    #[test]
    fn error_object_has_code_and_message() {
        let e = ChatError::session_closed();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "session_closed", "message": "the session is closed"})
        );
    }
}
