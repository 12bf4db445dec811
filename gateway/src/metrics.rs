//! The gateway's Prometheus metrics: lock-free counters and one latency
//! histogram, rendered in the text exposition format on `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chat_shared::protocol::Role;

/// Upper bounds (seconds) of the ack latency buckets: from sub-millisecond
/// standalone acks to multi-second stalls.
const ACK_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    pub sockets_customer: AtomicI64,
    pub sockets_agent: AtomicI64,
    pub sockets_admin: AtomicI64,
    pub connections_accepted: AtomicU64,
    pub rejected_missing_token: AtomicU64,
    pub rejected_invalid_token: AtomicU64,
    pub rejected_token_expired: AtomicU64,
    pub rejected_bad_namespace: AtomicU64,
    pub events_received: AtomicU64,
    pub events_emitted: AtomicU64,
    pub slow_consumer_drops: AtomicU64,
    pub rate_limited: AtomicU64,
    pub backplane_errors: AtomicU64,
    ack_buckets: [AtomicU64; ACK_BUCKETS.len()],
    ack_count: AtomicU64,
    ack_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn sockets_gauge(&self, role: Role) -> &AtomicI64 {
        match role {
            Role::Customer => &self.sockets_customer,
            Role::Agent => &self.sockets_agent,
            Role::Admin => &self.sockets_admin,
        }
    }

    pub fn reject_counter(&self, code: &str) -> &AtomicU64 {
        match code {
            "missing_token" => &self.rejected_missing_token,
            "token_expired" => &self.rejected_token_expired,
            "invalid_token" => &self.rejected_invalid_token,
            _ => &self.rejected_bad_namespace,
        }
    }

    pub fn record_ack_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in ACK_BUCKETS.iter().zip(&self.ack_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.ack_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.ack_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        out.push_str("# HELP chat_gateway_sockets Connected sockets by role.\n# TYPE chat_gateway_sockets gauge\n");
        for (role, gauge) in [
            ("customer", &self.sockets_customer),
            ("agent", &self.sockets_agent),
            ("admin", &self.sockets_admin),
        ] {
            let _ = writeln!(
                out,
                "chat_gateway_sockets{{role=\"{role}\"}} {}",
                gauge.load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "chat_gateway_connections_accepted_total",
            "Socket.IO connections accepted.",
            load(&self.connections_accepted),
        );
        out.push_str("# HELP chat_gateway_connections_rejected_total Socket.IO connections refused, by reason.\n# TYPE chat_gateway_connections_rejected_total counter\n");
        for (reason, value) in [
            ("missing_token", &self.rejected_missing_token),
            ("invalid_token", &self.rejected_invalid_token),
            ("token_expired", &self.rejected_token_expired),
            ("bad_namespace", &self.rejected_bad_namespace),
        ] {
            let _ = writeln!(
                out,
                "chat_gateway_connections_rejected_total{{reason=\"{reason}\"}} {}",
                load(value)
            );
        }
        counter(
            &mut out,
            "chat_gateway_events_received_total",
            "Client events received.",
            load(&self.events_received),
        );
        counter(
            &mut out,
            "chat_gateway_events_emitted_total",
            "Fanned-out events queued to sockets.",
            load(&self.events_emitted),
        );
        counter(
            &mut out,
            "chat_gateway_slow_consumer_drops_total",
            "Sockets cut off because their outbound queue was full.",
            load(&self.slow_consumer_drops),
        );
        counter(
            &mut out,
            "chat_gateway_rate_limited_total",
            "send-message events refused by the rate limit.",
            load(&self.rate_limited),
        );
        counter(
            &mut out,
            "chat_gateway_backplane_errors_total",
            "Failed backplane operations.",
            load(&self.backplane_errors),
        );
        out.push_str("# HELP chat_gateway_send_message_ack_seconds Time from receiving send-message to queuing its ack.\n# TYPE chat_gateway_send_message_ack_seconds histogram\n");
        for (bound, bucket) in ACK_BUCKETS.iter().zip(&self.ack_buckets) {
            let _ = writeln!(
                out,
                "chat_gateway_send_message_ack_seconds_bucket{{le=\"{bound}\"}} {}",
                load(bucket)
            );
        }
        let count = load(&self.ack_count);
        let _ = writeln!(
            out,
            "chat_gateway_send_message_ack_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "chat_gateway_send_message_ack_seconds_sum {}",
            load(&self.ack_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "chat_gateway_send_message_ack_seconds_count {count}");
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.record_ack_latency(Duration::from_micros(300));
        metrics.record_ack_latency(Duration::from_millis(20));
        let text = metrics.render();
        assert!(text.contains("chat_gateway_send_message_ack_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("chat_gateway_send_message_ack_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("chat_gateway_send_message_ack_seconds_count 2"));
    }
}
