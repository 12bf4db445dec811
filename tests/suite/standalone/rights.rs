//! Rights follow changes (§7): when a session is transferred to another
//! pool, the agents of the old pool who had joined it (and the agent who
//! handed it over) get `session-updated` as their last event of it, hear
//! nothing more of it, may no longer type in it or rejoin it; the customer
//! and the new pool's agents carry on.

use serde_json::json;

use crate::harness::server::TestServer;
use crate::harness::sio_client::SioClient;
use crate::harness::tokens::token;
use crate::harness::WAIT;

/// Whether anything `client` holds mentions the session, after a probe of
/// its own round trip (everything sent to it before the probe's ack has
/// arrived by then).
async fn heard_of(client: &mut SioClient, session_id: &str) -> Vec<String> {
    let probe = client
        .emit_with_ack("leave-session", json!({ "sessionId": "probe" }))
        .await;
    assert_eq!(probe["ok"], json!(true));
    client
        .drain_backlog()
        .into_iter()
        .filter(|r| r.raw.contains(session_id))
        .map(|r| r.raw)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_another_pool_ends_the_old_pool_s_access_at_once() {
    let server = TestServer::start(&[("POOLS", "alpha,beta")]).await;
    let customer = token("rights-customer", "customer", &[]);
    let owner = token("rights-owner", "agent", &["alpha"]);
    let colleague = token("rights-colleague", "agent", &["alpha"]);
    let newcomer = token("rights-newcomer", "agent", &["beta"]);
    let session = server
        .create_session(&customer, json!({ "pool": "alpha" }))
        .await;
    let session_id = session["id"].as_str().expect("id").to_owned();

    let mut owner_socket = server.connect(&owner).await;
    let mut colleague_socket = server.connect(&colleague).await;
    let _newcomer_online = server.connect(&newcomer).await;
    server.assign(&owner, &session_id).await;
    let mut customer_socket = server.connect(&customer).await;
    for client in [
        &mut owner_socket,
        &mut colleague_socket,
        &mut customer_socket,
    ] {
        client.join_session(&session_id, None).await;
    }
    colleague_socket
        .emit_with_ack(
            "typing",
            json!({ "sessionId": session_id, "isTyping": true }),
        )
        .await;
    for client in [&mut owner_socket, &mut colleague_socket] {
        client.next_event("session-joined", |_| true, WAIT).await;
        client.drain_backlog();
    }

    let path = format!("/api/chat/sessions/{session_id}/transfer");
    let (status, moved) = server
        .rest("POST", &path, Some(&owner), Some(json!({ "pool": "beta" })))
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["pool"], "beta");

    for (name, client) in [
        ("owner", &mut owner_socket),
        ("colleague", &mut colleague_socket),
    ] {
        let updated = client
            .next_event(
                "session-updated",
                |p| p["session"]["id"] == session_id.as_str(),
                WAIT,
            )
            .await;
        assert_eq!(updated["session"]["pool"], "beta", "{name}");
        client.drain_backlog();
    }

    // The customer carries on; the old pool hears nothing of it.
    customer_socket
        .emit_with_ack(
            "typing",
            json!({ "sessionId": session_id, "isTyping": true }),
        )
        .await;
    customer_socket
        .send_message(&session_id, "is anyone there?", "rights-1")
        .await;
    for (name, client) in [
        ("owner", &mut owner_socket),
        ("colleague", &mut colleague_socket),
    ] {
        let heard = heard_of(client, &session_id).await;
        assert!(
            heard.is_empty(),
            "{name} still hears the session: {heard:?}"
        );
        let typing = client
            .emit_with_ack(
                "typing",
                json!({ "sessionId": session_id, "isTyping": true }),
            )
            .await;
        assert_eq!(typing["error"]["code"], "forbidden", "{name}: {typing}");
        let rejoin = client
            .emit_with_ack("join-session", json!({ "sessionId": session_id }))
            .await;
        assert_eq!(rejoin["error"]["code"], "forbidden", "{name}: {rejoin}");
    }

    // The new pool may join and reads everything.
    let mut newcomer_socket = server.connect(&newcomer).await;
    let joined = newcomer_socket.join_session(&session_id, None).await;
    let contents: Vec<&str> = joined["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, vec!["is anyone there?"]);
}
