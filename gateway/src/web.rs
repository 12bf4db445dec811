//! Serves the built web UI (`WEB_DIR`, default `web/dist`) at `/`: files by
//! path, and `index.html` for any other page path so that the single-page
//! app can route on the client. Paths that try to leave the folder are
//! refused.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

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
    let root = &state.config.web_dir;
    let Some(relative) = safe_relative(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
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

/// The request path as a relative path with no `..`, root or prefix parts.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let trimmed = path.trim_start_matches('/');
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
    }
}
