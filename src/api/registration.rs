//! Registration tokens: an admin fixes the name, role, rules and lifetime
//! of an access token to come, and hands out a single-use secret with its
//! own short TTL. Redeeming needs no other credential and yields that access
//! token — always a reference token, since its lifetime may be none. The
//! store makes redemption atomic: of any number of concurrent redeems,
//! exactly one succeeds. Registration tokens are listed nowhere.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::tokens::{RequestParts, admin_with_store, ok_json, read_json, store, store_failed};
use super::{ApiState, error_json};
use crate::auth::reference;
use crate::config::parse_duration;
use crate::proxy::respond::ErrorBody;
use crate::store::{RedeemError, RegistrationRecord, TokenForm, TokenRecord};
use crate::token::claims::WireRule;
use crate::token::keys::random_id;
use crate::token::{Role, TokenKind, now_unix};

/// Registration secrets start with this (distinct from access tokens, so
/// one can never be presented as the other).
pub const PREFIX: &str = "ngreg_";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateRegistration {
    /// Name of the access token it yields.
    name: String,
    /// `user`/`User` or `admin`/`Administrator`.
    role: String,
    /// Lifetime of the access token; absent or `none`: never expires.
    #[serde(default)]
    lifetime: Option<String>,
    /// How long the registration token itself may be redeemed.
    ttl: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Redeem {
    token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Issued<'a> {
    token: &'a str,
    id: &'a str,
    name: Option<&'a str>,
    role: &'static str,
    expires_at: Option<i64>,
}

/// A registration token: its secret (shown this once) and until when it
/// may be redeemed.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegistrationCreated<'a> {
    token: &'a str,
    expires_at: i64,
}

/// Mint a single-use registration token (admin caller; administrator
/// tokens need a master caller). It is listed nowhere.
#[utoipa::path(post, path = "/v1/registration-tokens", tag = "registration", request_body = CreateRegistration,
    security(("bearer" = []), ("auth-token" = [])),
    responses(
        (status = 201, description = "The registration token", body = RegistrationCreated),
        (status = 400, description = "Malformed input, named (bad_request)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Not an admin, or an administrator token from a non-master caller", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create(State(s): State<ApiState>, req: Request) -> Response {
    let (caller, store) = match admin_with_store(&s, &RequestParts::of(&req)).await {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let input: CreateRegistration = match read_json(req).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let bad = |m: &str| error_json(StatusCode::BAD_REQUEST, "bad_request", m);
    if input.name.trim().is_empty() || input.name.len() > 200 {
        return bad("name: 1 to 200 characters");
    }
    let role = match input.role.as_str() {
        "user" | "User" => Role::User,
        "admin" | "Administrator" => Role::Admin,
        other => return bad(&format!("role: {other:?} is not User or Administrator")),
    };
    if role == Role::Admin && !caller.master {
        return error_json(
            StatusCode::FORBIDDEN,
            "would_widen",
            "only a master token may hand out administrator tokens",
        );
    }
    let lifetime = match input.lifetime.as_deref() {
        None | Some("none") => None,
        Some(l) => match parse_duration(l) {
            Ok(d) if d.as_secs() > 0 => Some(d.as_secs() as i64),
            _ => return bad(&format!("lifetime: {l:?} is not a duration like 2h45m30s")),
        },
    };
    let ttl = match parse_duration(&input.ttl) {
        Ok(d) if d.as_secs() > 0 => d.as_secs() as i64,
        _ => return bad(&format!("ttl: {:?} is not a duration like 2h45m30s", input.ttl)),
    };
    if store.token_by_name(&input.name).await.ok().flatten().is_some() {
        return error_json(StatusCode::CONFLICT, "conflict", "a token with this name already exists");
    }
    let (Ok(id), Some(secret)) = (random_id(16), reference::new_secret()) else {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, "internal", "no randomness available");
    };
    let secret = format!("{PREFIX}{}", &secret[reference::PREFIX.len()..]);
    let now = now_unix() as i64;
    // The yielded token gets the creator's rules and tenant permissions:
    // nobody hands out more.
    let rules: Vec<WireRule> = caller.rules.iter().map(WireRule::from_rule).collect();
    let record = RegistrationRecord {
        id: id.clone(),
        secret_hash: reference::hash(&secret).to_vec(),
        name: input.name.clone(),
        role,
        grants: crate::token::claims::encode_grants(&rules, &caller.tenants),
        lifetime_secs: lifetime,
        expires_at: now + ttl,
        created_by: Some(caller.token_id.to_string()),
        created_at: now,
        used_at: None,
        redeemed_token: None,
        lineage: vec![],
        expires_cap: None,
        revoked_at: None,
    };
    if let Err(e) = store.insert_registration(&record).await {
        return store_failed(e);
    }
    tracing::info!(registration.id = %id, created_by = %caller.token_id, "created a registration token");
    ok_json(StatusCode::CREATED, &RegistrationCreated { token: &secret, expires_at: now + ttl })
}

/// Exchange a registration token for the access token it fixes. Needs no
/// other credential; of any number of concurrent redeems exactly one
/// succeeds.
#[utoipa::path(post, path = "/v1/registration-tokens/redeem", tag = "registration", request_body = Redeem,
    responses(
        (status = 201, description = "The access token (a reference token)", body = Issued),
        (status = 400, description = "Not a registration token (bad_request)", body = ErrorBody),
        (status = 404, description = "Unknown registration token (not_found)", body = ErrorBody),
        (status = 409, description = "Already redeemed (already_redeemed)", body = ErrorBody),
        (status = 410, description = "Its TTL has passed (expired)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn redeem(State(s): State<ApiState>, req: Request) -> Response {
    let store = match store(&s) {
        Ok(st) => st.clone(),
        Err(r) => return r,
    };
    let input: Redeem = match read_json(req).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    if !input.token.starts_with(PREFIX) {
        return error_json(StatusCode::BAD_REQUEST, "bad_request", "not a registration token");
    }
    let (Ok(id), Some(secret)) = (random_id(16), reference::new_secret()) else {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, "internal", "no randomness available");
    };
    let hash = reference::hash(&secret);
    let now = now_unix() as i64;
    let token_id = id.clone();
    let redeemed = store
        .redeem(&reference::hash(&input.token), now, move |reg| TokenRecord {
            id: token_id,
            name: Some(reg.name.clone()),
            description: String::new(),
            kind: TokenKind::Access,
            role: reg.role,
            master: false,
            application: None,
            subject: reg.name.clone(),
            grants: reg.grants.clone(),
            form: TokenForm::Reference,
            secret_hash: Some(hash.to_vec()),
            not_before: Some(now),
            expires_at: reg.lifetime_secs.map(|l| now + l),
            parent_id: None,
            lineage: vec![],
            created_by: reg.created_by.clone(),
            created_at: now,
            revoked_at: None,
            external_id: None,
        })
        .await;
    let record = match redeemed {
        Ok(r) => r,
        Err(RedeemError::Unknown) => {
            return error_json(StatusCode::NOT_FOUND, "not_found", "unknown registration token");
        }
        Err(RedeemError::Used) => {
            return error_json(StatusCode::CONFLICT, "already_redeemed", "this registration token has been used");
        }
        Err(RedeemError::Expired) => {
            return error_json(StatusCode::GONE, "expired", "this registration token has expired");
        }
        Err(RedeemError::Revoked) => {
            return error_json(StatusCode::GONE, "registration_revoked", "this registration token has been revoked");
        }
        Err(RedeemError::Store(e)) => return store_failed(e),
    };
    let issuer = s.signing.as_ref().map_or("narrowgate", |sg| sg.issuer.as_str());
    match reference::grant_of(&record, issuer) {
        Some(grant) => s.auth.references().insert(hash, grant),
        None => tracing::warn!(token.jti = %record.id, "a redeemed token's grant could not be built"),
    }
    tracing::info!(token.jti = %record.id, "redeemed a registration token");
    ok_json(
        StatusCode::CREATED,
        &Issued {
            token: &secret,
            id: &record.id,
            name: record.name.as_deref(),
            role: crate::store::role_str(record.role),
            expires_at: record.expires_at,
        },
    )
}
