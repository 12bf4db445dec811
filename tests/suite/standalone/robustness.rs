//! Malformed input never breaks a connection: a barrage of bad frames
//! (garbage, broken Socket.IO packets, unknown events, payloads of the wrong
//! shape for every event, binary frames, extreme ack ids) is answered frame
//! by frame with exactly one `invalid_payload` ack (when an ack id is given)
//! or one `error` event, or ignored where Socket.IO ignores it; afterwards
//! the same socket sends and receives normally, nothing from the barrage was
//! stored, and another user's socket was never disturbed.

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::harness::server::TestServer;
use crate::harness::sio_client::{is_new_message, Frame, SioClient};
use crate::harness::tokens::token;
use crate::harness::WAIT;

/// What one bad frame must produce, and nothing more.
#[derive(Debug, Clone)]
enum Expect {
    /// An `error` event with code `invalid_payload`.
    ErrorEvent,
    /// An ack with this id: `{ ok: false, error: { code: invalid_payload } }`.
    AckError(u64),
    /// Nothing at all.
    Nothing,
    /// This exact text frame.
    Raw(&'static str),
    /// A CONNECT answer on `/chat` (the socket is connected already).
    ConnectOk,
    /// A CONNECT_ERROR on this namespace.
    ConnectError(&'static str),
}

#[derive(Debug)]
struct Case {
    frame: WsMessage,
    expect: Expect,
}

fn text(frame: impl Into<String>, expect: Expect) -> Case {
    Case {
        frame: WsMessage::text(frame.into()),
        expect,
    }
}

/// An event frame with an ack id and arbitrary arguments.
fn with_ack(id: u64, args: Value) -> Case {
    text(format!("42/chat,{id}{args}"), Expect::AckError(id))
}

fn bad_payloads(session_id: &str) -> Vec<(&'static str, Value)> {
    let long = "x".repeat(4001);
    let long_id = "c".repeat(65);
    let mut cases = Vec::new();
    for event in [
        "join-session",
        "leave-session",
        "send-message",
        "typing",
        "mark-read",
    ] {
        for payload in [
            json!(null),
            json!("text"),
            json!(5),
            json!(true),
            json!([]),
            json!({}),
            json!([{ "sessionId": session_id }]),
        ] {
            cases.push((event, payload));
        }
        cases.push((event, json!({ "sessionId": 5 })));
        cases.push((event, json!({ "sessionId": "" })));
        cases.push((event, json!({ "sessionId": null })));
        cases.push((event, json!({ "sessionId": "s".repeat(129) })));
    }
    cases.extend([
        (
            "join-session",
            json!({ "sessionId": session_id, "lastSeq": "3" }),
        ),
        (
            "join-session",
            json!({ "sessionId": session_id, "lastSeq": -1 }),
        ),
        (
            "join-session",
            json!({ "sessionId": session_id, "lastSeq": 1.5 }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": 5, "clientMsgId": "bad-1" }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": "   ", "clientMsgId": "bad-2" }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": "", "clientMsgId": "bad-3" }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": long, "clientMsgId": "bad-4" }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": "hello" }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": "hello", "clientMsgId": "" }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": "hello", "clientMsgId": long_id }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": "hello", "clientMsgId": 7 }),
        ),
        (
            "send-message",
            json!({ "content": "hello", "clientMsgId": "bad-5" }),
        ),
        (
            "send-message",
            json!({ "sessionId": session_id, "content": ["hello"], "clientMsgId": "bad-6" }),
        ),
        ("typing", json!({ "sessionId": session_id })),
        (
            "typing",
            json!({ "sessionId": session_id, "isTyping": "yes" }),
        ),
        ("typing", json!({ "sessionId": session_id, "isTyping": 1 })),
        ("mark-read", json!({ "sessionId": session_id })),
        (
            "mark-read",
            json!({ "sessionId": session_id, "upToSeq": "1" }),
        ),
        (
            "mark-read",
            json!({ "sessionId": session_id, "upToSeq": -1 }),
        ),
        (
            "mark-read",
            json!({ "sessionId": session_id, "upToSeq": 1.5 }),
        ),
    ]);
    cases
}

fn barrage(session_id: &str, valid_token: &str) -> Vec<Case> {
    let mut cases = vec![
        // Not Engine.IO at all.
        text("garbage", Expect::ErrorEvent),
        text("", Expect::ErrorEvent),
        text("{\"type\":\"message\"}", Expect::ErrorEvent),
        text("5", Expect::ErrorEvent),
        text("4", Expect::ErrorEvent),
        text("é", Expect::ErrorEvent),
        // Broken Socket.IO packets.
        text("42/chat,", Expect::ErrorEvent),
        text("42/chat,{}", Expect::ErrorEvent),
        text("42/chat,[]", Expect::ErrorEvent),
        text("42/chat,[1]", Expect::ErrorEvent),
        text("42/chat,[null,{}]", Expect::ErrorEvent),
        text("42/chat,[{\"send-message\":1}]", Expect::ErrorEvent),
        text("42/chat,\"send-message\"", Expect::ErrorEvent),
        text(
            "42/chat,[\"send-message\",{\"sessionId\":",
            Expect::ErrorEvent,
        ),
        text("49/chat,[\"send-message\"]", Expect::ErrorEvent),
        text("4x", Expect::ErrorEvent),
        text("40/chat,{not json", Expect::ConnectOk),
        // Data that does not parse still gets its ack: bad JSON, a lone
        // surrogate, a number out of range, nesting too deep.
        text(
            "42/chat,21[\"send-message\",{\"sessionId\":",
            Expect::AckError(21),
        ),
        text(
            "42/chat,22[\"send-message\",{\"sessionId\":\"\\ud800\"}]",
            Expect::AckError(22),
        ),
        text(
            "42/chat,23[\"mark-read\",{\"upToSeq\":1e999}]",
            Expect::AckError(23),
        ),
        text(
            format!(
                "42/chat,24[\"typing\",{}1{}]",
                "[".repeat(300),
                "]".repeat(300)
            ),
            Expect::AckError(24),
        ),
        text("42/chat,25{}", Expect::AckError(25)),
        text("42/chat,26[]", Expect::AckError(26)),
        text("43/chat,[1]", Expect::ErrorEvent),
        text(
            "42/chat,99999999999999999999999[\"send-message\",{}]",
            Expect::ErrorEvent,
        ),
        text(
            "451-/chat,[\"send-message\",{\"_placeholder\":true,\"num\":0}]",
            Expect::ErrorEvent,
        ),
        text(
            "451-/chat,12[\"send-message\",{\"_placeholder\":true,\"num\":0}]",
            Expect::AckError(12),
        ),
        // Unknown events, with and without an ack.
        with_ack(13, json!(["no-such-event", {}])),
        with_ack(
            14,
            json!(["SEND-MESSAGE", { "sessionId": session_id, "content": "x", "clientMsgId": "u1" }]),
        ),
        with_ack(15, json!(["connected", {}])),
        text(
            format!("42/chat,{}", json!(["no-such-event", {}])),
            Expect::ErrorEvent,
        ),
        // The largest ack id there is.
        with_ack(u64::MAX, json!(["typing", 5])),
        // Every CONNECT is answered: again to /chat, or to a namespace
        // that does not exist.
        text(
            format!("40/chat,{}", json!({ "token": valid_token })),
            Expect::ConnectOk,
        ),
        text(
            format!("40/admin,{}", json!({ "token": valid_token })),
            Expect::ConnectError("/admin"),
        ),
        text("40", Expect::ConnectError("/")),
        // Things Socket.IO ignores: noops, client acks, other namespaces.
        text("6", Expect::Nothing),
        text("43/chat,1[\"fine\"]", Expect::Nothing),
        text("42/other,[\"send-message\",{}]", Expect::Nothing),
        text("42[\"send-message\",{}]", Expect::Nothing),
        text("41/other,", Expect::Nothing),
        // An Engine.IO ping from the client.
        text("2probe", Expect::Raw("3probe")),
        // Binary WebSocket frames.
        Case {
            frame: WsMessage::binary(vec![0u8, 1, 2, 255]),
            expect: Expect::ErrorEvent,
        },
        Case {
            frame: WsMessage::binary(b"42/chat,[\"send-message\",{}]".to_vec()),
            expect: Expect::ErrorEvent,
        },
    ];
    let mut next_id = 100;
    for (event, payload) in bad_payloads(session_id) {
        // The payload as the only argument, with an ack.
        cases.push(with_ack(next_id, json!([event, payload])));
        next_id += 1;
    }
    for event in [
        "join-session",
        "leave-session",
        "send-message",
        "typing",
        "mark-read",
    ] {
        // No payload at all, with an ack and without.
        cases.push(with_ack(next_id, json!([event])));
        next_id += 1;
        cases.push(text(
            format!("42/chat,{}", json!([event, 5])),
            Expect::ErrorEvent,
        ));
    }
    cases
}

/// Sends `case` then a probe event with ack id `probe`, and checks that
/// exactly the expected frames came back before the probe's ack.
async fn check(client: &mut SioClient, case: &Case, probe: u64) {
    client.send_ws(case.frame.clone());
    client.send_raw(format!(
        "42/chat,{probe}{}",
        json!(["leave-session", { "sessionId": "probe" }])
    ));
    let mut replies = Vec::new();
    loop {
        let received = client
            .next_non_ping(WAIT)
            .await
            .unwrap_or_else(|| panic!("{case:?}: the probe was never answered; got {replies:?}"));
        match &received.frame {
            Frame::Ack { id, payload } if *id == probe => {
                assert_eq!(payload, &json!({ "ok": true }), "{case:?}");
                break;
            }
            Frame::Closed(code) => {
                panic!("{case:?} closed the connection ({code:?}) after {replies:?}")
            }
            _ => replies.push(received),
        }
    }
    let invalid = |error: &Value| {
        error["code"] == "invalid_payload"
            && error["message"].as_str().is_some_and(|m| !m.is_empty())
    };
    match (&case.expect, replies.as_slice()) {
        (Expect::Nothing, []) => {}
        (Expect::Raw(raw), [reply]) => assert_eq!(reply.raw, *raw, "{case:?}"),
        (Expect::ConnectOk, [reply]) => match &reply.frame {
            Frame::ConnectOk { namespace, payload } => {
                assert_eq!(namespace, "/chat", "{case:?}");
                assert!(payload["sid"].is_string(), "{case:?}: {}", reply.raw);
            }
            other => panic!("{case:?}: expected a CONNECT answer, got {other:?}"),
        },
        (Expect::ConnectError(expected), [reply]) => match &reply.frame {
            Frame::ConnectError { namespace, payload } => {
                assert_eq!(namespace, expected, "{case:?}: {}", reply.raw);
                assert_eq!(payload["message"], "Invalid namespace", "{case:?}");
            }
            other => panic!("{case:?}: expected a CONNECT_ERROR, got {other:?}"),
        },
        (Expect::ErrorEvent, [reply]) => match &reply.frame {
            Frame::Event { name, payload } if name == "error" => {
                assert!(invalid(payload), "{case:?}: {}", reply.raw);
            }
            other => panic!("{case:?}: expected an error event, got {other:?}"),
        },
        (Expect::AckError(expected), [reply]) => match &reply.frame {
            Frame::Ack { id, payload } if id == expected => {
                assert_eq!(payload["ok"], json!(false), "{case:?}: {}", reply.raw);
                assert!(invalid(&payload["error"]), "{case:?}: {}", reply.raw);
            }
            other => panic!(
                "{case:?}: expected ack {expected} with an error, got {other:?} ({})",
                reply.raw
            ),
        },
        (expect, got) => panic!(
            "{case:?}: expected {expect:?}, got {:?}",
            got.iter().map(|r| r.raw.clone()).collect::<Vec<_>>()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrage_of_bad_frames_leaves_the_connection_usable() {
    let server = TestServer::start(&[]).await;
    let customer = token("robust-customer", "customer", &[]);
    let bystander = token("robust-bystander", "customer", &[]);
    let session = server
        .create_session(&customer, json!({ "subject": "robustness" }))
        .await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let other_session = server.create_session(&bystander, json!({})).await;
    let other_id = other_session["id"].as_str().expect("id").to_owned();

    let mut other = server.connect(&bystander).await;
    other.join_session(&other_id, None).await;
    other.next_event("session-joined", |_| true, WAIT).await;
    // Both sessions wait: each customer hears their place on joining.
    other.next_event("queue-position", |_| true, WAIT).await;

    let mut client = server.connect(&customer).await;
    client.join_session(&session_id, None).await;
    client.next_event("session-joined", |_| true, WAIT).await;
    client.next_event("queue-position", |_| true, WAIT).await;

    let cases = barrage(&session_id, &customer);
    assert!(
        cases.len() > 100,
        "the barrage covers every event: {}",
        cases.len()
    );
    for (index, case) in cases.iter().enumerate() {
        check(&mut client, case, 1_000_000 + index as u64).await;
    }

    // The same socket works normally afterwards.
    let message = client
        .send_message(&session_id, "  after the barrage  ", "robust-ok")
        .await;
    assert_eq!(message["seq"], json!(1));
    assert_eq!(message["content"], "after the barrage");
    let live = client
        .next_matching(WAIT, |f| is_new_message(f, &session_id))
        .await;
    match live.frame {
        Frame::Event { payload, .. } => assert_eq!(payload["id"], message["id"]),
        _ => unreachable!(),
    }
    let read = client
        .emit_with_ack(
            "mark-read",
            json!({ "sessionId": session_id, "upToSeq": 1 }),
        )
        .await;
    assert_eq!(read["ok"], json!(true), "{read}");

    // Nothing from the barrage was stored.
    let history = server.history(&customer, &session_id).await;
    assert_eq!(history.len(), 1, "{history:?}");

    // The bystander saw none of it and is still connected and usable.
    let seen: Vec<String> = other.drain_backlog().into_iter().map(|r| r.raw).collect();
    assert!(
        seen.iter().all(|raw| raw == "2"),
        "the bystander received frames meant for nobody: {seen:?}"
    );
    let message = other
        .send_message(&other_id, "still here", "robust-bystander")
        .await;
    assert_eq!(message["seq"], json!(1));
    other
        .next_matching(WAIT, |f| is_new_message(f, &other_id))
        .await;
    assert!(!other.has_closed());
}
