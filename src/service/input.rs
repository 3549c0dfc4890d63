//! The token service's requests as clients write them (JSON bodies of the
//! api, the console's forms turned into the same shapes), and how each
//! becomes the service's terms: [`CreateRequest`] → [`NewToken`],
//! [`CreateRegistration`] → [`NewRegistration`], [`RuleInput`] →
//! [`AccessRule`], [`TimeInput`] → [`UnixTime`]. One reading for every
//! front end; each refusal names the field, never the value sent.

use serde::Deserialize;

use super::{NewForm, NewRegistration, NewToken, ServiceError};
use crate::config::parse_duration;
use crate::policy::AccessRule;
use crate::policy::tenant::{self, TenantPermission};
use crate::time::UnixTime;
use crate::token::Role;
use crate::token::claims::{WireMethodGroup, WireRule};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    pub entity: String,
    pub id: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleInput {
    #[serde(default)]
    pub id: String,
    pub application: String,
    pub service: String,
    pub method_groups: Vec<WireMethodGroup>,
    pub roles: Vec<String>,
    pub resources: Vec<ResourceInput>,
}

/// The access rule `input` describes, or `None` when a part is empty.
pub fn compile(input: &RuleInput) -> Option<AccessRule> {
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRequest {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    application: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    master: bool,
    /// Default: the caller's own rules (none when tenant permissions are given).
    #[serde(default)]
    access_rules: Option<Vec<RuleInput>>,
    /// Crafter-style: per tenant, the actions allowed.
    #[serde(default)]
    tenant_permissions: Vec<TenantPermission>,
    /// Unix seconds or RFC 3339 (`2026-12-31T23:59:59Z`).
    #[serde(default)]
    not_before: Option<TimeInput>,
    /// Unix seconds or RFC 3339; or `lifetime`.
    #[serde(default)]
    expires_at: Option<TimeInput>,
    /// `2h45m30s` style.
    #[serde(default)]
    lifetime: Option<String>,
    /// `jwt` (the default).
    #[serde(default)]
    form: Option<String>,
    /// Bind the token to the client certificate the caller's connection
    /// presented (RFC 8705 `cnf.x5t#S256`): the gateway then honours it
    /// only on connections presenting that certificate.
    #[serde(default)]
    bind_to_client_certificate: bool,
}

impl CreateRequest {
    /// Whether the token is to be bound to the caller's certificate.
    pub fn binds(&self) -> bool {
        self.bind_to_client_certificate
    }

    /// The token this asks for, on `caller`'s behalf (whose rules are the
    /// default).
    pub fn into_new_token(self, caller: &crate::token::Grant, now: UnixTime) -> Result<NewToken, ServiceError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(ServiceError::bad("name", "1 to 200 characters"));
        }
        let form = match self.form.as_deref() {
            None | Some("jwt") => NewForm::Jwt,
            Some("reference") => NewForm::Reference,
            Some(_) => return Err(ServiceError::bad("form", "not jwt or reference")),
        };
        let role = parse_role(self.role.as_deref())?;
        let not_before = time_field(&self.not_before, "notBefore")?;
        let expires_at = time_field(&self.expires_at, "expiresAt")?;
        let expires_at = match (&self.lifetime, expires_at) {
            (Some(_), Some(_)) => return Err(ServiceError::bad("lifetime", "give lifetime or expiresAt, not both")),
            (Some(l), None) if l == "none" => None,
            (Some(l), None) => Some(
                now.checked_add(duration_field(l, "lifetime")?)
                    .ok_or_else(|| ServiceError::bad("lifetime", "would end after 9999-12-30T22:00:00Z"))?,
            ),
            (None, Some(e)) if e > now => Some(e),
            (None, Some(_)) => return Err(ServiceError::bad("expiresAt", "must be in the future")),
            (None, None) => None,
        };
        if expires_at.is_none() && form == NewForm::Jwt {
            return Err(ServiceError::bad(
                "lifetime",
                "a JWT needs lifetime or expiresAt; a token that never expires uses \"form\": \"reference\"",
            ));
        }
        tenant::validate(&self.tenant_permissions).map_err(|e| ServiceError::bad(e.path, e.what))?;
        let rules = match &self.access_rules {
            None if !self.tenant_permissions.is_empty() => Vec::new(),
            None => caller.rules.to_vec(),
            Some(list) if list.is_empty() && self.tenant_permissions.is_empty() => {
                return Err(ServiceError::bad("accessRules", "the token would grant nothing"));
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    compile(r).ok_or_else(|| {
                        ServiceError::bad(format!("accessRules[{i}]"), "empty application, service, entity or id")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let mut t = NewToken::user(self.name.clone(), form, now);
        t.name = Some(self.name);
        t.description = self.description;
        t.application = self.application;
        t.role = role;
        t.master = self.master;
        t.rules = rules;
        t.tenants = self.tenant_permissions;
        t.not_before = not_before.unwrap_or(now);
        t.expires_at = expires_at;
        Ok(t)
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRegistration {
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

impl CreateRegistration {
    /// The registration this asks for.
    pub fn into_new_registration(self) -> Result<NewRegistration, ServiceError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(ServiceError::bad("name", "1 to 200 characters"));
        }
        Ok(NewRegistration {
            name: self.name,
            role: parse_role(Some(&self.role))?,
            ttl: duration_field(&self.ttl, "ttl")?,
            lifetime: match self.lifetime.as_deref() {
                None | Some("none") => None,
                Some(l) => Some(duration_field(l, "lifetime")?),
            },
        })
    }
}

/// Parse a role as the native API and VK's clients write it.
pub fn parse_role(v: Option<&str>) -> Result<Role, ServiceError> {
    match v {
        None | Some("user") | Some("User") => Ok(Role::User),
        Some("admin") | Some("Administrator") => Ok(Role::Admin),
        Some(_) => Err(ServiceError::bad("role", "not user (User) or admin (Administrator)")),
    }
}

/// A `2h45m30s`-style duration field, in seconds (positive).
pub fn duration_field(v: &str, name: &'static str) -> Result<u64, ServiceError> {
    match parse_duration(v) {
        Ok(d) if d.as_secs() > 0 => Ok(d.as_secs()),
        _ => Err(ServiceError::bad(name, "not a duration like 2h45m30s")),
    }
}

/// A point in time as a client may send it: Unix seconds, or RFC 3339 /
/// ISO 8601 with an offset (`2026-12-31T23:59:59Z`, `…+02:00`). Any JSON
/// number is read (a negative one, a fraction, one past 2^64), so that
/// [`time_field`] refuses it naming the field, never a generic parse error.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TimeInput {
    /// Unix seconds, 0 to 253402207200 (9999-12-30T22:00:00Z).
    Unix(u64),
    /// Refused: before 1970 (read only to be refused by name).
    Negative(#[allow(dead_code)] i64),
    /// Refused: not whole seconds, or beyond any integer.
    Fraction(#[allow(dead_code)] f64),
    Text(String),
}

/// The time of a field, within [`UnixTime`]'s range, or 400 naming it.
pub fn time_field(v: &Option<TimeInput>, name: &'static str) -> Result<Option<UnixTime>, ServiceError> {
    let bad = || {
        ServiceError::bad(
            name,
            "not Unix seconds from 0 to 253402207200 or an RFC 3339 time from 1970 to 9999 like 2026-12-31T23:59:59Z",
        )
    };
    match v {
        None => Ok(None),
        Some(TimeInput::Unix(n)) => UnixTime::from_secs(*n).map(Some).map_err(|_| bad()),
        Some(TimeInput::Negative(_) | TimeInput::Fraction(_)) => Err(bad()),
        Some(TimeInput::Text(t)) => {
            t.parse::<jiff::Timestamp>().ok().and_then(|ts| UnixTime::from_timestamp(ts).ok()).map(Some).ok_or_else(bad)
        }
    }
}
