//! The worker's Prometheus series: commands by kind and outcome, batch
//! sizes, transaction latency, the backlog of each owned partition, lease
//! movements and dead letters, in a registry of its own
//! (`chat_shared::metrics` says why one per instance). Labelled series are
//! registered when the worker is built and their handles kept in arrays
//! indexed by enums, so recording allocates nothing. The per-partition
//! backlog is bounded by `PARTITIONS` and lists only the partitions this
//! worker owns at the scrape, so summing over workers counts each
//! partition once: it is kept here and rendered through a
//! `chat_shared::metrics::Scrape`, since the registry cannot drop a series.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chat_shared::backplane::StreamInfo;
use chat_shared::envelope::Command;
use chat_shared::metrics::{
    Buckets, Counter, Gauge, Histogram, Kind, MetricsSource, Registry, Scrape, LATENCY_BUCKETS,
};

/// Bucket bounds of the batch size: powers of two up to well past the
/// largest `BATCH_MAX` anyone should set.
const BATCH_BUCKETS: Buckets = Buckets::new(&[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
]);

const BATCH_SIZE: &str = "chat_worker_batch_size";
const TRANSACTION_SECONDS: &str = "chat_worker_transaction_seconds";

/// What kind of command an entry held; `unknown` for one that could not be
/// decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    CreateSession,
    SendMessage,
    Assign,
    Transfer,
    Close,
    MarkRead,
    RefreshStats,
    Dispatch,
    AutoAssign,
    ReturnToQueue,
    // Reactions and delivery positions.
    React,
    MarkDelivered,
    // Internal notes and invited colleagues.
    SendNote,
    InviteParticipant,
    RemoveParticipant,
    Unknown,
}

impl CommandKind {
    const ALL: [CommandKind; 16] = [
        CommandKind::CreateSession,
        CommandKind::SendMessage,
        CommandKind::Assign,
        CommandKind::Transfer,
        CommandKind::Close,
        CommandKind::MarkRead,
        CommandKind::RefreshStats,
        CommandKind::Dispatch,
        CommandKind::AutoAssign,
        CommandKind::ReturnToQueue,
        CommandKind::React,
        CommandKind::MarkDelivered,
        CommandKind::SendNote,
        CommandKind::InviteParticipant,
        CommandKind::RemoveParticipant,
        CommandKind::Unknown,
    ];

    pub fn of(command: &Command) -> Self {
        match command {
            Command::CreateSession { .. } => CommandKind::CreateSession,
            Command::SendMessage { .. } => CommandKind::SendMessage,
            Command::Assign { .. } => CommandKind::Assign,
            Command::Transfer { .. } => CommandKind::Transfer,
            Command::Close { .. } => CommandKind::Close,
            Command::MarkRead { .. } => CommandKind::MarkRead,
            Command::RefreshStats { .. } => CommandKind::RefreshStats,
            Command::Dispatch { .. } => CommandKind::Dispatch,
            Command::AutoAssign { .. } => CommandKind::AutoAssign,
            Command::ReturnToQueue { .. } => CommandKind::ReturnToQueue,
            Command::React { .. } => CommandKind::React,
            Command::MarkDelivered { .. } => CommandKind::MarkDelivered,
            Command::SendNote { .. } => CommandKind::SendNote,
            Command::InviteParticipant { .. } => CommandKind::InviteParticipant,
            Command::RemoveParticipant { .. } => CommandKind::RemoveParticipant,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            CommandKind::Unknown => "unknown",
            // The same words as `Command::kind`, which logs use.
            CommandKind::CreateSession => "create_session",
            CommandKind::SendMessage => "send_message",
            CommandKind::Assign => "assign",
            CommandKind::Transfer => "transfer",
            CommandKind::Close => "close",
            CommandKind::MarkRead => "mark_read",
            CommandKind::RefreshStats => "refresh_stats",
            CommandKind::Dispatch => "dispatch",
            CommandKind::AutoAssign => "auto_assign",
            CommandKind::ReturnToQueue => "return_to_queue",
            CommandKind::React => "react",
            CommandKind::MarkDelivered => "mark_delivered",
            CommandKind::SendNote => "send_note",
            CommandKind::InviteParticipant => "invite_participant",
            CommandKind::RemoveParticipant => "remove_participant",
        }
    }
}

/// How processing one command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (or a harmless no-op) and answered with success.
    Ok,
    /// Answered with an error the caller caused (forbidden, closed, not
    /// found...): the system worked as it should.
    Rejected,
    /// Could not be applied this time (the store failed); left pending and
    /// retried later.
    Failed,
    /// Failed too often (or could not be decoded) and was set aside.
    DeadLettered,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::DeadLettered,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

pub struct WorkerMetrics {
    registry: Registry,
    commands: [[Counter; Outcome::ALL.len()]; CommandKind::ALL.len()],
    batch_size: Histogram,
    transaction_seconds: Histogram,
    pub partitions_owned: Gauge,
    pub lease_takeovers: Counter,
    pub leases_lost: Counter,
    pub dead_letters: Counter,
    /// The last backlog read of each owned partition.
    streams: Mutex<BTreeMap<u32, StreamInfo>>,
}

impl WorkerMetrics {
    pub fn new(partitions: u32) -> Self {
        let registry = Registry::new(&[
            (BATCH_SIZE, BATCH_BUCKETS),
            (TRANSACTION_SECONDS, LATENCY_BUCKETS),
        ]);
        let counter = |name, help| registry.counter(name, help, &[]);
        let gauge = |name, help| registry.gauge(name, help, &[]);
        // `PARTITIONS`, so that alerts can compare owned with configured.
        // It never changes: the registry keeps the series, not the handle.
        gauge(
            "chat_worker_partitions",
            "Partitions configured (PARTITIONS); the workers together should own them all.",
        )
        .set(f64::from(partitions));
        WorkerMetrics {
            commands: CommandKind::ALL.map(|kind| {
                Outcome::ALL.map(|outcome| {
                    registry.counter(
                        "chat_worker_commands_total",
                        "Commands processed, by kind and outcome (ok, rejected, failed, dead_lettered).",
                        &[("kind", kind.label()), ("outcome", outcome.label())],
                    )
                })
            }),
            batch_size: registry
                .histogram(BATCH_SIZE, "Commands applied per partition batch."),
            transaction_seconds: registry.histogram(
                TRANSACTION_SECONDS,
                "Time to load, decide and commit one batch in the store.",
            ),
            partitions_owned: gauge(
                "chat_worker_partitions_owned",
                "Partitions whose lease this worker holds.",
            ),
            lease_takeovers: counter(
                "chat_worker_lease_takeovers_total",
                "Partition leases this worker took (at start, from a stopped worker, or after an expiry).",
            ),
            leases_lost: counter(
                "chat_worker_leases_lost_total",
                "Partition leases this worker found taken by another when renewing.",
            ),
            dead_letters: counter(
                "chat_worker_dead_letters_total",
                "Commands moved to a dead-letter stream.",
            ),
            streams: Mutex::new(BTreeMap::new()),
            registry,
        }
    }

    pub fn command(&self, kind: CommandKind, outcome: Outcome) {
        let outcome = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.commands[kind.index()][outcome].inc();
    }

    pub fn batch_size(&self, size: usize) {
        self.batch_size.observe(size as f64);
    }

    pub fn transaction(&self, elapsed: std::time::Duration) {
        self.transaction_seconds.observe_duration(elapsed);
    }

    /// Records the backlog of an owned partition.
    pub fn stream(&self, partition: u32, info: StreamInfo) {
        self.lock_streams().insert(partition, info);
    }

    /// Forgets the backlog of partitions no longer owned, so that another
    /// worker's report of them is the only one.
    pub fn owned(&self, owned: &[u32]) {
        self.partitions_owned.set(owned.len() as f64);
        self.lock_streams()
            .retain(|partition, _| owned.binary_search(partition).is_ok());
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, StreamInfo>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MetricsSource for WorkerMetrics {
    fn component(&self) -> &'static str {
        "worker"
    }

    fn render(&self, out: &mut String) {
        self.registry.render(out);
        let streams = self.lock_streams().clone();
        let backlog = Scrape::default();
        for (partition, info) in &streams {
            let partition = partition.to_string();
            let labels = [("partition", partition.as_str())];
            backlog.sample(
                "chat_worker_stream_lag",
                Kind::Gauge,
                "Commands appended to an owned partition and not yet read by a worker.",
                &labels,
                info.lag,
            );
            backlog.sample(
                "chat_worker_stream_pending",
                Kind::Gauge,
                "Commands of an owned partition read and not yet acknowledged.",
                &labels,
                info.pending,
            );
            backlog.sample(
                "chat_worker_stream_length",
                Kind::Gauge,
                "Entries held by an owned partition's stream.",
                &labels,
                info.length,
            );
        }
        backlog.render(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(metrics: &WorkerMetrics) -> String {
        let mut out = String::new();
        metrics.render(&mut out);
        out
    }

    #[test]
    fn commands_are_counted_by_kind_and_outcome() {
        let metrics = WorkerMetrics::new(4);
        metrics.command(CommandKind::SendMessage, Outcome::Ok);
        metrics.command(CommandKind::SendMessage, Outcome::Ok);
        metrics.command(CommandKind::Unknown, Outcome::DeadLettered);
        let text = rendered(&metrics);
        assert!(text.contains("chat_worker_commands_total{kind=\"send_message\",outcome=\"ok\"} 2"));
        assert!(text
            .contains("chat_worker_commands_total{kind=\"unknown\",outcome=\"dead_lettered\"} 1"));
        assert!(text.contains("chat_worker_commands_total{kind=\"close\",outcome=\"failed\"} 0"));
        assert!(text.contains("chat_worker_partitions 4"));
    }

    #[test]
    fn backlog_lists_owned_partitions_only() {
        let metrics = WorkerMetrics::new(4);
        let info = |lag| StreamInfo {
            length: lag + 1,
            pending: 1,
            lag,
        };
        metrics.stream(1, info(5));
        metrics.stream(3, info(7));
        metrics.owned(&[3]);
        let text = rendered(&metrics);
        assert!(text.contains("chat_worker_stream_lag{partition=\"3\"} 7"));
        assert!(text.contains("chat_worker_stream_pending{partition=\"3\"} 1"));
        assert!(text.contains("chat_worker_stream_length{partition=\"3\"} 8"));
        assert!(!text.contains("partition=\"1\""));
        assert!(text.contains("chat_worker_partitions_owned 1"));
    }

    #[test]
    fn kinds_match_the_command_names_used_in_logs() {
        let command = Command::MarkRead {
            session_id: "s".into(),
            up_to_seq: 1,
        };
        assert_eq!(CommandKind::of(&command).label(), command.kind());
    }

    /// The names and types that the alerts, the dashboard and the deploy
    /// checks read: a change here is a change of the exported interface.
    #[test]
    fn families_keep_their_names_types_and_buckets() {
        let metrics = WorkerMetrics::new(2);
        metrics.stream(0, StreamInfo::default());
        metrics.owned(&[0]);
        let text = rendered(&metrics);
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        types.sort_unstable();
        assert_eq!(
            types,
            [
                "# TYPE chat_worker_batch_size histogram",
                "# TYPE chat_worker_commands_total counter",
                "# TYPE chat_worker_dead_letters_total counter",
                "# TYPE chat_worker_lease_takeovers_total counter",
                "# TYPE chat_worker_leases_lost_total counter",
                "# TYPE chat_worker_partitions gauge",
                "# TYPE chat_worker_partitions_owned gauge",
                "# TYPE chat_worker_stream_lag gauge",
                "# TYPE chat_worker_stream_length gauge",
                "# TYPE chat_worker_stream_pending gauge",
                "# TYPE chat_worker_transaction_seconds histogram",
            ]
        );
        for kind in CommandKind::ALL {
            for outcome in Outcome::ALL {
                let series = format!(
                    "chat_worker_commands_total{{kind=\"{}\",outcome=\"{}\"}} 0",
                    kind.label(),
                    outcome.label()
                );
                assert!(text.contains(&series), "{series}");
            }
        }
        for le in ["1", "2", "64", "1024", "+Inf"] {
            let series = format!("chat_worker_batch_size_bucket{{le=\"{le}\"}} 0");
            assert!(text.contains(&series), "{series}");
        }
        for le in ["0.0005", "0.25", "10", "+Inf"] {
            let series = format!("chat_worker_transaction_seconds_bucket{{le=\"{le}\"}} 0");
            assert!(text.contains(&series), "{series}");
        }
        assert!(text.contains("chat_worker_stream_lag{partition=\"0\"} 0"));
    }
}
