//! The gateway's Prometheus series, in a registry of its own
//! (`chat_shared::metrics` says why one per instance). Every labelled
//! series is registered when the gateway starts and its handle kept in an
//! array indexed by a small enum (role, rejection reason, event name,
//! backplane operation), so recording is one atomic operation with no
//! lookup or allocation, every series is exported from the start (at zero),
//! and the label sets are bounded by construction: no session or user id
//! ever becomes a label.

use std::time::Duration;

use chat_shared::metrics::{Buckets, Counter, Gauge, Histogram, Registry, LATENCY_BUCKETS};
use chat_shared::protocol::{client_events, server_events, Role};

/// Bucket bounds (seconds) of the fan-out latency, from a worker's commit
/// to a gateway queuing the event: a few milliseconds when healthy, up to
/// seconds when a gateway or the backplane falls behind. Measured across
/// machines, so clock skew of a few milliseconds shows in the low buckets.
const FANOUT_BUCKETS: Buckets = Buckets::new(&[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]);

const ACK_SECONDS: &str = "chat_gateway_send_message_ack_seconds";
const FANOUT_SECONDS: &str = "chat_gateway_fanout_seconds";

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    MissingToken,
    InvalidToken,
    TokenExpired,
    BadNamespace,
    /// The gateway is draining and no longer takes connections.
    Draining,
    /// The backplane could not subscribe the socket's rooms.
    Unavailable,
    /// The user has `MAX_SOCKETS_PER_USER` sockets open already.
    RateLimited,
}

impl Rejection {
    const ALL: [Rejection; 7] = [
        Rejection::MissingToken,
        Rejection::InvalidToken,
        Rejection::TokenExpired,
        Rejection::BadNamespace,
        Rejection::Draining,
        Rejection::Unavailable,
        Rejection::RateLimited,
    ];

    fn label(self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing_token",
            Rejection::InvalidToken => "invalid_token",
            Rejection::TokenExpired => "token_expired",
            Rejection::BadNamespace => "bad_namespace",
            Rejection::Draining => "draining",
            Rejection::Unavailable => "unavailable",
            Rejection::RateLimited => "rate_limited",
        }
    }

    /// The reason for an authentication error code (`AuthError::code`).
    pub fn from_auth_code(code: &str) -> Self {
        match code {
            "missing_token" => Rejection::MissingToken,
            "token_expired" => Rejection::TokenExpired,
            _ => Rejection::InvalidToken,
        }
    }
}

/// Client events by name; anything else counts as `other`.
const RECEIVED_EVENTS: [&str; 8] = [
    client_events::JOIN_SESSION,
    client_events::LEAVE_SESSION,
    client_events::SEND_MESSAGE,
    client_events::TYPING,
    client_events::MARK_READ,
    client_events::MARK_DELIVERED,
    client_events::REACT,
    "other",
];

fn received_index(name: &str) -> usize {
    match name {
        client_events::JOIN_SESSION => 0,
        client_events::LEAVE_SESSION => 1,
        client_events::SEND_MESSAGE => 2,
        client_events::TYPING => 3,
        client_events::MARK_READ => 4,
        client_events::MARK_DELIVERED => 5,
        client_events::REACT => 6,
        _ => 7,
    }
}

/// Fanned-out server events by name; anything else counts as `other`.
const EMITTED_EVENTS: [&str; 11] = [
    server_events::NEW_MESSAGE,
    server_events::USER_TYPING,
    server_events::MESSAGES_READ,
    server_events::SESSION_UPDATED,
    server_events::SESSION_CLOSED,
    server_events::NEW_PENDING_SESSION,
    server_events::STATS_UPDATE,
    server_events::MESSAGES_DELIVERED,
    server_events::MESSAGE_REACTIONS,
    server_events::NEW_NOTE,
    "other",
];

fn emitted_index(name: &str) -> usize {
    match name {
        server_events::NEW_MESSAGE => 0,
        server_events::USER_TYPING => 1,
        server_events::MESSAGES_READ => 2,
        server_events::SESSION_UPDATED => 3,
        server_events::SESSION_CLOSED => 4,
        server_events::NEW_PENDING_SESSION => 5,
        server_events::STATS_UPDATE => 6,
        server_events::MESSAGES_DELIVERED => 7,
        server_events::MESSAGE_REACTIONS => 8,
        server_events::NEW_NOTE => 9,
        _ => 10,
    }
}

/// What the gateway was doing when the backplane failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackplaneOp {
    /// Appending a command for the worker.
    Append,
    /// Subscribing a socket's room.
    Subscribe,
    /// Publishing a typing signal.
    Publish,
    /// Recording or withdrawing agent presence.
    Presence,
}

impl BackplaneOp {
    const ALL: [BackplaneOp; 4] = [
        BackplaneOp::Append,
        BackplaneOp::Subscribe,
        BackplaneOp::Publish,
        BackplaneOp::Presence,
    ];

    fn label(self) -> &'static str {
        match self {
            BackplaneOp::Append => "append",
            BackplaneOp::Subscribe => "subscribe",
            BackplaneOp::Publish => "publish",
            BackplaneOp::Presence => "presence",
        }
    }
}

const ROLES: [Role; 3] = [Role::Customer, Role::Agent, Role::Admin];

fn role_index(role: Role) -> usize {
    match role {
        Role::Customer => 0,
        Role::Agent => 1,
        Role::Admin => 2,
    }
}

pub struct Metrics {
    registry: Registry,
    sockets: [Gauge; ROLES.len()],
    pub connections_accepted: Counter,
    rejected: [Counter; Rejection::ALL.len()],
    events_received: [Counter; RECEIVED_EVENTS.len()],
    events_emitted: [Counter; EMITTED_EVENTS.len()],
    pub slow_consumer_drops: Counter,
    pub rate_limited: Counter,
    backplane_errors: [Counter; BackplaneOp::ALL.len()],
    /// Requests answered `unavailable` because the worker did not answer
    /// in time.
    pub request_timeouts: Counter,
    /// Sockets closed by a drain, asked to reconnect elsewhere.
    pub drain_disconnects: Counter,
    ack_latency: Histogram,
    fanout_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new(&[
            (ACK_SECONDS, LATENCY_BUCKETS),
            (FANOUT_SECONDS, FANOUT_BUCKETS),
        ]);
        let counter = |name, help| registry.counter(name, help, &[]);
        Metrics {
            sockets: ROLES.map(|role| {
                registry.gauge(
                    "chat_gateway_sockets",
                    "Connected Socket.IO sockets, by role.",
                    &[("role", role.as_str())],
                )
            }),
            connections_accepted: counter(
                "chat_gateway_connections_accepted_total",
                "Socket.IO connections accepted (authenticated and joined to their rooms).",
            ),
            rejected: Rejection::ALL.map(|reason| {
                registry.counter(
                    "chat_gateway_connections_rejected_total",
                    "Socket.IO connections refused, by reason.",
                    &[("reason", reason.label())],
                )
            }),
            events_received: RECEIVED_EVENTS.map(|event| {
                registry.counter(
                    "chat_gateway_events_received_total",
                    "Client events received, by event name.",
                    &[("event", event)],
                )
            }),
            events_emitted: EMITTED_EVENTS.map(|event| {
                registry.counter(
                    "chat_gateway_events_emitted_total",
                    "Fanned-out events queued to local sockets (one per socket), by event name.",
                    &[("event", event)],
                )
            }),
            slow_consumer_drops: counter(
                "chat_gateway_slow_consumer_drops_total",
                "Sockets disconnected because their outbound queue was full.",
            ),
            rate_limited: counter(
                "chat_gateway_rate_limited_total",
                "send-message events refused by the per-socket rate limit.",
            ),
            backplane_errors: BackplaneOp::ALL.map(|op| {
                registry.counter(
                    "chat_gateway_backplane_errors_total",
                    "Failed backplane operations, by operation.",
                    &[("operation", op.label())],
                )
            }),
            request_timeouts: counter(
                "chat_gateway_request_timeouts_total",
                "Commands answered unavailable because no worker answered within REQUEST_TIMEOUT_MS.",
            ),
            drain_disconnects: counter(
                "chat_gateway_drain_disconnects_total",
                "Sockets closed by a drain and told to reconnect to another gateway.",
            ),
            ack_latency: registry.histogram(
                ACK_SECONDS,
                "Time from receiving send-message to queuing its ack.",
            ),
            fanout_latency: registry.histogram(
                FANOUT_SECONDS,
                "Time from the worker's commit to this gateway queuing the event to its sockets.",
            ),
            registry,
        }
    }
}

impl Metrics {
    /// The gauge of connected sockets of `role`.
    pub fn sockets_gauge(&self, role: Role) -> &Gauge {
        &self.sockets[role_index(role)]
    }

    pub fn rejected(&self, reason: Rejection) -> &Counter {
        let index = Rejection::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        &self.rejected[index]
    }

    pub fn event_received(&self, name: &str) {
        self.events_received[received_index(name)].inc();
    }

    /// Counts `sockets` deliveries of the fanned-out event `name`.
    pub fn events_emitted(&self, name: &str, sockets: u64) {
        self.events_emitted[emitted_index(name)].add(sockets);
    }

    pub fn backplane_error(&self, op: BackplaneOp) {
        let index = BackplaneOp::ALL.iter().position(|o| *o == op).unwrap_or(0);
        self.backplane_errors[index].inc();
    }

    pub fn record_ack_latency(&self, elapsed: Duration) {
        self.ack_latency.observe_duration(elapsed);
    }

    /// Records the time from the worker's commit (epoch milliseconds) to
    /// now. A negative difference (the worker's clock ahead of this one)
    /// is recorded as zero rather than dropped, so the count stays honest.
    pub fn record_fanout(&self, committed_at_ms: i64, now_ms: i64) {
        let millis = now_ms.saturating_sub(committed_at_ms).max(0);
        self.fanout_latency.observe(millis as f64 / 1000.0);
    }

    /// Appends every family of this registry.
    pub fn render(&self, out: &mut String) {
        self.registry.render(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_event_is_counted_under_its_own_label() {
        for (i, name) in RECEIVED_EVENTS.iter().enumerate() {
            assert_eq!(received_index(name), i, "{name}");
        }
        for (i, name) in EMITTED_EVENTS.iter().enumerate() {
            assert_eq!(emitted_index(name), i, "{name}");
        }
        assert_eq!(received_index("no-such-event"), RECEIVED_EVENTS.len() - 1);
        assert_eq!(emitted_index("no-such-event"), EMITTED_EVENTS.len() - 1);
    }

    fn rendered(metrics: &Metrics) -> String {
        let mut out = String::new();
        metrics.render(&mut out);
        out
    }

    #[test]
    fn ack_histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.record_ack_latency(Duration::from_micros(300));
        metrics.record_ack_latency(Duration::from_millis(20));
        let text = rendered(&metrics);
        assert!(text.contains("chat_gateway_send_message_ack_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("chat_gateway_send_message_ack_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("chat_gateway_send_message_ack_seconds_count 2"));
    }

    #[test]
    fn events_are_counted_by_name_with_unknown_names_folded() {
        let metrics = Metrics::default();
        metrics.event_received("send-message");
        metrics.event_received("send-message");
        metrics.event_received("no-such-event-1");
        metrics.event_received("no-such-event-2");
        metrics.events_emitted("new-message", 3);
        metrics.events_emitted("something-else", 1);
        let text = rendered(&metrics);
        assert!(text.contains("chat_gateway_events_received_total{event=\"send-message\"} 2"));
        assert!(text.contains("chat_gateway_events_received_total{event=\"other\"} 2"));
        assert!(text.contains("chat_gateway_events_emitted_total{event=\"new-message\"} 3"));
        assert!(text.contains("chat_gateway_events_emitted_total{event=\"other\"} 1"));
        assert!(!text.contains("no-such-event"));
    }

    #[test]
    fn fanout_latency_clamps_a_clock_ahead_to_zero() {
        let metrics = Metrics::default();
        metrics.record_fanout(1_000_500, 1_000_000);
        metrics.record_fanout(1_000_000, 1_000_030);
        let text = rendered(&metrics);
        assert!(text.contains("chat_gateway_fanout_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("chat_gateway_fanout_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("chat_gateway_fanout_seconds_count 2"));
    }

    #[test]
    fn every_family_has_one_header() {
        let text = rendered(&Metrics::default());
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(seen.insert(name.to_owned()), "{name} declared twice");
            if line.ends_with(" counter") {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(seen.contains("chat_gateway_fanout_seconds"));
    }

    /// The names and types that the alerts, the dashboard and the deploy
    /// checks read: a change here is a change of the exported interface.
    #[test]
    fn families_keep_their_names_types_and_series() {
        let text = rendered(&Metrics::default());
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        types.sort_unstable();
        assert_eq!(
            types,
            [
                "# TYPE chat_gateway_backplane_errors_total counter",
                "# TYPE chat_gateway_connections_accepted_total counter",
                "# TYPE chat_gateway_connections_rejected_total counter",
                "# TYPE chat_gateway_drain_disconnects_total counter",
                "# TYPE chat_gateway_events_emitted_total counter",
                "# TYPE chat_gateway_events_received_total counter",
                "# TYPE chat_gateway_fanout_seconds histogram",
                "# TYPE chat_gateway_rate_limited_total counter",
                "# TYPE chat_gateway_request_timeouts_total counter",
                "# TYPE chat_gateway_send_message_ack_seconds histogram",
                "# TYPE chat_gateway_slow_consumer_drops_total counter",
                "# TYPE chat_gateway_sockets gauge",
            ]
        );
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        // 3 roles, 1 accepted, 7 reasons, 8 + 11 events, 2 single counters,
        // 4 operations, 2 more single counters, and two histograms of 14
        // and 13 bounds (each with +Inf, _sum and _count).
        assert_eq!(
            samples,
            3 + 1 + 7 + 8 + 11 + 2 + 4 + 2 + (14 + 3) + (13 + 3)
        );
        for le in ["0.0005", "0.001", "0.0025", "1", "2.5", "10", "+Inf"] {
            let series = format!("chat_gateway_send_message_ack_seconds_bucket{{le=\"{le}\"}} 0");
            assert!(text.contains(&series), "{series}");
        }
        assert!(!text.contains("chat_gateway_fanout_seconds_bucket{le=\"0.0005\"}"));
    }
}
