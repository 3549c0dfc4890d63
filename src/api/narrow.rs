//! `POST /v1/tokens/narrow`: a child of the calling token, never wider (see
//! `policy::narrow`), signed with the active key and recorded with its
//! parent. A child is always a user token without master rights: narrowing
//! exists to hand out less power, never the power to mint more.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ApiState, error_json, json};
use crate::policy::AccessRule;
use crate::policy::narrow::{NarrowError, Simplified, child_expiry, narrow_detailed, narrow_simplified};
use crate::proxy::respond::{ErrorBody, error_response};
use crate::store::{TokenForm, TokenRecord, kind_str};
use crate::token::claims::{Claims, WireMethodGroup, WireRule, encode_grants};
use crate::token::keys::random_id;
use crate::token::{Role, TokenKind, now_unix};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceInput {
    pub entity: String,
    pub id: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RuleInput {
    #[serde(default)]
    pub id: String,
    pub application: String,
    pub service: String,
    pub method_groups: Vec<WireMethodGroup>,
    pub roles: Vec<String>,
    pub resources: Vec<ResourceInput>,
}

/// Either form; both at once is refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NarrowRequest {
    #[serde(default)]
    pub applications: Option<Vec<String>>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub resources: Option<Vec<ResourceInput>>,
    #[serde(default)]
    pub access_rules: Option<Vec<RuleInput>>,
    #[serde(default)]
    pub validity_in_hours: Option<f64>,
}

/// `validity-in-hours=N` from the query (MetaApi's way of passing it).
/// `Err` when present but not a number.
fn query_validity(query: Option<&str>) -> Result<Option<f64>, std::num::ParseFloatError> {
    match query.and_then(|q| q.split('&').find_map(|p| p.strip_prefix("validity-in-hours="))) {
        None => Ok(None),
        Some(v) => v.parse::<f64>().map(Some),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct NarrowResponse {
    token: String,
    id: String,
    expires_at: u64,
}

pub(crate) fn compile(input: &RuleInput) -> Option<AccessRule> {
    WireRule {
        id: if input.id.is_empty() { input.application.clone() } else { input.id.clone() },
        application: input.application.clone(),
        service: input.service.clone(),
        method_groups: input.method_groups.clone(),
        roles: input.roles.clone(),
        resources: input.resources.iter().map(|r| format!("{}:$USER_ID$:{}", r.entity, r.id)).collect(),
    }
    .compile()
}

pub(crate) fn refused(e: NarrowError) -> Response {
    match &e {
        NarrowError::WouldWiden { .. } => error_json(StatusCode::FORBIDDEN, "would_widen", &e.to_string()),
        _ => error_json(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    }
}

/// Narrow the calling token: a child that allows a subset of what it does,
/// for at most `validityInHours` (default 24) and never past its expiry.
/// Give the simplified form (`applications`, `roles`, `resources`) or the
/// detailed one (`accessRules`).
#[utoipa::path(post, path = "/v1/tokens/narrow", tag = "tokens", request_body = NarrowRequest,
    security(("bearer" = []), ("auth-token" = [])),
    params(("validity-in-hours" = Option<f64>, Query, description = "MetaApi's way to give the validity")),
    responses(
        (status = 200, description = "The narrowed token", body = NarrowResponse),
        (status = 400, description = "Malformed, or names something the manifest does not know (bad_request)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Would widen the caller's token; the element is named (would_widen)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn narrow(State(s): State<ApiState>, req: Request) -> Response {
    let Ok(query_hours) = query_validity(req.uri().query()) else {
        return error_json(StatusCode::BAD_REQUEST, "bad_request", "validity-in-hours must be a number of hours");
    };
    let parent = match s.auth.authenticate_fetching(req.headers(), req.uri().query()).await {
        Ok(g) => g,
        Err(reason) => return error_response(reason, None, None).into_response(),
    };
    let Some(signing) = s.signing.as_ref() else {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, "signing_unavailable", "this gateway holds no signing key");
    };
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return error_json(StatusCode::PAYLOAD_TOO_LARGE, "bad_request", "the body is too large"),
    };
    let input: NarrowRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NarrowRequest { applications: None, roles: None, resources: None, access_rules: None, validity_in_hours: None }
    } else {
        match crate::token::encoding::from_object(&body) {
            Ok(i) => i,
            Err(e) => return error_json(StatusCode::BAD_REQUEST, "bad_request", &format!("malformed body: {e}")),
        }
    };
    let validity = match (input.validity_in_hours, query_hours) {
        (Some(_), Some(_)) => {
            return error_json(StatusCode::BAD_REQUEST, "bad_request", "validity given both in the body and the query");
        }
        (a, b) => a.or(b),
    };
    let rules = match &input.access_rules {
        Some(detailed) => {
            if input.applications.is_some() || input.roles.is_some() || input.resources.is_some() {
                return error_json(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "use either accessRules or applications/roles/resources",
                );
            }
            let mut compiled = Vec::with_capacity(detailed.len());
            for (i, r) in detailed.iter().enumerate() {
                match compile(r) {
                    Some(rule) => compiled.push(rule),
                    None => {
                        return error_json(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            &format!("accessRules[{i}]: empty application, service, entity or id"),
                        );
                    }
                }
            }
            narrow_detailed(&parent.rules, &compiled, &s.manifest)
        }
        None => {
            let simplified = Simplified {
                applications: input.applications.clone(),
                roles: input.roles.clone(),
                resources: input
                    .resources
                    .as_ref()
                    .map(|rs| rs.iter().map(|r| (r.entity.clone(), r.id.clone())).collect()),
            };
            narrow_simplified(&parent.rules, &simplified, &s.manifest)
        }
    };
    let rules = match rules {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let now = now_unix();
    let exp = match child_expiry(parent.expires_at, now, validity) {
        // The default validity stays within the issuer's max_lifetime; an
        // explicit one beyond it is refused when signing.
        Ok(e) if validity.is_none() => signing.max_lifetime_secs.map_or(e, |max| e.min(now + max)),
        Ok(e) => e,
        Err(e) => return refused(e),
    };
    let Ok(jti) = random_id(16) else {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, "internal", "no randomness available");
    };
    let mut lineage: Vec<String> = parent.lineage.iter().map(|l| l.to_string()).collect();
    lineage.push(parent.token_id.to_string());
    let mut claims = Claims {
        iss: signing.issuer.clone(),
        sub: parent.subject.to_string(),
        aud: None,
        exp: Some(exp),
        nbf: Some(now),
        iat: now,
        jti: jti.clone(),
        name: None,
        kind: TokenKind::Narrowed,
        role: Role::User,
        master: false,
        access_rules: rules.iter().map(WireRule::from_rule).collect(),
        // Narrowing works on the rules; tenant permissions pass unchanged.
        tenant_permissions: parent.tenants.clone(),
        extra: Default::default(),
        lineage: lineage.clone(),
    };
    let token = match signing.sign(&mut claims) {
        Ok(t) => t,
        Err(e) => return super::tokens::mint_failed(e),
    };
    if let Some(store) = &s.store {
        let record = TokenRecord {
            id: jti.clone(),
            name: None,
            description: String::new(),
            kind: TokenKind::Narrowed,
            role: Role::User,
            master: false,
            application: None,
            subject: claims.sub.clone(),
            grants: encode_grants(&claims.access_rules, &claims.tenant_permissions),
            form: TokenForm::Jwt,
            secret_hash: None,
            not_before: Some(now as i64),
            expires_at: Some(exp as i64),
            parent_id: Some(parent.token_id.to_string()),
            lineage,
            created_by: Some(parent.token_id.to_string()),
            created_at: now as i64,
            revoked_at: None,
            external_id: None,
        };
        // Never hand out a token the store does not know: fail closed.
        if let Err(e) = store.insert_token(&record).await {
            tracing::warn!(error = %e, kind = kind_str(TokenKind::Narrowed), "could not record a narrowed token");
            return error_json(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the token store is unavailable");
        }
    }
    tracing::info!(token.jti = %jti, parent.jti = %parent.token_id, "narrowed a token");
    match serde_json::to_vec(&NarrowResponse { token, id: jti, expires_at: exp }) {
        Ok(b) => json(StatusCode::OK, Bytes::from(b)),
        Err(_) => error_json(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the response could not be built"),
    }
}
