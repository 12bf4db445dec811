//! Files in a session (docs/protocol.md, REST): the upload
//! (`POST /sessions/{id}/attachments`) streams the request body into the
//! blob store and then records its row; the download
//! (`GET /sessions/{id}/attachments/{attachmentId}`) streams the bytes back,
//! whole or one range, with headers that keep a browser from running them.
//!
//! An upload is outside the 64 KiB body limit and the whole-request
//! deadline of the other REST calls (`http_edges`, `app`): its bound is
//! `ATTACHMENT_MAX_BYTES`, and it is given up when its body stops coming
//! for `ATTACHMENT_IDLE_TIMEOUT_MS`, not when it is merely long. Whatever
//! ends it early (too large, the client gone, too slow, the store failing)
//! keeps nothing: the blob store's put is all or nothing, and the row is
//! written only once the bytes are stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_shared::blob::{BlobError, BlobStore, ByteStream};
use chat_shared::ids::SessionId;
use chat_shared::permissions::may_write;
use chat_shared::protocol::{Session, SessionStatus};
use chat_shared::store::{AttachmentRecord, StoreError};
use chat_shared::{ChatError, ErrorCode, Timestamp};
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::http_caller::{Caller, Writer};
use crate::http_error::{ApiError, ApiResult};
use crate::state::GatewayState;

/// The types shown in place (`inline`); every other one is offered as a
/// download.
const INLINE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Bytes of the start of an upload kept to read an image's size from its
/// header (a JPEG's can come after its metadata).
const SNIFF_BYTES: usize = 256 * 1024;

/// The longest file name accepted, in characters.
const MAX_NAME_CHARS: usize = 255;

/// Characters of RFC 8187's `attr-char` left as they are in `filename*`.
const FILENAME_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The upload route: outside the body limit and the request deadline.
pub fn upload_routes() -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/sessions/{id}/attachments", post(upload))
        .layer(DefaultBodyLimit::disable())
}

/// The download route, a read like the other REST reads.
pub fn download_routes() -> Router<Arc<GatewayState>> {
    Router::new().route("/sessions/{id}/attachments/{attachment_id}", get(download))
}

async fn upload(
    State(state): State<Arc<GatewayState>>,
    Writer(caller): Writer,
    Path(session_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let config = &state.config.attachments;
    let session_id = SessionId::parse(session_id)?;
    let name = file_name(query.get("name"))?;
    let content_type = media_type(&headers)?;
    if !config.accepts(&content_type) {
        return Err(ChatError::invalid(format!(
            "files of type {content_type} are not accepted; accepted: {}",
            config.types.join(", ")
        ))
        .into());
    }
    if declared_length(&headers).is_some_and(|length| length > config.max_bytes) {
        return Err(ChatError::from(BlobError::TooLarge {
            max_bytes: config.max_bytes,
        })
        .into());
    }
    let session = session_of(&state, &session_id).await?;
    if !may_write(&caller, &session) {
        return Err(ChatError::forbidden("you may not write to this session").into());
    }
    if session.status == SessionStatus::Closed {
        return Err(ChatError::session_closed().into());
    }

    let start = Arc::new(Mutex::new(Vec::new()));
    let stream = upload_stream(body, config.idle_timeout, start.clone());
    let stored = state
        .blobs
        .put(stream, config.max_bytes)
        .await
        .map_err(blob_error)?;
    let (width, height) = {
        let start = start.lock().unwrap_or_else(PoisonError::into_inner);
        image_size(&content_type, &start)
    };
    let row = AttachmentRecord {
        id: stored.id,
        session_id: session.id,
        uploader_id: caller.user_id,
        name,
        size: i64::try_from(stored.size).unwrap_or(i64::MAX),
        content_type,
        sha256: stored.sha256,
        width,
        height,
        created_at: Timestamp::now(),
        referenced_by_seq: None,
    };
    // On a task of its own, so that a client going away now cannot leave
    // bytes without their row: the row is written, or the bytes removed.
    let recorded = {
        let state = state.clone();
        let row = row.clone();
        tokio::spawn(async move {
            let inserted = state.store.insert_attachment(&row).await;
            if inserted.is_err() {
                remove_blob(state.blobs.as_ref(), &row.id).await;
            }
            inserted
        })
    };
    match recorded.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(store_error(error)),
        Err(error) => {
            tracing::warn!(%error, "recording an upload failed");
            return Err(ChatError::unavailable("the upload could not be recorded").into());
        }
    }
    Ok((StatusCode::CREATED, Json(row.public())).into_response())
}

async fn download(
    State(state): State<Arc<GatewayState>>,
    Caller(caller): Caller,
    Path((session_id, attachment_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let session_id = SessionId::parse(session_id)?;
    let session = crate::rest::readable_session(&state, &caller, &session_id).await?;
    let row = state
        .store
        .attachment(&attachment_id)
        .await
        .map_err(store_error)?
        .filter(|row| row.session_id == session.id)
        .ok_or_else(|| ChatError::not_found("no such attachment"))?;
    let size = u64::try_from(row.size).unwrap_or(0);
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => Some(byte_range(value, size)?),
    };
    let read = state.blobs.get(&row.id, range).await.map_err(blob_error)?;
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = Response::new(Body::from_stream(read.body));
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&row.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    out.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(read.served.end - read.served.start),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        let content_range = format!(
            "bytes {}-{}/{}",
            read.served.start,
            read.served.end.saturating_sub(1),
            read.total_size
        );
        if let Ok(value) = HeaderValue::from_str(&content_range) {
            out.insert(header::CONTENT_RANGE, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&disposition(&row.content_type, &row.name)) {
        out.insert(header::CONTENT_DISPOSITION, value);
    }
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    // Opened on its own, a file runs nothing and loads nothing.
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(response)
}

async fn session_of(state: &GatewayState, id: &SessionId) -> ApiResult<Session> {
    state
        .store
        .get_session(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ChatError::session_not_found().into())
}

/// The request body as the blob store takes it: each wait for the next
/// piece bounded by `idle`, the first `SNIFF_BYTES` copied into `start`.
fn upload_stream(body: Body, idle: Duration, start: Arc<Mutex<Vec<u8>>>) -> ByteStream {
    let pieces = body.into_data_stream();
    Box::pin(futures_util::stream::unfold(
        Some((pieces, start)),
        move |state| async move {
            let (mut pieces, start) = state?;
            match tokio::time::timeout(idle, pieces.next()).await {
                Err(_) => Some((
                    Err(BlobError::Interrupted(format!(
                        "no bytes for {} ms",
                        idle.as_millis()
                    ))),
                    None,
                )),
                Ok(None) => None,
                Ok(Some(Err(error))) => {
                    Some((Err(BlobError::Interrupted(error.to_string())), None))
                }
                Ok(Some(Ok(piece))) => {
                    {
                        let mut start = start.lock().unwrap_or_else(PoisonError::into_inner);
                        let room = SNIFF_BYTES.saturating_sub(start.len());
                        start.extend_from_slice(&piece[..room.min(piece.len())]);
                    }
                    Some((Ok(piece), Some((pieces, start))))
                }
            }
        },
    ))
}

/// `?name=`: 1 to 255 characters, none a control character or a path
/// separator.
fn file_name(name: Option<&String>) -> Result<String, ChatError> {
    let name = name.map(|n| n.trim()).unwrap_or("");
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ChatError::invalid(format!(
            "name must be the file's name: 1 to {MAX_NAME_CHARS} characters, \
             without control characters, '/' or '\\'"
        )))
    }
}

/// The upload's `Content-Type` without parameters, in lower case.
fn media_type(headers: &HeaderMap) -> Result<String, ChatError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or("").trim())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ChatError::invalid("Content-Type must give the file's media type"))?;
    Ok(value.to_ascii_lowercase())
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
}

/// The first and last byte a `Range` header asks of a file of `size`
/// bytes: `bytes=a-b`, `bytes=a-` or `bytes=-n`, one range only.
fn byte_range(value: &HeaderValue, size: u64) -> Result<(u64, u64), ChatError> {
    let malformed = || {
        ChatError::invalid(
            "Range must be one range: bytes=first-last, bytes=first- or bytes=-count",
        )
    };
    let unsatisfiable =
        || ChatError::invalid(format!("the range is not within the file ({size} bytes)"));
    let text = value.to_str().map_err(|_| malformed())?.trim();
    let spec = text.strip_prefix("bytes=").ok_or_else(malformed)?.trim();
    if spec.contains(',') {
        return Err(malformed());
    }
    let (first, last) = spec.split_once('-').ok_or_else(malformed)?;
    let number = |text: &str| -> Result<u64, ChatError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        // Digits only: too many of them is a range past any file.
        Ok(text.parse::<u64>().unwrap_or(u64::MAX))
    };
    let (start, end) = if first.is_empty() {
        let count = number(last)?;
        if count == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        (size.saturating_sub(count), size - 1)
    } else {
        let start = number(first)?;
        let end = if last.is_empty() {
            u64::MAX
        } else {
            number(last)?
        };
        if end < start {
            return Err(malformed());
        }
        (start, end)
    };
    if start >= size {
        return Err(unsatisfiable());
    }
    Ok((start, end))
}

/// `inline` for the image types, `attachment` for the rest, with the name
/// as RFC 8187 spells it.
fn disposition(content_type: &str, name: &str) -> String {
    let kind = if INLINE_TYPES.contains(&content_type) {
        "inline"
    } else {
        "attachment"
    };
    format!(
        "{kind}; filename*=UTF-8''{}",
        utf8_percent_encode(name, FILENAME_ESCAPES)
    )
}

/// Width and height of an image of the four image types, from its start.
fn image_size(content_type: &str, start: &[u8]) -> (Option<i64>, Option<i64>) {
    if !INLINE_TYPES.contains(&content_type) {
        return (None, None);
    }
    match imagesize::blob_size(start) {
        Ok(size) => (
            i64::try_from(size.width).ok(),
            i64::try_from(size.height).ok(),
        ),
        Err(_) => (None, None),
    }
}

fn blob_error(error: BlobError) -> ApiError {
    match &error {
        BlobError::Unavailable(_) | BlobError::Internal(_) => {
            tracing::warn!(%error, "blob store failed")
        }
        BlobError::Interrupted(_) => tracing::debug!(%error, "upload given up"),
        _ => {}
    }
    ApiError(ChatError::from(error))
}

fn store_error(error: StoreError) -> ApiError {
    tracing::warn!(%error, "store call failed");
    ApiError(ChatError::new(
        ErrorCode::Unavailable,
        "the chat store is unavailable; try again",
    ))
}

/// Removes what should no longer be kept; see `attachments_cleanup`.
pub(crate) async fn remove_blob(blobs: &dyn BlobStore, id: &str) {
    if let Err(error) = blobs.delete(id).await {
        tracing::warn!(%error, blob = id, "blob not removed; the next sweep tries again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str, size: u64) -> Result<(u64, u64), ChatError> {
        byte_range(&HeaderValue::from_str(text).expect("a header"), size)
    }

    #[test]
    fn ranges_of_each_form() {
        assert_eq!(range("bytes=0-99", 1000), Ok((0, 99)));
        assert_eq!(range("bytes=500-", 1000), Ok((500, u64::MAX)));
        assert_eq!(range("bytes=-100", 1000), Ok((900, 999)));
        assert_eq!(range("bytes=-5000", 1000), Ok((0, 999)));
        assert_eq!(range("bytes=990-5000", 1000), Ok((990, 5000)));
        for refused in [
            "bytes=1000-",
            "bytes=-0",
            "bytes=5-4",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
        ] {
            let error = range(refused, 1000).expect_err(refused);
            assert_eq!(error.code, ErrorCode::InvalidPayload, "{refused}");
        }
        assert!(range("bytes=0-0", 0).is_err(), "nothing in an empty file");
    }

    #[test]
    fn names_and_types() {
        let name = |text: &str| file_name(Some(&text.to_owned()));
        assert_eq!(name(" Rechnung März.pdf "), Ok("Rechnung März.pdf".into()));
        for bad in ["", "  ", "../x", "a\\b", "line\nbreak", &"x".repeat(256)] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        assert!(file_name(None).is_err());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Text/Plain; charset=utf-8"),
        );
        assert_eq!(media_type(&headers), Ok("text/plain".into()));
        assert!(media_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn only_images_are_inline_and_names_are_escaped() {
        assert_eq!(
            disposition("image/png", "a b.png"),
            "inline; filename*=UTF-8''a%20b.png"
        );
        assert_eq!(
            disposition("text/plain", "ü\";.txt"),
            "attachment; filename*=UTF-8''%C3%BC%22%3B.txt"
        );
        assert_eq!(
            disposition("application/pdf", "x.pdf").split(';').next(),
            Some("attachment")
        );
    }

    #[test]
    fn image_sizes_come_from_the_header() {
        // A PNG's signature and IHDR: 3 × 2 pixels.
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        png.extend_from_slice(&[0, 0, 0, 13]);
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&3u32.to_be_bytes());
        png.extend_from_slice(&2u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0]);
        assert_eq!(image_size("image/png", &png), (Some(3), Some(2)));
        assert_eq!(image_size("text/plain", &png), (None, None));
        assert_eq!(image_size("image/png", b"not a png"), (None, None));
    }
}
