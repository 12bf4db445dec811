//! The monitoring set-up against a real Prometheus: `promtool` accepts the
//! shipped configuration and alert rules, and a real `prometheus` server
//! scraping a running gateway and worker (over real Redis and PostgreSQL)
//! finds the key series, loads the shipped alert rules and evaluates every
//! one of them without error. Every `chat_*` metric that the alerts and
//! the Grafana dashboard use must be among the scraped series, so that a
//! renamed metric cannot silently blind an alert or a panel.
//!
//! Needs `prometheus` and `promtool` (Debian's `prometheus` package).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_shared::testing::free_port;
use serde_json::{json, Value};

use crate::harness::backing::Backing;
use crate::harness::chat_client::{ChatClient, Upstream};
use crate::harness::eventually::eventually;
use crate::harness::http::{get, rest};
use crate::harness::processes::{process_env, Process, Role};
use crate::harness::tokens::token;

/// Series the scrape must contain, with what makes them worth having.
const KEY_SERIES: &[&str] = &[
    "up{job=\"chat-gateway\"} == 1",
    "up{job=\"chat-worker\"} == 1",
    "chat_build_info{component=\"gateway\"}",
    "chat_build_info{component=\"worker\"}",
    "chat_gateway_sockets{role=\"customer\"} > 0",
    "chat_gateway_connections_accepted_total > 0",
    "chat_gateway_events_received_total{event=\"send-message\"} > 0",
    "chat_gateway_events_emitted_total{event=\"new-message\"} > 0",
    "chat_gateway_send_message_ack_seconds_count > 0",
    "chat_gateway_fanout_seconds_count > 0",
    "chat_worker_commands_total{kind=\"send_message\",outcome=\"ok\"} > 0",
    "chat_worker_batch_size_count > 0",
    "chat_worker_transaction_seconds_count > 0",
    "chat_worker_partitions_owned == 4",
    "chat_worker_stream_lag",
    "chat_worker_stream_pending",
    "chat_ready == 1",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs a Prometheus tool; panics with how to install it when missing.
fn tool(name: &str) -> Command {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{name}` is not installed: install Debian's `prometheus` package (apt-get install prometheus)"
    );
    Command::new(name)
}

/// A `prometheus` server, stopped when dropped.
struct PrometheusServer {
    child: Child,
    addr: std::net::SocketAddr,
    log: PathBuf,
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- prometheus log ----\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

impl PrometheusServer {
    async fn query(&self, promql: &str) -> Vec<Value> {
        let mut url = reqwest::Url::parse("http://prometheus/api/v1/query").expect("a URL");
        url.query_pairs_mut().append_pair("query", promql);
        let query = url.query().unwrap_or_default();
        let body = self.api(&format!("{}?{query}", url.path())).await;
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The `data` of an API call; Null while the server is not up yet.
    async fn api(&self, path: &str) -> Value {
        match get(self.addr, path).await {
            Some((200, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// Every `chat_*` metric name in `text` (histogram series reduced to the
/// names they are exported under).
fn chat_metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(found) = text[start..].find("chat_") {
        let begin = start + found;
        let preceded_by_word =
            begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_');
        let end = text[begin..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |i| begin + i);
        if !preceded_by_word {
            names.insert(text[begin..end].to_owned());
        }
        start = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_key_series_and_evaluates_every_alert() {
    // The shipped files, as an operator would check them.
    for args in [
        vec!["check", "config", "deploy/prometheus/prometheus.yml"],
        vec!["check", "rules", "deploy/prometheus/alerts.yml"],
    ] {
        let output = tool("promtool")
            .args(&args)
            .current_dir(repo("."))
            .output()
            .expect("run promtool");
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = tool("prometheus");

    // A gateway and a worker with some traffic through them.
    let backing = Backing::create().await;
    let logs = tempfile::tempdir().expect("temp dir");
    let env = process_env(&backing, &[("PARTITIONS", "4")]);
    let worker = Process::start(Role::Worker, "worker", &env, logs.path()).await;
    let gateway = Process::start(Role::Gateway, "gateway", &env, logs.path()).await;
    let customer = token("prom-customer", "customer", &[]);
    let (status, session) = rest(
        gateway.addr(),
        "POST",
        "/api/chat/sessions",
        Some(&customer),
        Some(json!({ "subject": "metrics" })),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let session_id = session["id"].as_str().expect("id").to_owned();
    let upstream = Upstream {
        public: gateway.addr(),
        admin: gateway.admin,
    };
    let mut client = ChatClient::join(customer, session_id.clone(), vec![upstream], 0).await;
    for n in 0..3 {
        client.send("hello", &format!("prom-{n}")).await;
    }
    client.wait_for_seq(3, Duration::from_secs(10)).await;

    // A real Prometheus, scraping both every second and evaluating the
    // shipped rules every second.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    let rules = repo("deploy/prometheus/alerts.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n\
             \x20 - job_name: chat-gateway\n    static_configs:\n      - targets: ['{gateway}']\n\
             \x20 - job_name: chat-worker\n    static_configs:\n      - targets: ['{worker}']\n",
            rules = rules.display(),
            gateway = gateway.admin,
            worker = worker.admin,
        ),
    )
    .expect("write the config");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let log = dir.path().join("prometheus.log");
    let child = tool("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start prometheus");
    let prometheus = PrometheusServer { child, addr, log };

    // Wait (bounded) until every key series is there.
    eventually(
        Duration::from_secs(60),
        "Prometheus sees every key series",
        || async {
            let mut missing = Vec::new();
            for series in KEY_SERIES {
                if prometheus.query(series).await.is_empty() {
                    missing.push(*series);
                }
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing)
            }
        },
    )
    .await;

    // Every chat_* name the alerts and the dashboard use is a real series.
    let names = prometheus.api("/api/v1/label/__name__/values").await;
    let scraped: BTreeSet<String> = names["data"]
        .as_array()
        .expect("metric names")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/dashboards/chat.json",
    ] {
        let text = std::fs::read_to_string(repo(file)).expect("read");
        let used = chat_metric_names(&text);
        assert!(!used.is_empty(), "{file} names no chat_ metric");
        let unknown: Vec<&String> = used.difference(&scraped).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics that are not exported: {unknown:?}"
        );
    }

    // The shipped rules are loaded, and each was evaluated without error.
    eventually(
        Duration::from_secs(30),
        "rules all evaluated and inactive",
        || async {
            let rules = prometheus.api("/api/v1/rules").await;
            let all: Vec<Value> = rules["data"]["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let evaluated = all.len() >= 6
                && all.iter().all(|r| {
                    !r["lastEvaluation"]
                        .as_str()
                        .unwrap_or("0001")
                        .starts_with("0001")
                });
            for rule in all.iter().filter(|_| evaluated) {
                assert_eq!(rule["health"], json!("ok"), "rule failed: {rule}");
                assert_eq!(rule["type"], json!("alerting"));
            }
            // Once the first scrapes are in, a healthy cluster fires
            // nothing and is not about to (an alert on absent series may be
            // pending for the evaluations before them).
            if evaluated && all.iter().all(|r| r["state"] == json!("inactive")) {
                Ok(())
            } else {
                Err(rules)
            }
        },
    )
    .await;

    drop(prometheus);
    drop(client);
    drop(gateway);
    drop(worker);
    drop(backing);
}

#[test]
fn metric_names_are_found_in_expressions() {
    let names = chat_metric_names(
        "sum(rate(chat_worker_commands_total{x=\"y\"}[5m])) / my_chat_other + chat_ready",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["chat_ready", "chat_worker_commands_total"]
    );
}
