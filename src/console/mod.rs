//! The admin web console under `/console` on the api listener: pages
//! rendered on the server (askama templates, escaped by default) over the
//! same [`TokenService`] and authority rules as the JSON API — one more
//! client of them, not a second implementation. A front end of its own,
//! served on the api listener beside the API (`app` mounts it), reading the
//! same request shapes (`service::input`).
//!
//! Sign-in exchanges an admin or master token for a server-side session
//! ([`session`]); every page authenticates that token again under the
//! policy in force, and a revoked sign-in token's sessions end as soon as
//! this replica learns of the revocation. The session table is bounded
//! per token and as a whole without locking anyone out; failed sign-ins
//! are throttled per client ([`throttle`]). Every state-changing form
//! carries the session's CSRF token, must come from this origin
//! ([`same_origin`]) and is read with the JSON API's body limit
//! ([`form_body`]). Responses forbid framing, inline script and caching;
//! the only script is the vendored htmx, served from the binary, and
//! every page works without it.

mod explain;
mod forms;
mod guard;
mod narrow;
mod session;
mod sign_in;
mod status;
mod throttle;
mod tokens;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use session::{Session, SharedSessions};

use crate::respond::{ApiCode, MAX_BODY};
use crate::runtime::{Runtime, Snapshot};
use crate::service::input::{CreateRegistration, CreateRequest};
use crate::service::{RevokeTarget, ServiceError, Shown, TokenService};
use crate::store::{TokenFilter, TokenRecord};
use crate::token::Grant;

use explain::*;
use forms::*;
use guard::*;
use narrow::*;
use sign_in::*;
use status::*;
use tokens::*;

/// Tokens on one page of the list.
const PAGE: usize = 50;
/// The most tokens the list and the lineage look through.
const SCAN: u32 = 10_000;

/// What the console keeps between requests: its sessions and the failed
/// sign-ins of each client. Both outlive reloads; their bounds are the
/// policy's in force.
struct Kept {
    sessions: Arc<SharedSessions>,
    failures: throttle::Throttle,
}

/// What the console's handlers share: the policy in force, the token
/// service, and what the console keeps.
#[derive(Clone)]
pub struct Console {
    runtime: Arc<Runtime>,
    service: Arc<TokenService>,
    console: Arc<Kept>,
}

impl Console {
    /// The console of `runtime`'s policy over `service`; its sessions end
    /// with their tokens' revocation.
    pub fn new(runtime: Arc<Runtime>, service: Arc<TokenService>) -> Self {
        let store = service.backing_store().cloned();
        let sessions = Arc::new(SharedSessions::new(runtime.shared().revocations.clone(), store));
        Console { runtime, service, console: Arc::new(Kept { sessions, failures: throttle::Throttle::default() }) }
    }

    /// The task that ends revoked tokens' sessions as the revocations
    /// arrive (see [`session::follow_revocations`]).
    pub fn follow_revocations(&self) -> impl Future<Output = ()> + Send + 'static {
        session::follow_revocations(&self.console.sessions)
    }

    /// The policy in force, for this request.
    fn snapshot(&self) -> Arc<Snapshot> {
        self.runtime.snapshot()
    }
}

const HTMX: &[u8] = include_bytes!("../../assets/console/htmx.min.js");
const CSS: &[u8] = include_bytes!("../../assets/console/console.css");
const JS: &[u8] = include_bytes!("../../assets/console/console.js");

/// The console's routes, answering only while the policy in force enables
/// the console (otherwise as if they were not there).
pub fn router(state: Console) -> Router {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/tokens") }))
        .route("/console/", get(|| async { Redirect::to("/console/tokens") }))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/tokens", get(tokens))
        .route("/console/tokens/new", get(new_token_page).post(create))
        .route("/console/tokens/{id}", get(token))
        .route("/console/tokens/{id}/revoke", get(revoke_page).post(revoke))
        .route("/console/tokens/{id}/narrow", get(narrow_page).post(narrow))
        .route("/console/registration", get(registration_page).post(registration))
        .route("/console/manifest", get(manifest))
        .route("/console/status", get(status))
        .route("/console/explain", get(explain_page).post(explain))
        .route("/console/static/htmx.min.js", get(|| async { asset(HTMX, "text/javascript; charset=utf-8") }))
        .route("/console/static/console.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
        .route("/console/static/console.js", get(|| async { asset(JS, "text/javascript; charset=utf-8") }))
        .layer(axum::middleware::from_fn(security_headers))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), enabled))
        .with_state(state)
}

async fn enabled(State(s): State<Console>, req: Request, next: axum::middleware::Next) -> Response {
    if s.snapshot().console.enabled {
        next.run(req).await
    } else {
        crate::respond::code_response(ApiCode::NotFound, "no such endpoint").into_response()
    }
}

fn asset(bytes: &'static [u8], content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], bytes).into_response()
}

/// What every console response carries: no framing, no inline script or
/// style, nothing loaded from elsewhere, no caching of pages (a token's
/// value is shown once), no referrer to other sites.
async fn security_headers(req: Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not no-referrer: under it a browser sends `Origin: null` with its own
    // forms, and the origin check could not tell them from forged ones.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A rendered page.
fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page could not be rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    heading: &'static str,
    message: String,
}

fn error_page(status: StatusCode, heading: &'static str, message: &str, signed: Option<&Signed>) -> Response {
    page(
        status,
        &ErrorPage {
            who: signed.and_then(Signed::who),
            csrf: signed.and_then(Signed::csrf),
            notice: None,
            heading,
            message: message.to_string(),
        },
    )
}

/// A token-service error as a page: its status and fixed message.
fn service_error(e: ServiceError, signed: &Signed) -> Response {
    error_page(status_of(&e), "That did not work", &format!("{} ({})", e.message(), e.code()), Some(signed))
}

/// The status the API answers `e` with.
fn status_of(e: &ServiceError) -> StatusCode {
    ApiCode::from(e.kind()).status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_comes_from_this_origin_by_its_origin_or_else_its_referer() {
        struct Case {
            name: &'static str,
            secure: bool,
            headers: &'static [(&'static str, &'static str)],
            want: bool,
        }
        let cases = [
            Case { name: "this origin", secure: false, headers: &[("origin", "http://console.test:8081")], want: true },
            Case {
                name: "case of the host",
                secure: false,
                headers: &[("origin", "http://Console.TEST:8081")],
                want: true,
            },
            Case { name: "over https", secure: true, headers: &[("origin", "https://console.test:8081")], want: true },
            Case {
                name: "http when https",
                secure: true,
                headers: &[("origin", "http://console.test:8081")],
                want: false,
            },
            Case {
                name: "https when http",
                secure: false,
                headers: &[("origin", "https://console.test:8081")],
                want: false,
            },
            Case {
                name: "another port",
                secure: false,
                headers: &[("origin", "http://console.test:8082")],
                want: false,
            },
            Case { name: "no port", secure: false, headers: &[("origin", "http://console.test")], want: false },
            Case { name: "null", secure: false, headers: &[("origin", "null")], want: false },
            Case { name: "a path", secure: false, headers: &[("origin", "http://console.test:8081/")], want: false },
            Case { name: "userinfo", secure: false, headers: &[("origin", "http://a@console.test:8081")], want: false },
            Case {
                name: "two origins",
                secure: false,
                headers: &[("origin", "http://console.test:8081"), ("origin", "http://console.test:8081")],
                want: false,
            },
            Case {
                name: "the origin decides over the referer",
                secure: false,
                headers: &[("origin", "http://evil.test"), ("referer", "http://console.test:8081/console")],
                want: false,
            },
            Case {
                name: "a referer of this origin",
                secure: false,
                headers: &[("referer", "http://console.test:8081/console/tokens?page=2")],
                want: true,
            },
            Case {
                name: "a bare referer",
                secure: false,
                headers: &[("referer", "http://console.test:8081")],
                want: true,
            },
            Case {
                name: "a referer over https",
                secure: true,
                headers: &[("referer", "https://console.test:8081/console/tokens")],
                want: true,
            },
            Case {
                name: "another site's referer",
                secure: false,
                headers: &[("referer", "http://evil.test/console.test:8081")],
                want: false,
            },
            Case {
                name: "a referer on another host's path",
                secure: false,
                headers: &[("referer", "http://evil.test/?http://console.test:8081")],
                want: false,
            },
            Case { name: "a relative referer", secure: false, headers: &[("referer", "/console")], want: false },
            Case { name: "not a url", secure: false, headers: &[("referer", "console.test:8081")], want: false },
            Case { name: "neither", secure: false, headers: &[], want: false },
        ];
        for c in cases {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("console.test:8081"));
            for (name, value) in c.headers {
                h.append(*name, HeaderValue::from_static(value));
            }
            assert_eq!(same_origin(&h, c.secure), c.want, "{}", c.name);
        }
        let mut no_host = HeaderMap::new();
        no_host.insert(header::ORIGIN, HeaderValue::from_static("http://console.test:8081"));
        assert!(!same_origin(&no_host, false), "no Host: no origin to compare with");
    }

    /// The demo policy (an IPv6 client is its /64) trusting `trusted`.
    fn snapshot(dir: &std::path::Path, trusted: &str) -> Arc<Snapshot> {
        let key = crate::token::testkit::TestKey::es256("demo");
        std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
        std::fs::write(dir.join("keys/demo.pub.pem"), &key.public).expect("write");
        let mut config =
            crate::config::Config::from_yaml(include_str!("../../config/demo.yaml"), dir).expect("demo config");
        config.trusted_proxies = vec![trusted.parse().expect("a network")];
        let metrics = Arc::new(crate::metrics::Metrics::register(&prometheus::Registry::new()).expect("metrics"));
        let shared = crate::runtime::Shared::new(metrics, Arc::default(), Arc::default());
        crate::runtime::Runtime::new(&config, None, shared).snapshot()
    }

    #[test]
    fn a_client_is_its_address_its_ipv6_prefix_or_what_a_trusted_proxy_forwards() {
        struct Case {
            name: &'static str,
            peer: Option<&'static str>,
            forwarded: &'static [&'static str],
            want: &'static str,
        }
        let cases = [
            Case { name: "an IPv4 peer", peer: Some("192.0.2.7"), forwarded: &[], want: "192.0.2.7" },
            Case {
                name: "an IPv6 peer is its /64",
                peer: Some("2001:db8:1:2:3:4:5:6"),
                forwarded: &[],
                want: "2001:db8:1:2::",
            },
            Case { name: "an IPv4-mapped peer", peer: Some("::ffff:192.0.2.7"), forwarded: &[], want: "192.0.2.7" },
            Case {
                name: "an untrusted peer's X-Forwarded-For",
                peer: Some("192.0.2.7"),
                forwarded: &["198.51.100.1"],
                want: "192.0.2.7",
            },
            Case {
                name: "a trusted proxy's client",
                peer: Some("10.0.0.1"),
                forwarded: &["203.0.113.9, 198.51.100.1"],
                want: "198.51.100.1",
            },
            Case {
                name: "past trusted proxies, over two headers",
                peer: Some("10.0.0.1"),
                forwarded: &["198.51.100.1", "10.0.0.2, 10.0.0.3"],
                want: "198.51.100.1",
            },
            Case {
                name: "a forwarded IPv6 client is its /64",
                peer: Some("10.0.0.1"),
                forwarded: &["2001:db8:9::1"],
                want: "2001:db8:9::",
            },
            Case {
                name: "a hop that is not an address ends the walk",
                peer: Some("10.0.0.1"),
                forwarded: &["198.51.100.1, unknown, 10.0.0.2"],
                want: "10.0.0.2",
            },
            Case {
                name: "a trusted proxy forwarding nothing",
                peer: Some("10.0.0.1"),
                forwarded: &[],
                want: "10.0.0.1",
            },
            Case { name: "no connection address", peer: None, forwarded: &["198.51.100.1"], want: "0.0.0.0" },
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let snap = snapshot(dir.path(), "10.0.0.0/8");
        for c in cases {
            let mut req = Request::new(axum::body::Body::empty());
            if let Some(peer) = c.peer {
                req.extensions_mut().insert(ConnectInfo(peer.parse::<IpAddr>().expect("address")));
            }
            for value in c.forwarded {
                req.headers_mut().append("x-forwarded-for", HeaderValue::from_static(value));
            }
            assert_eq!(client(&snap, &req), c.want.parse::<IpAddr>().expect("address"), "{}", c.name);
        }
    }
}
