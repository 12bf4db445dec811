//! `stats-update` timing: an agent hears about a new session in its pool
//! within 2 s; a burst of 50 messages in a second yields updates at most once
//! a second (consecutive updates at least 900 ms apart) whose last one
//! counts every message; and agents connecting and leaving show up in
//! `onlineAgents` for the other agents of the pool within 2 s.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::harness::server::TestServer;
use crate::harness::sio_client::{Frame, SioClient};
use crate::harness::tokens::token;

const POOL: &str = "stats";
const WITHIN: Duration = Duration::from_secs(2);

/// Waits for a `stats-update` of POOL matching `predicate`; returns it and
/// its arrival time, and every update received before it.
async fn stats_until(
    client: &mut SioClient,
    wait: Duration,
    predicate: impl Fn(&Value) -> bool,
) -> (Value, Instant, Vec<(Value, Instant)>) {
    let deadline = Instant::now() + wait;
    let mut earlier = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let received = client
            .try_next_matching(
                left,
                |f| matches!(f, Frame::Event { name, .. } if name == "stats-update"),
            )
            .await
            .unwrap_or_else(|| {
                panic!("no matching stats-update within {wait:?}; earlier: {earlier:?}")
            });
        let Frame::Event { payload, .. } = received.frame else {
            unreachable!()
        };
        assert_eq!(payload["pool"], POOL, "{payload}");
        if predicate(&payload) {
            return (payload, received.at, earlier);
        }
        earlier.push((payload, received.at));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_updates_are_prompt_and_throttled() {
    let server = TestServer::start(&[]).await;
    let agent = token("stats-agent", "agent", &[POOL]);
    let customer = token("stats-customer", "customer", &[]);
    let mut agent_socket = server.connect(&agent).await;
    // Its own arrival is a change of the pool.
    let (_, mut last_update, _) =
        stats_until(&mut agent_socket, WITHIN, |s| s["onlineAgents"] == 1).await;

    let created_at = Instant::now();
    let session = server
        .create_session(&customer, json!({ "pool": POOL }))
        .await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let (update, at, earlier) =
        stats_until(&mut agent_socket, WITHIN, |s| s["pendingSessions"] == 1).await;
    assert!(at - created_at <= WITHIN, "took {:?}", at - created_at);
    assert!(earlier.is_empty(), "{earlier:?}");
    assert!(
        at - last_update >= Duration::from_millis(900),
        "updates {:?} apart",
        at - last_update
    );
    assert_eq!(update["messagesToday"], json!(0));
    last_update = at;

    // 50 messages over one second.
    let mut customer_socket = server.connect(&customer).await;
    customer_socket.join_session(&session_id, None).await;
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut ids = Vec::new();
    for n in 0..50 {
        pace.tick().await;
        ids.push(customer_socket.emit_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": format!("burst {n}"), "clientMsgId": format!("b-{n}") }),
        ));
    }
    for id in ids {
        let ack = customer_socket.ack(id, Duration::from_secs(10)).await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
    }
    let last_acked = Instant::now();

    // Updates keep coming until one counts all 50, each at least ~1 s after
    // the previous one, the last within 2 s of the last message.
    let (_, final_at, during) = stats_until(&mut agent_socket, Duration::from_secs(5), |s| {
        s["messagesToday"] == 50
    })
    .await;
    assert!(
        final_at - last_acked <= WITHIN,
        "the final count came {:?} late",
        final_at - last_acked
    );
    let mut times: Vec<Instant> = during.iter().map(|(_, at)| *at).collect();
    times.push(final_at);
    for at in times {
        let gap = at - last_update;
        assert!(
            gap >= Duration::from_millis(900),
            "two stats-update only {gap:?} apart: {during:?}"
        );
        last_update = at;
    }
    assert!(during.len() <= 2, "at most one update a second: {during:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_coming_and_going_change_online_agents() {
    let server = TestServer::start(&[]).await;
    let mut first = server
        .connect(&token("stats-first", "agent", &[POOL]))
        .await;
    stats_until(&mut first, WITHIN, |s| s["onlineAgents"] == 1).await;

    let arrived = Instant::now();
    let second = server
        .connect(&token("stats-second", "agent", &[POOL, "other"]))
        .await;
    let (_, at, _) = stats_until(&mut first, WITHIN + Duration::from_secs(1), |s| {
        s["onlineAgents"] == 2
    })
    .await;
    assert!(
        at - arrived <= WITHIN,
        "the arrival showed after {:?}",
        at - arrived
    );

    // A second socket of the same agent does not count twice; its leaving
    // does not count as the agent leaving.
    let extra = server
        .connect(&token("stats-second", "agent", &[POOL, "other"]))
        .await;
    drop(extra);

    let left = Instant::now();
    second.close();
    drop(second);
    let (update, at, earlier) = stats_until(&mut first, WITHIN + Duration::from_secs(1), |s| {
        s["onlineAgents"] == 1
    })
    .await;
    assert!(
        at - left <= WITHIN,
        "the departure showed after {:?}",
        at - left
    );
    for (stats, _) in earlier {
        assert_eq!(
            stats["onlineAgents"],
            json!(2),
            "one agent with two sockets is one agent: {stats}"
        );
    }
    assert_eq!(update["pool"], POOL);
}
