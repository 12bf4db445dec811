//! Contract points of §3 and §5 that a careful client relies on: an unknown
//! session is `not_found` for `typing` too (existence before rights); a join
//! without `lastSeq` says whether older messages exist; REST reads the window
//! between `afterSeq` and `beforeSeq`; an admin's stats default to the
//! `default` pool whatever pools its token names.

use serde_json::{json, Value};

use crate::harness::server::TestServer;
use crate::harness::sio_client::seqs;
use crate::harness::tokens::token;

fn id_of(session: &Value) -> String {
    session["id"].as_str().expect("session id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_names_an_unknown_session_not_found_before_any_question_of_rights() {
    let server = TestServer::start(&[]).await;
    let customer = token("contract-typist", "customer", &[]);
    let stranger = token("contract-stranger", "customer", &[]);
    let session = server.create_session(&stranger, json!({})).await;
    let mut client = server.connect(&customer).await;

    let unknown = client
        .emit_with_ack(
            "typing",
            json!({ "sessionId": "no-such-session", "isTyping": true }),
        )
        .await;
    assert_eq!(unknown["ok"], json!(false), "{unknown}");
    assert_eq!(unknown["error"]["code"], "not_found", "{unknown}");

    let someone_else_s = client
        .emit_with_ack(
            "typing",
            json!({ "sessionId": id_of(&session), "isTyping": true }),
        )
        .await;
    assert_eq!(
        someone_else_s["error"]["code"], "forbidden",
        "{someone_else_s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_without_last_seq_gives_the_latest_fifty_and_says_older_ones_exist() {
    let server = TestServer::start(&[]).await;
    let customer = token("contract-latest", "customer", &[]);
    let long = id_of(&server.create_session(&customer, json!({})).await);
    let short = id_of(&server.create_session(&customer, json!({})).await);
    server
        .post_messages(&customer, &long, 60, |n| format!("message {n}"))
        .await;
    server
        .post_messages(&customer, &short, 50, |n| format!("message {n}"))
        .await;

    let mut client = server.connect(&customer).await;
    let joined = client.join_session(&long, None).await;
    let messages = joined["messages"].as_array().expect("messages");
    assert_eq!(seqs(messages), (11..=60).collect::<Vec<i64>>());
    assert_eq!(joined["hasMore"], json!(true), "10 older messages exist");

    let joined = client.join_session(&short, None).await;
    let messages = joined["messages"].as_array().expect("messages");
    assert_eq!(seqs(messages), (1..=50).collect::<Vec<i64>>());
    assert_eq!(joined["hasMore"], json!(false), "nothing older exists");

    // The socket follows the long session live from its newest message.
    let sent = client.send_message(&long, "after the join", "live-1").await;
    assert_eq!(sent["seq"], json!(61));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_reads_the_window_between_after_seq_and_before_seq() {
    let server = TestServer::start(&[]).await;
    let customer = token("contract-window", "customer", &[]);
    let session = id_of(&server.create_session(&customer, json!({})).await);
    server
        .post_messages(&customer, &session, 12, |n| format!("message {n}"))
        .await;

    let read = |query: &'static str| {
        let path = format!("/api/chat/sessions/{session}/messages?{query}");
        let customer = customer.clone();
        let server = &server;
        async move {
            let (status, page) = server.rest("GET", &path, Some(&customer), None).await;
            assert_eq!(status, 200, "{query}: {page}");
            let items = page["items"].as_array().expect("items").clone();
            (seqs(&items), page["hasMore"].clone())
        }
    };
    assert_eq!(
        read("afterSeq=3&beforeSeq=8").await,
        ((4..=7).collect::<Vec<i64>>(), json!(false))
    );
    assert_eq!(
        read("afterSeq=3&beforeSeq=8&limit=2").await,
        (vec![4, 5], json!(true)),
        "more remain inside the window"
    );
    assert_eq!(
        read("afterSeq=10&beforeSeq=100&limit=2").await,
        (vec![11, 12], json!(false)),
        "nothing beyond the newest message counts"
    );
    assert_eq!(
        read("afterSeq=5&beforeSeq=6").await,
        (Vec::new(), json!(false))
    );
    assert_eq!(
        read("afterSeq=8&beforeSeq=3").await,
        (Vec::new(), json!(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_s_stats_without_a_pool_are_the_default_pool_s() {
    let server = TestServer::start(&[]).await;
    let admin = token("contract-admin", "admin", &["sales", "support"]);
    let agent = token("contract-agent", "agent", &["sales", "support"]);

    let (status, stats) = server
        .rest("GET", "/api/chat/stats", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["pool"], "default", "{stats}");

    let (status, stats) = server
        .rest("GET", "/api/chat/stats", Some(&agent), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats["pool"], "sales",
        "an agent's default is its first pool"
    );
}
