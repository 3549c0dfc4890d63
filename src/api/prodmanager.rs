//! ProdManager's token API, as a thin translation onto the native one.
//!
//! - `POST /api/token/create`: form data (urlencoded or multipart) with the
//!   application's secret; the token is minted by the same token service as
//!   a native one, its rules the ones the config maps the requested
//!   permissions to. The reply is the JWT as a JSON string literal.
//! - `GET /api/token/whoami`: any scheme word before the token; the reply
//!   is `{"playload": …}` (ProdManager's spelling, which its clients read),
//!   `{"playload": null}` without a credential.
//!
//! Errors: `{"message", "reasons": {field: [..]}}`. The application secret
//! is compared by its SHA-256, in constant time, and never logged.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use super::error::{ApiCode, Kind};
use super::{ApiState, ok_json};
use crate::config::ProdManagerApp;
use crate::service::{NewForm, NewToken};
use crate::time::UnixTime;

pub(crate) fn routes(router: Router<ApiState>) -> Router<ApiState> {
    router.route("/api/token/create", post(create)).route("/api/token/whoami", get(whoami))
}

/// `{"message", "reasons"}` with `status`.
fn failure(status: StatusCode, message: &str, reasons: &BTreeMap<&str, Vec<String>>) -> Response {
    ok_json(status, &json!({ "message": message, "reasons": reasons }))
}

fn creation_failed(reasons: &BTreeMap<&str, Vec<String>>) -> Response {
    failure(StatusCode::BAD_REQUEST, "Token creation failed", reasons)
}

/// The form fields, from either encoding, in order (`permission` repeats).
async fn form_fields(req: Request) -> Result<Vec<(String, String)>, String> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(req, &()).await.map_err(|e| e.body_text())?;
        let mut fields = Vec::new();
        while let Some(field) = multipart.next_field().await.map_err(|e| e.body_text())? {
            let name = field.name().unwrap_or_default().to_string();
            let value = field.text().await.map_err(|e| e.body_text())?;
            fields.push((name, value));
        }
        Ok(fields)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let body = axum::body::to_bytes(req.into_body(), 64 * 1024).await.map_err(|_| "the body is too large")?;
        Ok(form_urlencoded::parse(&body).into_owned().collect())
    } else {
        Err("send multipart/form-data or application/x-www-form-urlencoded".into())
    }
}

/// `YYYY-MM-DDTHH:MM`, UTC, from 1970 to 9999.
fn parse_date(v: &str) -> Option<UnixTime> {
    let civil = jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M", v).ok()?;
    let ts = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    UnixTime::from_timestamp(ts).ok()
}

/// The application whose secret this is, comparing SHA-256 digests in
/// constant time, over every application (no early exit).
fn application_of<'a>(apps: &'a [ProdManagerApp], secret: &str) -> Option<&'a ProdManagerApp> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let mut found = None;
    for app in apps {
        if aws_lc_rs::constant_time::verify_slices_are_equal(digest.as_ref(), &app.secret_sha256).is_ok() {
            found = Some(app);
        }
    }
    found
}

async fn create(State(s): State<ApiState>, req: Request) -> Response {
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let fields = match form_fields(req).await {
        Ok(f) => f,
        Err(e) => {
            reasons.insert("body", vec![e]);
            return creation_failed(&reasons);
        }
    };
    // The secrets in force once the form is in: one rotated out by a reload
    // while a form trickled in creates nothing.
    let snap = s.snapshot();
    let Some(apps) = snap.facades.prodmanager.as_deref() else {
        return failure(StatusCode::NOT_FOUND, "Not found", &BTreeMap::new());
    };
    let one = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let permissions: Vec<&str> = fields.iter().filter(|(k, _)| k == "permission").map(|(_, v)| v.as_str()).collect();
    let missing = || vec!["Missing data for required field.".to_string()];

    let app = match one("secret") {
        None => {
            reasons.insert("secret", missing());
            None
        }
        Some(secret) => {
            let app = application_of(apps, secret);
            if app.is_none() {
                reasons.insert("secret", vec!["Application secret invalid".into()]);
            }
            app
        }
    };
    let mut length = |field: &'static str, min: usize, max: usize| -> String {
        match one(field) {
            None => {
                reasons.insert(field, missing());
                String::new()
            }
            Some(v) if !(min..=max).contains(&v.chars().count()) => {
                reasons.insert(field, vec![format!("Length must be between {min} and {max}.")]);
                String::new()
            }
            Some(v) => v.to_string(),
        }
    };
    let name = length("name", 8, 16);
    let description = length("description", 12, 32);
    // Defaults are taken now, for this request.
    let now = s.service.now();
    let mut date = |field: &'static str, default: UnixTime| match one(field) {
        None => default,
        Some(v) => parse_date(v).unwrap_or_else(|| {
            reasons.insert(field, vec!["Not a valid datetime (YYYY-MM-DDTHH:MM, UTC).".into()]);
            default
        }),
    };
    let not_before = date("not_before_date", now);
    let expires_at = date("expiration_date", now.saturating_add(std::time::Duration::from_secs(3600)));
    if !reasons.contains_key("expiration_date") && (expires_at <= not_before || expires_at <= now) {
        reasons.insert("expiration_date", vec!["Must be later than not_before_date and now.".into()]);
    }
    let mut rules = Vec::new();
    if let Some(app) = app {
        // Named by position, never by what was sent.
        let unknown: Vec<String> = permissions
            .iter()
            .enumerate()
            .filter(|(_, p)| !app.permissions.contains_key(**p))
            .map(|(i, _)| format!("Unknown permission at position {} for this application.", i + 1))
            .collect();
        if !unknown.is_empty() {
            reasons.insert("permission", unknown);
        }
        rules = permissions.iter().filter_map(|p| app.permissions.get(*p).cloned()).collect();
    }
    let (Some(app), true) = (app, reasons.is_empty()) else {
        return creation_failed(&reasons);
    };
    let mut extra = serde_json::Map::new();
    extra.insert("description".into(), description.clone().into());
    extra.insert("permissions".into(), json!(permissions));
    extra.insert("version".into(), 1.into());
    let mut token = NewToken::user(name.clone(), NewForm::Jwt, now);
    token.name = Some(name);
    token.description = description;
    token.application = Some(app.application.clone());
    token.rules = rules;
    token.not_before = not_before;
    token.expires_at = Some(expires_at);
    token.extra_claims = extra;
    match s.service.application_token(&snap.service, &app.application, token).await.map_err(super::ApiError::from) {
        Ok(minted) => ok_json(StatusCode::OK, &minted.secret),
        Err(e) => {
            let (status, field, why) = match e.kind() {
                Kind::Api(ApiCode::Conflict) => {
                    (StatusCode::BAD_REQUEST, "name", "A token with this name already exists.".to_string())
                }
                Kind::Api(ApiCode::BadRequest | ApiCode::TokenTooLarge) => {
                    (StatusCode::BAD_REQUEST, "body", e.message().to_string())
                }
                _ => (e.status(), "body", e.message().to_string()),
            };
            reasons.insert(field, vec![why]);
            failure(status, "Token creation failed", &reasons)
        }
    }
}

async fn whoami(State(s): State<ApiState>, req: Request) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return ok_json(StatusCode::OK, &json!({ "playload": null }));
    };
    let invalid = |why: &str| {
        let reasons = BTreeMap::from([("token", vec![why.to_string()])]);
        failure(StatusCode::UNAUTHORIZED, "Token validation failed", &reasons)
    };
    // Any scheme word, then the token.
    let Some(token) = value.to_str().ok().and_then(|v| v.split_once(' ')).map(|(_, t)| t.trim()) else {
        return invalid("Expected `Authorization: <scheme> <token>`.");
    };
    let grant = match s
        .snapshot()
        .auth
        .authenticate_token_fetching(token, super::presented_certificate(req.extensions()).as_ref())
        .await
    {
        Ok(g) => g,
        Err(reason) if reason.status() == 503 => {
            let reasons = BTreeMap::from([("token", vec![crate::respond::message(reason).to_string()])]);
            return failure(StatusCode::SERVICE_UNAVAILABLE, "Token validation failed", &reasons);
        }
        Err(reason) => return invalid(crate::respond::message(reason)),
    };
    // The claims ProdManager's clients read were kept with the grant.
    let claim = |name: &str| grant.extra(name).cloned();
    let playload = json!({
        "aud": grant.name.as_deref(),
        "sub": claim("description").unwrap_or_else(|| json!(&*grant.subject)),
        "exp": grant.expires_at,
        "iat": grant.issued_at,
        "iss": &*grant.issuer,
        "jti": &*grant.token_id,
        "nbf": grant.not_before,
        "version": claim("version").unwrap_or(json!(1)),
        "permissions": claim("permissions").unwrap_or(json!([])),
    });
    ok_json(StatusCode::OK, &json!({ "playload": playload }))
}
