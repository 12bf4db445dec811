//! The worker's Prometheus metrics: commands by kind and outcome, batch
//! sizes, transaction latency, the backlog of each owned partition, lease
//! movements and dead letters. Labelled series live in arrays indexed by
//! enums, so recording allocates nothing; the per-partition backlog is
//! bounded by `PARTITIONS` and lists only the partitions this worker owns,
//! so summing over workers counts each partition once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chat_shared::backplane::StreamInfo;
use chat_shared::envelope::Command;
use chat_shared::metrics::{
    family, sample, single, Counter, Gauge, Histogram, Kind, MetricsSource, LATENCY_BUCKETS,
};

/// Bucket bounds of the batch size: powers of two up to well past the
/// largest `BATCH_MAX` anyone should set.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

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
    Unknown,
}

impl CommandKind {
    const ALL: [CommandKind; 8] = [
        CommandKind::CreateSession,
        CommandKind::SendMessage,
        CommandKind::Assign,
        CommandKind::Transfer,
        CommandKind::Close,
        CommandKind::MarkRead,
        CommandKind::RefreshStats,
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
    /// `PARTITIONS`, so that alerts can compare owned with configured.
    partitions: u32,
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
        WorkerMetrics {
            partitions,
            commands: Default::default(),
            batch_size: Histogram::new(BATCH_BUCKETS),
            transaction_seconds: Histogram::new(LATENCY_BUCKETS),
            partitions_owned: Gauge::default(),
            lease_takeovers: Counter::default(),
            leases_lost: Counter::default(),
            dead_letters: Counter::default(),
            streams: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn command(&self, kind: CommandKind, outcome: Outcome) {
        let outcome = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.commands[kind.index()][outcome].inc();
    }

    pub fn command_count(&self, kind: CommandKind, outcome: Outcome) -> u64 {
        let outcome = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.commands[kind.index()][outcome].get()
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
        self.partitions_owned
            .set(i64::try_from(owned.len()).unwrap_or(i64::MAX));
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
        family(
            out,
            "chat_worker_commands_total",
            Kind::Counter,
            "Commands processed, by kind and outcome (ok, rejected, failed, dead_lettered).",
        );
        for kind in CommandKind::ALL {
            for (outcome, counter) in Outcome::ALL.iter().zip(&self.commands[kind.index()]) {
                sample(
                    out,
                    "chat_worker_commands_total",
                    &[("kind", kind.label()), ("outcome", outcome.label())],
                    counter.get(),
                );
            }
        }
        self.batch_size.render(
            out,
            "chat_worker_batch_size",
            "Commands applied per partition batch.",
        );
        self.transaction_seconds.render(
            out,
            "chat_worker_transaction_seconds",
            "Time to load, decide and commit one batch in the store.",
        );
        let streams = self.lock_streams().clone();
        for (name, help, read) in [
            (
                "chat_worker_stream_lag",
                "Commands appended to an owned partition and not yet read by a worker.",
                (|info: &StreamInfo| info.lag) as fn(&StreamInfo) -> u64,
            ),
            (
                "chat_worker_stream_pending",
                "Commands of an owned partition read and not yet acknowledged.",
                |info: &StreamInfo| info.pending,
            ),
            (
                "chat_worker_stream_length",
                "Entries held by an owned partition's stream.",
                |info: &StreamInfo| info.length,
            ),
        ] {
            family(out, name, Kind::Gauge, help);
            for (partition, info) in &streams {
                let partition = partition.to_string();
                sample(out, name, &[("partition", &partition)], read(info));
            }
        }
        single(
            out,
            "chat_worker_partitions_owned",
            Kind::Gauge,
            "Partitions whose lease this worker holds.",
            self.partitions_owned.get(),
        );
        single(
            out,
            "chat_worker_partitions",
            Kind::Gauge,
            "Partitions configured (PARTITIONS); the workers together should own them all.",
            self.partitions,
        );
        single(
            out,
            "chat_worker_lease_takeovers_total",
            Kind::Counter,
            "Partition leases this worker took (at start, from a stopped worker, or after an expiry).",
            self.lease_takeovers.get(),
        );
        single(
            out,
            "chat_worker_leases_lost_total",
            Kind::Counter,
            "Partition leases this worker found taken by another when renewing.",
            self.leases_lost.get(),
        );
        single(
            out,
            "chat_worker_dead_letters_total",
            Kind::Counter,
            "Commands moved to a dead-letter stream.",
            self.dead_letters.get(),
        );
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
}
