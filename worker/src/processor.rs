//! Applies a batch of stream entries: decode, load what they touch (what
//! the `cache` does not remember), decide, commit in one transaction, then
//! answer callers and fan the events out, and only then acknowledge the
//! entries. A batch that cannot be committed is retried one command at a
//! time so that one bad command never holds back the others; a command that
//! keeps failing is dead-lettered.

use std::sync::Arc;

use bytes::Bytes;

use chat_shared::backplane::{Backplane, StreamEntry};
use chat_shared::envelope::{
    self, Command, CommandEnvelope, Delivery, Reply, ReplyTo, RidingReply,
};
use chat_shared::names::Names;
use chat_shared::store::{BatchKeys, BatchSnapshot, Store, StoreError};
use chat_shared::{ChatError, Timestamp};

use crate::cache::{StateCache, Written, DEFAULT_CAPACITY};
use crate::decide::{keys_for, routing_keys_for, BatchState, Decision, RoutingView};
use crate::metrics::{CommandKind, Outcome, WorkerMetrics};
use crate::router::Router;
use crate::stats::StatsTracker;

/// How often a batch is decided again after losing a write race.
const CONFLICT_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backplane(#[from] chat_shared::backplane::BackplaneError),
}

impl ProcessError {
    /// The store or the backplane cannot be reached: every command would
    /// fail alike, so there is no point trying the next one now.
    fn is_outage(&self) -> bool {
        matches!(
            self,
            ProcessError::Backplane(_) | ProcessError::Store(StoreError::Unavailable(_))
        )
    }
}

pub struct Processor {
    store: Arc<dyn Store>,
    backplane: Arc<dyn Backplane>,
    names: Names,
    stats: Arc<StatsTracker>,
    max_deliveries: u32,
    metrics: Arc<WorkerMetrics>,
    cache: Arc<StateCache>,
    /// Routing's reads and follow-ups; without one, every pool is manual.
    router: Option<Arc<Router>>,
}

impl Processor {
    pub fn new(
        store: Arc<dyn Store>,
        backplane: Arc<dyn Backplane>,
        names: Names,
        stats: Arc<StatsTracker>,
        max_deliveries: u32,
    ) -> Self {
        Processor {
            store,
            backplane,
            names,
            stats,
            max_deliveries,
            metrics: Arc::new(WorkerMetrics::new(0)),
            cache: Arc::new(StateCache::new(DEFAULT_CAPACITY)),
            router: None,
        }
    }

    /// Routes sessions with `router` (its pools' assignment modes, its
    /// reads and its follow-ups after each commit).
    pub fn with_router(mut self, router: Arc<Router>) -> Self {
        self.router = Some(router);
        self
    }

    /// What the processor remembers between batches; whoever changes the
    /// owned partitions clears it.
    pub fn cache(&self) -> Arc<StateCache> {
        self.cache.clone()
    }

    /// Records into `metrics` (the worker's registry) instead of a private
    /// one.
    pub fn with_metrics(mut self, metrics: Arc<WorkerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Processes entries in order (each partition's entries keep their
    /// stream order; a batch may span partitions).
    pub async fn process(&self, entries: Vec<StreamEntry>) -> Result<(), ProcessError> {
        if !entries.is_empty() {
            self.metrics.batch_size(entries.len());
        }
        let mut decoded = Vec::with_capacity(entries.len());
        for entry in entries {
            match envelope::decode::<CommandEnvelope>(&entry.payload) {
                Ok(command) => decoded.push((entry, command)),
                Err(error) => {
                    tracing::warn!(partition = entry.partition, id = %entry.id, %error, "undecodable command");
                    self.backplane.dead_letter(&entry, "undecodable").await?;
                    self.metrics
                        .command(CommandKind::Unknown, Outcome::DeadLettered);
                    self.metrics.dead_letters.inc();
                }
            }
        }
        if decoded.is_empty() {
            return Ok(());
        }
        match self.decide_and_commit(&decoded).await {
            Ok((decisions, committed_at)) => self.finish(&decoded, decisions, committed_at).await,
            Err(error) if decoded.len() > 1 => {
                tracing::warn!(%error, size = decoded.len(), "batch failed; retrying its commands one by one");
                // A command that fails on its own is left pending (or
                // dead-lettered) and the ones after it still go through;
                // only an outage, which would fail them all alike, stops
                // the run and leaves the rest for the retry.
                let mut first_failure = None;
                for single in decoded {
                    match self.process_single(single).await {
                        Ok(()) => {}
                        Err(error) if error.is_outage() => return Err(error),
                        Err(error) => {
                            first_failure.get_or_insert(error);
                        }
                    }
                }
                first_failure.map_or(Ok(()), Err)
            }
            Err(error) => {
                let single = decoded.into_iter().next();
                match single {
                    Some(single) => self.give_up_or_leave(single, error).await,
                    None => Ok(()),
                }
            }
        }
    }

    async fn process_single(
        &self,
        single: (StreamEntry, CommandEnvelope),
    ) -> Result<(), ProcessError> {
        let batch = [single];
        match self.decide_and_commit(&batch).await {
            Ok((decisions, committed_at)) => self.finish(&batch, decisions, committed_at).await,
            Err(error) => {
                let [single] = batch;
                self.give_up_or_leave(single, error).await
            }
        }
    }

    /// A command that failed stays pending (it will be retried after the
    /// idle time) until it has failed `max_deliveries` times; then it is
    /// dead-lettered and its caller told the service is unavailable.
    async fn give_up_or_leave(
        &self,
        (entry, command): (StreamEntry, CommandEnvelope),
        error: StoreError,
    ) -> Result<(), ProcessError> {
        let kind = CommandKind::of(&command.command);
        if matches!(error, StoreError::Unavailable(_)) || entry.deliveries < self.max_deliveries {
            tracing::warn!(partition = entry.partition, id = %entry.id, %error, "command failed; it will be retried");
            self.metrics.command(kind, Outcome::Failed);
            return Err(error.into());
        }
        tracing::error!(partition = entry.partition, id = %entry.id, %error, "command dead-lettered");
        self.backplane
            .dead_letter(&entry, &error.to_string())
            .await?;
        self.metrics.command(kind, Outcome::DeadLettered);
        self.metrics.dead_letters.inc();
        if let Some(reply_to) = &command.reply_to {
            let reply = Reply {
                request_id: reply_to.request_id,
                outcome: Err(ChatError::unavailable("the command could not be applied")),
            };
            self.publish_reply(&reply_to.gateway_id, &reply).await;
        }
        Ok(())
    }

    /// Decides the batch and commits its changes in one transaction;
    /// returns the decisions and when the commit completed.
    ///
    /// The first attempt decides on what the cache remembers (see
    /// `cache`); a refusal decided that way, or a lost race, sends the
    /// batch back to be decided on what the store holds.
    async fn decide_and_commit(
        &self,
        batch: &[(StreamEntry, CommandEnvelope)],
    ) -> Result<(Vec<Decision>, Timestamp), StoreError> {
        let commands: Vec<&CommandEnvelope> = batch.iter().map(|(_, c)| c).collect();
        let keys = keys_for(&commands);
        let routing_config = self
            .router
            .as_ref()
            .map(|router| router.config().clone())
            .unwrap_or_default();
        let routing_keys = routing_keys_for(&commands, &routing_config);
        let mut trust_cache = true;
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            let (snapshot, remembered) = if trust_cache {
                self.load_with_cache(&keys).await?
            } else {
                let snapshot = self.store.load_batch(&keys).await?;
                self.cache.loaded(&snapshot);
                (snapshot, false)
            };
            let view = match &self.router {
                Some(router) if !routing_keys.is_empty() => {
                    router.view(&routing_keys).await.map_err(|error| {
                        StoreError::Unavailable(format!("routing view not read: {error}"))
                    })?
                }
                _ => RoutingView::default(),
            };
            let mut state = BatchState::new(snapshot, self.names.clone())
                .with_routing(routing_config.clone(), view);
            let now = Timestamp::now();
            let mut new_id = || uuid::Uuid::now_v7().to_string();
            let decisions: Vec<Decision> = commands
                .iter()
                .map(|command| state.apply(command, now, &mut new_id))
                .collect();
            if remembered && decisions.iter().any(|d| d.reply.is_err()) {
                // Remembered state may be behind the store (another worker
                // held the partition meanwhile): refuse only on the record.
                trust_cache = false;
                continue;
            }
            let mutations = state.into_mutations();
            if mutations.is_empty() {
                return Ok((decisions, Timestamp::now()));
            }
            let written = Written::of(&mutations);
            match self.store.commit(mutations).await {
                Ok(()) => {
                    self.cache.committed(written);
                    self.metrics.transaction(started.elapsed());
                    return Ok((decisions, Timestamp::now()));
                }
                Err(StoreError::Conflict(reason)) if attempt < CONFLICT_RETRIES => {
                    self.cache.forget(&keys.session_ids);
                    trust_cache = false;
                    attempt += 1;
                    tracing::debug!(%reason, attempt, "write conflict; deciding the batch again");
                }
                Err(error) => {
                    // The commit may or may not have happened.
                    self.cache.forget(&keys.session_ids);
                    return Err(error);
                }
            }
        }
    }

    /// What the batch needs: remembered where possible, loaded otherwise.
    /// True with it when any session state came from the cache.
    async fn load_with_cache(&self, keys: &BatchKeys) -> Result<(BatchSnapshot, bool), StoreError> {
        let lookup = self.cache.lookup(keys);
        let remembered = lookup.used_remembered_sessions();
        let mut snapshot = lookup.known;
        if !lookup.to_load.is_empty() {
            let loaded = self.store.load_batch(&lookup.to_load).await?;
            self.cache.loaded(&loaded);
            snapshot.sessions.extend(loaded.sessions);
            snapshot
                .messages_by_client_id
                .extend(loaded.messages_by_client_id);
            snapshot.read_positions.extend(loaded.read_positions);
            snapshot.user_names.extend(loaded.user_names);
            snapshot.agents.extend(loaded.agents);
            // Reactions and delivery positions.
            snapshot.reactions.extend(loaded.reactions);
            snapshot
                .delivery_positions
                .extend(loaded.delivery_positions);
            // Internal notes.
            snapshot.last_note_seqs.extend(loaded.last_note_seqs);
            snapshot
                .notes_by_client_id
                .extend(loaded.notes_by_client_id);
            snapshot.attachments.extend(loaded.attachments);
        }
        Ok((snapshot, remembered))
    }

    /// After the commit: replies first, then events, so that a sender's ack
    /// always precedes its own `new-message`; then the acknowledgement.
    async fn finish(
        &self,
        batch: &[(StreamEntry, CommandEnvelope)],
        decisions: Vec<Decision>,
        committed_at: Timestamp,
    ) -> Result<(), ProcessError> {
        let mut acks: std::collections::BTreeMap<u32, Vec<String>> =
            std::collections::BTreeMap::new();
        let mut outgoing: Vec<(String, Bytes)> = Vec::with_capacity(batch.len() * 2);
        let mut dispatch_pools: Vec<String> = Vec::new();
        let mut agents_changed: Vec<String> = Vec::new();
        for ((entry, command), mut decision) in batch.iter().zip(decisions) {
            let outcome = if decision.reply.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Rejected
            };
            self.metrics
                .command(CommandKind::of(&command.command), outcome);
            for delivery in &mut decision.deliveries {
                delivery.committed_at_ms = Some(committed_at.millis());
            }
            if let Some(reply_to) = &command.reply_to {
                let reply = Reply {
                    request_id: reply_to.request_id,
                    outcome: decision.reply,
                };
                if let Some(reply) =
                    ride_with_events(reply_to, &command.command, reply, &mut decision.deliveries)
                {
                    match envelope::encode(&reply) {
                        Ok(bytes) => {
                            outgoing.push((self.names.gateway_channel(&reply_to.gateway_id), bytes))
                        }
                        Err(error) => tracing::error!(%error, "reply not encodable"),
                    }
                }
            }
            for delivery in &decision.deliveries {
                match envelope::encode(delivery) {
                    Ok(bytes) => outgoing.extend(
                        delivery
                            .audience
                            .iter()
                            .map(|channel| (channel.clone(), bytes.clone())),
                    ),
                    Err(error) => tracing::error!(%error, "event not encodable"),
                }
            }
            for pool in decision.stats_pools {
                self.stats.mark_dirty(pool);
            }
            for pool in decision.queue_pools {
                self.stats.mark_queue_dirty(pool);
            }
            for pool in decision.dispatch_pools {
                if !dispatch_pools.contains(&pool) {
                    dispatch_pools.push(pool);
                }
            }
            for agent in decision.agents_changed {
                if !agents_changed.contains(&agent) {
                    agents_changed.push(agent);
                }
            }
            acks.entry(entry.partition)
                .or_default()
                .push(entry.id.clone());
        }
        // One ordered batch: each reply still precedes its own events. The
        // acknowledgements go out behind it at once rather than a round
        // trip later: they never depended on the publication succeeding (a
        // lost event is repaired by `seq`, a lost answer by the client's
        // resend), and on one connection Redis applies them in this order.
        let publish = async {
            if let Err(error) = self.backplane.publish_batch(&outgoing).await {
                tracing::warn!(%error, count = outgoing.len(), "events not published");
            }
        };
        let acknowledge = futures_util::future::try_join_all(
            acks.iter()
                .map(|(partition, ids)| self.backplane.ack(*partition, ids)),
        );
        let ((), acknowledged) = tokio::join!(publish, acknowledge);
        acknowledged?;
        if let Some(router) = &self.router {
            router.after_commit(&dispatch_pools, &agents_changed).await;
        }
        Ok(())
    }

    async fn publish_reply(&self, gateway_id: &str, reply: &Reply) {
        let channel = self.names.gateway_channel(gateway_id);
        match envelope::encode(reply) {
            Ok(bytes) => {
                if let Err(error) = self.backplane.publish(&channel, bytes).await {
                    tracing::warn!(%error, %channel, "reply not published");
                }
            }
            Err(error) => tracing::error!(%error, "reply not encodable"),
        }
    }
}

/// Puts the successful reply to a sent message inside that message's own
/// `new-message` delivery when the asking gateway receives the session's
/// events: one publication instead of two. Returns the reply when it must go
/// out on its own.
fn ride_with_events(
    reply_to: &ReplyTo,
    command: &Command,
    reply: Reply,
    deliveries: &mut [Delivery],
) -> Option<Reply> {
    let Command::SendMessage { session_id, .. } = command else {
        return Some(reply);
    };
    if !reply_to.with_session_events || reply.outcome.is_err() {
        return Some(reply);
    }
    let own_message = deliveries.iter_mut().find(|delivery| {
        delivery.seq.is_some() && delivery.session_id.as_deref() == Some(session_id.as_str())
    });
    let Some(delivery) = own_message else {
        return Some(reply);
    };
    match envelope::encode(&reply) {
        Ok(encoded) => {
            delivery.reply = Some(RidingReply {
                gateway_id: reply_to.gateway_id.clone(),
                reply: encoded,
            });
            None
        }
        // Then it goes apart, where its encoding error is reported.
        Err(_) => Some(reply),
    }
}

#[cfg(test)]
mod tests {
    use chat_shared::envelope::ReplyBody;

    use super::*;

    fn send(session_id: &str) -> Command {
        Command::SendMessage {
            session_id: session_id.to_owned(),
            content: "hi".to_owned(),
            client_msg_id: Some("c1".to_owned()),
            attachment_ids: Vec::new(),
        }
    }

    fn reply_to(with_session_events: bool) -> ReplyTo {
        ReplyTo {
            gateway_id: "g1".to_owned(),
            request_id: 7,
            with_session_events,
        }
    }

    fn new_message(session_id: &str) -> Delivery {
        Delivery {
            event: "new-message".to_owned(),
            audience: vec![format!("chat:session:{session_id}")],
            session_id: Some(session_id.to_owned()),
            seq: Some(1),
            except_socket: None,
            frame: "42/chat,[]".to_owned(),
            committed_at_ms: None,
            reply: None,
        }
    }

    fn done() -> Reply {
        Reply {
            request_id: 7,
            outcome: Ok(ReplyBody::Done),
        }
    }

    #[test]
    fn a_reply_rides_in_its_own_message_for_a_gateway_that_gets_the_session() {
        let mut deliveries = vec![new_message("s1")];
        let left = ride_with_events(&reply_to(true), &send("s1"), done(), &mut deliveries);
        assert_eq!(left, None);
        let riding = deliveries[0].reply.as_ref().expect("the reply rides");
        assert_eq!(riding.gateway_id, "g1");
        let carried: Reply = envelope::decode(&riding.reply).expect("an encoded reply");
        assert_eq!(carried, done());
    }

    #[test]
    fn a_reply_goes_apart_when_it_cannot_ride() {
        let failed = Reply {
            request_id: 7,
            outcome: Err(ChatError::session_closed()),
        };
        let cases = [
            (
                "the gateway did not ask",
                reply_to(false),
                send("s1"),
                done(),
                "s1",
            ),
            (
                "a refusal has no event",
                reply_to(true),
                send("s1"),
                failed,
                "s1",
            ),
            (
                "another session's event",
                reply_to(true),
                send("s1"),
                done(),
                "s2",
            ),
            (
                "not a sent message",
                reply_to(true),
                Command::Close {
                    session_id: "s1".to_owned(),
                    reason: None,
                },
                done(),
                "s1",
            ),
        ];
        for (case, to, command, reply, delivered) in cases {
            let mut deliveries = vec![new_message(delivered)];
            let left = ride_with_events(&to, &command, reply.clone(), &mut deliveries);
            assert_eq!(left, Some(reply), "{case}");
            assert_eq!(deliveries[0].reply, None, "{case}");
        }
    }
}
