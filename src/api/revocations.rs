//! `/v1/revocations`: revoking another issuer's token by jti (POST, admin),
//! and the revocation feed enforce-only gateways follow (GET, feed-reader
//! token; the format is `revocation::feed`).

use std::convert::Infallible;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, parse};
use super::{ApiState, ok_json};
use crate::respond::ErrorBody;
use crate::revocation::feed::{self, FeedLine};
use crate::service::RevokeTarget;
use crate::service::input::{TimeInput, time_field};

/// A token from another issuer, to revoke.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RevokeJti {
    /// The token's `jti` (what `whoami` shows as its id).
    jti: String,
    /// The `iss` of a configured issuer.
    issuer: String,
    /// The token's `exp` (Unix seconds or RFC 3339): the revocation is held
    /// until then. Absent: held for good.
    #[serde(default)]
    expires_at: Option<TimeInput>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Revoked<'a> {
    jti: &'a str,
    issuer: &'a str,
    #[schema(value_type = Option<u64>)]
    expires_at: Option<crate::time::UnixTime>,
    /// `false` when it was revoked already.
    newly_revoked: bool,
}

/// Revoke a token by `jti`, whoever issued it: a configured external
/// issuer's token (which has no record here) or one of this gateway's. In
/// force on every replica and every gateway following the revocation feed,
/// with everything narrowed from it.
#[utoipa::path(post, path = "/v1/revocations", tag = "tokens", request_body = RevokeJti,
    security(("bearer" = []), ("auth-token" = [])),
    responses(
        (status = 201, description = "Revoked", body = Revoked),
        (status = 200, description = "It was revoked already", body = Revoked),
        (status = 400, description = "Malformed input, or an issuer that is not configured (bad_request)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Not an admin, or a master token and the caller is not a master (admin_required, master_required)", body = ErrorBody),
        (status = 503, description = "The store is unavailable (store_unavailable)", body = ErrorBody),
    ))]
pub(crate) async fn revoke_jti(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let (snap, caller, body) = s.authorized_body(req).await?;
    s.service.manager(&caller)?;
    let input: RevokeJti = parse(&body)?;
    if input.jti.is_empty() || input.jti.len() > crate::token::MAX_JTI {
        return Err(ApiError::bad("jti", "1 to 256 bytes"));
    }
    let expires_at = time_field(&input.expires_at, "expiresAt")?;
    let target = RevokeTarget::Jti { jti: input.jti.clone(), issuer: input.issuer.clone(), expires_at };
    let done = s.service.revoke(&snap.service, &caller, target).await?;
    let status = if done.newly { StatusCode::CREATED } else { StatusCode::OK };
    Ok(ok_json(status, &Revoked { jti: &done.id, issuer: &input.issuer, expires_at, newly_revoked: done.newly }))
}

/// Who may read the feed: a feed-reader token (its SHA-256 configured in
/// `revocation.feed_readers_sha256`), or an admin or master token.
async fn feed_reader(
    s: &ApiState,
    headers: &axum::http::HeaderMap,
    query: Option<&str>,
    certificate: Option<[u8; 32]>,
) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let snap = s.snapshot();
    if let Some(token) = presented {
        let digest = crate::store::hash_secret(token.trim());
        // Compared in constant time, like every secret.
        if snap.feed_readers.iter().any(|h| aws_lc_rs::constant_time::verify_slices_are_equal(h, &digest).is_ok()) {
            return Ok(());
        }
    }
    let grant =
        snap.auth.authenticate_fetching(headers, query, certificate.as_ref()).await.map_err(ApiError::credential)?;
    match crate::policy::issuance::authority(&grant) {
        crate::policy::issuance::Authority::None => Err(ApiError::feed_reader_required()),
        _ => Ok(()),
    }
}

/// How often a feed's reader is authorized again.
const REAUTHORIZE: std::time::Duration = std::time::Duration::from_secs(30);

/// The revocation feed: JSON lines — the revoked ids (a snapshot, or what
/// was added since `cursor`), each revocation as it happens, and a
/// heartbeat every 250 ms with the time the set was last confirmed
/// complete. Enforce-only gateways follow it (`revocation.follow`).
#[utoipa::path(get, path = "/v1/revocations", tag = "tokens",
    security(("bearer" = [])),
    params(("cursor" = Option<String>, Query, description = "Resume after this cursor (from an earlier line)")),
    responses(
        (status = 200, description = "A stream of JSON lines: {type: snapshot|delta|heartbeat, cursor, ids?, confirmedAt}", content_type = "application/x-ndjson", body = String),
        (status = 401, description = "No valid token (missing_token, invalid_token, …)", body = ErrorBody),
        (status = 403, description = "Not a feed-reader, admin or master token (feed_reader_required)", body = ErrorBody),
    ))]
pub(crate) async fn feed(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let certificate = super::presented_certificate(req.extensions());
    feed_reader(&s, req.headers(), req.uri().query(), certificate).await?;
    // The reader is asked again every REAUTHORIZE: a reader token revoked
    // or removed by a reload loses the stream.
    let (headers, query) = (req.headers().clone(), req.uri().query().map(str::to_owned));
    let revs = s.snapshot().auth.revocations().clone();
    let instance = s.instance.clone();
    let cursor = req
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned()));
    let clock = s.runtime.shared().clock.clone();
    let now = || crate::time::UnixTime::clamped(clock.now());
    let (_, len) = revs.since(usize::MAX, now());
    let resume = cursor.as_deref().and_then(|c| feed::resume_at(c, &instance, len));
    let (held, pos) = revs.since(resume.unwrap_or(0), now());
    let first = FeedLine::of(resume.is_some(), feed::cursor(&instance, pos), held, revs.confirmed_ms());
    struct Follow {
        revs: std::sync::Arc<crate::store::Revocations>,
        instance: std::sync::Arc<str>,
        pos: usize,
        added: tokio::sync::watch::Receiver<usize>,
        heartbeat: tokio::time::Interval,
        first: Option<FeedLine>,
        stopping: Option<tokio::sync::watch::Receiver<bool>>,
        reauthorize: tokio::time::Interval,
        clock: std::sync::Arc<crate::clock::Clock>,
        api: ApiState,
        headers: axum::http::HeaderMap,
        query: Option<String>,
        certificate: Option<[u8; 32]>,
    }
    let mut heartbeat = tokio::time::interval(feed::HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reauthorize = tokio::time::interval(REAUTHORIZE);
    reauthorize.reset();
    let state = Follow {
        added: revs.subscribe(),
        revs,
        instance,
        pos,
        heartbeat,
        first: Some(first),
        stopping: s.stopping.clone(),
        reauthorize,
        clock,
        api: s.clone(),
        headers,
        query,
        certificate,
    };
    let lines = futures_util::stream::unfold(state, |mut st| async move {
        let mut stopping = st.stopping.clone();
        let stopped = async move {
            match stopping.as_mut() {
                Some(rx) => {
                    let _ = rx.wait_for(|s| *s).await;
                }
                None => std::future::pending().await,
            }
        };
        let line = match st.first.take() {
            Some(first) => {
                st.heartbeat.reset();
                first
            }
            None => tokio::select! {
                biased;
                _ = stopped => return None,
                _ = st.reauthorize.tick() => {
                    feed_reader(&st.api, &st.headers, st.query.as_deref(), st.certificate).await.ok()?;
                    FeedLine::Heartbeat {
                        cursor: feed::cursor(&st.instance, st.pos),
                        confirmed_at: st.revs.confirmed_ms(),
                    }
                }
                changed = st.added.changed() => {
                    changed.ok()?;
                    let (held, pos) = st.revs.since(st.pos, crate::time::UnixTime::clamped(st.clock.now()));
                    st.pos = pos;
                    st.heartbeat.reset();
                    FeedLine::of(true, feed::cursor(&st.instance, pos), held, st.revs.confirmed_ms())
                }
                _ = st.heartbeat.tick() => FeedLine::Heartbeat {
                    cursor: feed::cursor(&st.instance, st.pos),
                    confirmed_at: st.revs.confirmed_ms(),
                },
            },
        };
        Some((Ok::<Bytes, Infallible>(Bytes::from(line.encode())), st))
    });
    let mut resp = Response::new(axum::body::Body::from_stream(lines));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
