//! Claim mapping: an identity provider's token, which carries `scope`,
//! roles and groups rather than narrowgate's `accessRules`, turned into
//! access rules by its issuer's declarative mapping — once per token, at
//! verification, so the rules are cached with the grant and a cache hit
//! costs what any other does.
//!
//! Each mapping rule grants a method group of an application with roles
//! and resources when all of its conditions hold (a scope, a role, a group,
//! a client). A claim of the wrong JSON type refuses the token, never
//! coerced into something it does not say. A resource may name a claim
//! (`account:*:${claim:/account_id}`): its value must be a plain name, so
//! a claim can narrow a resource but never widen one (`*`, a separator, a
//! dot segment); a rule whose claim is missing or unfit grants nothing.

use serde_json::Value;

use super::claims::{WireMethod, WireMethodGroup, WireRule};

/// How one issuer's tokens map to access rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Where the subject is (a JSON pointer; `/sub` by default).
    pub subject: String,
    /// Where the client is: the first present (`/azp`, `/client_id`).
    pub client: Vec<String>,
    /// Where scopes are: a space-separated string or an array of strings.
    pub scopes: Vec<String>,
    /// Where roles are, and groups: arrays of strings.
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub rules: Vec<MappingRule>,
    /// Whether the token's own `accessRules` are honoured beside the
    /// mapped ones.
    pub access_rules: bool,
    /// Where the config gives it (`issuers[2]`), for errors.
    pub at: String,
}

/// One mapping rule: the access rule it grants when its conditions hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingRule {
    /// Its id, which explain and the audit log show as the rule's.
    pub id: String,
    /// All must hold; none: every token of the issuer.
    pub when: Vec<Condition>,
    pub application: String,
    pub service: String,
    pub group: String,
    pub methods: Vec<String>,
    pub roles: Vec<String>,
    /// `entity:owner:id` patterns, with `${claim:/pointer}` placeholders.
    pub resources: Vec<String>,
}

/// What a token must carry for a mapping rule to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    Scope(String),
    Role(String),
    Group(String),
    Client(String),
}

impl Condition {
    /// How explain names it: `scope accounts:read`.
    pub fn describe(&self) -> String {
        match self {
            Condition::Scope(s) => format!("scope {s}"),
            Condition::Role(r) => format!("role {r}"),
            Condition::Group(g) => format!("group {g}"),
            Condition::Client(c) => format!("client {c}"),
        }
    }
}

/// A token's claims as the mapping reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapped {
    pub subject: String,
    pub client: Option<String>,
    /// The access rules its mapping rules granted.
    pub rules: Vec<WireRule>,
    /// The mapping rules that granted nothing, and why (for explain).
    pub unmet: Vec<(String, String)>,
}

/// Why a token's claims cannot be mapped: the claim (its pointer) that is
/// missing or of the wrong type. Never the claim's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("claim {0} is missing")]
    Missing(String),
    #[error("claim {0} has the wrong type")]
    WrongType(String),
}

/// Where a token's client is when its issuer's mapping does not say.
pub const DEFAULT_CLIENT: [&str; 2] = ["/azp", "/client_id"];

/// The client a token was issued to: the first string at `pointers`.
pub fn client_of<'a>(claims: &'a Value, pointers: &[&str]) -> Option<&'a str> {
    pointers.iter().find_map(|p| claims.pointer(p)).and_then(Value::as_str)
}

/// A JWT's payload, as JSON; `None` if it is not one. Read only of a
/// token already verified.
pub fn payload_of(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&super::encoding::b64_decode(payload)?).ok()
}

/// The longest value a `${claim:…}` may put in a resource.
const MAX_CLAIM_IN_RESOURCE: usize = 128;

impl ClaimMapping {
    /// The ids of the rules that grant for one of `scopes` (a token
    /// exchanged for those scopes keeps these rules alone).
    pub fn rules_for_scopes(&self, scopes: &[&str]) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| r.when.iter().any(|c| matches!(c, Condition::Scope(s) if scopes.contains(&s.as_str()))))
            .map(|r| r.id.clone())
            .collect()
    }

    /// Map `claims` (the token's payload).
    pub fn apply(&self, claims: &Value) -> Result<Mapped, MappingError> {
        let subject = match claims.pointer(&self.subject) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(MappingError::Missing(self.subject.clone())),
            Some(_) => return Err(MappingError::WrongType(self.subject.clone())),
        };
        let mut client = None;
        for p in &self.client {
            match claims.pointer(p) {
                None => {}
                Some(Value::String(s)) => {
                    client = Some(s.clone());
                    break;
                }
                Some(_) => return Err(MappingError::WrongType(p.clone())),
            }
        }
        let scopes = collect(claims, &self.scopes, true)?;
        let roles = collect(claims, &self.roles, false)?;
        let groups = collect(claims, &self.groups, false)?;
        let mut mapped = Mapped { subject, client, ..Mapped::default() };
        for rule in &self.rules {
            let unmet = rule.when.iter().find(|c| match c {
                Condition::Scope(s) => !scopes.contains(&s.as_str()),
                Condition::Role(r) => !roles.contains(&r.as_str()),
                Condition::Group(g) => !groups.contains(&g.as_str()),
                Condition::Client(c) => mapped.client.as_deref() != Some(c.as_str()),
            });
            if let Some(c) = unmet {
                mapped.unmet.push((rule.id.clone(), format!("the token has no {}", c.describe())));
                continue;
            }
            match rule.resources.iter().map(|r| substitute(r, claims)).collect::<Result<Vec<_>, _>>() {
                Ok(resources) => mapped.rules.push(WireRule {
                    id: rule.id.clone(),
                    application: rule.application.clone(),
                    service: rule.service.clone(),
                    method_groups: vec![WireMethodGroup {
                        group: rule.group.clone(),
                        methods: rule.methods.iter().map(|m| WireMethod { method: m.clone(), scopes: None }).collect(),
                    }],
                    roles: rule.roles.clone(),
                    resources,
                }),
                Err(why) => mapped.unmet.push((rule.id.clone(), why)),
            }
        }
        Ok(mapped)
    }
}

/// The strings at `pointers`: arrays of strings, or (`split`) a
/// space-separated string too. Absent pointers add nothing.
fn collect<'a>(claims: &'a Value, pointers: &[String], split: bool) -> Result<Vec<&'a str>, MappingError> {
    let mut out = Vec::new();
    for p in pointers {
        match claims.pointer(p) {
            None => {}
            Some(Value::String(s)) if split => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => {
                for item in items {
                    out.push(item.as_str().ok_or_else(|| MappingError::WrongType(p.clone()))?);
                }
            }
            Some(_) => return Err(MappingError::WrongType(p.clone())),
        }
    }
    Ok(out)
}

/// `resource` with each `${claim:/pointer}` replaced by the claim's value,
/// which must be a plain name (letters, digits, `_ - . @ +`; not only
/// dots): anything else could widen the pattern.
fn substitute(resource: &str, claims: &Value) -> Result<String, String> {
    fill(resource, |pointer| {
        let value = match claims.pointer(pointer) {
            Some(Value::String(s)) => s,
            Some(_) => return Err(format!("claim {pointer} is not a string")),
            None => return Err(format!("claim {pointer} is missing")),
        };
        if !is_plain_name(value) {
            return Err(format!("claim {pointer} is not a plain name"));
        }
        Ok(value)
    })
}

/// Whether `resource` is an `entity:owner:id` pattern once each of its
/// `${claim:/pointer}` placeholders (JSON pointers) holds a name.
pub fn is_resource_template(resource: &str) -> bool {
    fill(resource, |pointer| if pointer.starts_with('/') { Ok("x") } else { Err(String::new()) })
        .is_ok_and(|r| crate::policy::ResourceRule::parse(&r).is_some())
}

/// `template` with each `${claim:pointer}` replaced by `value(pointer)`.
fn fill<'v>(template: &str, mut value: impl FnMut(&str) -> Result<&'v str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("${claim:") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "${claim:".len()..];
        let end = after.find('}').ok_or("an unclosed ${claim:…}")?;
        out.push_str(value(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLAIM_IN_RESOURCE
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'+'))
        && !s.bytes().all(|b| b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping() -> ClaimMapping {
        ClaimMapping {
            subject: "/sub".into(),
            client: vec!["/azp".into(), "/client_id".into()],
            scopes: vec!["/scope".into(), "/scp".into()],
            roles: vec!["/realm_access/roles".into()],
            groups: vec!["/groups".into()],
            rules: vec![
                MappingRule {
                    id: "read".into(),
                    when: vec![Condition::Scope("accounts:read".into())],
                    application: "trading-api".into(),
                    service: "rest".into(),
                    group: "account-read".into(),
                    methods: vec!["*".into()],
                    roles: vec!["reader".into()],
                    resources: vec!["account:*:${claim:/account_id}".into()],
                },
                MappingRule {
                    id: "admin".into(),
                    when: vec![Condition::Role("admin".into()), Condition::Client("console".into())],
                    application: "trading-api".into(),
                    service: "*".into(),
                    group: "account-write".into(),
                    methods: vec!["*".into()],
                    roles: vec!["writer".into()],
                    resources: vec!["account:*:*".into()],
                },
            ],
            access_rules: false,
            at: "issuers[0]".into(),
        }
    }

    fn ids(m: &Mapped) -> Vec<&str> {
        m.rules.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn scopes_roles_and_clients_grant_exactly_what_the_rules_say() {
        let m = mapping();
        let read =
            m.apply(&json!({ "sub": "alice", "scope": "openid accounts:read", "account_id": "a1" })).expect("maps");
        assert_eq!(ids(&read), ["read"]);
        assert_eq!(read.rules[0].resources, ["account:*:a1"]);
        assert_eq!(read.subject, "alice");
        assert_eq!(read.unmet, [("admin".to_string(), "the token has no role admin".to_string())]);
        // `scp` as an array reads the same.
        let scp = m.apply(&json!({ "sub": "a", "scp": ["accounts:read"], "account_id": "a1" })).expect("maps");
        assert_eq!(ids(&scp), ["read"]);
        // Both conditions of a rule must hold.
        let role_only = m.apply(&json!({ "sub": "a", "realm_access": { "roles": ["admin"] } })).expect("maps");
        assert!(role_only.rules.is_empty());
        let both =
            m.apply(&json!({ "sub": "a", "realm_access": { "roles": ["admin"] }, "azp": "console" })).expect("maps");
        assert_eq!(ids(&both), ["admin"]);
        assert_eq!(both.client.as_deref(), Some("console"));
        // A scope is a whole word, never a prefix or a substring.
        let near =
            m.apply(&json!({ "sub": "a", "scope": "accounts:reader accounts", "account_id": "a1" })).expect("maps");
        assert!(near.rules.is_empty());
    }

    #[test]
    fn a_claim_of_the_wrong_type_refuses_the_token() {
        let m = mapping();
        for (claims, pointer) in [
            (json!({ "sub": 7 }), "/sub"),
            (json!({ "sub": "a", "scope": 7 }), "/scope"),
            (json!({ "sub": "a", "scp": [1] }), "/scp"),
            (json!({ "sub": "a", "realm_access": { "roles": "admin" } }), "/realm_access/roles"),
            (json!({ "sub": "a", "groups": { "g": true } }), "/groups"),
            (json!({ "sub": "a", "azp": ["console"] }), "/azp"),
        ] {
            assert_eq!(m.apply(&claims), Err(MappingError::WrongType(pointer.into())), "{claims}");
        }
        assert_eq!(m.apply(&json!({ "scope": "accounts:read" })), Err(MappingError::Missing("/sub".into())));
        assert_eq!(m.apply(&json!({ "sub": "" })), Err(MappingError::Missing("/sub".into())));
    }

    #[test]
    fn a_claim_in_a_resource_can_narrow_it_never_widen_it() {
        let m = mapping();
        let with = |id: Value| json!({ "sub": "a", "scope": "accounts:read", "account_id": id });
        assert_eq!(m.apply(&with(json!("a-1.b@c+d"))).expect("maps").rules[0].resources, ["account:*:a-1.b@c+d"]);
        for bad in [json!("*"), json!(".."), json!("."), json!("a:b"), json!("a/b"), json!(""), json!("a b"), json!(7)]
        {
            let mapped = m.apply(&with(bad.clone())).expect("maps");
            assert!(mapped.rules.is_empty(), "{bad} granted {:?}", mapped.rules);
            assert_eq!(mapped.unmet.iter().filter(|(id, _)| id == "read").count(), 1, "{bad}");
        }
        let long = "x".repeat(MAX_CLAIM_IN_RESOURCE + 1);
        assert!(m.apply(&with(json!(long))).expect("maps").rules.is_empty());
        assert!(is_resource_template("account:*:${claim:/account_id}"));
        assert!(is_resource_template("account:${claim:/sub}:*"));
        for bad in ["account:*", "account:*:${claim:account_id}", "account:*:${claim:/id", "account"] {
            assert!(!is_resource_template(bad), "{bad}");
        }
        // Missing: the rule grants nothing.
        let missing = m.apply(&json!({ "sub": "a", "scope": "accounts:read" })).expect("maps");
        assert!(missing.rules.is_empty());
        assert!(missing.unmet[0].1.contains("/account_id is missing"));
    }
}
