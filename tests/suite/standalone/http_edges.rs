//! The HTTP edge as §7 has it: a body announced over 64 KiB is refused
//! before it is sent; paths with `..` segments, percent-encoded or not, are
//! 400 and never the UI's page; a refused token's 401 names the case and
//! nothing of the verifier; every answer says `nosniff` and pages carry a
//! CSP with the configured `frame-ancestors`; with an admin port the token
//! mint is not on the public port.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::harness::http::{http, raw_http};
use crate::harness::server::TestServer;
use crate::harness::tokens::{token, token_signed_with};
use crate::harness::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_over_the_limit_is_refused_before_it_is_sent() {
    let server = TestServer::start(&[]).await;
    let customer = token("edge-big-body", "customer", &[]);
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /api/chat/sessions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {customer}\r\n\
         Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n",
        server.addr
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the head");
    // Not a byte of the body follows: the answer must come anyway.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = timeout(WAIT, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n")
                        && String::from_utf8_lossy(&answer).contains("payload_too_large")
                    {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "no answer while the body was withheld: {text}"
    );
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"payload_too_large\""), "{text}");

    let (status, sessions) = server
        .rest("GET", "/api/chat/sessions", Some(&customer), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(sessions["items"], json!([]), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_with_dot_dot_segments_are_refused_in_any_spelling() {
    let server = TestServer::start(&[]).await;
    for path in [
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/..%5c..%5cCargo.toml",
        "/assets/..%2f..%2fREADME.md",
        "/%00",
    ] {
        // Raw: a client library would resolve the escaped `..` itself.
        let response = raw_http(server.addr, "GET", path, &[], &[]).await;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert!(!response.text().contains("<html"), "{path}");
    }
    // An ordinary page path is still the UI's (here: not built, 404).
    let page = http(server.addr, "GET", "/console/s-1", &[], &[]).await;
    assert_eq!(page.status, 404, "{}", page.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_told_its_case_and_nothing_of_the_verifier() {
    let server = TestServer::start(&[]).await;
    let valid = token("edge-401", "customer", &[]);
    let parts: Vec<&str> = valid.split('.').collect();
    // RS256 in the header: the verifier refuses the algorithm.
    let wrong_alg = format!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6InNlY3JldC1rZXkifQ.{}.c2ln",
        parts[1]
    );
    let foreign = token_signed_with(
        "another-secret-of-enough-length",
        "edge-401",
        "customer",
        &[],
        3600,
    );
    for (bearer, message) in [
        (wrong_alg.as_str(), "the token is not valid"),
        (foreign.as_str(), "the token is not valid"),
        ("not-a-jwt", "the token is not valid"),
        ("", "a bearer token is required"),
    ] {
        let (status, body) = server
            .rest(
                "GET",
                "/api/chat/sessions",
                Some(bearer).filter(|b| !b.is_empty()),
                None,
            )
            .await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert_eq!(body["error"]["message"], message, "{body}");
        let text = body.to_string().to_ascii_lowercase();
        for secret in ["hs256", "rs256", "kid", "secret-key", "signature", "base64"] {
            assert!(!text.contains(secret), "{bearer}: {text} names {secret}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_say_nosniff_and_pages_carry_a_policy_with_the_configured_framing() {
    let server = TestServer::start(&[("FRAME_ANCESTORS", "https://support.example.com")]).await;
    let page = http(server.addr, "GET", "/", &[], &[]).await;
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let policy = page.header("content-security-policy").expect("a CSP");
    assert!(
        policy.contains("frame-ancestors https://support.example.com"),
        "{policy}"
    );
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("object-src 'none'"), "{policy}");

    let api = http(server.addr, "GET", "/api/chat/sessions", &[], &[]).await;
    assert_eq!(api.status, 401);
    assert_eq!(api.header("x-content-type-options"), Some("nosniff"));

    let default = TestServer::start(&[]).await;
    let page = http(default.addr, "GET", "/", &[], &[]).await;
    let policy = page.header("content-security-policy").expect("a CSP");
    assert!(policy.contains("frame-ancestors 'self'"), "{policy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_port_the_token_mint_is_not_public() {
    let server = TestServer::start(&[("ADMIN_PORT", "0"), ("JWT_SECRET", "")]).await;
    let body = json!({ "userId": "edge-mint", "role": "customer" });
    let body = body.to_string();
    let headers = [("Content-Type", "application/json")];
    let public = http(
        server.addr,
        "POST",
        "/api/dev/token",
        &headers,
        body.as_bytes(),
    )
    .await;
    assert_eq!(public.status, 404, "{}", public.text());
    let admin = server.admin_addr.expect("an admin port");
    let minted = http(admin, "POST", "/api/dev/token", &headers, body.as_bytes()).await;
    assert_eq!(minted.status, 200, "{}", minted.text());
    assert!(minted.json()["token"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_trickles_in_is_cut_off() {
    let server = TestServer::start(&[("REQUEST_HEAD_TIMEOUT_MS", "500")]).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /api/chat/sessions HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("the start of a head");
    // One header byte at a time, never the blank line that ends the head;
    // the server must close the connection on its own.
    let closed = timeout(WAIT, async {
        let mut buffer = [0u8; 256];
        loop {
            if stream.write_all(b"X").await.is_err() {
                return;
            }
            match timeout(
                std::time::Duration::from_millis(100),
                stream.read(&mut buffer),
            )
            .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) | Err(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a trickling head kept its connection for {WAIT:?}"
    );
    // Ordinary requests are served.
    let page = http(server.addr, "GET", "/api/chat/sessions", &[], &[]).await;
    assert_eq!(page.status, 401);
}
