//! The metrics exposition of the standalone process, which runs both the
//! gateway and the worker: one `/metrics` carries both components' series,
//! passes `promtool check metrics` (format and Prometheus naming rules),
//! declares each family once, and moves as traffic flows.
//!
//! Needs `promtool` (Debian's `prometheus` package).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::eventually::eventually;
use crate::harness::metrics::metric_value;
use crate::harness::server::TestServer;
use crate::harness::tokens::token;
use crate::harness::WAIT;

fn promtool_check_metrics(text: &str) -> (bool, String) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        panic!(
            "`promtool` is not installed: install Debian's `prometheus` package (apt-get install prometheus)"
        );
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_serves_both_components_in_valid_prometheus_format() {
    let server = TestServer::start(&[("ADMIN_PORT", "0")]).await;
    let customer = token("metrics-customer", "customer", &[]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let mut socket = server.connect(&customer).await;
    socket.join_session(&session_id, None).await;
    for n in 0..3 {
        socket
            .send_message(&session_id, &format!("m{n}"), &format!("metrics-{n}"))
            .await;
    }
    // The sender's own copies arrive through the fan-out.
    for _ in 0..3 {
        socket
            .next_event(
                "new-message",
                |m| m["sessionId"] == json!(session_id),
                Duration::from_secs(5),
            )
            .await;
    }

    // The hub counts an event as emitted, and times its fan-out, after it
    // has queued the frame to every socket: the sender's copy can arrive
    // before the last message's counts are in.
    const EMITTED: &str = "chat_gateway_events_emitted_total{event=\"new-message\"}";
    const FANOUT: &str = "chat_gateway_fanout_seconds_count";
    eventually(WAIT, "every fan-out is counted", || async {
        let text = server.metrics().await;
        metric_value(&text, EMITTED) >= 3.0 && metric_value(&text, FANOUT) >= 3.0
    })
    .await;

    let text = server.metrics().await;
    let (valid, report) = promtool_check_metrics(&text);
    assert!(valid, "promtool check metrics: {report}\n{text}");

    let mut families = std::collections::HashSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).expect("family name");
        assert!(families.insert(name.to_owned()), "{name} declared twice");
    }
    for component in ["gateway", "worker"] {
        assert!(
            text.contains(&format!("chat_build_info{{component=\"{component}\"")),
            "no build info for {component}"
        );
    }
    assert_eq!(
        metric_value(
            &text,
            "chat_worker_commands_total{kind=\"send_message\",outcome=\"ok\"}"
        ),
        3.0
    );
    assert_eq!(
        metric_value(
            &text,
            "chat_gateway_events_received_total{event=\"send-message\"}"
        ),
        3.0
    );
    assert_eq!(
        metric_value(&text, "chat_gateway_send_message_ack_seconds_count"),
        3.0
    );
    assert!(metric_value(&text, FANOUT) >= 3.0);
    assert!(metric_value(&text, EMITTED) >= 3.0);
    assert!(metric_value(&text, "chat_worker_transaction_seconds_count") >= 1.0);
    // Standalone runs one partition by default, owned by its one worker.
    assert_eq!(
        metric_value(&text, "chat_worker_partitions_owned"),
        metric_value(&text, "chat_worker_partitions")
    );
    assert_eq!(metric_value(&text, "chat_ready"), 1.0);
    assert_eq!(metric_value(&text, "chat_gateway_draining"), 0.0);
    // No label value comes from a session or a user.
    assert!(!text.contains(&session_id));
    assert!(!text.contains("metrics-customer"));
}
