//! Which agents this gateway serves, per pool: the first socket of an
//! agent in a pool announces them in the backplane's presence set and asks
//! for fresh stats; the last one to leave withdraws them. A heartbeat keeps
//! the entries alive while the gateway lives, so a crashed gateway's agents
//! drop out on their own.

use std::collections::HashMap;
use std::sync::Mutex;

use chat_shared::auth::Identity;
use chat_shared::envelope::Command;
use chat_shared::protocol::Role;
use tokio_util::sync::CancellationToken;

use crate::commands::submit_detached;
use crate::state::GatewayState;

#[derive(Default)]
pub struct Presence {
    sockets: Mutex<HashMap<(String, String), usize>>,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), usize>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entries(&self) -> Vec<(String, String)> {
        self.lock().keys().cloned().collect()
    }
}

pub async fn agent_connected(state: &GatewayState, identity: &Identity) {
    if identity.role != Role::Agent {
        return;
    }
    // Before the socket is greeted, so a client that sees `connected` can
    // count on being in the directory (a transfer to them is accepted).
    crate::agents::remember(state, identity).await;
    for pool in &identity.pools {
        let first = {
            let mut sockets = state.presence.lock();
            let count = sockets
                .entry((pool.clone(), identity.user_id.clone()))
                .or_insert(0);
            *count += 1;
            *count == 1
        };
        if first {
            let heartbeat = state
                .backplane
                .presence_heartbeat(
                    pool,
                    &identity.user_id,
                    state.hub.gateway_id(),
                    state.config.presence_ttl,
                )
                .await;
            if let Err(error) = heartbeat {
                state
                    .metrics
                    .backplane_error(crate::metrics::BackplaneOp::Presence);
                tracing::warn!(%error, "presence not recorded");
            }
            refresh_stats(state, identity, pool).await;
        }
    }
}

pub async fn agent_disconnected(state: &GatewayState, identity: &Identity) {
    if identity.role != Role::Agent {
        return;
    }
    // Last seen: now, as they leave.
    crate::agents::remember(state, identity).await;
    for pool in &identity.pools {
        let last = {
            let mut sockets = state.presence.lock();
            let key = (pool.clone(), identity.user_id.clone());
            match sockets.get_mut(&key) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    sockets.remove(&key);
                    true
                }
                None => false,
            }
        };
        if last {
            let removed = state
                .backplane
                .presence_remove(pool, &identity.user_id, state.hub.gateway_id())
                .await;
            if let Err(error) = removed {
                state
                    .metrics
                    .backplane_error(crate::metrics::BackplaneOp::Presence);
                tracing::warn!(%error, "presence not removed");
            }
            refresh_stats(state, identity, pool).await;
        }
    }
}

async fn refresh_stats(state: &GatewayState, identity: &Identity, pool: &str) {
    let command = Command::RefreshStats {
        pool: pool.to_owned(),
    };
    if let Err(error) = submit_detached(state, identity, command).await {
        tracing::warn!(%error, "stats refresh not requested");
    }
}

/// Renews every local agent's presence until `shutdown`.
pub async fn run_heartbeat(state: std::sync::Arc<GatewayState>, shutdown: CancellationToken) {
    let period = state.config.presence_ttl / 3;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for (pool, user_id) in state.presence.entries() {
            let beat = state
                .backplane
                .presence_heartbeat(
                    &pool,
                    &user_id,
                    state.hub.gateway_id(),
                    state.config.presence_ttl,
                )
                .await;
            if let Err(error) = beat {
                state
                    .metrics
                    .backplane_error(crate::metrics::BackplaneOp::Presence);
                tracing::warn!(%error, "presence heartbeat failed");
            }
        }
    }
}
