//! Catching up while messages keep coming: an agent sends a steady stream
//! of messages while the customer disconnects and reconnects over and over,
//! each time joining with `lastSeq` = the last seq it has. Across all the
//! connections the customer sees seq 1..N exactly once each and in order,
//! whether it reads the history from the join ack or from the
//! `session-joined` event, followed by the live `new-message` events.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::harness::server::TestServer;
use crate::harness::sio_client::{seqs, Frame, SioClient};
use crate::harness::tokens::token;

const TOTAL: i64 = 300;
/// Live messages a connection reads before it drops.
const PER_CONNECTION: usize = 12;

/// What one connection of the customer saw, in arrival order.
#[derive(Debug, Default)]
struct Visit {
    /// Seqs of the join ack's messages.
    ack: Vec<i64>,
    /// Seqs of the session-joined event's messages.
    joined_event: Vec<i64>,
    /// Seqs of new-message events, with the index of each frame.
    live: Vec<(usize, i64)>,
    /// Index of the session-joined frame among the frames read.
    joined_at: Option<usize>,
}

async fn visit(
    server: &TestServer,
    token: &str,
    session_id: &str,
    last_seq: i64,
    round: usize,
) -> Visit {
    let mut client = SioClient::connect(server.addr, token).await;
    let ack = client.join_session(session_id, Some(last_seq)).await;
    assert_eq!(
        ack["hasMore"],
        json!(false),
        "a gap under 500 comes back whole: {ack}"
    );
    let mut seen = Visit {
        ack: seqs(ack["messages"].as_array().expect("messages")),
        ..Visit::default()
    };
    // Read until the session-joined event and some live messages have come,
    // or the stream has ended.
    let mut index = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last_known = seen
            .live
            .last()
            .map(|(_, s)| *s)
            .or(seen.ack.last().copied())
            .unwrap_or(last_seq);
        if seen.joined_at.is_some() && (seen.live.len() >= PER_CONNECTION || last_known >= TOTAL) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let received = client
            .next_frame(left)
            .await
            .unwrap_or_else(|| panic!("round {round}: stalled: {seen:?}"));
        match received.frame {
            Frame::Event { name, payload } if name == "session-joined" => {
                assert!(
                    seen.joined_at.is_none(),
                    "round {round}: session-joined twice"
                );
                seen.joined_at = Some(index);
                seen.joined_event = seqs(payload["messages"].as_array().expect("messages"));
            }
            Frame::Event { name, payload } if name == "new-message" => {
                assert_eq!(payload["sessionId"], session_id);
                seen.live
                    .push((index, payload["seq"].as_i64().expect("seq")));
            }
            Frame::Closed(code) => panic!("round {round}: closed by the server ({code:?})"),
            _ => {}
        }
        index += 1;
    }
    // Leave abruptly or politely, alternately.
    if round & 1 == 0 {
        client.close();
    }
    drop(client);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_seq_never_misses_or_repeats() {
    let server = TestServer::start(&[]).await;
    let customer = token("rejoin-customer", "customer", &[]);
    let agent = token("rejoin-agent", "agent", &["default"]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server.assign(&agent, &session_id).await;

    // The agent sends TOTAL messages at a steady pace (so that the stream
    // spans many reconnects), a few in flight at a time.
    let mut agent_socket = server.connect(&agent).await;
    let stream_session = session_id.clone();
    let sender = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        let mut in_flight = std::collections::VecDeque::new();
        for n in 1..=TOTAL {
            pace.tick().await;
            in_flight.push_back(agent_socket.emit_ack(
                "send-message",
                json!({ "sessionId": stream_session, "content": format!("stream {n}"), "clientMsgId": format!("s-{n}") }),
            ));
            if in_flight.len() >= 4 {
                let id = in_flight.pop_front().expect("in flight");
                let ack: Value = agent_socket.ack(id, Duration::from_secs(10)).await;
                assert_eq!(ack["ok"], json!(true), "{ack}");
            }
        }
        for id in in_flight {
            let ack = agent_socket.ack(id, Duration::from_secs(10)).await;
            assert_eq!(ack["ok"], json!(true), "{ack}");
        }
    });

    let mut from_acks: Vec<i64> = Vec::new();
    let mut from_events: Vec<i64> = Vec::new();
    let mut rounds = 0;
    while from_acks.last().copied().unwrap_or(0) < TOTAL {
        let last = from_acks.last().copied().unwrap_or(0);
        let seen = visit(&server, &customer, &session_id, last, rounds).await;
        rounds += 1;

        // A client reading the join ack, then new-message.
        from_acks.extend(&seen.ack);
        from_acks.extend(seen.live.iter().map(|(_, s)| *s));

        // A client reading the session-joined event, then new-message as
        // it arrives.
        let joined_at = seen.joined_at.expect("session-joined arrived");
        assert_eq!(
            seen.joined_event, seen.ack,
            "round {rounds}: the event and the ack differ"
        );
        let early: Vec<i64> = seen
            .live
            .iter()
            .filter(|(i, _)| *i < joined_at)
            .map(|(_, s)| *s)
            .collect();
        assert!(
            early.is_empty(),
            "round {rounds}: new-message {early:?} arrived before session-joined {:?}",
            seen.joined_event
        );
        from_events.extend(&seen.joined_event);
        from_events.extend(seen.live.iter().map(|(_, s)| *s));
        assert!(rounds < 1000, "no progress");
    }
    tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .expect("the sender finishes")
        .expect("the sender succeeded");

    let expected: Vec<i64> = (1..=TOTAL).collect();
    assert_eq!(
        from_acks, expected,
        "over {rounds} connections (join ack + new-message)"
    );
    assert_eq!(
        from_events, expected,
        "over {rounds} connections (session-joined + new-message)"
    );
    assert!(
        rounds >= 5,
        "the stream outran the reconnects: only {rounds} connections"
    );
}
