//! The worker's operational endpoints on its admin port: `/healthz` (the
//! process answers), `/readyz` (the backplane and the store answer and the
//! worker is not stopping) and `/metrics` (Prometheus text format). A
//! worker serves no clients, so readiness only tells orchestrators and
//! dashboards whether it can do its work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chat_shared::backplane::Backplane;
use chat_shared::metrics::{self, Kind, MetricsSource};
use chat_shared::runtime::Readiness;
use chat_shared::store::Store;
use serde_json::json;

use crate::metrics::WorkerMetrics;

/// What the admin endpoints look at.
pub struct WorkerOps {
    pub metrics: Arc<WorkerMetrics>,
    pub store: Arc<dyn Store>,
    pub backplane: Arc<dyn Backplane>,
    /// Set when the worker starts stopping (SIGTERM).
    pub draining: AtomicBool,
}

impl WorkerOps {
    pub fn new(
        metrics: Arc<WorkerMetrics>,
        store: Arc<dyn Store>,
        backplane: Arc<dyn Backplane>,
    ) -> Arc<Self> {
        Arc::new(WorkerOps {
            metrics,
            store,
            backplane,
            draining: AtomicBool::new(false),
        })
    }

    async fn readiness(&self) -> Readiness {
        let draining = self.draining.load(Ordering::Relaxed);
        Readiness::check(draining, &*self.backplane, &*self.store).await
    }
}

/// The admin router.
pub fn router(ops: Arc<WorkerOps>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(ops)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(ops): State<Arc<WorkerOps>>) -> Response {
    let readiness = ops.readiness().await;
    let status = if readiness.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.body())).into_response()
}

async fn metrics_text(State(ops): State<Arc<WorkerOps>>) -> Response {
    let readiness = ops.readiness().await;
    let mut text = String::with_capacity(8 * 1024);
    ops.metrics.render(&mut text);
    metrics::single(
        &mut text,
        "chat_worker_draining",
        Kind::Gauge,
        "1 while the worker is stopping (after SIGTERM), else 0.",
        u8::from(readiness.draining),
    );
    metrics::single(
        &mut text,
        "chat_ready",
        Kind::Gauge,
        "1 while /readyz answers 200: dependencies answer and the process is not draining.",
        u8::from(readiness.ready()),
    );
    metrics::build_info(&mut text, &[ops.metrics.component()]);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}
