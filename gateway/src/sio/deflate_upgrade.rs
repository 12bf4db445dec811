//! The WebSocket upgrade of the Socket.IO route, done here rather than by
//! axum's `WebSocketUpgrade` so that permessage-deflate can be negotiated:
//! the same checks of the request, the 101 answer (with the extension when
//! the client offered terms the gateway accepts), then tungstenite over a
//! [`DeflateStream`] on the upgraded connection.

use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::deflate::{Deflate, DeflateStream};
use super::deflate_offer;

/// A Socket.IO connection's WebSocket.
pub type WebSocket = WebSocketStream<DeflateStream<TokioIo<Upgraded>>>;

/// A request that asks for a WebSocket (HTTP/1.1 upgrade, version 13).
pub struct SocketUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// Whether the client offered permessage-deflate on acceptable terms.
    deflate_offered: bool,
}

/// The request is not a WebSocket upgrade.
#[derive(Debug, thiserror::Error)]
#[error("not a WebSocket upgrade: {0}")]
pub struct NotAnUpgrade(&'static str);

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.to_string()).into_response()
    }
}

fn header_is(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

/// `Connection` lists `upgrade` among its tokens.
fn connection_upgrades(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

impl<S: Send + Sync> FromRequestParts<S> for SocketUpgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.version > Version::HTTP_11 || parts.method != Method::GET {
            return Err(NotAnUpgrade("not an HTTP/1 GET"));
        }
        if !connection_upgrades(&parts.headers) {
            return Err(NotAnUpgrade("Connection does not say upgrade"));
        }
        if !header_is(&parts.headers, header::UPGRADE, "websocket") {
            return Err(NotAnUpgrade("Upgrade is not websocket"));
        }
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(NotAnUpgrade("Sec-WebSocket-Version is not 13"));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(NotAnUpgrade("no Sec-WebSocket-Key"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotAnUpgrade("the connection cannot be upgraded"))?;
        let offers = parts
            .headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(SocketUpgrade {
            key,
            on_upgrade,
            deflate_offered: deflate_offer::accepts(offers),
        })
    }
}

impl SocketUpgrade {
    /// Answers 101 and runs `serve` on the connection once upgraded, with
    /// permessage-deflate when `deflate` is given and the client offered
    /// it.
    pub fn on_upgrade<F, Fut>(
        self,
        deflate: Option<Deflate>,
        config: WebSocketConfig,
        serve: F,
    ) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let deflate = deflate.filter(|_| self.deflate_offered);
        let Ok(accept) = HeaderValue::from_str(&derive_accept_key(self.key.as_bytes())) else {
            return NotAnUpgrade("unusable Sec-WebSocket-Key").into_response();
        };
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            // A client that went away before the switch: nothing to serve.
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let stream = DeflateStream::new(TokioIo::new(upgraded), deflate);
            let socket = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
            serve(socket).await;
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        if deflate.is_some() {
            headers.insert(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_static(deflate_offer::ACCEPTED),
            );
        }
        response
    }
}
