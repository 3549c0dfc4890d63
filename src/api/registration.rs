//! Registration tokens: an admin fixes the name, role, rules and lifetime
//! of an access token to come, and hands out a single-use secret with its
//! own short TTL. Redeeming needs no other credential and yields that access
//! token — always a reference token, since its lifetime may be none. The
//! store makes redemption atomic: of any number of concurrent redeems,
//! exactly one succeeds. Registration tokens are listed nowhere, are
//! revocable by id, and die with their (non-master) creator.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, parse, read_body};
use super::{ApiState, ok_json};
use crate::respond::ErrorBody;
use crate::service::input::CreateRegistration;
use crate::service::{MintedToken, RevokeTarget};

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
    #[schema(value_type = Option<u64>)]
    expires_at: Option<crate::time::UnixTime>,
}

/// A registration token: its secret (shown this once) and until when it
/// may be redeemed.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegistrationCreated<'a> {
    token: &'a str,
    /// Its id, to revoke it by (`DELETE /v1/registration-tokens/{id}`).
    id: &'a str,
    #[schema(value_type = u64)]
    expires_at: crate::time::UnixTime,
}

/// Mint a single-use registration token (admin caller; administrator
/// tokens need a master caller). It is listed nowhere, lives at most
/// `issuance.registration_max_ttl` (and no longer than a non-master
/// creator), and can be revoked by its id.
#[utoipa::path(post, path = "/v1/registration-tokens", tag = "registration", request_body = CreateRegistration,
    security(("bearer" = []), ("auth-token" = [])),
    responses(
        (status = 201, description = "The registration token", body = RegistrationCreated),
        (status = 400, description = "Malformed input or past a configured bound, named (bad_request)", body = ErrorBody),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "Not an admin, or more than the caller may give (admin_required, would_widen)", body = ErrorBody),
        (status = 409, description = "A live token has this name (conflict)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let (snap, caller, body) = s.authorized_body(req).await?;
    s.service.manager(&caller)?;
    let input: CreateRegistration = parse(&body)?;
    let (secret, record) = create_registration(&s, &snap, caller, input).await?;
    Ok(ok_json(
        StatusCode::CREATED,
        &RegistrationCreated { token: &secret, id: &record.id, expires_at: record.expires_at },
    ))
}

/// Mint the registration token `input` asks for: the API's and the
/// console's one way. Its secret (shown once) and record.
pub(crate) async fn create_registration(
    s: &ApiState,
    snap: &crate::runtime::Snapshot,
    caller: std::sync::Arc<crate::token::Grant>,
    input: CreateRegistration,
) -> Result<(String, crate::store::RegistrationRecord), ApiError> {
    let minted = s.service.create_registration(&snap.service, caller, input.into_new_registration()?).await?;
    Ok((minted.secret, minted.record))
}

/// Revoke an unredeemed registration token by its id (it is never listed:
/// the id comes from the create response).
#[utoipa::path(delete, path = "/v1/registration-tokens/{id}", tag = "registration",
    security(("bearer" = []), ("auth-token" = [])),
    params(("id" = String, Path, description = "The registration token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid token (missing_token, invalid_token, expired, revoked, …)", body = ErrorBody),
        (status = 403, description = "The caller is not an admin or master token (admin_required)", body = ErrorBody),
        (status = 404, description = "No unredeemed registration token with this id (not_found)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn revoke(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (snap, caller) = s.authorized(req.headers(), req.uri().query(), req.extensions()).await?;
    s.service.revoke(&snap.service, &caller, RevokeTarget::Registration(id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
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
        (status = 410, description = "Its TTL has passed, or it or its creator was revoked (registration_expired, registration_revoked)", body = ErrorBody),
        (status = 503, description = "The store, keys or signing are unavailable", body = ErrorBody),
    ))]
pub(crate) async fn redeem(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let input: Redeem = read_body(req).await?;
    let MintedToken { secret, record } = s.service.redeem(&input.token).await?;
    Ok(ok_json(
        StatusCode::CREATED,
        &Issued {
            token: &secret,
            id: &record.id,
            name: record.name.as_deref(),
            role: crate::store::role_str(record.role),
            expires_at: record.expires_at,
        },
    ))
}
