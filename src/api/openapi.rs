//! The token service's OpenAPI document, generated from the handlers'
//! annotations and the request and response types themselves (utoipa), so
//! it describes what the code does. Served at `/v1/openapi.json`; a copy is
//! checked in at `docs/openapi.json` and a test keeps the two equal and
//! every documented operation routed.

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "narrowgate token service",
        description = "Issue, narrow, list and revoke tokens; registration tokens; the access-rule manifest; \
                       the issuer's public keys. Errors are JSON `{error, message}` with a stable code.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::published::manifest,
        super::published::whoami,
        super::published::jwks,
        openapi_json,
        super::narrow::narrow,
        super::narrow::narrow_token,
        super::exchange::exchange,
        super::tokens::create,
        super::tokens::list,
        super::tokens::show,
        super::tokens::revoke,
        super::tokens::revoke_by_name,
        super::registration::create,
        super::registration::redeem,
        super::registration::revoke,
        super::revocations::revoke_jti,
        super::revocations::feed,
    ),
    modifiers(&Security),
    tags(
        (name = "tokens", description = "The calling token, narrowing, and token management"),
        (name = "registration", description = "Single-use registration tokens"),
        (name = "manifest", description = "What access rules can name"),
        (name = "keys", description = "Public keys for verifiers"),
    )
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT or ngr_ reference token").build(),
            ),
        );
        components
            .add_security_scheme("auth-token", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("auth-token"))));
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "manifest",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service", body = Object)))]
#[allow(dead_code)] // Documents the route `api::app` serves from the prebuilt document.
fn openapi_json() {}

/// The document as pretty JSON, ending in a newline (as checked in).
pub fn document() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".into());
    json.push('\n');
    json
}
