//! Connection refusals at the wire level: each kind of bad token gets
//! exactly one CONNECT_ERROR frame, `44/chat,{"message":"unauthorized",
//! "data":{"code":...}}`, and nothing else (the same connection can then
//! CONNECT properly); other namespaces are refused; HTTP long-polling and
//! other non-WebSocket requests to `/socket.io/` get 400 pointing to the
//! WebSocket transport.

use serde_json::{json, Value};

use crate::harness::http::http;
use crate::harness::server::TestServer;
use crate::harness::sio_client::{ClientOptions, Frame, SioClient};
use crate::harness::tokens::{token, token_signed_with, token_with_ttl};
use crate::harness::WAIT;

/// Sends CONNECT with `auth` and returns the raw text of the answer.
async fn refused(client: &mut SioClient, auth: Option<Value>) -> String {
    let error = client
        .join_namespace(auth.clone())
        .await
        .expect_err("CONNECT must be refused");
    let extra = client.drain_backlog();
    assert!(
        extra.is_empty(),
        "nothing but the refusal is sent: {extra:?}"
    );
    error.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_exactly_one_unauthorized_connect_error() {
    let server = TestServer::start(&[]).await;
    let expired = token_with_ttl("auth-expired", "customer", &[], -3600);
    let foreign = token_signed_with(
        "some-other-secret-0123456789",
        "auth-foreign",
        "customer",
        &[],
        3600,
    );
    let valid = token("auth-valid", "customer", &[]);
    let parts: Vec<&str> = valid.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    // The same claims with `alg: none` and no signature.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    // The same token with the first signature character changed.
    let flipped = if parts[2].starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{}.{}.{flipped}{}", parts[0], parts[1], &parts[2][1..]);
    let cases: Vec<(Option<Value>, &str)> = vec![
        (None, "missing_token"),
        (Some(json!({})), "missing_token"),
        (Some(json!({ "token": "" })), "missing_token"),
        (Some(json!({ "token": "not-a-jwt" })), "invalid_token"),
        (Some(json!({ "token": foreign })), "invalid_token"),
        (Some(json!({ "token": unsigned })), "invalid_token"),
        (Some(json!({ "token": tampered })), "invalid_token"),
        (Some(json!({ "token": expired })), "token_expired"),
        (Some(json!({ "token": null })), "missing_token"),
        (Some(json!({ "token": 42 })), "invalid_token"),
        (Some(json!({ "token": [valid.clone()] })), "invalid_token"),
        (
            Some(json!({ "token": { "jwt": valid.clone() } })),
            "invalid_token",
        ),
    ];

    // Each refusal on its own connection, checked frame by frame.
    for (auth, code) in &cases {
        let mut client = SioClient::open(server.addr, ClientOptions::default()).await;
        client.send_raw(match auth {
            Some(auth) => format!("40/chat,{auth}"),
            None => "40/chat,".to_owned(),
        });
        let answer = client
            .next_non_ping(WAIT)
            .await
            .expect("an answer to CONNECT");
        let body = answer.raw.strip_prefix("44/chat,").unwrap_or_else(|| {
            panic!(
                "{auth:?}: expected a CONNECT_ERROR on /chat, got {}",
                answer.raw
            )
        });
        let body: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(
            body,
            json!({ "message": "unauthorized", "data": { "code": code } }),
            "{auth:?}"
        );

        // Nothing else follows: the next frame is the answer to a good
        // CONNECT on the same connection.
        let connected = client
            .join_namespace(Some(json!({ "token": valid })))
            .await
            .expect("a later valid CONNECT succeeds");
        assert_eq!(connected["userId"], "auth-valid");
        let extra: Vec<String> = client.drain_backlog().into_iter().map(|r| r.raw).collect();
        assert!(
            extra.is_empty(),
            "{auth:?}: unexpected frames after the refusal: {extra:?}"
        );
    }

    // Several refusals in a row on one connection, one frame each.
    let mut client = SioClient::open(server.addr, ClientOptions::default()).await;
    for (auth, code) in &cases {
        let error = refused(&mut client, auth.clone()).await;
        let error: Value = serde_json::from_str(&error).expect("JSON");
        assert_eq!(error["data"]["code"], json!(code), "{auth:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_whose_auth_is_not_json_is_answered_at_once() {
    let server = TestServer::start(&[]).await;
    let valid = token("auth-bad-json", "customer", &[]);
    let mut client = SioClient::open(server.addr, ClientOptions::default()).await;
    for broken in ["{not json", "{\"token\":", "[1,", "\"\\ud800\""] {
        client.send_raw(format!("40/chat,{broken}"));
        let answer = client
            .next_non_ping(WAIT)
            .await
            .unwrap_or_else(|| panic!("{broken}: CONNECT left without an answer"));
        let body = answer
            .raw
            .strip_prefix("44/chat,")
            .unwrap_or_else(|| panic!("{broken}: expected CONNECT_ERROR, got {}", answer.raw));
        let body: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(
            body,
            json!({ "message": "unauthorized", "data": { "code": "invalid_token" } }),
            "{broken}"
        );
    }
    let connected = client
        .join_namespace(Some(json!({ "token": valid })))
        .await
        .expect("a later valid CONNECT succeeds");
    assert_eq!(connected["userId"], "auth-bad-json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connected_greeting_describes_the_caller() {
    let server = TestServer::start(&[]).await;
    let client = server
        .connect(&token("auth-agent", "agent", &["sales", "support"]))
        .await;
    let connected = &client.connected;
    assert_eq!(connected["userId"], "auth-agent");
    assert_eq!(connected["name"], "auth-agent name");
    assert_eq!(connected["role"], "agent");
    assert_eq!(connected["pools"], json!(["sales", "support"]));
    assert!(connected["socketId"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(connected["serverTime"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_namespaces_are_refused() {
    let server = TestServer::start(&[]).await;
    let valid = token("auth-namespace", "customer", &[]);
    let mut client = SioClient::open(server.addr, ClientOptions::default()).await;

    for (connect, namespace) in [
        (format!("40{}", json!({ "token": valid })), "/"),
        (format!("40/,{}", json!({ "token": valid })), "/"),
        (format!("40/admin,{}", json!({ "token": valid })), "/admin"),
    ] {
        client.send_raw(connect.clone());
        let answer = client
            .next_non_ping(WAIT)
            .await
            .expect("an answer to CONNECT");
        match &answer.frame {
            Frame::ConnectError {
                namespace: got,
                payload,
            } => {
                assert_eq!(got, namespace, "{connect} answered {}", answer.raw);
                assert!(payload["message"].is_string(), "{}", answer.raw);
            }
            other => panic!(
                "{connect}: expected CONNECT_ERROR, got {other:?} ({})",
                answer.raw
            ),
        }
    }
    // The connection is still good for /chat.
    let connected = client
        .join_namespace(Some(json!({ "token": valid })))
        .await
        .expect("connect to /chat");
    assert_eq!(connected["userId"], "auth-namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_and_plain_requests_are_refused_with_a_pointer_to_websocket() {
    let server = TestServer::start(&[]).await;
    for path in [
        "/socket.io/?EIO=4&transport=polling",
        "/socket.io/?EIO=4&transport=polling&t=abc",
        "/socket.io/?EIO=4&transport=websocket",
        "/socket.io/",
    ] {
        let response = http(server.addr, "GET", path, &[], &[]).await;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        let body = response.json();
        let message = body["message"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(message.contains("websocket"), "{path}: {body}");
    }
    let response = http(
        server.addr,
        "POST",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        b"40/chat,",
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.text());

    // A WebSocket upgrade for an older Engine.IO protocol is refused too.
    let url = format!("ws://{}/socket.io/?EIO=3&transport=websocket", server.addr);
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let refused = tokio_tungstenite::client_async(url, stream).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400)
        }
        Err(other) => panic!("expected an HTTP 400 refusal, got {other}"),
        Ok(_) => panic!("an EIO=3 upgrade must be refused"),
    }
}
