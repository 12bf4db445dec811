//! Racing assignments: ten agents of the pool POST `/assign` for the same
//! pending session at the same moment. Exactly one gets 200 with the session
//! assigned to them; the nine others get 409 `conflict`; the stored session
//! names the winner.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;

use crate::harness::http::rest;
use crate::harness::server::TestServer;
use crate::harness::tokens::token;

const AGENTS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_ten_racing_agents_wins() {
    let server = TestServer::start(&[("POOLS", "race")]).await;
    let customer = token("race-customer", "customer", &[]);
    let session = server
        .create_session(&customer, json!({ "pool": "race" }))
        .await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    assert_eq!(session["status"], "pending");

    let barrier = Arc::new(Barrier::new(AGENTS));
    let mut racers = Vec::new();
    for n in 0..AGENTS {
        let barrier = barrier.clone();
        let addr = server.addr;
        let path = format!("/api/chat/sessions/{session_id}/assign");
        let agent = format!("race-agent-{n}");
        let token = token(&agent, "agent", &["race"]);
        racers.push(tokio::spawn(async move {
            barrier.wait().await;
            let (status, body) = rest(addr, "POST", &path, Some(&token), Some(json!({}))).await;
            (agent, status, body)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = 0;
    for racer in racers {
        let (agent, status, body) = racer.await.expect("racer");
        match status {
            200 => {
                assert_eq!(body["agentId"], agent, "{body}");
                assert_eq!(body["status"], "active", "{body}");
                assert_eq!(body["agentName"], format!("{agent} name"), "{body}");
                assert!(body["assignedAt"].is_string(), "{body}");
                winners.push(agent);
            }
            409 => {
                assert_eq!(body["error"]["code"], "conflict", "{agent}: {body}");
                losers += 1;
            }
            other => panic!("{agent}: unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(losers, AGENTS - 1);

    let stored = server.session(&customer, &session_id).await;
    assert_eq!(stored["agentId"], winners[0]);
    assert_eq!(stored["status"], "active");

    // Assigning again, even by the winner, is still a conflict.
    let again = token(&winners[0], "agent", &["race"]);
    let (status, body) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{session_id}/assign"),
            Some(&again),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
}
