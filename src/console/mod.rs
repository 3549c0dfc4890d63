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

mod session;
mod throttle;

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

use session::{Session, Sessions};

use crate::respond::{ApiCode, MAX_BODY};
use crate::runtime::{Runtime, Snapshot};
use crate::service::input::{CreateRegistration, CreateRequest};
use crate::service::{RevokeTarget, ServiceError, Shown, TokenService};
use crate::store::{TokenFilter, TokenRecord};
use crate::token::Grant;

/// Tokens on one page of the list.
const PAGE: usize = 50;
/// The most tokens the list and the lineage look through.
const SCAN: u32 = 10_000;

/// What the console keeps between requests: its sessions and the failed
/// sign-ins of each client. Both outlive reloads; their bounds are the
/// policy's in force.
struct Kept {
    sessions: Arc<Sessions>,
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
        let sessions = Arc::new(Sessions::new(runtime.shared().revocations.clone()));
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

/// A signed-in request: its session, the policy in force and the grant
/// of the token the session was opened with, authenticated again now.
struct Signed {
    session: Arc<Session>,
    snap: Arc<Snapshot>,
    grant: Arc<Grant>,
}

impl Signed {
    fn who(&self) -> Option<String> {
        Some(self.session.label.clone())
    }

    fn csrf(&self) -> Option<String> {
        Some(self.session.csrf.clone())
    }
}

/// A response that ends the request early (boxed: it is large).
type Refused = Box<Response>;

/// The signed-in caller, or the way to the sign-in page.
async fn signed_in(s: &Console, headers: &HeaderMap) -> Result<Signed, Refused> {
    let snap = s.snapshot();
    let Some(id) = session::cookie(headers) else {
        return Err(Box::new(Redirect::to("/console/sign-in").into_response()));
    };
    // No such session: it was idle or too old, signed out, or ended with
    // its token (revoked, expired) or to make room for a sign-in.
    let Some(session) = s.console.sessions.get(id, s.service.now().secs(), &snap.console) else {
        return Err(Box::new(Redirect::to("/console/sign-in?ended=session").into_response()));
    };
    // The sign-in token, judged again under the policy in force.
    let grant = match snap.auth.authenticate_fetching(&session.credential, None).await {
        Ok(g) if s.service.manager(&g).is_ok() => g,
        _ => {
            s.console.sessions.end(id);
            return Err(Box::new(Redirect::to("/console/sign-in?ended=token").into_response()));
        }
    };
    Ok(Signed { session, snap, grant })
}

/// A form's fields.
fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A form's fields in order, repeated names kept (checkbox groups).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A request's query parameters.
fn query(uri: &Uri) -> HashMap<String, String> {
    form(uri.query().unwrap_or_default().as_bytes())
}

/// A state-changing request must come from this origin and carry the
/// session's CSRF token.
fn checked(headers: &HeaderMap, signed: &Signed, fields: &HashMap<String, String>) -> Result<(), Refused> {
    let submitted =
        fields.get("csrf").map(String::as_str).or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    // Fail closed: from elsewhere, or without the form's token, nothing is done.
    if !same_origin(headers, signed.snap.console.secure_cookie) || !session::csrf_ok(&signed.session, submitted) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form did not come from this console's own page (its security token was missing or wrong). Reload the page and try again.",
            Some(signed),
        )));
    }
    Ok(())
}

/// A signed-in form post: the caller, the request's headers and the
/// form's fields (`pairs` in order, repeated names kept, for checkbox
/// groups), once its origin and CSRF token are checked.
struct Posted {
    signed: Signed,
    headers: HeaderMap,
    fields: HashMap<String, String>,
    pairs: Vec<(String, String)>,
}

/// Read a signed-in form post the way the JSON API reads a body
/// (`authorized_body`): the session first, so an anonymous client is sent
/// away before its body is read; the body within the API's limit; and the
/// session's token authenticated again once the body is in, under the
/// policy in force then (a token revoked while the body trickled in does
/// nothing).
async fn posted(s: &Console, req: Request) -> Result<Posted, Refused> {
    let headers = req.headers().clone();
    let first = signed_in(s, &headers).await?;
    let body = form_body(req, Some(&first)).await?;
    let signed = signed_in(s, &headers).await?;
    let pairs = form_pairs(&body);
    let fields: HashMap<String, String> = pairs.iter().cloned().collect();
    checked(&headers, &signed, &fields)?;
    Ok(Posted { signed, headers, fields, pairs })
}

/// A form's body, read with the JSON API's own limit ([`MAX_BODY`], 64
/// KiB, with or without `Content-Length`): past it, 413 and nothing done.
async fn form_body(req: Request, signed: Option<&Signed>) -> Result<Bytes, Refused> {
    axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| {
        let message = format!("the body is larger than {MAX_BODY} bytes");
        Box::new(error_page(ApiCode::PayloadTooLarge.status(), "Too large", &message, signed))
    })
}

/// Whether a state-changing request comes from this console's own origin:
/// `https://` the request's `Host` with `console.secure_cookie` (users
/// reach it over HTTPS), else `http://` it. The request's `Origin` decides
/// when it has one (`null` is no origin of ours); without it, its
/// `Referer` must be a URL of this origin. A browser sends at least one of
/// them with every form it posts and every post a page's script makes
/// (the console's `Referrer-Policy: same-origin` keeps the `Referer` on
/// its own requests), so a request with neither did not come from one of
/// its pages: refused, as is a header sent twice or one that is not a URL
/// (fail closed).
fn same_origin(headers: &HeaderMap, secure: bool) -> bool {
    let scheme = if secure { "https" } else { "http" };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let one = |name: header::HeaderName| {
        let mut values = headers.get_all(name).into_iter();
        match (values.next(), values.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.to_str().ok()),
            (Some(_), Some(_)) => Some(None),
        }
    };
    let of_this_origin = |url: &str, whole: bool| {
        let Ok(uri) = url.parse::<Uri>() else { return false };
        // An origin is scheme://host[:port] and nothing else; a referer
        // may go on with a path and query.
        let exact = !whole || url.len() == scheme.len() + 3 + uri.authority().map_or(0, |a| a.as_str().len());
        exact
            && uri.scheme_str() == Some(scheme)
            && uri.authority().is_some_and(|a| a.as_str().eq_ignore_ascii_case(host))
    };
    match (one(header::ORIGIN), one(header::REFERER)) {
        (Some(origin), _) => origin.is_some_and(|o| of_this_origin(o, true)),
        (None, Some(referer)) => referer.is_some_and(|r| of_this_origin(r, false)),
        (None, None) => false,
    }
}

/// The client a request comes from, as failed sign-ins are counted: the
/// connection's address or — when that is one of `trusted_proxies` — the
/// nearest address in `X-Forwarded-For` that is not (a proxy in front of
/// the console would otherwise make all its users one client), stopping
/// at a hop that is not an address; an IPv6 client is its prefix
/// (`rate_limits.client_ipv6_prefix`).
fn client(snap: &Snapshot, req: &Request) -> IpAddr {
    // No connection address (a router driven without sockets): every such
    // request is one client.
    let peer = req
        .extensions()
        .get::<ConnectInfo<IpAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.to_canonical());
    let mut client = peer;
    if snap.is_trusted(peer) {
        let hops: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !snap.is_trusted(client) {
                break;
            }
        }
    }
    snap.limits.client(client)
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

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
}

async fn sign_in_page(State(s): State<Console>, uri: Uri) -> Response {
    let q = query(&uri);
    let notice = match q.get("ended").map(String::as_str) {
        Some("session") => Some("Your session ended. Sign in again.".to_string()),
        Some("token") => Some("Your session ended: the token it was opened with is no longer valid.".to_string()),
        Some("out") => Some("Signed out.".to_string()),
        _ => None,
    };
    sign_in_form(StatusCode::OK, notice, s.snapshot().console.secure_cookie)
}

/// The sign-in form with a fresh form token, also set as a cookie the
/// form must match (there is no session yet to hold it).
fn sign_in_form(status: StatusCode, notice: Option<String>, secure: bool) -> Response {
    let Ok(token) = session::random_token() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut resp = page(status, &SignInPage { who: None, csrf: Some(token.clone()), notice });
    if let Ok(cookie) = HeaderValue::from_str(&session::sign_in_cookie(&token, secure)) {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    resp
}

/// Sign in: a client past its failed sign-ins is answered 429 first,
/// before its body is read or its token looked at; then the form's origin
/// and token, then the token itself. A refusal after the token was looked
/// at counts as a failure of the client; a sign-in does not.
async fn sign_in(State(s): State<Console>, req: Request) -> Response {
    let snap = s.snapshot();
    let console = &snap.console;
    let client = client(&snap, &req);
    let refused = |status: StatusCode, why: &str| {
        sign_in_form(status, Some(format!("Not signed in: {why}.")), console.secure_cookie)
    };
    let audit = |result: &'static str, by: Option<&Grant>| {
        s.runtime.shared().action(crate::audit::ActionEvent {
            action: crate::audit::Action::ConsoleSignIn,
            kind: None,
            result,
            by: by.map(|g| g.token_id.to_string()),
            by_subject: by.map(|g| g.subject.to_string()),
            target: None,
            config_hash: None,
        });
    };
    // Fail closed: a client that failed too often waits, whatever it sends.
    if let Err(wait) = s.console.failures.admits(client, s.service.now().secs(), &console.failed_sign_ins) {
        audit(crate::reason::Reason::RateLimited.code(), None);
        let secs = wait.as_secs();
        let mut resp = refused(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many failed sign-ins from your address; try again in {secs} seconds"),
        );
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    let headers = req.headers().clone();
    let body = match form_body(req, None).await {
        Ok(b) => b,
        Err(too_large) => return *too_large,
    };
    let fields = form(&body);
    // Fail closed: a form from elsewhere, or without its page's token, is
    // refused before the token is looked at (and is no failed guess).
    if !same_origin(&headers, console.secure_cookie)
        || !session::sign_in_token_ok(&headers, fields.get("csrf").map(String::as_str))
    {
        return refused(StatusCode::FORBIDDEN, "the form did not come from this console's own page; try again");
    }
    let failed = |status: StatusCode, why: &str, result: &'static str, by: Option<&Grant>| {
        s.console.failures.failed(client, s.service.now().secs(), &console.failed_sign_ins);
        audit(result, by);
        refused(status, why)
    };
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return failed(StatusCode::UNAUTHORIZED, "that is not a token", "invalid_token", None);
    };
    let mut credential = HeaderMap::new();
    credential.insert(header::AUTHORIZATION, value);
    let grant = match snap.auth.authenticate_fetching(&credential, None).await {
        Ok(g) => g,
        Err(reason) => {
            let why = format!("the token was refused ({})", reason.code());
            return failed(StatusCode::UNAUTHORIZED, &why, reason.code(), None);
        }
    };
    if let Err(e) = s.service.manager(&grant) {
        let why = "the console needs an administrator or master token";
        return failed(StatusCode::FORBIDDEN, why, e.code(), Some(&grant));
    }
    let (id, _) = match s.console.sessions.open(credential, &grant, s.service.now().secs(), console) {
        Ok(opened) => opened,
        Err(e) => return refused(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    audit("ok", Some(&grant));
    let mut resp = Redirect::to("/console/tokens").into_response();
    for cookie in
        [session::set_cookie(&id, console.secure_cookie), session::clear_sign_in_cookie(console.secure_cookie)]
    {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn sign_out(State(s): State<Console>, req: Request) -> Response {
    let Posted { signed, headers, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    if let Some(id) = session::cookie(&headers) {
        s.console.sessions.end(id);
    }
    let mut resp = Redirect::to("/console/sign-in?ended=out").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie(signed.snap.console.secure_cookie)) {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    resp
}

/// A token as the list shows it.
struct TokenRow {
    id: String,
    name: Option<String>,
    kind: &'static str,
    role: &'static str,
    master: bool,
    application: String,
    created_by: String,
    expires: String,
    state: &'static str,
}

fn when(t: Option<crate::time::UnixTime>) -> String {
    match t {
        None => "never".into(),
        Some(t) => t.timestamp().strftime("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn row(shown: &Shown) -> TokenRow {
    let t = &shown.record;
    TokenRow {
        id: t.id.clone(),
        name: t.name.clone(),
        kind: crate::store::kind_str(t.kind),
        role: crate::store::role_str(t.role),
        master: t.master,
        application: t.application.clone().unwrap_or_else(|| "—".into()),
        created_by: t.created_by.clone().unwrap_or_else(|| "—".into()),
        expires: when(t.expires_at),
        state: shown.state.as_str(),
    }
}

/// The list's filters, as the form shows them.
#[derive(Default)]
struct ListFilter {
    name: String,
    application: String,
    kind: String,
    form: String,
    state: String,
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
struct TokensPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    filter: ListFilter,
    kinds: [(&'static str, &'static str); 3],
    forms: [(&'static str, &'static str); 3],
    states: [(&'static str, &'static str); 4],
    rows: Vec<TokenRow>,
    first: usize,
    last: usize,
    more: bool,
    prev: Option<String>,
    next: Option<String>,
}

/// Every token the caller may see that matches `filter` (at most [`SCAN`]),
/// with its effective state.
async fn scan(s: &Console, signed: &Signed, filter: TokenFilter) -> Result<(Vec<Shown>, bool), ServiceError> {
    let mut tokens = s.service.list(&signed.grant, &TokenFilter { limit: SCAN + 1, offset: 0, ..filter }).await?;
    let cut = tokens.len() > SCAN as usize;
    tokens.truncate(SCAN as usize);
    Ok((tokens, cut))
}

async fn tokens(State(s): State<Console>, uri: Uri, headers: HeaderMap) -> Response {
    let q = query(&uri);
    let signed = match signed_in(&s, &headers).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return *to_sign_in,
    };
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let kind = match get("kind").as_deref() {
        Some("access") => Some(crate::token::TokenKind::Access),
        Some("narrowed") => Some(crate::token::TokenKind::Narrowed),
        _ => None,
    };
    let wanted_state = get("state").filter(|s| ["live", "expired", "revoked"].contains(&s.as_str()));
    let wanted_form = get("form").filter(|f| f == "jwt" || f == "reference");
    let filter = TokenFilter { name: get("name"), application: get("application"), kind, ..TokenFilter::default() };
    let (all, cut) = match scan(&s, &signed, filter).await {
        Ok(found) => found,
        Err(e) => return service_error(e, &signed),
    };
    let mut rows: Vec<TokenRow> = all
        .iter()
        .filter(|t| wanted_form.as_deref().is_none_or(|f| t.record.form.as_str() == f))
        .map(row)
        .filter(|r| wanted_state.as_deref().is_none_or(|w| r.state == w))
        .collect();
    // Newest first, as an operator scans them.
    rows.reverse();
    let page_no = q.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(0);
    let total = rows.len();
    let start = (page_no * PAGE).min(total);
    let end = (start + PAGE).min(total);
    let rows: Vec<TokenRow> = rows.into_iter().skip(start).take(PAGE).collect();
    let link = |p: usize| {
        let mut link_query = form_urlencoded::Serializer::new(String::new());
        for k in ["name", "application", "kind", "form", "state"] {
            if let Some(v) = get(k) {
                link_query.append_pair(k, &v);
            }
        }
        link_query.append_pair("page", &p.to_string());
        format!("/console/tokens?{}", link_query.finish())
    };
    let filter_shown = ListFilter {
        name: get("name").unwrap_or_default(),
        application: get("application").unwrap_or_default(),
        kind: get("kind").filter(|k| k == "access" || k == "narrowed").unwrap_or_default(),
        form: wanted_form.unwrap_or_default(),
        state: wanted_state.unwrap_or_default(),
    };
    page(
        StatusCode::OK,
        &TokensPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: cut
                .then(|| format!("Showing the first {SCAN} tokens that match; narrow the filters to see others.")),
            filter: filter_shown,
            kinds: [("", "any"), ("access", "access"), ("narrowed", "narrowed")],
            forms: [("", "any"), ("jwt", "JWT"), ("reference", "reference")],
            states: [("", "any"), ("live", "live"), ("expired", "expired"), ("revoked", "revoked")],
            rows,
            first: if total == 0 { 0 } else { start + 1 },
            last: end,
            more: end < total,
            prev: (page_no > 0).then(|| link(page_no - 1)),
            next: (end < total).then(|| link(page_no + 1)),
        },
    )
}

/// A token's details as the page shows them.
struct TokenDetail {
    id: String,
    title: String,
    name: String,
    description: String,
    kind: &'static str,
    form: &'static str,
    role: &'static str,
    master: bool,
    application: String,
    subject: String,
    created: String,
    created_by: String,
    expires: String,
    state: &'static str,
    /// The ancestor whose revocation revokes it.
    revoked_by: Option<String>,
    live: bool,
}

struct RuleRow {
    id: String,
    application: String,
    service: String,
    methods: String,
    roles: String,
    resources: String,
}

struct Child {
    id: String,
    label: String,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "console/token.html")]
struct TokenPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    t: TokenDetail,
    rules: Vec<RuleRow>,
    tenants: Vec<(usize, crate::policy::tenant::TenantPermission)>,
    ancestors: Vec<String>,
    children: Vec<Child>,
}

fn rule_rows(grants: &str) -> (Vec<RuleRow>, Vec<crate::policy::tenant::TenantPermission>) {
    let (rules, tenants) = crate::token::claims::decode_grants(grants).unwrap_or_default();
    let rows = rules
        .into_iter()
        .map(|r| RuleRow {
            methods: r
                .method_groups
                .iter()
                .map(|g| {
                    let methods: Vec<String> = g
                        .methods
                        .iter()
                        .map(|m| match &m.scopes {
                            Some(scopes) => format!("{} [{}]", m.method, scopes.join(", ")),
                            None => m.method.clone(),
                        })
                        .collect();
                    format!("{}: {}", g.group, methods.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; "),
            roles: r.roles.join(", "),
            resources: r.resources.join(", "),
            id: r.id,
            application: r.application,
            service: r.service,
        })
        .collect();
    (rows, tenants)
}

/// The tokens whose lineage holds `id` (narrowed from it, or minted under
/// it by a non-master), nearest first.
fn descendants<'a>(all: &'a [Shown], id: &str) -> Vec<&'a Shown> {
    let mut found: Vec<&Shown> = all.iter().filter(|t| t.record.lineage.iter().any(|a| a == id)).collect();
    found.sort_by_key(|t| t.record.lineage.len());
    found
}

/// The signed-in caller, the token `id` as the service shows it to them,
/// and every token they may see (for its lineage).
async fn with_token(s: &Console, headers: &HeaderMap, id: &str) -> Result<(Signed, Shown, Vec<Shown>), Refused> {
    let signed = signed_in(s, headers).await?;
    let record = match s.service.show(&signed.grant, id).await {
        Ok(r) => r,
        Err(e) => return Err(Box::new(service_error(e, &signed))),
    };
    match scan(s, &signed, TokenFilter::default()).await {
        Ok((all, _)) => Ok((signed, record, all)),
        Err(e) => Err(Box::new(service_error(e, &signed))),
    }
}

async fn token(State(s): State<Console>, Path(id): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let q = query(&uri);
    let (signed, shown, all) = match with_token(&s, &headers, &id).await {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let record = &shown.record;
    let depth = record.lineage.len();
    let children = descendants(&all, &record.id)
        .into_iter()
        .map(|c| Child {
            id: c.record.id.clone(),
            label: format!(
                "{}{}",
                "— ".repeat(c.record.lineage.len().saturating_sub(depth + 1)),
                c.record.name.clone().unwrap_or_else(|| c.record.id.clone())
            ),
            state: c.state.as_str(),
        })
        .collect();
    let (rules, tenants) = rule_rows(&record.grants);
    let st = shown.state.as_str();
    let revoked_by = match &shown.state {
        crate::service::TokenState::Revoked { by, .. } => by.clone(),
        _ => None,
    };
    let detail = TokenDetail {
        title: record.name.clone().unwrap_or_else(|| record.id.clone()),
        id: record.id.clone(),
        name: record.name.clone().unwrap_or_else(|| "—".into()),
        description: if record.description.is_empty() { "—".into() } else { record.description.clone() },
        kind: crate::store::kind_str(record.kind),
        form: record.form.as_str(),
        role: crate::store::role_str(record.role),
        master: record.master,
        application: record.application.clone().unwrap_or_else(|| "—".into()),
        subject: record.subject.clone(),
        created: when(Some(record.created_at)),
        created_by: record.created_by.clone().unwrap_or_else(|| "—".into()),
        expires: when(record.expires_at),
        state: st,
        revoked_by,
        live: shown.state.is_live(),
    };
    page(
        StatusCode::OK,
        &TokenPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: (q.contains_key("revoked") && st == "revoked").then(|| "Revoked.".to_string()),
            t: detail,
            rules,
            tenants: tenants.into_iter().enumerate().map(|(i, t)| (i + 1, t)).collect(),
            ancestors: record.lineage.clone(),
            children,
        },
    )
}

#[derive(Template)]
#[template(path = "console/revoke.html")]
struct RevokePage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    id: String,
    title: String,
    descendants: usize,
}

async fn revoke_page(State(s): State<Console>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let (signed, shown, all) = match with_token(&s, &headers, &id).await {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let record = shown.record;
    let live = descendants(&all, &record.id).into_iter().filter(|t| t.state.is_live()).count();
    page(
        StatusCode::OK,
        &RevokePage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: None,
            title: record.name.clone().unwrap_or_else(|| record.id.clone()),
            id: record.id,
            descendants: live,
        },
    )
}

async fn revoke(State(s): State<Console>, Path(id): Path<String>, req: Request) -> Response {
    let signed = match posted(&s, req).await {
        Ok(p) => p.signed,
        Err(refused) => return *refused,
    };
    match s.service.revoke(&signed.snap.service, &signed.grant, RevokeTarget::Id(id.clone())).await {
        Ok(_) => {
            let path: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            Redirect::to(&format!("/console/tokens/{path}?revoked=1")).into_response()
        }
        Err(e) => service_error(e, &signed),
    }
}

#[derive(Template)]
#[template(path = "console/new_token.html")]
struct NewTokenPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    offer_master: bool,
    apps: Vec<crate::policy::manifest::Application>,
    actions: [&'static str; 6],
    expiries: [(&'static str, &'static str); 5],
    /// What was submitted, when the form comes back refused: it is shown
    /// again as it was filled in.
    asked: Vec<(String, String)>,
}

impl NewTokenPage {
    fn value(&self, name: &str) -> &str {
        self.asked.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    fn has(&self, name: &str, value: &str) -> bool {
        self.asked.iter().any(|(n, v)| n == name && v == value)
    }

    fn expiry_is(&self, value: &str) -> bool {
        match self.value("expiry") {
            "" => value == "24h",
            v => v == value,
        }
    }

    fn app_ticked(&self, i: &usize, kind: &str, value: &str) -> bool {
        self.has(&format!("a{i}.{kind}"), value)
    }

    fn method_ticked(&self, i: &usize, group: &str, method: &str, scope: &str) -> bool {
        if scope.is_empty() {
            self.has(&format!("a{i}.method"), &format!("{group}:{method}"))
        } else {
            self.has(&format!("a{i}.scope"), &format!("{group}:{method}:{scope}"))
        }
    }

    fn resources(&self, i: &usize) -> &str {
        match self.value(&format!("a{i}.resources")) {
            "" => "*:*",
            v => v,
        }
    }

    fn tenant(&self, row: &usize) -> &str {
        self.value(&format!("t{row}.tenant"))
    }

    fn action_ticked(&self, row: &usize, action: &str) -> bool {
        self.has(&format!("t{row}.action"), action)
    }
}

fn new_token_form(signed: &Signed, notice: Option<String>, asked: Vec<(String, String)>) -> NewTokenPage {
    NewTokenPage {
        who: signed.who(),
        csrf: signed.csrf(),
        notice,
        // Only a master may mint a master; the service refuses it anyway.
        offer_master: signed.grant.master,
        apps: signed.snap.service.manifest.applications.clone(),
        actions: crate::policy::tenant::ACTIONS,
        expiries: [
            ("1h", "in 1 hour"),
            ("24h", "in 24 hours"),
            ("720h", "in 30 days"),
            ("custom", "on the date below"),
            ("none", "never (reference tokens only)"),
        ],
        // The form token is the session's; it is rendered on its own.
        asked: asked.into_iter().filter(|(n, _)| n != "csrf").collect(),
    }
}

async fn new_token_page(State(s): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Ok(signed) => page(StatusCode::OK, &new_token_form(&signed, None, Vec::new())),
        Err(to_sign_in) => *to_sign_in,
    }
}

/// The create form as the token service's create request (the JSON API's
/// own shape, so one validation decides both).
fn create_request(fields: &[(String, String)], now: crate::time::UnixTime) -> Result<serde_json::Value, &'static str> {
    use serde_json::{Value, json};
    let one = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    let all = |k: &str| -> Vec<&str> { fields.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect() };
    let mut req = json!({
        "name": one("name").unwrap_or_default(),
        "description": one("description").unwrap_or_default(),
        "role": one("role").unwrap_or("user"),
        "master": one("master") == Some("on"),
        "form": one("form").unwrap_or("jwt"),
    });
    if let Some(app) = one("application") {
        req["application"] = app.into();
    }
    match one("expiry").unwrap_or("24h") {
        "none" => req["lifetime"] = "none".into(),
        "custom" => {
            let date = one("expires_on").ok_or("choose the expiry date")?;
            let day: jiff::civil::Date = date.parse().map_err(|_| "the expiry date is not a date")?;
            let end = day
                .at(23, 59, 59, 0)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map_err(|_| "the expiry date is out of range")?;
            if end.timestamp().as_second() <= now.as_i64() {
                return Err("the expiry date is in the past");
            }
            req["expiresAt"] = end.timestamp().as_second().into();
        }
        preset @ ("1h" | "24h" | "720h") => req["lifetime"] = preset.into(),
        _ => return Err("choose an expiry"),
    }
    // One rule per application with any method ticked.
    let mut rules = Vec::new();
    for i in 0.. {
        let key = |k: &str| format!("a{i}.{k}");
        let Some(application) = one(&key("application")) else { break };
        let methods = all(&key("method"));
        if methods.is_empty() {
            continue;
        }
        let scopes = all(&key("scope"));
        let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
        for gm in methods {
            let Some((group, method)) = gm.split_once(':') else { return Err("a method was not understood") };
            let prefix = format!("{group}:{method}:");
            let picked: Vec<&str> = scopes.iter().filter_map(|sc| sc.strip_prefix(prefix.as_str())).collect();
            let mut m = json!({"method": method});
            if !picked.is_empty() {
                m["scopes"] = picked.into();
            }
            match groups.iter_mut().find(|(g, _)| g == group) {
                Some((_, ms)) => ms.push(m),
                None => groups.push((group.to_string(), vec![m])),
            }
        }
        let resources: Vec<Value> = one(&key("resources"))
            .unwrap_or("*:*")
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| r.split_once(':').map(|(entity, id)| json!({"entity": entity.trim(), "id": id.trim()})))
            .collect::<Option<_>>()
            .ok_or("a resource is not entity:id")?;
        rules.push(json!({
            "application": application,
            "service": one(&key("service")).unwrap_or_default(),
            "methodGroups": groups.into_iter().map(|(group, methods)| json!({"group": group, "methods": methods})).collect::<Vec<_>>(),
            "roles": all(&key("role")),
            "resources": resources,
        }));
    }
    let mut tenants = Vec::new();
    for row in 0..3 {
        if let Some(tenant) = one(&format!("t{row}.tenant")) {
            tenants.push(json!({"tenant": tenant, "allowedActions": all(&format!("t{row}.action"))}));
        }
    }
    if !tenants.is_empty() {
        req["tenantPermissions"] = tenants.into();
    }
    // No rules with tenant permissions: the token grants only those.
    if !rules.is_empty() || req.get("tenantPermissions").is_none() {
        req["accessRules"] = rules.into();
    }
    Ok(req)
}

#[derive(Template)]
#[template(path = "console/created.html")]
struct CreatedPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    id: String,
    name: String,
    secret: String,
}

async fn create(State(s): State<Console>, req: Request) -> Response {
    let Posted { signed, pairs, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let retry = |status: StatusCode, why: String| page(status, &new_token_form(&signed, Some(why), pairs.clone()));
    let request = match create_request(&pairs, s.service.now()) {
        Ok(r) => r,
        Err(why) => return retry(StatusCode::BAD_REQUEST, format!("Not created: {why}.")),
    };
    let input: CreateRequest = match serde_json::from_value(request) {
        Ok(i) => i,
        Err(_) => return retry(StatusCode::BAD_REQUEST, "Not created: the form was not understood.".into()),
    };
    let created = match input.into_new_token(&signed.grant, s.service.now()) {
        Ok(token) => s.service.create(&signed.snap.service, signed.grant.clone(), token).await,
        Err(e) => Err(e),
    };
    match created.map(|m| (m.secret, m.record)) {
        Ok((secret, record)) => page(
            StatusCode::CREATED,
            &CreatedPage {
                who: signed.who(),
                csrf: signed.csrf(),
                notice: None,
                name: record.name.clone().unwrap_or_else(|| record.id.clone()),
                id: record.id,
                secret,
            },
        ),
        Err(e) => retry(status_of(&e), format!("Not created: {} ({}).", e.message(), e.code())),
    }
}

#[derive(Template)]
#[template(path = "console/registration.html")]
struct RegistrationPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/registration_created.html")]
struct RegistrationCreatedPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    id: String,
    secret: String,
    expires: String,
}

async fn registration_page(State(s): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Ok(signed) => page(StatusCode::OK, &RegistrationPage { who: signed.who(), csrf: signed.csrf(), notice: None }),
        Err(to_sign_in) => *to_sign_in,
    }
}

async fn registration(State(s): State<Console>, req: Request) -> Response {
    let Posted { signed, fields, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let retry = |status: StatusCode, why: String| {
        page(status, &RegistrationPage { who: signed.who(), csrf: signed.csrf(), notice: Some(why) })
    };
    let get = |k: &str| fields.get(k).map(|v| v.trim()).unwrap_or_default();
    let mut request = serde_json::json!({"name": get("name"), "role": get("role"), "ttl": get("ttl")});
    if !get("lifetime").is_empty() {
        request["lifetime"] = get("lifetime").into();
    }
    let Ok(input) = serde_json::from_value::<CreateRegistration>(request) else {
        return retry(StatusCode::BAD_REQUEST, "Not created: the form was not understood.".into());
    };
    let created = match input.into_new_registration() {
        Ok(r) => s.service.create_registration(&signed.snap.service, signed.grant.clone(), r).await,
        Err(e) => Err(e),
    };
    match created.map(|m| (m.secret, m.record)) {
        Ok((secret, record)) => page(
            StatusCode::CREATED,
            &RegistrationCreatedPage {
                who: signed.who(),
                csrf: signed.csrf(),
                notice: None,
                id: record.id,
                secret,
                expires: when(Some(record.expires_at)),
            },
        ),
        Err(e) => retry(status_of(&e), format!("Not created: {} ({}).", e.message(), e.code())),
    }
}

/// A route as the manifest page shows it.
struct RouteRow {
    template: String,
    application: String,
    service: String,
    needs: String,
}

#[derive(Template)]
#[template(path = "console/manifest.html")]
struct ManifestPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    hash: String,
    apps: Vec<crate::policy::manifest::Application>,
    routes: Vec<RouteRow>,
}

async fn manifest(State(s): State<Console>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&s, &headers).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return *to_sign_in,
    };
    let routes = signed
        .snap
        .routes
        .iter()
        .map(|r| RouteRow {
            template: r.template.to_string(),
            application: r.application.to_string(),
            service: r.service.to_string(),
            needs: match &r.access {
                crate::policy::manifest::RouteAccess::Public => "public: no token".into(),
                crate::policy::manifest::RouteAccess::Protected { group, method, scopes, roles, resource, tenant } => {
                    let mut needs = format!("{group} / {method}");
                    if !roles.is_empty() {
                        needs.push_str(&format!("; a role of {}", roles.join(", ")));
                    }
                    if !scopes.is_empty() {
                        needs.push_str(&format!("; scopes {}", scopes.join(", ")));
                    }
                    if let Some(res) = resource {
                        needs.push_str(&format!("; the {} in the path", res.entity));
                    }
                    if tenant.is_some() {
                        needs.push_str("; or a tenant permission");
                    }
                    needs
                }
            },
        })
        .collect();
    page(
        StatusCode::OK,
        &ManifestPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: None,
            hash: signed.snap.hash.clone(),
            apps: signed.snap.service.manifest.applications.clone(),
            routes,
        },
    )
}

#[derive(Template)]
#[template(path = "console/status.html")]
struct StatusPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    hash: String,
    applications: usize,
    routes: usize,
    mode: &'static str,
    signing: String,
    revocations: String,
    references: usize,
    store: String,
    keys: Vec<(String, String, String, String)>,
    key_sources: String,
    sessions_open: usize,
    sessions_max: usize,
    sessions_per_token: usize,
    throttled: usize,
}

async fn status(State(s): State<Console>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&s, &headers).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return *to_sign_in,
    };
    let snap = &signed.snap;
    let shared = s.runtime.shared();
    let ring = snap.auth.keys();
    let set = ring.current();
    let keys = set
        .keys
        .iter()
        .map(|k| {
            let issuer = set.issuers.get(k.issuer);
            (
                issuer.map(|i| i.name.clone()).unwrap_or_default(),
                issuer.map(|i| i.issuer.clone()).unwrap_or_default(),
                k.kid.clone().unwrap_or_else(|| "(none)".into()),
                format!("{:?}", k.algorithm),
            )
        })
        .collect();
    let key_sources = match (ring.is_remote(), ring.degraded()) {
        (false, _) => "configured files".to_string(),
        (true, false) => "configured files and JWKS URLs, fetched".to_string(),
        (true, true) => {
            "configured files and JWKS URLs; a fetch is failing (the last good keys are in use)".to_string()
        }
    };
    let revocations = match shared.revocations.last_confirmed_secs() {
        None => format!("{} revoked ids (from this gateway's store)", shared.revocations.len()),
        Some(_) => format!(
            "{} revoked ids, followed from an issuer's feed; confirmed {} s ago",
            shared.revocations.len(),
            shared.revocations.staleness().as_secs()
        ),
    };
    let store = match s.service.list(&signed.grant, &TokenFilter { limit: 1, ..TokenFilter::default() }).await {
        Ok(_) => "reachable".to_string(),
        Err(e) => format!("failing ({})", e.code()),
    };
    page(
        StatusCode::OK,
        &StatusPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: None,
            hash: snap.hash.clone(),
            applications: snap.service.manifest.applications.len(),
            routes: snap.routes.len(),
            mode: if snap.mode == crate::policy::Mode::Shadow {
                "shadow (authorization denials forwarded and recorded)"
            } else {
                "enforce"
            },
            signing: snap
                .service
                .signing
                .as_ref()
                .and_then(|sg| sg.keys.get(sg.active).map(|k| format!("{} with key {}", sg.issuer, k.kid)))
                .unwrap_or_else(|| "nothing (no signing key)".into()),
            revocations,
            references: shared.references.len(),
            store,
            keys,
            key_sources,
            sessions_open: s.console.sessions.open_count(s.service.now().secs(), &snap.console),
            sessions_max: snap.console.max_sessions,
            sessions_per_token: snap.console.max_sessions_per_token,
            throttled: s.console.failures.waiting(s.service.now().secs(), &snap.console.failed_sign_ins),
        },
    )
}

/// One line of a narrowing preview: a route, a concrete request to it, and
/// what the child would get.
struct PreviewRow {
    route: String,
    method: String,
    path: String,
    status: u16,
    verdict: String,
}

#[derive(Template)]
#[template(path = "console/narrow.html")]
struct NarrowPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    id: String,
    title: String,
    apps: Vec<(usize, String, bool)>,
    roles: Vec<(usize, String, bool)>,
    resources: String,
    validity: String,
    preview: Vec<PreviewRow>,
}

/// What the narrow form asked for.
#[derive(Default)]
struct NarrowForm {
    applications: Vec<String>,
    roles: Vec<String>,
    resources: String,
    validity: String,
}

/// The parent the page shows: one the signed-in token may see (the
/// service's rule), and live. Its rules offer the form's choices and the
/// preview; whether the narrowing may be done is the service's to decide
/// again when it is posted, exactly as for `POST /v1/tokens/{id}/narrow`.
async fn narrowable(s: &Console, signed: Signed, id: &str) -> Result<(Signed, TokenRecord, Arc<Grant>), Refused> {
    let shown = match s.service.show(&signed.grant, id).await {
        Ok(r) => r,
        Err(e) => return Err(Box::new(service_error(e, &signed))),
    };
    let refuse =
        |why: &str| Err(Box::new(error_page(StatusCode::FORBIDDEN, "Cannot narrow this token", why, Some(&signed))));
    if !shown.state.is_live() {
        return refuse("It is revoked (itself or an ancestor) or expired.");
    }
    let issuer = signed.snap.service.signing.as_ref().map(|sg| sg.issuer.clone()).unwrap_or_default();
    let Some(parent) = crate::store::mirror::grant_of(&shown.record, &issuer) else {
        return refuse("Its access rules could not be read.");
    };
    Ok((signed, shown.record, Arc::new(parent)))
}

fn parent_choices(parent: &Grant) -> (Vec<String>, Vec<String>) {
    let mut apps: Vec<String> = Vec::new();
    let mut roles: Vec<String> = Vec::new();
    for r in parent.rules.iter() {
        let wire = crate::token::WireRule::from_rule(r);
        if !apps.contains(&wire.application) {
            apps.push(wire.application);
        }
        for role in wire.roles {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    (apps, roles)
}

fn narrow_page_of(
    signed: &Signed,
    record: &TokenRecord,
    parent: &Grant,
    asked: &NarrowForm,
    notice: Option<String>,
    preview: Vec<PreviewRow>,
) -> NarrowPage {
    let (apps, roles) = parent_choices(parent);
    let first = asked.applications.is_empty() && asked.roles.is_empty();
    NarrowPage {
        who: signed.who(),
        csrf: signed.csrf(),
        notice,
        id: record.id.clone(),
        title: record.name.clone().unwrap_or_else(|| record.id.clone()),
        apps: ticks(apps, &asked.applications, first),
        roles: ticks(roles, &asked.roles, first),
        resources: asked.resources.clone(),
        validity: asked.validity.clone(),
        preview,
    }
}

/// Checkbox rows `(index, value, ticked)`: all ticked on a fresh form,
/// else what was asked.
fn ticks(values: Vec<String>, asked: &[String], fresh: bool) -> Vec<(usize, String, bool)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let on = fresh || asked.contains(&v);
            (i, v, on)
        })
        .collect()
}

async fn narrow_page(State(s): State<Console>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&s, &headers).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return *to_sign_in,
    };
    match narrowable(&s, signed, &id).await {
        Ok((signed, record, parent)) => {
            page(StatusCode::OK, &narrow_page_of(&signed, &record, &parent, &NarrowForm::default(), None, Vec::new()))
        }
        Err(refused) => *refused,
    }
}

/// The simplified narrowing the form asks for, within `parent`'s choices
/// (all ticked: no restriction on that dimension).
fn simplified(asked: &NarrowForm, parent: &Grant) -> Result<crate::policy::narrow::Simplified, &'static str> {
    let (apps, roles) = parent_choices(parent);
    if asked.applications.is_empty() {
        return Err("tick at least one application");
    }
    let resources = if asked.resources.trim().is_empty() {
        None
    } else {
        Some(
            asked
                .resources
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| r.split_once(':').map(|(e, i)| (e.trim().to_string(), i.trim().to_string())))
                .collect::<Option<Vec<_>>>()
                .ok_or("a resource is not entity:id")?,
        )
    };
    Ok(crate::policy::narrow::Simplified {
        applications: (asked.applications.len() < apps.len()).then(|| asked.applications.clone()),
        roles: (asked.roles.len() < roles.len() || asked.roles.is_empty()).then(|| asked.roles.clone()),
        resources,
    })
}

/// What a child with `rules` may call: each protected route, tried with
/// each resource id the narrowing names and with one it does not.
fn preview(snap: &Snapshot, rules: &[crate::policy::AccessRule], asked: &[(String, String)]) -> Vec<PreviewRow> {
    const OTHER: &str = "not-one-of-them";
    let mut rows = Vec::new();
    for route in &snap.routes {
        let crate::policy::manifest::RouteAccess::Protected { resource, .. } = &route.access else { continue };
        let mut probes: Vec<Option<&str>> = match resource {
            Some(spec) => asked
                .iter()
                .filter(|(e, _)| *e == *spec.entity || e == "*")
                .map(|(_, id)| Some(id.as_str()))
                .filter(|id| *id != Some("*"))
                .collect(),
            None => vec![None],
        };
        if resource.is_some() {
            probes.push(Some(OTHER));
        }
        for probe in probes {
            let Some(facts) = route.facts(probe, None) else { continue };
            let decision = crate::policy::evaluate(rules, &[], &facts);
            let allowed = matches!(decision, crate::policy::Decision::Allow(_));
            let mut path = String::new();
            for (i, segment) in route.path.split('/').enumerate() {
                if i > 0 {
                    path.push('/');
                }
                match (segment.strip_prefix('{').and_then(|p| p.strip_suffix('}')), resource) {
                    (Some(param), Some(spec)) if param == &*spec.param => path.push_str(probe.unwrap_or("x")),
                    (Some(_), _) => path.push('x'),
                    (None, _) => path.push_str(segment),
                }
            }
            let on = match (resource, probe) {
                (Some(spec), Some(OTHER)) => format!(" for any other {}", spec.entity),
                (Some(spec), Some(id)) => format!(" for {} {id}", spec.entity),
                _ => String::new(),
            };
            rows.push(PreviewRow {
                route: route.template.to_string(),
                method: route.method.to_string(),
                path,
                status: if allowed { 200 } else { 403 },
                verdict: if allowed { format!("allowed{on}") } else { format!("denied{on}") },
            });
        }
    }
    rows
}

#[derive(Template)]
#[template(path = "console/created.html")]
struct NarrowedPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    id: String,
    name: String,
    secret: String,
}

async fn narrow(State(s): State<Console>, Path(id): Path<String>, req: Request) -> Response {
    let Posted { signed, fields, pairs, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let (signed, record, parent) = match narrowable(&s, signed, &id).await {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let all = |k: &str| -> Vec<String> { pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect() };
    let asked = NarrowForm {
        applications: all("application"),
        roles: all("role"),
        resources: fields.get("resources").cloned().unwrap_or_default(),
        validity: fields.get("validity").map(|v| v.trim().to_string()).unwrap_or_default(),
    };
    let retry = |status: StatusCode, why: String| {
        page(status, &narrow_page_of(&signed, &record, &parent, &asked, Some(why), Vec::new()))
    };
    let wanted = match simplified(&asked, &parent) {
        Ok(w) => w,
        Err(why) => return retry(StatusCode::BAD_REQUEST, format!("Not narrowed: {why}.")),
    };
    let validity = match asked.validity.as_str() {
        "" => None,
        v => match v.parse::<f64>() {
            Ok(h) if h > 0.0 => Some(h),
            _ => {
                return retry(
                    StatusCode::BAD_REQUEST,
                    "Not narrowed: the validity is not a positive number of hours.".into(),
                );
            }
        },
    };
    if fields.get("action").map(String::as_str) == Some("preview") {
        // The child's rules as the service would compute them, minted nowhere.
        return match crate::policy::narrow::narrow_simplified(&parent.rules, &wanted, &signed.snap.service.manifest) {
            Ok(rules) => {
                let rows = preview(&signed.snap, &rules, wanted.resources.as_deref().unwrap_or_default());
                page(StatusCode::OK, &narrow_page_of(&signed, &record, &parent, &asked, None, rows))
            }
            Err(e) => retry(StatusCode::BAD_REQUEST, format!("Not narrowed: {e}.")),
        };
    }
    // The API's own call (`POST /v1/tokens/{id}/narrow`): the service
    // decides whether the signed-in token may narrow this one.
    let request = crate::service::NarrowRequest {
        token: Some(record.id.clone()),
        narrowing: crate::service::Narrowing::Simplified(wanted),
        tenants: None,
        validity_hours: validity,
    };
    match s.service.narrow(&signed.snap.service, signed.grant.clone(), request).await {
        Ok(crate::service::MintedToken { secret, record: child }) => page(
            StatusCode::CREATED,
            &NarrowedPage {
                who: signed.who(),
                csrf: signed.csrf(),
                notice: None,
                name: child
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("a child of {}", record.name.as_deref().unwrap_or(&record.id))),
                id: child.id,
                secret,
            },
        ),
        Err(e) => retry(status_of(&e), format!("Not narrowed: {} ({}).", e.message(), e.code())),
    }
}

#[derive(Template)]
#[template(path = "console/explain.html")]
struct ExplainPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    method: String,
    path: String,
    answer: Option<crate::explain::Explanation>,
}

async fn explain_page(State(s): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Ok(signed) => page(
            StatusCode::OK,
            &ExplainPage {
                who: signed.who(),
                csrf: signed.csrf(),
                notice: None,
                method: "GET".into(),
                path: "/".into(),
                answer: None,
            },
        ),
        Err(to_sign_in) => *to_sign_in,
    }
}

async fn explain(State(s): State<Console>, req: Request) -> Response {
    let Posted { signed, fields, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let get = |k: &str| fields.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let method = if get("method").is_empty() { "GET".to_string() } else { get("method").to_ascii_uppercase() };
    let question = crate::explain::Question {
        method: method.clone(),
        path: get("path"),
        token: Some(get("token")).filter(|t| !t.is_empty()),
        headers: Vec::new(),
    };
    let answer = crate::explain::explain(&signed.snap, &question, s.runtime.shared().clock.now());
    page(
        StatusCode::OK,
        &ExplainPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: None,
            method,
            // Shown back with its query credentials redacted.
            path: answer.target.clone(),
            answer: Some(answer),
        },
    )
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
