//! The two REST calls the load setup makes (create a session, assign it),
//! over a bare HTTP/1.1 request on a fresh connection: one request per
//! connection, `Connection: close`, the body read to the end (plain or
//! chunked).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Endpoint;

const TIMEOUT: Duration = Duration::from_secs(15);
/// Responses here are a session object; anything much larger is wrong.
const MAX_RESPONSE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

/// POSTs `body` (JSON) to `path` with the bearer `token`; returns the
/// decoded JSON of a 2xx answer.
pub async fn post_json(
    endpoint: &Endpoint,
    path: &str,
    token: &str,
    body: &Value,
) -> Result<Value, RestError> {
    tokio::time::timeout(TIMEOUT, post(endpoint, path, token, body))
        .await
        .map_err(|_| RestError::Timeout(TIMEOUT))?
}

async fn post(
    endpoint: &Endpoint,
    path: &str,
    token: &str,
    body: &Value,
) -> Result<Value, RestError> {
    let authority = endpoint.authority();
    let mut stream = TcpStream::connect(&authority).await?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut raw)
        .await?;
    let (status, body) = parse_response(&raw)?;
    if !(200..300).contains(&status) {
        return Err(RestError::Status {
            status,
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
    }
    serde_json::from_slice(&body).map_err(|_| RestError::Malformed("body is not JSON"))
}

/// Splits a complete response into its status and (de-chunked) body.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), RestError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(RestError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split])
        .map_err(|_| RestError::Malformed("headers are not UTF-8"))?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(RestError::Malformed("no status line"))?;
    let chunked = lines.any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, RestError> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(RestError::Malformed("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&data[..line_end])
            .map_err(|_| RestError::Malformed("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| RestError::Malformed("bad chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data
            .get(..size)
            .ok_or(RestError::Malformed("truncated chunk"))?;
        out.extend_from_slice(chunk);
        data = data
            .get(size + 2..)
            .ok_or(RestError::Malformed("truncated chunk"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 9\r\n\r\n{\"id\":1}\n";
        let (status, body) = parse_response(plain).unwrap();
        assert_eq!(status, 201);
        assert_eq!(body, b"{\"id\":1}\n");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let (status, body) = parse_response(chunked).unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"{\"a\":1}");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
