//! Which agents this gateway serves, per pool: the first socket of an
//! agent in a pool announces them in the backplane's presence set and asks
//! for fresh stats; the last one to leave withdraws them. A heartbeat keeps
//! the entries alive while the gateway lives, so a crashed gateway's agents
//! drop out on their own. Each connect and disconnect also records the
//! agent in the store's directory, as last seen now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_shared::auth::Identity;
use chat_shared::backplane::Backplane;
use chat_shared::envelope::Command;
use chat_shared::names::Names;
use chat_shared::protocol::Role;
use chat_shared::routing::RoutingConfig;
use chat_shared::store::{AgentRecord, Store};
use chat_shared::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::metrics::{BackplaneOp, Metrics};
use crate::requests::Requests;

pub struct Presence {
    gateway_id: String,
    /// How long an entry lives without a heartbeat (`PRESENCE_TTL_MS`).
    ttl: Duration,
    backplane: Arc<dyn Backplane>,
    store: Arc<dyn Store>,
    requests: Arc<Requests>,
    metrics: Arc<Metrics>,
    names: Names,
    routing: RoutingConfig,
    /// Local sockets per (pool, agent).
    sockets: Mutex<HashMap<(String, String), usize>>,
}

impl Presence {
    /// Presence for gateway `gateway_id`, with the entry lifetime, key
    /// names and routing of `config`.
    pub fn new(
        gateway_id: String,
        config: &GatewayConfig,
        backplane: Arc<dyn Backplane>,
        store: Arc<dyn Store>,
        requests: Arc<Requests>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Presence {
            gateway_id,
            ttl: config.presence_ttl,
            names: Names::new(config.key_prefix.clone()),
            routing: config.routing.clone(),
            backplane,
            store,
            requests,
            metrics,
            sockets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), usize>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn agent_connected(&self, identity: &Identity) {
        if identity.role != Role::Agent {
            return;
        }
        // Before the socket is greeted, so a client that sees `connected`
        // can count on being in the directory (a transfer to them is
        // accepted).
        self.remember(identity).await;
        let mut arrived = false;
        for pool in &identity.pools {
            if self.count_socket(pool, &identity.user_id, 1) {
                self.heartbeat(pool, &identity.user_id).await;
                self.refresh_stats(identity, pool).await;
                if self.routing.is_auto(pool) {
                    self.request(identity, Command::Dispatch { pool: pool.clone() })
                        .await;
                }
                arrived = true;
            }
        }
        if arrived {
            self.announce(&identity.user_id).await;
        }
    }

    /// Tells the agent's pools how they now stand (`agent-updated`).
    pub async fn announce(&self, agent_id: &str) {
        let published = chat_shared::directory::publish_agent_updated(
            &*self.store,
            &*self.backplane,
            &self.names,
            &self.routing,
            agent_id,
        )
        .await;
        if let Err(error) = published {
            tracing::warn!(%error, "agent update not published");
        }
    }

    pub async fn agent_disconnected(&self, identity: &Identity) {
        if identity.role != Role::Agent {
            return;
        }
        // Last seen: now, as they leave.
        self.remember(identity).await;
        let mut left = false;
        for pool in &identity.pools {
            if self.count_socket(pool, &identity.user_id, -1) {
                let removed = self
                    .backplane
                    .presence_remove(pool, &identity.user_id, &self.gateway_id)
                    .await;
                if let Err(error) = removed {
                    self.metrics.backplane_error(BackplaneOp::Presence);
                    tracing::warn!(%error, "presence not removed");
                }
                self.refresh_stats(identity, pool).await;
                left = true;
            }
        }
        if left {
            self.announce(&identity.user_id).await;
        }
    }

    /// Counts one local socket of the agent in the pool in (`+1`) or out
    /// (`-1`); true when that made it their first or took their last.
    fn count_socket(&self, pool: &str, user_id: &str, change: i8) -> bool {
        let mut sockets = self.lock();
        let key = (pool.to_owned(), user_id.to_owned());
        let count = sockets.get(&key).copied().unwrap_or(0);
        if change > 0 {
            sockets.insert(key, count + 1);
            count == 0
        } else if count > 1 {
            sockets.insert(key, count - 1);
            false
        } else {
            sockets.remove(&key).is_some()
        }
    }

    /// Renews every local agent's presence until `shutdown`.
    pub async fn run_heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let period = self.ttl / 3;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let entries: Vec<(String, String)> = self.lock().keys().cloned().collect();
            for (pool, user_id) in entries {
                self.heartbeat(&pool, &user_id).await;
            }
        }
    }

    async fn heartbeat(&self, pool: &str, user_id: &str) {
        let beat = self
            .backplane
            .presence_heartbeat(pool, user_id, &self.gateway_id, self.ttl)
            .await;
        if let Err(error) = beat {
            self.metrics.backplane_error(BackplaneOp::Presence);
            tracing::warn!(%error, "presence not recorded");
        }
    }

    async fn refresh_stats(&self, identity: &Identity, pool: &str) {
        let command = Command::RefreshStats {
            pool: pool.to_owned(),
        };
        self.request(identity, command).await;
    }

    /// Appends a command nobody waits for; a failure is logged, the
    /// worker's sweep makes up for a lost one.
    pub async fn request(&self, identity: &Identity, command: Command) {
        let kind = command.kind();
        if let Err(error) = self.requests.submit_detached(identity, command).await {
            tracing::warn!(%error, kind, "command not appended");
        }
    }

    /// Records the agent in the directory as seen now. A failure only
    /// leaves the entry older, so it is logged, never the connection's
    /// problem.
    async fn remember(&self, identity: &Identity) {
        let agent = AgentRecord {
            id: identity.user_id.clone(),
            name: identity.name.clone(),
            pools: identity.pools.clone(),
            last_seen_at: Timestamp::now(),
        };
        if let Err(error) = self.store.remember_agent(&agent).await {
            tracing::warn!(%error, "agent not recorded in the directory");
        }
    }
}
