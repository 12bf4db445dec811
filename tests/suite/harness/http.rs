//! HTTP for the tests, through `reqwest`: plain requests whose answer the
//! test inspects whole, the JSON REST calls of the chat API, and calls that
//! report a server that does not answer instead of panicking (a draining or
//! crashed process may not).
//!
//! [`raw_http`] is the exception: it writes the request on a bare
//! `TcpStream` for the tests whose point is what a client library would not
//! send (`..` spelled with percent-escapes, a body over the limit the
//! server answers before reading).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::WAIT;

/// An answer as the tests inspect it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request to `addr`, on a connection of its own (nothing is pooled,
/// so that no request rides on a connection an earlier one left to a
/// server that has since stopped or started draining); Err when there is
/// no answer within `wait`.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    wait: Duration,
) -> Result<HttpResponse, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(wait)
        .build()
        .expect("an HTTP client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let sends_body = !body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH");
    let mut request = client.request(method.clone(), format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if sends_body {
        request = request.body(body);
    }
    let exchange = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), value)
            })
            .collect();
        let body = response.bytes().await?.to_vec();
        Ok::<_, reqwest::Error>(HttpResponse {
            status,
            headers,
            body,
        })
    };
    exchange
        .await
        .map_err(|error| format!("{method} {path} on {addr}: {error}"))
}

/// One request; panics when there is no answer within [`WAIT`].
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    send(addr, method, path, headers, body.to_vec(), WAIT)
        .await
        .unwrap_or_else(|error| panic!("no answer: {error}"))
}

/// `GET path`; None when the connection fails or nothing comes back within
/// two seconds (a draining or stopped process).
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let response = send(addr, "GET", path, &[], Vec::new(), Duration::from_secs(2))
        .await
        .ok()?;
    Some((response.status, response.text()))
}

/// A JSON REST call: `Authorization: Bearer <token>` when given, a JSON
/// body when given; the status and the JSON answer (`null` when the body is
/// empty or not JSON), or Err when nothing answered within `wait`.
pub async fn try_rest(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    wait: Duration,
) -> Result<(u16, Value), String> {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/json")];
    if let Some(value) = &authorization {
        headers.push(("Authorization", value.as_str()));
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    if !payload.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let response = send(addr, method, path, &headers, payload.into_bytes(), wait).await?;
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok((response.status, value))
}

/// [`try_rest`] that panics when nothing answered within [`WAIT`].
pub async fn rest(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    try_rest(addr, method, path, token, body, WAIT)
        .await
        .unwrap_or_else(|error| panic!("no answer: {error}"))
}

/// A session's whole history through REST, paged with `afterSeq`; Err when
/// a page does not come back whole.
pub async fn try_history(
    addr: SocketAddr,
    token: &str,
    session_id: &str,
) -> Result<Vec<Value>, String> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/api/chat/sessions/{session_id}/messages?afterSeq={after}&limit=200");
        let (status, page) = try_rest(addr, "GET", &path, Some(token), None, WAIT).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {page}"));
        }
        let items = page["items"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("GET {path}: no items in {page}"))?;
        if let Some(last) = items.last() {
            after = last["seq"].as_i64().ok_or("a message without seq")?;
        }
        all.extend(items);
        if page["hasMore"] != json!(true) {
            return Ok(all);
        }
    }
}

/// [`try_history`] that panics when a page does not come back whole.
pub async fn history(addr: SocketAddr, token: &str, session_id: &str) -> Vec<Value> {
    try_history(addr, token, session_id)
        .await
        .unwrap_or_else(|error| panic!("history: {error}"))
}

/// One HTTP/1.1 request written byte for byte as given, with `Connection:
/// close`; reads the answer to the end of the connection. For requests a
/// client library would refuse or rewrite, which is what their tests check.
pub async fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect for HTTP");
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        // A server may answer (413) before reading the whole body; what
        // matters is the answer, so a failed write is not fatal here.
        let _ = stream.write_all(&bytes).await;
        let mut raw = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
                Err(error) if raw.is_empty() => panic!("{method} {path}: no response: {error}"),
                Err(_) => break,
            }
        }
        parse_response(&raw)
    };
    timeout(WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no response within {WAIT:?}"))
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "incomplete HTTP response: {:?}",
                String::from_utf8_lossy(raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        data = &data[end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    out
}
