//! The public HTTP/1.1 server: accepts connections, serves the router on
//! each (WebSocket upgrades included), and on `stop` stops accepting, lets
//! every connection finish what it is doing and returns once all have
//! closed. Hand-written over hyper rather than `axum::serve` for one
//! setting that does not expose: a deadline on reading a request's head, so
//! a client trickling its headers (slowloris) cannot hold a connection.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `router` on `listener` until `stop`, then waits for the open
/// connections to end (the drain closes the WebSockets among them). A
/// request's head (line and headers) must arrive within `head_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    head_timeout: Duration,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                // Out of descriptors and the like: wait a moment rather than
                // spin; the listener itself stays usable.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small frames go out at once rather than waiting for Nagle's
        // algorithm to batch them.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}
