//! `POST /v1/tokens/narrow`: a child of the calling token, never wider (see
//! `policy::narrow` and `policy::issuance`), minted by the token service;
//! `POST /v1/tokens/{id}/narrow`: a child of another token the caller may
//! act on (a master: any; a non-master admin: one in its lineage), the
//! console's narrow page's one call. A child is always a user token
//! without master rights: narrowing exists to hand out less power, never
//! the power to mint more. MetaApi's facade reads its requests with the
//! same [`request`].

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, parse};
use super::{ApiState, ok_json};
use crate::policy::narrow::Simplified;
use crate::policy::tenant::TenantPermission;
use crate::respond::ErrorBody;
use crate::service::Narrowing;
use crate::service::input::{ResourceInput, RuleInput, compile};
use crate::store::TokenRecord;

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
    /// Tenant permissions the child keeps, within the parent's; absent:
    /// none (narrowing narrows them too).
    #[serde(default)]
    pub tenant_permissions: Option<Vec<TenantPermission>>,
    #[serde(default)]
    pub validity_in_hours: Option<f64>,
    /// Bind the child to the client certificate this connection presented
    /// (RFC 8705); a child of a bound token is bound whatever this says.
    #[serde(default)]
    pub bind_to_client_certificate: bool,
}

/// `validity-in-hours=N` from the query (MetaApi's way of passing it).
fn query_validity(query: Option<&str>) -> Result<Option<f64>, ApiError> {
    let found = query
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "validity-in-hours").map(|(_, v)| v));
    match found {
        None => Ok(None),
        Some(v) => v.parse::<f64>().map(Some).map_err(|_| ApiError::bad("validity-in-hours", "not a number of hours")),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NarrowResponse {
    pub token: String,
    pub id: String,
    pub expires_at: u64,
}

/// A narrowing request (body and query, in the native or MetaApi form) as
/// the token service takes it: `by` narrows `token` (`None`: itself).
pub(crate) fn request(
    token: Option<String>,
    query: Option<&str>,
    body: &[u8],
    presented: Option<[u8; 32]>,
) -> Result<crate::service::NarrowRequest, ApiError> {
    let query_hours = query_validity(query)?;
    let input: NarrowRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NarrowRequest {
            applications: None,
            roles: None,
            resources: None,
            access_rules: None,
            tenant_permissions: None,
            validity_in_hours: None,
            bind_to_client_certificate: false,
        }
    } else {
        parse(body)?
    };
    let validity_hours = match (input.validity_in_hours, query_hours) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad("validityInHours", "given both in the body and the query"));
        }
        (a, b) => a.or(b),
    };
    let narrowing = match input.access_rules {
        Some(detailed) => {
            if input.applications.is_some() || input.roles.is_some() || input.resources.is_some() {
                return Err(ApiError::bad("accessRules", "use either accessRules or applications/roles/resources"));
            }
            let rules = detailed
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    compile(r).ok_or_else(|| {
                        ApiError::bad(format!("accessRules[{i}]"), "empty application, service, entity or id")
                    })
                })
                .collect::<Result<_, _>>()?;
            Narrowing::Detailed(rules)
        }
        None => Narrowing::Simplified(Simplified {
            applications: input.applications,
            roles: input.roles,
            resources: input.resources.map(|rs| rs.into_iter().map(|r| (r.entity, r.id)).collect()),
        }),
    };
    let bind_to = match (input.bind_to_client_certificate, presented) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => return Err(no_certificate()),
    };
    Ok(crate::service::NarrowRequest { token, narrowing, tenants: input.tenant_permissions, validity_hours, bind_to })
}

/// A binding asked for on a connection without a verified client
/// certificate.
pub(crate) fn no_certificate() -> ApiError {
    ApiError::bad(
        "bindToClientCertificate",
        "this connection presented no verified client certificate (the api listener's tls.api.client_certificates)",
    )
}

/// Narrow the calling token: a child that allows a subset of what it does,
/// for at most `validityInHours` (default 24) and never past its expiry.
/// Give the simplified form (`applications`, `roles`, `resources`) or the
/// detailed one (`accessRules`); the child keeps only the tenant
/// permissions it names (`tenantPermissions`, within the parent's).
#[utoipa::path(post, path = "/v1/tokens/narrow", tag = "tokens", request_body = NarrowRequest,
    security(("bearer" = []), ("auth-token" = [])),
    params(("validity-in-hours" = Option<f64>, Query, description = "MetaApi's way to give the validity")),
    responses(
        (status = 200, description = "The narrowed token", body = NarrowResponse),
        (status = 400, description = "Malformed, names something the manifest does not know (bad_request), or too large (token_too_large)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Would widen the caller's token; the element is named (would_widen)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn narrow(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let (token, record) = mint(&s, None, req).await?;
    Ok(narrowed(token, record))
}

fn narrowed(token: String, record: TokenRecord) -> Response {
    let expires_at = record.expires_at.map_or(0, crate::time::UnixTime::secs);
    ok_json(StatusCode::OK, &NarrowResponse { token, id: record.id, expires_at })
}

/// Narrow another token: a master any token, a non-master admin one in its
/// lineage (what it minted, and what was narrowed from that), any token
/// itself; the child is the target's (its subject, in its lineage), never
/// wider than it, and never from a revoked or expired token.
#[utoipa::path(post, path = "/v1/tokens/{id}/narrow", tag = "tokens", request_body = NarrowRequest,
    security(("bearer" = []), ("auth-token" = [])),
    params(("id" = String, Path, description = "The id (jti) of the token to narrow")),
    responses(
        (status = 200, description = "The narrowed token", body = NarrowResponse),
        (status = 400, description = "Malformed, names something the manifest does not know (bad_request), or too large (token_too_large)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Not an admin (admin_required), a master token and the caller is not a master (master_required), or would widen the token (would_widen)", body = ErrorBody),
        (status = 404, description = "No such token within the caller's reach (not_found)", body = ErrorBody),
        (status = 410, description = "The token is revoked, itself or an ancestor, or expired (not_live)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn narrow_token(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (token, record) = mint(&s, Some(id), req).await?;
    Ok(narrowed(token, record))
}

/// Authenticate the caller and narrow it (or `token`) as the request asks:
/// the child's secret and record (for the native reply and MetaApi's).
pub(crate) async fn mint(s: &ApiState, token: Option<String>, req: Request) -> Result<(String, TokenRecord), ApiError> {
    let query = req.uri().query().map(str::to_string);
    let presented = super::presented_certificate(req.extensions());
    let (snap, by, body) = s.authorized_body(req).await?;
    let minted = s.service.narrow(&snap.service, by, request(token, query.as_deref(), &body, presented)?).await?;
    Ok((minted.secret, minted.record))
}
