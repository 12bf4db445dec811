//! The REST API of docs/protocol.md under `/api/chat`. Reads go to the store
//! directly; writes become commands for the worker, like socket events, so
//! every change is fanned out the same way whichever entry point made it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_shared::auth::Identity;
use chat_shared::envelope::{Command, ReplyBody};
use chat_shared::ids::{PoolName, SessionId};
use chat_shared::protocol::{
    AssignBody, CloseBody, CreateSessionBody, MessagePage, PostMessageBody, Role, Session,
    SessionEventList, SessionPage, SessionStatus, TransferBody,
};
use chat_shared::store::{MessageRange, SessionCursor, SessionQuery, SessionScope, StoreError};
use chat_shared::{ChatError, Timestamp};

use crate::http_caller::{json_body, Caller, Writer};
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
        .route("/sessions/{id}/events", get(list_events))
        // Internal notes and invited colleagues.
        .route("/sessions/{id}/notes", get(crate::rest_notes::list_notes))
        .route(
            "/sessions/{id}/participants",
            post(crate::rest_notes::add_participant),
        )
        .route(
            "/sessions/{id}/participants/{agent_id}",
            axum::routing::delete(crate::rest_notes::remove_participant),
        )
        .route("/sessions/{id}/assign", post(assign))
        .route("/sessions/{id}/transfer", post(transfer))
        .route("/sessions/{id}/close", post(close))
        .route("/stats", get(stats))
        .route("/agents", get(crate::agents::list))
        .route("/agents/{id}/capacity", post(crate::routing::set_capacity))
        .route("/supervisor", get(crate::supervisor::view))
        .route("/queue", get(crate::queue_view::list))
}

pub(crate) fn store_error(error: StoreError) -> ApiError {
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

pub(crate) async fn readable_session(
    state: &GatewayState,
    caller: &Identity,
    id: &SessionId,
) -> ApiResult<Session> {
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

pub(crate) fn session_reply(
    outcome: Result<ReplyBody, ChatError>,
    status: StatusCode,
) -> ApiResult<Response> {
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
    let pool = body
        .pool
        .map_or_else(|| DEFAULT_POOL.to_owned(), String::from);
    crate::admission::may_open_session(&state, &caller, &pool).await?;
    let command = Command::CreateSession {
        session_id: uuid::Uuid::now_v7().to_string(),
        pool,
        subject: body.subject,
        first_message: body.message,
    };
    session_reply(
        state.requests.request(&caller, command).await,
        StatusCode::CREATED,
    )
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
        Some(pool) => Some(PoolName::parse(pool)?.into_string()),
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
    let id = SessionId::parse(id)?;
    readable_session(&state, &caller, &id).await.map(Json)
}

async fn list_messages(
    State(state): AppState,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<MessagePage>> {
    let (range, limit) = page_params(&query)?;
    let id = SessionId::parse(id)?;
    readable_session(&state, &caller, &id).await?;
    let page = state
        .store
        .messages(&id, range, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(page))
}

/// The window and size of a page of messages (or of notes, paged alike):
/// `afterSeq`, `beforeSeq` and `limit`.
pub(crate) fn page_params(
    query: &HashMap<String, String>,
) -> Result<(MessageRange, usize), ChatError> {
    let limit = limit_param(query)?;
    let range = match (
        seq_param(query, "afterSeq")?,
        seq_param(query, "beforeSeq")?,
    ) {
        (Some(after), Some(before)) => MessageRange::Between { after, before },
        (Some(after), None) => MessageRange::After(after),
        (None, Some(before)) => MessageRange::Before(before),
        (None, None) => MessageRange::Latest,
    };
    Ok((range, limit))
}

async fn post_message(
    State(state): AppState,
    Writer(caller): Writer,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = SessionId::parse(id)?;
    let body = PostMessageBody::parse(json_body(body)?)?;
    let command = if body.internal {
        // Internal notes: the worker decides who may write one.
        Command::SendNote {
            session_id: id.into(),
            content: body.content,
            client_msg_id: Some(body.client_msg_id.into()),
        }
    } else {
        Command::SendMessage {
            session_id: id.into(),
            content: body.content,
            client_msg_id: Some(body.client_msg_id.into()),
            attachment_ids: body.attachment_ids,
        }
    };
    match state.requests.request(&caller, command).await? {
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
    change_session(&state, &caller, id, body, |session_id, body| {
        let body = AssignBody::parse(body)?;
        Ok(Command::Assign {
            session_id,
            agent_id: body.agent_id,
        })
    })
    .await
}

async fn transfer(
    State(state): AppState,
    Writer(caller): Writer,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    change_session(&state, &caller, id, body, |session_id, body| {
        let body = TransferBody::parse(body)?;
        Ok(Command::Transfer {
            session_id,
            agent_id: body.agent_id,
            pool: body.pool.map(String::from),
        })
    })
    .await
}

/// Most timeline entries one `GET /sessions/{id}/events` returns.
const MAX_EVENTS: usize = 500;

async fn list_events(
    State(state): AppState,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionEventList>> {
    let id = SessionId::parse(id)?;
    readable_session(&state, &caller, &id).await?;
    let items = state
        .store
        .session_events(&id, MAX_EVENTS)
        .await
        .map_err(store_error)?;
    Ok(Json(SessionEventList { items }))
}

async fn close(
    State(state): AppState,
    Writer(caller): Writer,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    change_session(&state, &caller, id, body, |session_id, body| {
        let body = CloseBody::parse(body)?;
        Ok(Command::Close {
            session_id,
            reason: body.reason,
        })
    })
    .await
}

/// A change to one session (assign, transfer, close): the path names the
/// session, `command` reads the body into the change, and the answer is
/// the session as the worker left it.
async fn change_session(
    state: &GatewayState,
    caller: &Identity,
    id: String,
    body: Result<Bytes, BytesRejection>,
    command: impl FnOnce(String, serde_json::Value) -> Result<Command, ChatError>,
) -> ApiResult<Response> {
    let id = SessionId::parse(id)?;
    let command = command(id.into(), json_body(body)?)?;
    session_reply(
        state.requests.request(caller, command).await,
        StatusCode::OK,
    )
}

async fn stats(
    State(state): AppState,
    Caller(caller): Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let pool = match query.get("pool").map(String::as_str) {
        Some(pool) if !pool.is_empty() => PoolName::parse(pool)?.into_string(),
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
