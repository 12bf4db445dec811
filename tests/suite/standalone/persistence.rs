//! Durability across a restart on the same data directory: sessions, the
//! full message history (byte for byte as JSON) and read positions survive;
//! the next message continues the seq; and resending a `clientMsgId` from
//! before the restart, over Socket.IO or REST, returns the original message
//! without storing anything new.

use serde_json::json;

use crate::harness::server::TestServer;
use crate::harness::tokens::token;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_deduplication_survive_a_restart() {
    let mut server = TestServer::start(&[]).await;
    let customer = token("durable-customer", "customer", &[]);
    let agent = token("durable-agent", "agent", &["default"]);
    let session = server
        .create_session(
            &customer,
            json!({ "subject": "keep me", "message": "first words" }),
        )
        .await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server.assign(&agent, &session_id).await;

    let mut customer_socket = server.connect(&customer).await;
    let mut agent_socket = server.connect(&agent).await;
    customer_socket.join_session(&session_id, None).await;
    agent_socket.join_session(&session_id, None).await;
    let mut sent = Vec::new();
    for n in 0..10 {
        sent.push(
            customer_socket
                .send_message(&session_id, &format!("question {n}"), &format!("q-{n}"))
                .await,
        );
        sent.push(
            agent_socket
                .send_message(&session_id, &format!("answer {n} ✓"), &format!("a-{n}"))
                .await,
        );
    }
    let (status, over_rest) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{session_id}/messages"),
            Some(&customer),
            Some(json!({ "content": "by REST", "clientMsgId": "r-1" })),
        )
        .await;
    assert_eq!(status, 201, "{over_rest}");
    let read = agent_socket
        .emit_with_ack(
            "mark-read",
            json!({ "sessionId": session_id, "upToSeq": 15 }),
        )
        .await;
    assert_eq!(read["ok"], json!(true), "{read}");

    let history_before = server.history(&agent, &session_id).await;
    assert_eq!(history_before.len(), 22);
    let session_before = server.session(&agent, &session_id).await;
    assert_eq!(session_before["lastSeq"], json!(22));
    let joined_before = agent_socket.join_session(&session_id, Some(0)).await;
    drop(customer_socket);
    drop(agent_socket);

    server.restart().await;

    let history_after = server.history(&agent, &session_id).await;
    assert_eq!(
        history_after, history_before,
        "history changed across the restart"
    );
    let session_after = server.session(&agent, &session_id).await;
    assert_eq!(
        session_after, session_before,
        "session changed across the restart"
    );
    let mut agent_socket = server.connect(&agent).await;
    let joined_after = agent_socket.join_session(&session_id, Some(0)).await;
    assert_eq!(
        joined_after["readPositions"],
        joined_before["readPositions"]
    );
    assert_eq!(joined_after["messages"], json!(history_before));

    // Resending over Socket.IO returns the original message.
    let mut customer_socket = server.connect(&customer).await;
    customer_socket.join_session(&session_id, None).await;
    let original = &sent[4];
    let again = customer_socket
        .send_message(
            &session_id,
            "different text, same id",
            original["clientMsgId"].as_str().expect("id"),
        )
        .await;
    assert_eq!(
        &again, original,
        "a resend after the restart must return the original"
    );

    // And over REST (200, not 201).
    let (status, again) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{session_id}/messages"),
            Some(&customer),
            Some(json!({ "content": "once more", "clientMsgId": "r-1" })),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, over_rest);

    // The next new message continues the sequence.
    let next = customer_socket
        .send_message(&session_id, "after the restart", "q-next")
        .await;
    assert_eq!(next["seq"], json!(23));
    let history = server.history(&customer, &session_id).await;
    assert_eq!(history.len(), 23);
    assert_eq!(history[..22], history_before[..]);
}
