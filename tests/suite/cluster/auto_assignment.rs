//! Automatic assignment across pods, under a race: many sessions created
//! at once through two gateways, decided by two workers, for agents of
//! capacity 1. No agent ever holds more than one chat, no session is given
//! twice, the queue is served oldest first as room opens, and each agent's
//! count in the directory is the number of chats they really hold.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::harness::backing::{shared_database_url, shared_redis_url, Database, RedisNamespace};
use crate::harness::eventually::eventually;
use crate::harness::http::try_rest;
use crate::harness::processes::{spec, Cluster};
use crate::harness::sio_client::SioClient;
use crate::harness::tokens::token;

const WAIT: Duration = Duration::from_secs(20);
const AGENTS: usize = 6;
const SESSIONS: usize = 24;

async fn sessions(addr: std::net::SocketAddr, admin: &str, status: &str) -> Vec<Value> {
    let path = format!("/api/chat/sessions?status={status}&limit=200");
    let (code, page) = try_rest(addr, "GET", &path, Some(admin), None, WAIT)
        .await
        .expect("list answered");
    assert_eq!(code, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Active sessions per agent; panics if any session names no agent.
fn holders(active: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for session in active {
        let agent = session["agentId"]
            .as_str()
            .expect("an active session has an agent");
        held.entry(agent.to_owned())
            .or_default()
            .push(session["id"].as_str().expect("id").to_owned());
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crowd_of_sessions_never_overfills_an_agent_across_pods() {
    let namespace = RedisNamespace::new(&shared_redis_url()).await;
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(
        &namespace.url,
        &database.url,
        &namespace.prefix,
        &[
            ("ASSIGNMENT", "auto"),
            ("POOL_CAPACITY", "1"),
            ("RATE_LIMIT_PER_SEC", "0"),
        ],
    );
    let mut cluster = Cluster::start(spec, 2, 2).await;
    let gateways = cluster.gateway_addrs();
    let admin = token("aa-admin", "admin", &[]);

    // Agents on both gateways, each connected (so online and present).
    let mut agent_sockets = Vec::new();
    for index in 0..AGENTS {
        let agent = token(&format!("aa-agent-{index}"), "agent", &["default"]);
        let socket = SioClient::try_connect(gateways[index % 2], &agent, WAIT)
            .await
            .expect("agent connects");
        agent_sockets.push(socket);
    }
    eventually(WAIT, "every agent online in the directory", || async {
        let (_, list) = try_rest(
            gateways[0],
            "GET",
            "/api/chat/agents?pool=default",
            Some(&admin),
            None,
            WAIT,
        )
        .await
        .expect("directory answered");
        let online = list["items"].as_array().map_or(0, |items| {
            items.iter().filter(|a| a["status"] == "online").count()
        });
        online == AGENTS
    })
    .await;

    // Every customer at once, half through each gateway.
    let creations = (0..SESSIONS).map(|index| {
        let customer = token(&format!("aa-customer-{index}"), "customer", &[]);
        let addr = gateways[index % 2];
        async move {
            let (status, session) = try_rest(
                addr,
                "POST",
                "/api/chat/sessions",
                Some(&customer),
                Some(json!({ "subject": format!("crowd {index}") })),
                WAIT,
            )
            .await
            .expect("create answered");
            assert_eq!(status, 201, "{session}");
            (session["id"].as_str().expect("id").to_owned(), customer)
        }
    });
    let created: Vec<(String, String)> = join_all(creations).await;
    let customers: HashMap<String, String> = created.into_iter().collect();

    let active = eventually(WAIT, "every agent given one chat", || async {
        let active = sessions(gateways[1], &admin, "active").await;
        if active.len() >= AGENTS {
            Ok(active)
        } else {
            Err(format!("{} active", active.len()))
        }
    })
    .await;
    let held = holders(&active);
    assert_eq!(active.len(), AGENTS, "no more chats than room: {held:?}");
    assert_eq!(held.len(), AGENTS, "every agent holds one: {held:?}");
    assert!(held.values().all(|ids| ids.len() == 1), "{held:?}");
    let pending = sessions(gateways[0], &admin, "pending").await;
    assert_eq!(pending.len(), SESSIONS - AGENTS);

    // Room opens: each agent closes their chat, and the oldest waiting
    // sessions are given out, still one per agent.
    let mut oldest_waiting: Vec<(String, String)> = pending
        .iter()
        .map(|s| {
            (
                s["createdAt"].as_str().expect("createdAt").to_owned(),
                s["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    oldest_waiting.sort();
    let next: Vec<String> = oldest_waiting
        .iter()
        .take(AGENTS)
        .map(|(_, id)| id.clone())
        .collect();
    for (agent, ids) in &held {
        let agent_token = token(agent, "agent", &["default"]);
        let path = format!("/api/chat/sessions/{}/close", ids[0]);
        let (status, body) = try_rest(
            gateways[0],
            "POST",
            &path,
            Some(&agent_token),
            Some(json!({})),
            WAIT,
        )
        .await
        .expect("close answered");
        assert_eq!(status, 200, "{body}");
    }
    let second_round = eventually(WAIT, "the queue's head given out", || async {
        let active = sessions(gateways[0], &admin, "active").await;
        if active.len() >= AGENTS {
            Ok(active)
        } else {
            Err(format!("{} active", active.len()))
        }
    })
    .await;
    let held_now = holders(&second_round);
    assert_eq!(second_round.len(), AGENTS, "{held_now:?}");
    assert!(held_now.values().all(|ids| ids.len() == 1), "{held_now:?}");
    let mut given: Vec<String> = held_now.values().flatten().cloned().collect();
    given.sort();
    let mut expected = next.clone();
    expected.sort();
    assert_eq!(given, expected, "the oldest waiting sessions went first");

    // The directory's counts are the chats really held.
    let (_, list) = try_rest(
        gateways[1],
        "GET",
        "/api/chat/agents?pool=default",
        Some(&admin),
        None,
        WAIT,
    )
    .await
    .expect("directory answered");
    for entry in list["items"].as_array().expect("items") {
        assert_eq!(entry["openChats"], json!(1), "{entry}");
        assert_eq!(entry["capacity"], json!(1), "{entry}");
    }

    // A waiting customer is told their place: the first still waiting is
    // next in line.
    let (_, first_waiting) = oldest_waiting[AGENTS].clone();
    let customer = customers.get(&first_waiting).expect("its customer");
    let mut customer_socket = SioClient::try_connect(gateways[1], customer, WAIT)
        .await
        .expect("customer connects");
    let ack = customer_socket
        .request("join-session", json!({ "sessionId": first_waiting }), WAIT)
        .await
        .expect("join answered");
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let place = customer_socket
        .next_event(
            "queue-position",
            |p| p["sessionId"] == first_waiting.as_str(),
            WAIT,
        )
        .await;
    assert_eq!(place["position"], json!(1), "{place}");
    assert!(
        place["estimatedWaitSeconds"].is_i64(),
        "assignments happened: {place}"
    );

    drop(agent_sockets);
    cluster.assert_none_exited();
    cluster.stop().await;
}
