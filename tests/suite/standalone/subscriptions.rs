//! Subscription changes wait per channel, not per gateway: while the
//! subscription of one session's channel is held up (a slow backplane),
//! other customers and agents still connect and join their own sessions at
//! once; only joins of the held session wait, and they all complete once it
//! goes through.

use std::sync::Arc;
use std::time::Duration;

use chat_shared::testing::GatedBackplane;
use serde_json::json;

use crate::harness::server::TestServer;
use crate::harness::sio_client::{is_new_message, Frame};
use crate::harness::tokens::token;
use crate::harness::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_subscription_delays_only_joins_of_its_own_channel() {
    let backplane = GatedBackplane::new();
    let server = TestServer::start_over(&[], Some(Arc::new(backplane.clone()))).await;
    let stuck_customer = token("subs-stuck", "customer", &[]);
    let other_customer = token("subs-other", "customer", &[]);
    let agent = token("subs-agent", "agent", &["default"]);
    let stuck_session = server.create_session(&stuck_customer, json!({})).await;
    let stuck_id = stuck_session["id"].as_str().expect("id").to_owned();
    let other_session = server.create_session(&other_customer, json!({})).await;
    let other_id = other_session["id"].as_str().expect("id").to_owned();

    let held = format!("chat:session:{stuck_id}");
    backplane.hold(&held);
    let mut stuck = server.connect(&stuck_customer).await;
    let first_join = stuck.emit_ack("join-session", json!({ "sessionId": stuck_id }));
    backplane.wait_until_waiting(&held, WAIT).await;
    let mut second_tab = server.connect(&stuck_customer).await;
    let second_join = second_tab.emit_ack("join-session", json!({ "sessionId": stuck_id }));

    // Everyone else goes on: connecting subscribes user and pool channels,
    // joining subscribes another session's channel.
    let mut other = server.connect(&other_customer).await;
    other.join_session(&other_id, None).await;
    let mut agent_socket = server.connect(&agent).await;
    agent_socket.join_session(&other_id, None).await;

    let is_ack =
        |id: u64| move |frame: &Frame| matches!(frame, Frame::Ack { id: got, .. } if *got == id);
    assert!(
        stuck
            .try_next_matching(Duration::ZERO, is_ack(first_join))
            .await
            .is_none(),
        "the held join answered before its subscription went through"
    );
    assert!(
        second_tab
            .try_next_matching(Duration::ZERO, is_ack(second_join))
            .await
            .is_none(),
        "a second join of the held channel overtook the first"
    );

    backplane.release(&held);
    for (name, client, id) in [
        ("first", &mut stuck, first_join),
        ("second", &mut second_tab, second_join),
    ] {
        let ack = client.ack(id, WAIT).await;
        assert_eq!(ack["ok"], json!(true), "{name} join: {ack}");
    }
    // Subscribed once the joins answered: a message reaches both tabs.
    server.assign(&agent, &stuck_id).await;
    let mut sender = server.connect(&agent).await;
    sender.join_session(&stuck_id, None).await;
    sender
        .send_message(&stuck_id, "through at last", "subs-1")
        .await;
    for client in [&mut stuck, &mut second_tab] {
        client
            .next_matching(WAIT, |frame| {
                matches!(frame, Frame::Event { name, payload }
                    if name == "new-message" && payload["content"] == "through at last")
            })
            .await;
    }
}

/// A message sent just before its socket leaves the session still gets its
/// ack: the ack may travel inside the message's own delivery on the
/// session's channel, so the gateway keeps that channel subscribed after
/// the last member left, until the reply has come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_just_before_leaving_still_gets_its_ack() {
    let backplane = GatedBackplane::new();
    let server = TestServer::start_over(&[], Some(Arc::new(backplane.clone()))).await;
    let customer = token("linger-customer", "customer", &[]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let mut socket = server.connect(&customer).await;
    socket.join_session(&session_id, None).await;

    let channel = format!("chat:session:{session_id}");
    backplane.hold_publications(&channel);
    let sent = socket.emit_ack(
        "send-message",
        json!({ "sessionId": session_id, "content": "bye", "clientMsgId": "linger-1" }),
    );
    // Stored, and its publication waits: now the socket leaves.
    backplane
        .wait_until_publication_waiting(&channel, WAIT)
        .await;
    let left = socket
        .emit_with_ack("leave-session", json!({ "sessionId": session_id }))
        .await;
    assert_eq!(left["ok"], json!(true), "leave-session: {left}");

    backplane.release_publications(&channel);
    let ack = socket.ack(sent, WAIT).await;
    assert_eq!(ack["ok"], json!(true), "send-message: {ack}");
    assert_eq!(ack["message"]["content"], json!("bye"), "{ack}");
    // Having left, the socket gets no new-message for it.
    let echo = socket
        .try_next_matching(Duration::ZERO, |frame| is_new_message(frame, &session_id))
        .await;
    assert!(echo.is_none(), "an event after leaving: {echo:?}");
}
