//! Where the operational endpoints live: without `ADMIN_PORT`, `/healthz`,
//! `/readyz` and `/metrics` are on the public port; with it (port 0 picks a
//! free one, which `RunningChat::admin_addr` reports) they are served there
//! alone, the public port answers 404 for them (also when a web UI is
//! served), and the metrics count the connected sockets.

use serde_json::json;

use crate::harness::http::http;
use crate::harness::metrics::metric_value;
use crate::harness::server::TestServer;
use crate::harness::tokens::token;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admin_port_the_endpoints_are_public() {
    let server = TestServer::start(&[]).await;
    assert_eq!(server.admin_addr, None);
    let health = http(server.addr, "GET", "/healthz", &[], &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({ "status": "ok" }));
    let ready = http(server.addr, "GET", "/readyz", &[], &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["ready"], json!(true));
    let metrics = http(server.addr, "GET", "/metrics", &[], &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("chat_gateway_sockets"),
        "{}",
        metrics.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_port_the_endpoints_move_there_alone() {
    let server = TestServer::start(&[("ADMIN_PORT", "0")]).await;
    let admin = server
        .admin_addr
        .expect("ADMIN_PORT=0 binds a free admin port");
    assert_ne!(admin.port(), 0);
    assert_ne!(admin, server.addr);

    let health = http(admin, "GET", "/healthz", &[], &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({ "status": "ok" }));
    let ready = http(admin, "GET", "/readyz", &[], &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["ready"], json!(true));

    // The metrics count a connected customer.
    let before = server.metrics().await;
    assert_eq!(
        metric_value(&before, "chat_gateway_sockets{role=\"customer\"}"),
        0.0
    );
    let client = server
        .connect(&token("admin-watched", "customer", &[]))
        .await;
    let during = server.metrics().await;
    assert_eq!(
        metric_value(&during, "chat_gateway_sockets{role=\"customer\"}"),
        1.0,
        "{during}"
    );
    assert!(metric_value(&during, "chat_gateway_connections_accepted_total") >= 1.0);
    drop(client);

    // Not on the public port, and the admin port serves nothing else.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = http(server.addr, "GET", path, &[], &[]).await;
        assert_eq!(
            response.status,
            404,
            "{path} on the public port: {}",
            response.text()
        );
        assert!(!response.text().contains("chat_gateway"), "{path}");
    }
    for path in ["/api/chat/sessions", "/socket.io/?EIO=4&transport=polling"] {
        let response = http(admin, "GET", path, &[], &[]).await;
        assert_eq!(
            response.status,
            404,
            "{path} on the admin port: {}",
            response.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_port_a_web_ui_does_not_answer_for_the_endpoints() {
    let web = tempfile::tempdir().expect("web dir");
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>chat</title>",
    )
    .expect("index.html");
    let web_dir = web.path().to_string_lossy().into_owned();
    let server = TestServer::start(&[("ADMIN_PORT", "0"), ("WEB_DIR", web_dir.as_str())]).await;

    // The UI is served for page paths...
    let page = http(server.addr, "GET", "/inbox", &[], &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>chat</title>"));
    // ...but the operational paths are not pages.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = http(server.addr, "GET", path, &[], &[]).await;
        assert_eq!(
            response.status,
            404,
            "{path} on the public port: {}",
            response.text()
        );
    }
    let metrics = http(
        server.admin_addr.expect("admin"),
        "GET",
        "/metrics",
        &[],
        &[],
    )
    .await;
    assert!(metrics.text().contains("chat_gateway_sockets"));
}
