//! Engine.IO at the wire level: the OPEN handshake's fields, the server's
//! ping cadence, and the heartbeat contract: a client that never answers
//! pings is cut off within pingInterval + pingTimeout (plus slack), while a
//! client that answers stays connected over many intervals.

use std::time::Duration;

use serde_json::json;

use crate::harness::server::TestServer;
use crate::harness::sio_client::{ClientOptions, Frame, SioClient, MAX_PAYLOAD};
use crate::harness::tokens::token;
use crate::harness::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_packet_carries_the_handshake_fields() {
    let server =
        TestServer::start(&[("PING_INTERVAL_MS", "1500"), ("PING_TIMEOUT_MS", "1200")]).await;
    let first = SioClient::open(server.addr, ClientOptions::default()).await;
    let second = SioClient::open(server.addr, ClientOptions::default()).await;

    let open = &first.open;
    let sid = open["sid"].as_str().expect("sid is a string");
    assert!(!sid.is_empty(), "{open}");
    assert_eq!(
        open["upgrades"],
        json!([]),
        "WebSocket only: nothing to upgrade to"
    );
    assert_eq!(open["pingInterval"], json!(1500));
    assert_eq!(open["pingTimeout"], json!(1200));
    assert_eq!(open["maxPayload"], json!(MAX_PAYLOAD));
    assert_ne!(
        second.open["sid"], first.open["sid"],
        "each connection has its own sid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_cut_off_and_answering_clients_stay() {
    let server =
        TestServer::start(&[("PING_INTERVAL_MS", "200"), ("PING_TIMEOUT_MS", "200")]).await;
    let mut answering =
        SioClient::connect(server.addr, &token("engine-alive", "customer", &[])).await;
    let mut silent = SioClient::connect_with(
        server.addr,
        &token("engine-silent", "customer", &[]),
        ClientOptions {
            answer_pings: false,
        },
    )
    .await;

    // The silent client is pinged, then dropped once the timeout runs out.
    let ping = silent
        .next_matching(Duration::from_secs(2), |f| *f == Frame::Ping)
        .await;
    assert_eq!(ping.raw, "2");
    silent.closed(Duration::from_secs(3)).await;
    let cut_off_after = ping.at.elapsed();
    assert!(
        cut_off_after < Duration::from_secs(2),
        "a client ignoring pings is closed about pingTimeout after the ping, took {cut_off_after:?}"
    );

    // The answering client sees a steady cadence of pings over ten
    // intervals and remains usable. Each ping follows the previous pong by
    // at least pingInterval, and pongs are sent on receipt.
    let mut ping_times = Vec::new();
    while ping_times.len() < 10 {
        let ping = answering
            .try_next_matching(Duration::from_secs(2), |f| {
                matches!(f, Frame::Ping | Frame::Closed(_))
            })
            .await
            .expect("pings keep coming");
        assert_eq!(
            ping.frame,
            Frame::Ping,
            "the answering client was disconnected"
        );
        ping_times.push(ping.at);
    }
    for pair in ping_times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(190),
            "pings closer than pingInterval: {gap:?}"
        );
        assert!(
            gap < Duration::from_millis(1500),
            "ping cadence stalled: {gap:?}"
        );
    }
    let ack = answering
        .emit_with_ack("leave-session", json!({ "sessionId": "engine-nothing" }))
        .await;
    assert_eq!(ack, json!({ "ok": true }));
    assert!(!answering.has_closed());

    // A client-initiated Engine.IO ping is answered with the same data.
    answering.send_raw("2probe");
    let pong = answering
        .next_matching(WAIT, |f| matches!(f, Frame::Pong(_)))
        .await;
    assert_eq!(pong.raw, "3probe");
}
