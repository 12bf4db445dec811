//! Serves the built web UI (`WEB_DIR`, default `web/dist`) at `/`: files by
//! path, and `index.html` for any other page path so that the single-page
//! app can route on the client. Paths that try to leave the folder, plainly
//! or percent-encoded, are refused with 400. Every answer carries a
//! Content-Security-Policy that allows only this origin's scripts and
//! connections and the configured framing.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use crate::state::GatewayState;

pub async fn serve_web(State(state): State<Arc<GatewayState>>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return crate::http_error::ApiError(chat_shared::ChatError::not_found("no such endpoint"))
            .into_response();
    }
    // The operational endpoints are never pages: with `ADMIN_PORT` set they
    // live on the admin port alone and are not found here.
    if matches!(uri.path(), "/healthz" | "/readyz" | "/metrics") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut response = file_response(&state, uri.path()).await;
    let policy = content_security_policy(&state.config.frame_ancestors);
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The UI's policy: its own scripts, styles (React sets style attributes),
/// images and sounds; connections to this origin (REST and WebSocket).
/// Attached images are fetched with the token and shown from `blob:` URLs.
fn content_security_policy(frame_ancestors: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; media-src 'self' data: blob:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors {frame_ancestors}"
    )
}

async fn file_response(state: &GatewayState, raw_path: &str) -> Response {
    let root = &state.config.web_dir;
    let Some(relative) = safe_relative(raw_path) else {
        return (StatusCode::BAD_REQUEST, "Bad path").into_response();
    };
    let candidate = root.join(&relative);
    let is_asset = relative.extension().is_some();
    let path = if is_asset {
        candidate
    } else {
        root.join("index.html")
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let cache = if relative.starts_with("assets") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            (
                [(header::CONTENT_TYPE, content_type(&path)), (header::CACHE_CONTROL, cache)],
                bytes,
            )
                .into_response()
        }
        Err(_) if !root.join("index.html").exists() => (
            StatusCode::NOT_FOUND,
            "The web UI is not built: run `npm ci && npm run build` in web/ (or start with the README's run command).",
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The request path, percent-decoded, as a relative path with no `..`,
/// root or prefix parts, backslashes or NULs; None for anything else.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    let trimmed = decoded.trim_start_matches('/');
    let candidate = Path::new(trimmed);
    let mut clean = PathBuf::new();
    for component in candidate.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(clean)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_that_leave_the_folder() {
        assert_eq!(
            safe_relative("/assets/app.js"),
            Some(PathBuf::from("assets/app.js"))
        );
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative("/../etc/passwd"), None);
        assert_eq!(safe_relative("/a/../../b"), None);
        assert_eq!(safe_relative("/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(safe_relative("/%2E%2E%2fetc"), None);
        assert_eq!(safe_relative("/a%5c..%5c..%5cb"), None);
        assert_eq!(safe_relative("/a%00.js"), None);
        assert_eq!(safe_relative("/%ff"), None);
        assert_eq!(
            safe_relative("/assets/a%20b.js"),
            Some(PathBuf::from("assets/a b.js"))
        );
    }
}
