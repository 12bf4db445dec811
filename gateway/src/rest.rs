//! The REST API of docs/protocol.md under `/api/chat`. Reads go to the store
//! directly; writes become commands for the worker, like socket events, so
//! every change is fanned out the same way whichever entry point made it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_shared::auth::Identity;
use chat_shared::envelope::{Command, ReplyBody};
use chat_shared::protocol::{
    AssignBody, CloseBody, CreateSessionBody, MessagePage, PostMessageBody, Role, Session,
    SessionPage, SessionStatus, TransferBody,
};
use chat_shared::store::{MessageRange, SessionCursor, SessionQuery, SessionScope, StoreError};
use chat_shared::{validate, ChatError, ErrorCode, Timestamp};
use serde_json::Value;

use crate::commands::request;
use crate::http_error::{ApiError, ApiResult};
use crate::state::GatewayState;
use chat_shared::permissions::may_read;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
use chat_shared::protocol::DEFAULT_POOL;

type AppState = State<Arc<GatewayState>>;

pub fn routes() -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/sessions", post(create_session).get(list_sessions))
        .route("/sessions/{id}", get(get_session))
        .route(
            "/sessions/{id}/messages",
            get(list_messages).post(post_message),
        )
        .route("/sessions/{id}/assign", post(assign))
        .route("/sessions/{id}/transfer", post(transfer))
        .route("/sessions/{id}/close", post(close))
        .route("/stats", get(stats))
        .route("/agents", get(crate::agents::list))
}

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

fn session_id_param(id: &str) -> Result<(), ChatError> {
    validate::session_id(id)
}

fn store_error(error: StoreError) -> ApiError {
    tracing::warn!(%error, "store read failed");
    ApiError(ChatError::unavailable(
        "the chat store is unavailable; try again",
    ))
}

fn limit_param(query: &HashMap<String, String>) -> Result<usize, ChatError> {
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(ChatError::invalid(format!(
                "limit must be an integer from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

fn seq_param(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ChatError> {
    match query.get(name) {
        None => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(seq) if seq >= 0 => Ok(Some(seq)),
            _ => Err(ChatError::invalid(format!(
                "{name} must be a non-negative integer"
            ))),
        },
    }
}

async fn readable_session(state: &GatewayState, caller: &Identity, id: &str) -> ApiResult<Session> {
    session_id_param(id)?;
    let session = state
        .store
        .get_session(id)
        .await
        .map_err(store_error)?
        .ok_or_else(ChatError::session_not_found)?;
    if !may_read(caller, &session) {
        return Err(ChatError::forbidden("you may not read this session").into());
    }
    Ok(session)
}

fn session_reply(outcome: Result<ReplyBody, ChatError>, status: StatusCode) -> ApiResult<Response> {
    match outcome? {
        ReplyBody::Session(session) => Ok((status, Json(session)).into_response()),
        _ => Err(ChatError::unavailable("unexpected answer from the worker").into()),
    }
}

async fn create_session(
    State(state): AppState,
    Writer(caller): Writer,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = CreateSessionBody::parse(json_body(body)?)?;
    if caller.role != Role::Customer {
        return Err(ChatError::forbidden("only customers open sessions").into());
    }
    let pool = body.pool.unwrap_or_else(|| DEFAULT_POOL.to_owned());
    crate::admission::may_open_session(&state, &caller, &pool).await?;
    let command = Command::CreateSession {
        session_id: uuid::Uuid::now_v7().to_string(),
        pool,
        subject: body.subject,
        first_message: body.message,
    };
    session_reply(request(&state, &caller, command).await, StatusCode::CREATED)
}

async fn list_sessions(
    State(state): AppState,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<SessionPage>> {
    let limit = limit_param(&query)?;
    let status = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(
            SessionStatus::parse(text)
                .ok_or_else(|| ChatError::invalid("status must be pending, active or closed"))?,
        ),
    };
    let pool = match query.get("pool").map(String::as_str) {
        None | Some("") => None,
        Some(pool) => {
            validate::pool(pool)?;
            Some(pool.to_owned())
        }
    };
    let after = match query.get("cursor").map(String::as_str) {
        None | Some("") => None,
        Some(text) => {
            Some(decode_cursor(text).ok_or_else(|| ChatError::invalid("cursor is not valid"))?)
        }
    };
    let scope = match caller.role {
        Role::Customer => SessionScope::Customer(caller.user_id.clone()),
        Role::Agent => SessionScope::Pools(caller.pools.clone()),
        Role::Admin => SessionScope::All,
    };
    let mut items = state
        .store
        .list_sessions(&SessionQuery {
            scope,
            status,
            pool,
            limit: limit + 1,
            after,
        })
        .await
        .map_err(store_error)?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(SessionPage { items, next_cursor }))
}

/// Cursors are `<createdAt millis>.<id>` of the last session returned.
fn encode_cursor(session: &Session) -> String {
    format!("{}.{}", session.created_at.millis(), session.id)
}

fn decode_cursor(text: &str) -> Option<SessionCursor> {
    let (millis, id) = text.split_once('.')?;
    if id.is_empty() {
        return None;
    }
    Some(SessionCursor {
        created_at: Timestamp::from_millis(millis.parse().ok()?),
        id: id.to_owned(),
    })
}

async fn get_session(
    State(state): AppState,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Session>> {
    readable_session(&state, &caller, &id).await.map(Json)
}

async fn list_messages(
    State(state): AppState,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<MessagePage>> {
    let limit = limit_param(&query)?;
    let range = match (
        seq_param(&query, "afterSeq")?,
        seq_param(&query, "beforeSeq")?,
    ) {
        (Some(after), Some(before)) => MessageRange::Between { after, before },
        (Some(after), None) => MessageRange::After(after),
        (None, Some(before)) => MessageRange::Before(before),
        (None, None) => MessageRange::Latest,
    };
    readable_session(&state, &caller, &id).await?;
    let page = state
        .store
        .messages(&id, range, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(page))
}

async fn post_message(
    State(state): AppState,
    Writer(caller): Writer,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    session_id_param(&id)?;
    let body = PostMessageBody::parse(json_body(body)?)?;
    let command = Command::SendMessage {
        session_id: id,
        content: body.content,
        client_msg_id: Some(body.client_msg_id),
    };
    match request(&state, &caller, command).await? {
        ReplyBody::Message { message, duplicate } => {
            let status = if duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json(message)).into_response())
        }
        _ => Err(ChatError::unavailable("unexpected answer from the worker").into()),
    }
}

async fn assign(
    State(state): AppState,
    Writer(caller): Writer,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    session_id_param(&id)?;
    let body = AssignBody::parse(json_body(body)?)?;
    let command = Command::Assign {
        session_id: id,
        agent_id: body.agent_id,
    };
    session_reply(request(&state, &caller, command).await, StatusCode::OK)
}

async fn transfer(
    State(state): AppState,
    Writer(caller): Writer,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    session_id_param(&id)?;
    let body = TransferBody::parse(json_body(body)?)?;
    let command = Command::Transfer {
        session_id: id,
        agent_id: body.agent_id,
        pool: body.pool,
    };
    session_reply(request(&state, &caller, command).await, StatusCode::OK)
}

async fn close(
    State(state): AppState,
    Writer(caller): Writer,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    session_id_param(&id)?;
    let body = CloseBody::parse(json_body(body)?)?;
    let command = Command::Close {
        session_id: id,
        reason: body.reason,
    };
    session_reply(request(&state, &caller, command).await, StatusCode::OK)
}

async fn stats(
    State(state): AppState,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let pool = match query.get("pool").map(String::as_str) {
        Some(pool) if !pool.is_empty() => {
            validate::pool(pool)?;
            pool.to_owned()
        }
        // An admin's token pools say nothing of what it watches.
        _ if caller.role == Role::Admin => DEFAULT_POOL.to_owned(),
        _ => caller
            .pools
            .first()
            .cloned()
            .unwrap_or_else(|| DEFAULT_POOL.to_owned()),
    };
    let allowed = match caller.role {
        Role::Admin => true,
        Role::Agent => caller.pools.contains(&pool),
        Role::Customer => false,
    };
    if !allowed {
        return Err(ChatError::forbidden("stats are for the pool's agents and admins").into());
    }
    let stats = chat_shared::stats::compute(&*state.store, &*state.backplane, &pool).await?;
    Ok(Json(stats).into_response())
}
