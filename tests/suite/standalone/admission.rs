//! What one user can make the server hold (§7): sessions only in a pool
//! someone serves (or the configured `POOLS`), a cap on a customer's open
//! sessions and on a user's sockets, and a budget on REST writes per user;
//! past each: `invalid_payload`, 429 `rate_limited` (with `Retry-After`) or
//! CONNECT_ERROR `rate_limited`, and nothing changes.

use serde_json::{json, Value};

use crate::harness::eventually::eventually;
use crate::harness::http::http;
use crate::harness::server::TestServer;
use crate::harness::sio_client::{ClientOptions, SioClient};
use crate::harness::tokens::token;
use crate::harness::WAIT;

async fn open(server: &TestServer, customer: &str, pool: &str) -> (u16, Value) {
    server
        .rest(
            "POST",
            "/api/chat/sessions",
            Some(customer),
            Some(json!({ "pool": pool })),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_open_only_in_pools_someone_serves() {
    let server = TestServer::start(&[]).await;
    let customer = token("adm-visitor", "customer", &[]);
    let (status, body) = open(&server, &customer, "made-up-pool").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_payload", "{body}");
    let (status, sessions) = server
        .rest("GET", "/api/chat/sessions", Some(&customer), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(sessions["items"], json!([]), "nothing was created");

    let (status, body) = open(&server, &customer, "default").await;
    assert_eq!(status, 201, "the default pool is always open: {body}");

    // Once an agent of the pool has connected, the pool is served.
    let _agent = server
        .connect(&token("adm-agent", "agent", &["made-up-pool"]))
        .await;
    let (status, body) = open(&server, &customer, "made-up-pool").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_pool_list_is_the_only_one() {
    let server = TestServer::start(&[("POOLS", "sales, support")]).await;
    let customer = token("adm-listed", "customer", &[]);
    let _agent = server
        .connect(&token("adm-other", "agent", &["other"]))
        .await;
    assert_eq!(open(&server, &customer, "sales").await.0, 201);
    assert_eq!(open(&server, &customer, "support").await.0, 201);
    assert_eq!(open(&server, &customer, "other").await.0, 400);
    assert_eq!(open(&server, &customer, "default").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_s_open_sessions_are_capped() {
    let server = TestServer::start(&[("MAX_OPEN_SESSIONS_PER_CUSTOMER", "2")]).await;
    let customer = token("adm-busy", "customer", &[]);
    let (_, first) = open(&server, &customer, "default").await;
    assert_eq!(open(&server, &customer, "default").await.0, 201);
    let (status, body) = open(&server, &customer, "default").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");

    let close = format!(
        "/api/chat/sessions/{}/close",
        first["id"].as_str().expect("id")
    );
    let (status, body) = server
        .rest("POST", &close, Some(&customer), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        open(&server, &customer, "default").await.0,
        201,
        "a closed one frees a place"
    );
    // Another customer has places of its own.
    assert_eq!(
        open(&server, &token("adm-calm", "customer", &[]), "default")
            .await
            .0,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_s_sockets_are_capped() {
    let server = TestServer::start(&[("MAX_SOCKETS_PER_USER", "2")]).await;
    let user = token("adm-tabs", "customer", &[]);
    let first = server.connect(&user).await;
    let _second = server.connect(&user).await;
    let mut third = SioClient::open(server.addr, ClientOptions::default()).await;
    let refused = third
        .join_namespace(Some(json!({ "token": user })))
        .await
        .expect_err("a third socket is refused");
    assert_eq!(refused["data"]["code"], "rate_limited", "{refused}");
    // Someone else is not affected.
    let _other = server.connect(&token("adm-someone", "customer", &[])).await;

    // A closed socket gives its place back.
    first.close();
    let addr = server.addr;
    eventually(WAIT, "a place frees up after a socket closes", || {
        let user = user.clone();
        async move {
            let mut again = SioClient::open(addr, ClientOptions::default()).await;
            again
                .join_namespace(Some(json!({ "token": user })))
                .await
                .is_ok()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_writes_have_a_budget_per_user() {
    let server = TestServer::start(&[("RATE_LIMIT_PER_SEC", "1"), ("RATE_LIMIT_BURST", "3")]).await;
    let customer = token("adm-rest", "customer", &[]);
    let (status, session) = open(&server, &customer, "default").await;
    assert_eq!(status, 201);
    let path = format!(
        "/api/chat/sessions/{}/messages",
        session["id"].as_str().expect("id")
    );
    let bearer = format!("Bearer {customer}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for n in 0..4 {
        let body = json!({ "content": format!("rest {n}"), "clientMsgId": format!("adm-{n}") })
            .to_string();
        let response = http(server.addr, "POST", &path, &headers, body.as_bytes()).await;
        if response.status == 429 {
            assert_eq!(response.json()["error"]["code"], "rate_limited");
            retry_after = response.header("retry-after").map(str::to_owned);
        }
        statuses.push(response.status);
    }
    // The session's creation was the first write of the window.
    assert_eq!(statuses, vec![201, 201, 429, 429], "{statuses:?}");
    let seconds: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=3).contains(&seconds), "{seconds}");
    let stored = server
        .history(&customer, session["id"].as_str().expect("id"))
        .await;
    assert_eq!(stored.len(), 2, "refused writes store nothing");
}
