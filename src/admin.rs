//! The admin listener: `/healthz`, `/readyz`, `/metrics`. Never enforced,
//! and meant to stay inside the pod.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// Whether the gateway is ready to serve, or the first reason it is not.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), &'static str> + Send + Sync>;

/// Brings gauges that are read off live state up to date before a scrape.
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

/// Shared admin state.
#[derive(Clone)]
pub struct AdminState {
    pub registry: Registry,
    pub ready: ReadyCheck,
    pub before_scrape: BeforeScrape,
}

/// The admin router; testable without sockets.
pub fn app(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    match (s.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (s.before_scrape)();
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&s.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
