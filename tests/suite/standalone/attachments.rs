//! Files in a session over REST, as docs/protocol.md has them: an upload
//! comes back whole (digest, size, image size) with the headers that keep
//! a browser from running it, in ranges too; who may upload and download;
//! types and sizes refused; and an upload that goes over the bound, or
//! whose client goes away half way, leaves no row and no bytes. An upload
//! slower than the REST deadline still goes through.

use std::path::Path;
use std::time::Duration;

use chat_shared::blob::sha256_hex;
use chat_shared::store::sqlite::SqliteStore;
use chat_shared::store::Store;
use chat_shared::Timestamp;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::harness::eventually::eventually;
use crate::harness::http::{http, HttpResponse};
use crate::harness::server::TestServer;
use crate::harness::tokens::token;
use crate::harness::WAIT;

/// Bytes that differ from one position to the next.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A PNG header saying `width` × `height`, then filler.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    bytes.extend_from_slice(b"IHDR");
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0]);
    bytes.extend_from_slice(&pattern(5_000));
    bytes
}

fn upload_path(session_id: &str, name: &str) -> String {
    format!("/api/chat/sessions/{session_id}/attachments?name={name}")
}

async fn upload(
    server: &TestServer,
    who: &str,
    session_id: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> HttpResponse {
    let authorization = format!("Bearer {who}");
    http(
        server.addr,
        "POST",
        &upload_path(session_id, name),
        &[
            ("Authorization", authorization.as_str()),
            ("Content-Type", content_type),
        ],
        body,
    )
    .await
}

async fn download(
    server: &TestServer,
    who: &str,
    session_id: &str,
    attachment_id: &str,
    range: Option<&str>,
) -> HttpResponse {
    let authorization = format!("Bearer {who}");
    let mut headers = vec![("Authorization", authorization.as_str())];
    if let Some(range) = range {
        headers.push(("Range", range));
    }
    let path = format!("/api/chat/sessions/{session_id}/attachments/{attachment_id}");
    http(server.addr, "GET", &path, &headers, &[]).await
}

/// What the server keeps of uploads: rows, stored blobs, temporary files.
async fn kept(server: &TestServer) -> (usize, usize, usize) {
    let data = server.data_dir().to_owned();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&data.join("chat.db")))
        .await
        .expect("open task")
        .expect("the server's file opens");
    let rows = store
        .unreferenced_attachments_before(Timestamp(i64::MAX), 1_000)
        .await
        .expect("rows")
        .len();
    let count = |dir: &Path| std::fs::read_dir(dir).map_or(0, |entries| entries.count());
    let root = server.data_dir().join("attachments");
    (rows, count(&root.join("blobs")), count(&root.join("tmp")))
}

async fn customer_session(server: &TestServer, customer: &str) -> String {
    let session = server.create_session(customer, json!({})).await;
    session["id"].as_str().expect("an id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_comes_back_whole_with_safe_headers() {
    let server = TestServer::start(&[]).await;
    let customer = token("att-carla", "customer", &[]);
    let agent = token("att-agent", "agent", &["default"]);
    let session_id = customer_session(&server, &customer).await;

    let file = pattern(700 * 1024 + 3);
    let uploaded = upload(
        &server,
        &customer,
        &session_id,
        "Rechnung%20M%C3%A4rz.pdf",
        "application/pdf",
        &file,
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let attachment = uploaded.json();
    assert_eq!(attachment["sessionId"], json!(session_id));
    assert_eq!(attachment["name"], json!("Rechnung März.pdf"));
    assert_eq!(attachment["size"], json!(file.len()));
    assert_eq!(attachment["contentType"], json!("application/pdf"));
    assert_eq!(attachment["width"], Value::Null);
    assert!(attachment["createdAt"].is_string(), "{attachment}");
    let id = attachment["id"].as_str().expect("an id");

    // The pool's agent reads it too.
    for reader in [&customer, &agent] {
        let got = download(&server, reader, &session_id, id, None).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(sha256_hex(&got.body), sha256_hex(&file));
        assert_eq!(got.header("content-type"), Some("application/pdf"));
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(got.header("cache-control"), Some("private"));
        assert_eq!(got.header("accept-ranges"), Some("bytes"));
        assert_eq!(
            got.header("content-disposition"),
            Some("attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf")
        );
        assert_eq!(
            got.header("content-length"),
            Some(file.len().to_string().as_str())
        );
    }

    let image = png(640, 480);
    let uploaded = upload(
        &server,
        &customer,
        &session_id,
        "shot.png",
        "image/png",
        &image,
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let attachment = uploaded.json();
    assert_eq!(
        (attachment["width"].clone(), attachment["height"].clone()),
        (json!(640), json!(480))
    );
    let got = download(
        &server,
        &customer,
        &session_id,
        attachment["id"].as_str().expect("id"),
        None,
    )
    .await;
    assert_eq!(got.body, image);
    assert_eq!(
        got.header("content-disposition"),
        Some("inline; filename*=UTF-8''shot.png")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_as_asked() {
    let server = TestServer::start(&[]).await;
    let customer = token("att-range", "customer", &[]);
    let session_id = customer_session(&server, &customer).await;
    let file = pattern(600 * 1024);
    let size = file.len();
    let uploaded = upload(
        &server,
        &customer,
        &session_id,
        "data.txt",
        "text/plain",
        &file,
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let id = uploaded.json()["id"].as_str().expect("id").to_owned();

    let cases = [
        ("bytes=0-9", 0, 9),
        ("bytes=262140-262150", 262_140, 262_150),
        ("bytes=-100", size - 100, size - 1),
        ("bytes=614000-", 614_000, size - 1),
        ("bytes=5-5", 5, 5),
        ("bytes=614390-999999", 614_390, size - 1),
    ];
    for (range, first, last) in cases {
        let got = download(&server, &customer, &session_id, &id, Some(range)).await;
        assert_eq!(got.status, 206, "{range}: {}", got.text());
        assert_eq!(
            got.header("content-range"),
            Some(format!("bytes {first}-{last}/{size}").as_str()),
            "{range}"
        );
        assert!(got.body == file[first..=last], "{range}: other bytes");
    }
    for range in [
        format!("bytes={size}-"),
        "bytes=0-1,4-5".into(),
        "bytes=9-3".into(),
    ] {
        let got = download(&server, &customer, &session_id, &id, Some(&range)).await;
        assert_eq!(got.status, 400, "{range}");
        assert_eq!(
            got.json()["error"]["code"],
            json!("invalid_payload"),
            "{range}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_upload_and_download() {
    let server = TestServer::start(&[]).await;
    let customer = token("att-owner", "customer", &[]);
    let other = token("att-other", "customer", &[]);
    let stranger = token("att-stranger", "agent", &["elsewhere"]);
    let session_id = customer_session(&server, &customer).await;
    let uploaded = upload(
        &server,
        &customer,
        &session_id,
        "a.txt",
        "text/plain",
        b"hello",
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let id = uploaded.json()["id"].as_str().expect("id").to_owned();

    let refused = upload(&server, &other, &session_id, "b.txt", "text/plain", b"x").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], json!("forbidden"));
    // An agent of the pool reads but does not write an unassigned session.
    let pool_agent = token("att-pool-agent", "agent", &["default"]);
    let refused = upload(
        &server,
        &pool_agent,
        &session_id,
        "b.txt",
        "text/plain",
        b"x",
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    for reader in [&other, &stranger] {
        let got = download(&server, reader, &session_id, &id, None).await;
        assert_eq!(got.status, 403, "{}", got.text());
    }
    let anonymous = http(
        server.addr,
        "GET",
        &format!("/api/chat/sessions/{session_id}/attachments/{id}"),
        &[],
        &[],
    )
    .await;
    assert_eq!(anonymous.status, 401);

    // A file is found only under its own session.
    let second = customer_session(&server, &customer).await;
    let elsewhere = download(&server, &customer, &second, &id, None).await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.text());
    let unknown = download(
        &server,
        &customer,
        &session_id,
        "0123456789abcdef0123456789abcdef",
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    let no_session = upload(
        &server,
        &customer,
        "no-such-session",
        "a.txt",
        "text/plain",
        b"x",
    )
    .await;
    assert_eq!(no_session.status, 404);

    let (status, _) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{session_id}/close"),
            Some(&customer),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let closed = upload(
        &server,
        &customer,
        &session_id,
        "late.txt",
        "text/plain",
        b"x",
    )
    .await;
    assert_eq!(closed.status, 409, "{}", closed.text());
    assert_eq!(closed.json()["error"]["code"], json!("session_closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_and_names_outside_the_rules_are_refused() {
    let server = TestServer::start(&[]).await;
    let customer = token("att-types", "customer", &[]);
    let session_id = customer_session(&server, &customer).await;
    for (name, content_type) in [
        ("page.html", "text/html"),
        ("run.js", "application/javascript"),
        ("svg.svg", "image/svg+xml"),
        ("", "text/plain"),
        ("..%2Fescape.txt", "text/plain"),
    ] {
        let refused = upload(
            &server,
            &customer,
            &session_id,
            name,
            content_type,
            b"<b>hi</b>",
        )
        .await;
        assert_eq!(
            refused.status,
            400,
            "{name} {content_type}: {}",
            refused.text()
        );
        assert_eq!(refused.json()["error"]["code"], json!("invalid_payload"));
    }
    assert_eq!(kept(&server).await, (0, 0, 0), "nothing kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_bound_leaves_no_row_and_no_bytes() {
    let server = TestServer::start(&[("ATTACHMENT_MAX_BYTES", "300000")]).await;
    let customer = token("att-large", "customer", &[]);
    let session_id = customer_session(&server, &customer).await;

    // Announced by its length: refused before it is read.
    let announced = upload(
        &server,
        &customer,
        &session_id,
        "big.txt",
        "text/plain",
        &pattern(300_001),
    )
    .await;
    assert_eq!(announced.status, 413, "{}", announced.text());
    assert_eq!(
        announced.json()["error"]["code"],
        json!("payload_too_large")
    );

    // Without a length (chunked): found while reading. Only a little more
    // than the bound is sent, so the server has read all of it when it
    // answers, and the answer is not lost to a reset.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {customer}\r\n\
         Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        upload_path(&session_id, "big.txt"),
        server.addr
    )
    .into_bytes();
    for piece in pattern(300_010).chunks(50_000) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let exchange = timeout(WAIT, async {
        stream.write_all(&request).await?;
        stream.read_to_end(&mut answer).await
    })
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(matches!(exchange, Ok(Ok(_))), "{exchange:?}: {text}");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");

    assert_eq!(
        kept(&server).await,
        (0, 0, 0),
        "no row, no blob, no temporary file"
    );
    // A file of exactly the bound is taken.
    let exactly = upload(
        &server,
        &customer,
        &session_id,
        "ok.txt",
        "text/plain",
        &pattern(300_000),
    )
    .await;
    assert_eq!(exactly.status, 201, "{}", exactly.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_client_goes_away_leaves_nothing() {
    let server = TestServer::start(&[]).await;
    let customer = token("att-gone", "customer", &[]);
    let session_id = customer_session(&server, &customer).await;
    let tmp = server.data_dir().join("attachments").join("tmp");

    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {customer}\r\n\
         Content-Type: application/pdf\r\nContent-Length: 5242880\r\n\r\n",
        upload_path(&session_id, "half.pdf"),
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&pattern(1024 * 1024))
        .await
        .expect("a first MiB");
    eventually(WAIT, "the upload under way in a temporary file", || async {
        std::fs::read_dir(&tmp).map_or(0, |entries| entries.count()) == 1
    })
    .await;
    drop(stream);
    eventually(WAIT, "the temporary file removed", || async {
        std::fs::read_dir(&tmp).map_or(0, |entries| entries.count()) == 0
    })
    .await;
    assert_eq!(kept(&server).await, (0, 0, 0), "no row, no blob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_outlasts_the_request_deadline() {
    // Other REST calls are cut after twice 300 ms; this one takes longer
    // while its bytes keep coming.
    let server = TestServer::start(&[("REQUEST_TIMEOUT_MS", "300")]).await;
    let customer = token("att-slow", "customer", &[]);
    let session_id = customer_session(&server, &customer).await;
    let piece = pattern(10_000);
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {customer}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        upload_path(&session_id, "slow.txt"),
        server.addr,
        piece.len() * 5
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        stream.write_all(&piece).await.expect("a piece");
        // The client's own pace, not a wait for the server.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut answer = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    assert!(started.elapsed() > Duration::from_millis(600));
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_no_message_takes_is_removed_with_its_bytes() {
    let server = TestServer::start(&[("ATTACHMENT_UNREFERENCED_SECS", "1")]).await;
    let customer = token("att-unused", "customer", &[]);
    let session_id = customer_session(&server, &customer).await;
    let uploaded = upload(
        &server,
        &customer,
        &session_id,
        "a.txt",
        "text/plain",
        b"soon gone",
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let id = uploaded.json()["id"].as_str().expect("id").to_owned();
    let blob = server
        .data_dir()
        .join("attachments")
        .join("blobs")
        .join(&id);
    assert!(blob.exists(), "stored under its id");
    eventually(WAIT, "the unused upload swept", || async {
        download(&server, &customer, &session_id, &id, None)
            .await
            .status
            == 404
    })
    .await;
    eventually(WAIT, "its bytes removed", || async {
        kept(&server).await == (0, 0, 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_body_stops_coming_is_given_up() {
    let server = TestServer::start(&[("ATTACHMENT_IDLE_TIMEOUT_MS", "300")]).await;
    let customer = token("att-stalled", "customer", &[]);
    let session_id = customer_session(&server, &customer).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {customer}\r\n\
         Content-Type: text/plain\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n",
        upload_path(&session_id, "stalled.txt"),
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&pattern(1_000))
        .await
        .expect("a first piece");
    // Nothing more is sent: the server answers on its own.
    let mut answer = Vec::new();
    let read = timeout(WAIT, stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(matches!(read, Ok(Ok(_))), "{read:?}: {text}");
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("invalid_payload"), "{text}");
    assert_eq!(kept(&server).await, (0, 0, 0), "nothing kept");
}

/// The ids of a message's files.
fn file_ids(message: &Value) -> Vec<String> {
    message["attachments"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|file| file["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_carries_its_files_wherever_it_is_read() {
    let server = TestServer::start(&[("ATTACHMENT_UNREFERENCED_SECS", "1")]).await;
    let customer = token("att-sender", "customer", &[]);
    let agent = token("att-reader", "agent", &["default"]);
    let session_id = customer_session(&server, &customer).await;
    let mut uploaded = Vec::new();
    for (name, content_type, body) in [
        ("shot.png", "image/png", png(64, 48)),
        ("terms.pdf", "application/pdf", pattern(3_000)),
        ("unused.txt", "text/plain", b"never sent".to_vec()),
    ] {
        let answer = upload(&server, &customer, &session_id, name, content_type, &body).await;
        assert_eq!(answer.status, 201, "{}", answer.text());
        uploaded.push(answer.json()["id"].as_str().expect("id").to_owned());
    }
    let (image, pdf, unused) = (&uploaded[0], &uploaded[1], &uploaded[2]);

    let mut reader = server.connect(&agent).await;
    reader.join_session(&session_id, None).await;
    let mut sender = server.connect(&customer).await;
    let ack = sender
        .emit_with_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": "  ", "clientMsgId": "files-1",
                    "attachmentIds": [image, pdf] }),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let message = ack["message"].clone();
    assert_eq!(message["content"], json!(""), "files alone need no text");
    assert_eq!(file_ids(&message), vec![image.clone(), pdf.clone()]);
    let first = &message["attachments"][0];
    assert_eq!(first["name"], json!("shot.png"));
    assert_eq!(
        (first["width"].clone(), first["height"].clone()),
        (json!(64), json!(48))
    );
    assert_eq!(message["attachments"][1]["size"], json!(3_000));

    let live = reader
        .next_event("new-message", |m| m["seq"] == message["seq"], WAIT)
        .await;
    assert_eq!(live, message, "the live event carries the files");
    let history = server.history(&agent, &session_id).await;
    assert_eq!(history, vec![message.clone()], "REST history carries them");
    let mut late = server.connect(&agent).await;
    let joined = late.join_session(&session_id, Some(0)).await;
    assert_eq!(joined["messages"], json!([message.clone()]), "{joined}");

    // A retry answers with the original, files included.
    let retry = sender
        .emit_with_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": "", "clientMsgId": "files-1",
                    "attachmentIds": [image, pdf] }),
        )
        .await;
    assert_eq!(retry["message"], message, "{retry}");

    // A file already carried, an unknown id, or a file of someone else's
    // upload is refused, and nothing is stored.
    let other = token("att-other", "customer", &[]);
    let other_session = customer_session(&server, &other).await;
    let foreign = upload(&server, &other, &other_session, "x.txt", "text/plain", b"x").await;
    let foreign = foreign.json()["id"].as_str().expect("id").to_owned();
    for (n, ids) in [
        vec![image.clone()],
        vec!["0123456789abcdef0123456789abcdef".to_owned()],
        vec![foreign],
    ]
    .into_iter()
    .enumerate()
    {
        let refused = sender
            .emit_with_ack(
                "send-message",
                json!({ "sessionId": session_id, "content": "again",
                        "clientMsgId": format!("refused-{n}"), "attachmentIds": ids }),
            )
            .await;
        assert_eq!(refused["ok"], json!(false), "{refused}");
        assert_eq!(
            refused["error"]["code"],
            json!("invalid_payload"),
            "{refused}"
        );
    }
    let too_many: Vec<String> = (0..11).map(|i| format!("id-{i}")).collect();
    let refused = sender
        .emit_with_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": "many", "clientMsgId": "many",
                    "attachmentIds": too_many }),
        )
        .await;
    assert_eq!(
        refused["error"]["code"],
        json!("invalid_payload"),
        "{refused}"
    );
    assert_eq!(server.history(&agent, &session_id).await.len(), 1);

    // The sweep takes the unused upload and spares the carried ones.
    eventually(WAIT, "the unused upload swept", || async {
        download(&server, &customer, &session_id, unused, None)
            .await
            .status
            == 404
    })
    .await;
    for id in [image, pdf] {
        let got = download(&server, &agent, &session_id, id, None).await;
        assert_eq!(got.status, 200, "a carried file stays: {}", got.text());
    }
}
