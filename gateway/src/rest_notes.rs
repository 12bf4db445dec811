//! The REST side of internal notes and invited colleagues: `GET
//! /sessions/{id}/notes` (staff who may read the session; customers 403),
//! `POST /sessions/{id}/participants` and `DELETE
//! /sessions/{id}/participants/{agentId}`. Notes are paged like messages
//! but by their own `seq`, from their own table: no read of messages can
//! return one. Changes of colleagues are worker commands, checked and
//! fanned out there like every other change of a session.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chat_shared::envelope::Command;
use chat_shared::ids::SessionId;
use chat_shared::permissions::may_read_notes;
use chat_shared::protocol::{AddParticipantBody, MessagePage, Role};
use chat_shared::{validate, ChatError};

use crate::http_caller::{json_body, Caller, Writer};
use crate::http_error::ApiResult;
use crate::rest::{session_reply, store_error};
use crate::state::GatewayState;

type AppState = State<Arc<GatewayState>>;

/// `GET /sessions/{id}/notes?afterSeq=&beforeSeq=&limit=`.
pub async fn list_notes(
    State(state): AppState,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<MessagePage>> {
    let (range, limit) = crate::rest::page_params(&query)?;
    let id = SessionId::parse(id)?;
    let session = state
        .store
        .get_session(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(ChatError::session_not_found)?;
    if caller.role == Role::Customer {
        return Err(ChatError::forbidden("internal notes are for agents and admins").into());
    }
    if !may_read_notes(&caller, &session) {
        return Err(ChatError::forbidden("you may not read this session").into());
    }
    let page = state
        .store
        .notes(&id, range, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(page))
}

/// `POST /sessions/{id}/participants` `{ agentId }`.
pub async fn add_participant(
    State(state): AppState,
    Writer(caller): Writer,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = SessionId::parse(id)?;
    let body = AddParticipantBody::parse(json_body(body)?)?;
    let command = Command::InviteParticipant {
        session_id: id.into(),
        agent_id: body.agent_id,
    };
    session_reply(
        state.requests.request(&caller, command).await,
        StatusCode::OK,
    )
}

/// `DELETE /sessions/{id}/participants/{agentId}`.
pub async fn remove_participant(
    State(state): AppState,
    Writer(caller): Writer,
    Path((id, agent_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = SessionId::parse(id)?;
    validate::user_id(&agent_id, "agentId")?;
    let command = Command::RemoveParticipant {
        session_id: id.into(),
        agent_id,
    };
    session_reply(
        state.requests.request(&caller, command).await,
        StatusCode::OK,
    )
}
