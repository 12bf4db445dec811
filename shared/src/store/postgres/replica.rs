//! Reads from a streaming replica (`DATABASE_READ_URL`) that never show a
//! caller less than what was acknowledged before the call.
//!
//! A replica replays the primary's write-ahead log some time after the
//! primary committed it, so a plain replica read could miss a message
//! whose sender already has its ack, or a transfer that already took a
//! reader's rights. This module owns the rule that decides, read by read,
//! whether the replica may answer:
//!
//! 1. **The fence.** The primary's WAL flush position, asked for *after*
//!    the read began. Every commit acknowledged before that moment was
//!    flushed before its `COMMIT` returned (the store starts every
//!    connection with `synchronous_commit=on`), so it lies at or before the
//!    fence. Concurrent reads share one such question: a read joins the
//!    next one sent, never one already in flight, so the answer is always
//!    fresh enough for it, and the primary sees about one tiny query per
//!    round trip however many reads there are.
//! 2. **The check.** On the replica connection that will run the read,
//!    `pg_last_wal_replay_lsn()`. If it has reached the fence, every such
//!    commit has been replayed, and the read, a later statement on the
//!    same connection, sees it: replay only moves forward.
//! 3. **The session rescue**, for message history only. A replica behind
//!    the fence may still hold everything of one session: every message is
//!    committed in the transaction that raises its session's `last_seq`, so
//!    when the replica's `last_seq` of the session is at least the
//!    primary's (asked for after the read began), the replica holds every
//!    message acknowledged so far. Reads of a quiet session keep going to
//!    a lagging or paused replica; only sessions written since go to the
//!    primary.
//!
//! Anything else (behind, not in recovery at all, unreachable, a failed
//! read, a statement cancelled by a recovery conflict) sends the read to
//! the primary, counted by outcome. A replica that could not be reached is
//! left alone for `REPLICA_RETRY_AFTER`, so that a dead replica costs one
//! connect timeout, not one per read. Without the primary no fence can be
//! had, and a read fails `Unavailable` as it would without a replica: a
//! replica alone cannot tell how much it is missing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use tokio::sync::oneshot;
use tokio_postgres::types::PgLsn;

use crate::metrics::{Kind, Scrape};
use crate::store::StoreError;

/// How long a replica that could not be reached is skipped.
pub(super) const REPLICA_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Where a read was served, for `chat_store_replica_reads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadOutcome {
    /// The replica answered, fresh enough by the fence or by the session
    /// rescue.
    Replica,
    /// The replica was behind what the read must see; the primary answered.
    PrimaryFallback,
    /// The replica could not be reached or its read failed; the primary
    /// answered.
    ReplicaError,
}

impl ReadOutcome {
    const ALL: [ReadOutcome; 3] = [
        ReadOutcome::Replica,
        ReadOutcome::PrimaryFallback,
        ReadOutcome::ReplicaError,
    ];

    fn label(self) -> &'static str {
        match self {
            ReadOutcome::Replica => "replica",
            ReadOutcome::PrimaryFallback => "primary_fallback",
            ReadOutcome::ReplicaError => "replica_error",
        }
    }

    fn index(self) -> usize {
        match self {
            ReadOutcome::Replica => 0,
            ReadOutcome::PrimaryFallback => 1,
            ReadOutcome::ReplicaError => 2,
        }
    }
}

/// How many reads ended each way since the store was built, and how many
/// fences were asked of the primary for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaReads {
    pub replica: u64,
    pub primary_fallback: u64,
    pub replica_error: u64,
    /// Questions sent to the primary; reads waiting together share one.
    pub fences: u64,
}

/// What the replica connection checked out for a read may do.
pub(super) enum Freshness {
    /// It has replayed up to the fence: it may serve any read.
    Fresh(Object),
    /// It is behind the fence; only a read that can prove its own
    /// completeness (the session rescue) may use it.
    Behind(Object),
    /// No replica connection to use; the primary serves.
    Unusable,
}

/// The replica's pool, the shared fence and the outcome counts.
pub(super) struct Replica {
    pool: Pool,
    fence: Arc<Fence>,
    counts: [AtomicU64; ReadOutcome::ALL.len()],
    /// Until when an unreachable replica is skipped.
    skip_until: Mutex<Option<Instant>>,
}

impl Replica {
    pub(super) fn new(pool: Pool, primary: Pool) -> Replica {
        Replica {
            pool,
            fence: Arc::new(Fence {
                primary,
                queue: Mutex::new(FenceQueue::default()),
                asked: AtomicU64::new(0),
            }),
            counts: Default::default(),
            skip_until: Mutex::new(None),
        }
    }

    pub(super) fn count(&self, outcome: ReadOutcome) {
        self.counts[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn reads(&self) -> ReplicaReads {
        let get = |outcome: ReadOutcome| self.counts[outcome.index()].load(Ordering::Relaxed);
        ReplicaReads {
            replica: get(ReadOutcome::Replica),
            primary_fallback: get(ReadOutcome::PrimaryFallback),
            replica_error: get(ReadOutcome::ReplicaError),
            fences: self.fence.asked.load(Ordering::Relaxed),
        }
    }

    /// `chat_store_replica_reads_total{outcome}`, every outcome from zero.
    pub(super) fn render(&self, out: &mut String) {
        let scrape = Scrape::default();
        for outcome in ReadOutcome::ALL {
            scrape.sample(
                "chat_store_replica_reads_total",
                Kind::Counter,
                "Store reads of a gateway with DATABASE_READ_URL, by where they were served: \
                 replica, primary_fallback (the replica was behind what the read must see) or \
                 replica_error (the replica failed; the primary answered).",
                &[("outcome", outcome.label())],
                self.counts[outcome.index()].load(Ordering::Relaxed),
            );
        }
        scrape.sample(
            "chat_store_replica_fences_total",
            Kind::Counter,
            "Questions for the primary's WAL position sent to decide whether the replica may \
             serve; reads waiting at the same time share one.",
            &[],
            self.fence.asked.load(Ordering::Relaxed),
        );
        scrape.render(out);
    }

    /// A replica connection and whether it has replayed everything
    /// acknowledged before this call. Fails only when the primary cannot
    /// give the fence.
    pub(super) async fn check_out(&self) -> Result<Freshness, StoreError> {
        let fence = self.fence.flushed().await?;
        if self.skipping() {
            self.count(ReadOutcome::ReplicaError);
            return Ok(Freshness::Unusable);
        }
        let client = match self.pool.get().await {
            Ok(client) => client,
            Err(error) => {
                self.failed(&StoreError::from(error));
                return Ok(Freshness::Unusable);
            }
        };
        match replayed(&client).await {
            Ok(Some(replayed)) if replayed >= fence => Ok(Freshness::Fresh(client)),
            // Not in recovery (a promoted or misnamed server) counts as
            // behind: nothing says it holds what the primary acknowledged.
            Ok(_) => Ok(Freshness::Behind(client)),
            Err(error) => {
                self.failed(&error);
                Ok(Freshness::Unusable)
            }
        }
    }

    /// Counts a replica failure; one that looks like the server being gone
    /// makes the next reads skip it for a while.
    pub(super) fn failed(&self, error: &StoreError) {
        tracing::warn!(%error, "read replica failed; reading from the primary");
        self.count(ReadOutcome::ReplicaError);
        if matches!(error, StoreError::Unavailable(_)) {
            *self.skip_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + REPLICA_RETRY_AFTER);
        }
    }

    fn skipping(&self) -> bool {
        let mut skip = self.skip_until.lock().unwrap_or_else(|e| e.into_inner());
        match *skip {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *skip = None;
                false
            }
            None => false,
        }
    }
}

/// Where the replica's replay is; `None` when it is not replaying (not a
/// standby).
async fn replayed(client: &Object) -> Result<Option<PgLsn>, StoreError> {
    let statement = client
        .prepare_cached("SELECT pg_last_wal_replay_lsn()")
        .await?;
    Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
}

/// The session's `last_seq` on one server, `None` for an unknown session.
pub(super) async fn last_seq(client: &Object, session_id: &str) -> Result<Option<i64>, StoreError> {
    let statement = client
        .prepare_cached("SELECT last_seq FROM sessions WHERE id = $1")
        .await?;
    Ok(client
        .query_opt(&statement, &[&session_id])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

/// The primary's flush position, one question for every read waiting.
struct Fence {
    primary: Pool,
    queue: Mutex<FenceQueue>,
    asked: AtomicU64,
}

#[derive(Default)]
struct FenceQueue {
    /// A task is asking the primary (and will ask again for `waiting`).
    asking: bool,
    /// Reads that arrived after the question in flight was sent.
    waiting: Vec<oneshot::Sender<Result<PgLsn, StoreError>>>,
}

impl Fence {
    /// A flush position the primary reported after this call began.
    async fn flushed(self: &Arc<Self>) -> Result<PgLsn, StoreError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(answer);
            !std::mem::replace(&mut queue.asking, true)
        };
        if start {
            // A task of its own: a read that is cancelled while it asks
            // must not leave the others waiting for good.
            tokio::spawn(self.clone().ask());
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the primary's WAL position was not answered".into(),
            ))
        })
    }

    /// Asks the primary once per batch of waiting reads until none wait.
    async fn ask(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.waiting.is_empty() {
                    queue.asking = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            // Sent only now, after every read of `batch` arrived.
            let answer = self.query().await;
            for waiter in batch {
                // A read that gave up no longer listens; nothing to do.
                let _ = waiter.send(answer.clone());
            }
        }
    }

    async fn query(&self) -> Result<PgLsn, StoreError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let client = self.primary.get().await?;
        let statement = client
            .prepare_cached("SELECT pg_current_wal_flush_lsn()")
            .await?;
        Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
    }
}
