//! Sending commands to the worker: wrap them in an envelope with the
//! caller's identity and a reply address, append them to the partition of
//! their session, and route the answer to whoever waits for it.

use std::sync::Arc;

use chat_shared::auth::Identity;
use chat_shared::envelope::{self, Command, CommandEnvelope, ReplyBody, ReplyTo};
use chat_shared::names::partition_of;
use chat_shared::{ChatError, Timestamp};
use tokio::sync::oneshot;

use crate::requests::{answer, Waiter};
use crate::state::GatewayState;

/// Appends a command whose answer goes to `waiter`. If it cannot be
/// appended, the waiter is answered with `unavailable` at once.
pub async fn submit(
    state: &Arc<GatewayState>,
    identity: &Identity,
    command: Command,
    waiter: Waiter,
) {
    let request_id = state
        .hub
        .requests
        .register(waiter, state.config.request_timeout);
    let envelope = CommandEnvelope {
        reply_to: Some(ReplyTo {
            gateway_id: state.hub.gateway_id().to_owned(),
            request_id,
        }),
        actor: identity.clone(),
        issued_at: Timestamp::now(),
        command,
    };
    if let Err(error) = append(state, &envelope).await {
        if let Some(waiter) = state.hub.requests.take(request_id) {
            answer(waiter, Err(error), &state.metrics);
        }
    }
}

/// Appends a command nobody waits for.
pub async fn submit_detached(
    state: &GatewayState,
    identity: &Identity,
    command: Command,
) -> Result<(), ChatError> {
    let envelope = CommandEnvelope {
        reply_to: None,
        actor: identity.clone(),
        issued_at: Timestamp::now(),
        command,
    };
    append(state, &envelope).await
}

/// Sends a command and waits for the worker's answer (REST).
pub async fn request(
    state: &Arc<GatewayState>,
    identity: &Identity,
    command: Command,
) -> Result<ReplyBody, ChatError> {
    let (sender, receiver) = oneshot::channel();
    submit(state, identity, command, Waiter::Http(sender)).await;
    receiver
        .await
        .unwrap_or_else(|_| Err(ChatError::unavailable("the gateway is shutting down")))
}

async fn append(state: &GatewayState, envelope: &CommandEnvelope) -> Result<(), ChatError> {
    let bytes = envelope::encode(envelope).map_err(|e| ChatError::unavailable(e.to_string()))?;
    let partition = partition_of(envelope.command.partition_key(), state.config.partitions);
    state
        .backplane
        .append_command(partition, bytes)
        .await
        .map_err(|error| {
            state
                .metrics
                .backplane_error(crate::metrics::BackplaneOp::Append);
            tracing::warn!(%error, "command not appended");
            ChatError::unavailable("the chat backplane is unavailable; try again")
        })
}
