//! The admin listener: `/healthz`, `/readyz`, `/metrics`, and the two
//! operations an operator or the pod runs: `POST /reload` (load the config
//! again, as SIGHUP and the file watcher do) and `POST /shutdown` (drain
//! and exit, for Jobs whose sidecar must end with the application). Never
//! enforced: it is meant to stay inside the pod (bind it to loopback or a
//! pod-local address).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::json;
use tokio::sync::watch;

use crate::runtime::{Reloaded, Runtime};

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
    pub runtime: Arc<Runtime>,
    /// Set to ask the process to drain and exit.
    pub shutdown: Arc<watch::Sender<bool>>,
}

/// The admin router; testable without sockets.
pub fn app(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/reload", post(reload).get(last_reload))
        .route("/shutdown", post(shutdown))
        .route("/explain", post(explain))
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

/// Load the config again. 200 `{"result": "applied", "hash",
/// "needsRestart"}` or `{"result": "unchanged", "hash", "needsRestart",
/// "last"}` (another trigger — the file watcher, SIGHUP — may have applied
/// the change first: `last` says what it did); 422 `{"result": "refused",
/// "problems"}` when the new config is refused and the one in force stays.
/// `needsRestart` always lists the restart-only settings the config in
/// force changed.
async fn reload(State(s): State<AdminState>) -> Response {
    match s.runtime.reload_by("admin").await {
        Ok(Reloaded::Applied { hash, .. }) => json_response(
            StatusCode::OK,
            json!({ "result": "applied", "hash": hash, "needsRestart": s.runtime.needs_restart() }),
        ),
        Ok(Reloaded::Unchanged) => json_response(
            StatusCode::OK,
            json!({
                "result": "unchanged",
                "hash": s.runtime.snapshot().hash,
                "needsRestart": s.runtime.needs_restart(),
                "last": s.runtime.last_reload(),
            }),
        ),
        Err(e) => json_response(StatusCode::UNPROCESSABLE_ENTITY, json!({ "result": "refused", "problems": e.0 })),
    }
}

/// The reload state: the config in force (`hash`), the restart-only
/// settings it changed (`needsRestart`), and the last reload that applied
/// or refused a config (`last`: trigger, time, result, hash or problems).
async fn last_reload(State(s): State<AdminState>) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "hash": s.runtime.snapshot().hash,
            "needsRestart": s.runtime.needs_restart(),
            "last": s.runtime.last_reload(),
        }),
    )
}

/// Explain a request under the policy in force: `{method, path, token?,
/// headers?}` → the explanation (`crate::explain`). The token is never
/// repeated.
async fn explain(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    let q: crate::explain::Question = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({ "error": "bad_request", "message": "expected {method, path, token?, headers?}" }),
            );
        }
    };
    let snap = s.runtime.snapshot();
    let answer = crate::explain::explain(&snap, &q, s.runtime.shared().clock.now());
    match serde_json::to_value(&answer) {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Ask the process to drain and exit (202: the drain runs after the answer).
async fn shutdown(State(s): State<AdminState>) -> Response {
    tracing::info!("shutdown requested on the admin listener");
    s.shutdown.send_replace(true);
    json_response(StatusCode::ACCEPTED, json!({ "result": "draining" }))
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}
