//! Ordering under concurrency: the customer and the assigned agent each
//! pipeline 200 messages into one session at the same time while another
//! agent of the pool watches. Every joined socket sees `new-message` for seq
//! 1..400 exactly once and in order; each sender's own messages keep the
//! order they were sent in; every ack carries a distinct seq and comes
//! before the sender's own `new-message` for it; and the stored history is
//! exactly what was observed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::harness::server::TestServer;
use crate::harness::sio_client::{Frame, SioClient};
use crate::harness::tokens::token;

const EACH: usize = 200;
const TOTAL: usize = 2 * EACH;

/// What one socket saw: the `new-message` payloads of the session in
/// arrival order, and the acks by id with their position in the stream.
struct Observed {
    messages: Vec<Value>,
    /// ack id → (ack payload, number of new-message frames before it)
    acks: HashMap<u64, (Value, usize)>,
}

async fn observe(client: &mut SioClient, session_id: &str, ack_ids: &HashSet<u64>) -> Observed {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut observed = Observed {
        messages: Vec::new(),
        acks: HashMap::new(),
    };
    while observed.messages.len() < TOTAL || observed.acks.len() < ack_ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let received = client.next_frame(left).await.unwrap_or_else(|| {
            panic!(
                "stalled after {} messages and {} acks",
                observed.messages.len(),
                observed.acks.len()
            )
        });
        match received.frame {
            Frame::Event { name, payload }
                if name == "new-message" && payload["sessionId"] == session_id =>
            {
                observed.messages.push(payload);
            }
            Frame::Event { name, payload } if name == "error" => panic!("error event: {payload}"),
            Frame::Ack { id, payload } if ack_ids.contains(&id) => {
                let before = observed.messages.len();
                assert!(
                    observed.acks.insert(id, (payload, before)).is_none(),
                    "ack {id} twice"
                );
            }
            Frame::Closed(code) => panic!("connection closed ({code:?})"),
            _ => {}
        }
    }
    observed
}

fn check_sequence(who: &str, messages: &[Value]) {
    let seqs: Vec<i64> = messages
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    let expected: Vec<i64> = (1..=TOTAL as i64).collect();
    if seqs != expected {
        let first_bad = seqs.iter().zip(&expected).position(|(a, b)| a != b);
        panic!("{who}: seqs are not 1..{TOTAL} in order; first difference at index {first_bad:?}: {seqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_produce_one_gapless_order_for_everyone() {
    let server = TestServer::start(&[]).await;
    let customer = token("order-customer", "customer", &[]);
    let agent = token("order-agent", "agent", &["default"]);
    let watcher = token("order-watcher", "agent", &["default"]);
    let session = server
        .create_session(&customer, json!({ "subject": "ordering" }))
        .await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server.assign(&agent, &session_id).await;

    let mut customer_socket = server.connect(&customer).await;
    let mut agent_socket = server.connect(&agent).await;
    let mut watcher_socket = server.connect(&watcher).await;
    for client in [&mut customer_socket, &mut agent_socket, &mut watcher_socket] {
        let joined = client.join_session(&session_id, None).await;
        assert_eq!(joined["messages"], json!([]));
    }

    // Both senders write all their messages without waiting for acks,
    // interleaved on two connections.
    let mut customer_acks = HashMap::new();
    let mut agent_acks = HashMap::new();
    for n in 0..EACH {
        let id = customer_socket.emit_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": format!("customer {n}"), "clientMsgId": format!("c-{n}") }),
        );
        customer_acks.insert(id, n);
        let id = agent_socket.emit_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": format!("agent {n}"), "clientMsgId": format!("a-{n}") }),
        );
        agent_acks.insert(id, n);
    }

    let customer_ids: HashSet<u64> = customer_acks.keys().copied().collect();
    let agent_ids: HashSet<u64> = agent_acks.keys().copied().collect();
    let no_acks = HashSet::new();
    let (seen_by_customer, seen_by_agent, seen_by_watcher) = tokio::join!(
        observe(&mut customer_socket, &session_id, &customer_ids),
        observe(&mut agent_socket, &session_id, &agent_ids),
        observe(&mut watcher_socket, &session_id, &no_acks),
    );

    for (who, observed) in [
        ("customer", &seen_by_customer),
        ("agent", &seen_by_agent),
        ("watcher", &seen_by_watcher),
    ] {
        check_sequence(who, &observed.messages);
        assert_eq!(
            observed.messages, seen_by_watcher.messages,
            "{who} saw different messages"
        );
    }

    // Acks: all successful, distinct seqs covering 1..TOTAL together, each
    // equal to the message everyone saw, and each before the sender's own
    // new-message for it.
    let mut ack_seqs = HashSet::new();
    for (who, observed, sent) in [
        ("customer", &seen_by_customer, &customer_acks),
        ("agent", &seen_by_agent, &agent_acks),
    ] {
        let mut own_order = Vec::new();
        for (id, n) in sent {
            let (ack, messages_before) = &observed.acks[id];
            assert_eq!(ack["ok"], json!(true), "{who} ack {id}: {ack}");
            let message = &ack["message"];
            let seq = message["seq"].as_i64().expect("seq");
            assert!(ack_seqs.insert(seq), "seq {seq} acked twice");
            assert_eq!(message["content"], format!("{who} {n}"));
            assert_eq!(
                &observed.messages[seq as usize - 1],
                message,
                "{who}: ack and new-message differ"
            );
            assert!(
                *messages_before < seq as usize,
                "{who}: the ack of seq {seq} came after its new-message"
            );
            own_order.push((seq, *n));
        }
        own_order.sort();
        let sent_order: Vec<usize> = own_order.iter().map(|(_, n)| *n).collect();
        assert_eq!(
            sent_order,
            (0..EACH).collect::<Vec<_>>(),
            "{who}'s messages were reordered"
        );
    }
    assert_eq!(ack_seqs.len(), TOTAL);

    // The store holds exactly what was observed.
    let history = server.history(&customer, &session_id).await;
    assert_eq!(history, seen_by_watcher.messages);
    let stored = server.session(&customer, &session_id).await;
    assert_eq!(stored["lastSeq"], json!(TOTAL));
}
