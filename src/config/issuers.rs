//! Whom the gateway trusts and how it signs: issuers with their policies
//! and keys (PEM files, JWKS files, JWKS URLs), this gateway's own signing
//! keys, and the bounds its token service keeps when it mints.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::duration::HumanDuration;
use super::{Errors, check_private_file};
use crate::policy::issuance::RegistrationLimits;
use crate::token::keys::{self, IssuerPolicy, KeySet, VerificationKey, is_hmac, parse_algorithm};
use crate::token::mapping::{ClaimMapping, Condition, MappingRule};
pub use crate::token::sign::{MintError, Signing};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuerFile {
    pub name: String,
    pub issuer: String,
    #[serde(default)]
    pub audience: Vec<String>,
    /// Required but with `discovery`, where absent means the provider's
    /// own (`id_token_signing_alg_values_supported`, else each key's
    /// `alg`).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// OpenID Connect discovery: the keys come from the `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration`, whose `issuer` must be
    /// this one exactly (read again whenever the keys are).
    #[serde(default)]
    pub discovery: bool,
    #[serde(default)]
    pub clock_skew: Option<HumanDuration>,
    #[serde(default)]
    pub allow_missing_exp: bool,
    /// Whether this issuer's tokens may carry narrowgate's management
    /// authority (`role: admin`, `master`). Default: only for the issuer
    /// holding this gateway's `signing_keys`; an external issuer's admin
    /// claims are ignored unless this says `true`.
    #[serde(default)]
    pub may_manage: Option<bool>,
    /// The longest lifetime (`exp − iat`) a token may claim; tokens without
    /// `iat` are then refused. This gateway mints nothing longer.
    #[serde(default)]
    pub max_lifetime: Option<HumanDuration>,
    #[serde(default)]
    pub keys: Vec<KeyFile>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// An enforce-only gateway fetches this issuer's keys from here.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM bundle of the CAs an `https://` `jwks_url`'s certificate must
    /// chain to (a private PKI); absent: the system's trusted roots.
    #[serde(default)]
    pub jwks_ca_file: Option<String>,
    /// How often the JWKS is fetched again (default 5m).
    #[serde(default)]
    pub jwks_refresh: Option<HumanDuration>,
    /// At most one refetch this often, however many unknown kids arrive
    /// (default 10s); also the retry interval while no keys are loaded.
    #[serde(default)]
    pub jwks_min_refetch: Option<HumanDuration>,
    /// Private keys this gateway signs tokens with, as this issuer; their
    /// public halves are trusted automatically (do not list them in `keys`).
    #[serde(default)]
    pub signing_keys: Vec<SigningKeyFile>,
    /// The kid new tokens are signed with; default: the first signing key.
    #[serde(default)]
    pub active_signing_key: Option<String>,
    /// Where an identity provider's tokens carry what the mapping reads.
    #[serde(default)]
    pub claims: Option<ClaimsFile>,
    /// Claim mapping: the access rules its tokens' scopes, roles, groups
    /// and clients grant.
    #[serde(default)]
    pub grants: Option<Vec<GrantFile>>,
    /// Whether its tokens' own `accessRules` are honoured: by default yes
    /// without `grants`, no with them.
    #[serde(default)]
    pub honour_access_rules: Option<bool>,
    /// Whether its tokens may be exchanged (RFC 8693) for narrowgate
    /// tokens, and by which clients; absent: none may.
    #[serde(default)]
    pub exchange: Option<ExchangeFile>,
}

/// Who may exchange an issuer's tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExchangeFile {
    /// The clients (`azp`, `client_id`, or where `claims.client` says)
    /// whose tokens may be exchanged; `"*"`: any token of the issuer.
    clients: Vec<String>,
}

/// JSON pointers into a provider's token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClaimsFile {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    client: Option<Vec<String>>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// One mapping rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantFile {
    id: String,
    #[serde(default)]
    when: WhenFile,
    application: String,
    #[serde(default)]
    service: Option<String>,
    group: String,
    #[serde(default)]
    methods: Option<Vec<String>>,
    roles: Vec<String>,
    resources: Vec<String>,
}

/// A mapping rule's conditions (all must hold).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenFile {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    client: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigningKeyFile {
    pub kid: String,
    pub private_key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyFile {
    #[serde(default)]
    pub kid: Option<String>,
    pub algorithm: String,
    #[serde(default)]
    pub public_key_file: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
}

/// Bounds the token service keeps to when it mints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuanceFile {
    /// The longest a registration token may wait to be redeemed (default 7d).
    #[serde(default)]
    pub registration_max_ttl: Option<HumanDuration>,
    /// The longest the token a registration yields may live (default: any,
    /// never expiring included).
    #[serde(default)]
    pub registration_max_lifetime: Option<HumanDuration>,
}

pub(super) fn build_issuer(
    f: IssuerFile,
    path: &str,
    base: &Path,
    keyset: &mut KeySet,
    jwks_sources: &mut Vec<crate::token::JwksSource>,
    signing: &mut Option<Signing>,
    errs: &mut Errors,
) {
    let mut algorithms = Vec::new();
    for (i, a) in f.algorithms.iter().enumerate() {
        match parse_algorithm(a) {
            Some(alg) => algorithms.push(alg),
            None => errs.push(&format!("{path}.algorithms[{i}]"), format!("{a:?} is not a supported algorithm")),
        }
    }
    if f.algorithms.is_empty() && !f.discovery {
        errs.push(&format!("{path}.algorithms"), "list the algorithms this issuer signs with");
    }
    if f.issuer.is_empty() {
        errs.push(&format!("{path}.issuer"), "must not be empty");
    } else if f.issuer.contains('#') {
        // A lineage names another issuer's token `iss#jti`: the first `#`
        // must end the issuer. (An issuer's URL has no fragment anyway.)
        errs.push(&format!("{path}.issuer"), "must not hold a '#'");
    }
    let skew = f.clock_skew.map_or(Duration::from_secs(30), Duration::from);
    if skew > Duration::from_secs(300) {
        errs.push(&format!("{path}.clock_skew"), "must be at most 5m");
    }
    let max_lifetime = f.max_lifetime.map(|d| {
        let d = Duration::from(d);
        if d < Duration::from_secs(1) {
            errs.push(&format!("{path}.max_lifetime"), "must be at least 1s");
        }
        d
    });
    if max_lifetime.is_some() && f.allow_missing_exp {
        errs.push(&format!("{path}.max_lifetime"), "cannot bound tokens that may have no exp (allow_missing_exp)");
    }
    let mapping = build_mapping(&f, path, errs);
    let issuer = keyset.add_issuer(IssuerPolicy {
        name: f.name.clone(),
        issuer: f.issuer.clone(),
        audience: f.audience.clone(),
        clock_skew_secs: skew.as_secs(),
        allow_missing_exp: f.allow_missing_exp,
        max_lifetime_secs: max_lifetime.map(|d| d.as_secs()),
        // This gateway's own issuer manages; any other only when told so.
        may_manage: f.may_manage.unwrap_or(!f.signing_keys.is_empty()),
        minted_here: !f.signing_keys.is_empty(),
        mapping,
        exchange: f.exchange.as_ref().map(|e| e.clients.clone()),
    });
    if f.exchange.as_ref().is_some_and(|e| e.clients.is_empty()) {
        errs.push(&format!("{path}.exchange.clients"), "list the clients whose tokens may be exchanged (\"*\": any)");
    }
    if f.keys.is_empty() && f.jwks_file.is_none() && f.jwks_url.is_none() && f.signing_keys.is_empty() && !f.discovery {
        errs.push(path, "needs keys, a jwks_file, a jwks_url, signing_keys or discovery");
    }
    let refresh = f.jwks_refresh.map_or(Duration::from_secs(300), Duration::from);
    let min_refetch = f.jwks_min_refetch.map_or(Duration::from_secs(10), Duration::from);
    // Discovery: the keys' URL is the discovery document's `jwks_uri`.
    let discovered = f.discovery.then(|| crate::token::keyring::discovery_url(&f.issuer));
    if f.discovery && f.jwks_url.is_some() {
        errs.push(&format!("{path}.jwks_url"), "give the jwks_url or discovery, not both");
    }
    if f.discovery && !(f.issuer.starts_with("https://") || f.issuer.starts_with("http://")) {
        errs.push(&format!("{path}.issuer"), "discovery needs the issuer's URL (https://…)");
    }
    match f.jwks_url.as_ref().or(discovered.as_ref()) {
        Some(url) => {
            let upath = if f.discovery { format!("{path}.issuer") } else { format!("{path}.jwks_url") };
            super::check_fetch_url(url, &upath, errs);
            let ca = f
                .jwks_ca_file
                .as_ref()
                .and_then(|c| super::read_ca_bundle(&base.join(c), &format!("{path}.jwks_ca_file"), errs));
            if refresh < Duration::from_secs(1) {
                errs.push(&format!("{path}.jwks_refresh"), "must be at least 1s");
            }
            if min_refetch < Duration::from_millis(100) || min_refetch > refresh {
                errs.push(&format!("{path}.jwks_min_refetch"), "must be at least 100ms and at most jwks_refresh");
            }
            jwks_sources.push(crate::token::JwksSource {
                issuer,
                name: f.name.clone(),
                url: url.clone(),
                ca,
                algorithms: algorithms.clone(),
                discovery: f.discovery,
                refresh,
                min_refetch,
            });
        }
        None if f.jwks_refresh.is_some() || f.jwks_min_refetch.is_some() || f.jwks_ca_file.is_some() => {
            errs.push(path, "jwks_refresh, jwks_min_refetch and jwks_ca_file need a jwks_url or discovery");
        }
        None => {}
    }
    let mut own = Vec::new();
    for (i, k) in f.signing_keys.iter().enumerate() {
        let kpath = format!("{path}.signing_keys[{i}]");
        let file = base.join(&k.private_key_file);
        check_private_file(&file, &format!("{kpath}.private_key_file"), errs);
        let read = errs.read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()));
        match read.and_then(|pem| crate::token::SigningKey::from_pem(&pem, &k.kid).map_err(|e| e.to_string())) {
            Ok(key) if !algorithms.contains(&key.algorithm) => {
                errs.push(&kpath, format!("a {:?} key, not among the issuer's algorithms", key.algorithm))
            }
            Ok(key) => match key.verification_key(issuer).map_err(|e| e.to_string()).and_then(|v| keyset.add_key(v)) {
                Ok(()) => own.push(std::sync::Arc::new(key)),
                Err(e) => errs.push(&format!("{kpath}.kid"), e),
            },
            Err(e) => errs.push(&kpath, e),
        }
    }
    if !f.signing_keys.is_empty() {
        let active = match &f.active_signing_key {
            None => Some(0),
            Some(kid) => {
                let found = f.signing_keys.iter().position(|k| k.kid == *kid);
                if found.is_none() {
                    errs.push(&format!("{path}.active_signing_key"), format!("{kid:?} is not among signing_keys"));
                }
                found
            }
        };
        if signing.is_some() {
            errs.push(&format!("{path}.signing_keys"), "only one issuer may hold signing keys");
        } else if let Some(active) = active
            && !own.is_empty()
            && own.len() == f.signing_keys.len()
        {
            *signing = Some(Signing {
                issuer: f.issuer.clone(),
                keys: own,
                active,
                // Its own tokens must pass its own audience check.
                audience: f.audience.first().cloned(),
                max_lifetime_secs: max_lifetime.map(|d| d.as_secs()),
            });
        }
    } else if f.active_signing_key.is_some() {
        errs.push(&format!("{path}.active_signing_key"), "set without signing_keys");
    }
    for (i, k) in f.keys.iter().enumerate() {
        let kpath = format!("{path}.keys[{i}]");
        let Some(alg) = parse_algorithm(&k.algorithm) else {
            errs.push(&format!("{kpath}.algorithm"), format!("{:?} is not a supported algorithm", k.algorithm));
            continue;
        };
        if !algorithms.contains(&alg) {
            errs.push(&format!("{kpath}.algorithm"), format!("{} is not among the issuer's algorithms", k.algorithm));
            continue;
        }
        // HMAC keys come only from secret_file, public keys only from
        // public_key_file: the file a key comes from decides its type.
        let file = match (is_hmac(alg), &k.public_key_file, &k.secret_file) {
            (false, Some(p), None) => p,
            (true, None, Some(s)) => s,
            (false, _, _) => {
                errs.push(&kpath, format!("{} keys need public_key_file (and no secret_file)", k.algorithm));
                continue;
            }
            (true, _, _) => {
                errs.push(&kpath, format!("{} keys need secret_file (and no public_key_file)", k.algorithm));
                continue;
            }
        };
        if is_hmac(alg) {
            check_private_file(&base.join(file), &format!("{kpath}.secret_file"), errs);
        }
        let file = base.join(file);
        let read = errs.read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()));
        match read.and_then(|b| keys::decoding_key(&b, alg, &file.display().to_string()).map_err(|e| e.to_string())) {
            Ok(key) => {
                if let Err(e) = keyset.add_key(VerificationKey::new(k.kid.clone(), alg, key, issuer)) {
                    errs.push(&format!("{kpath}.kid"), e);
                }
            }
            Err(e) => errs.push(&kpath, e),
        }
    }
    if let Some(jwks) = &f.jwks_file {
        let jpath = format!("{path}.jwks_file");
        let read = errs.read(&base.join(jwks)).and_then(|b| String::from_utf8(b).map_err(std::io::Error::other));
        match read {
            Err(e) => errs.push(&jpath, format!("cannot read {jwks:?}: {e}")),
            Ok(text) => match keys::keys_from_jwks(&text, &algorithms, issuer) {
                Ok(list) => {
                    for why in list.skipped {
                        errs.warn(&jpath, format!("key skipped: {why}"));
                    }
                    if list.keys.is_empty() {
                        errs.push(&jpath, "holds no usable key");
                    }
                    for key in list.keys {
                        if let Err(e) = keyset.add_key(key) {
                            errs.push(&jpath, e);
                        }
                    }
                }
                Err(e) => errs.push(&jpath, e),
            },
        }
    }
}

/// An issuer's claim mapping, if it has one (its manifest names are
/// checked once the manifest is built: [`check_mappings`]).
fn build_mapping(f: &IssuerFile, path: &str, errs: &mut Errors) -> Option<std::sync::Arc<ClaimMapping>> {
    if f.grants.is_none() {
        if f.claims.is_some() {
            errs.push(&format!("{path}.claims"), "says where claims are, but no grants use them");
        }
        if f.honour_access_rules.is_some() {
            errs.push(
                &format!("{path}.honour_access_rules"),
                "applies beside grants (without them, they are honoured)",
            );
        }
        return None;
    }
    let claims = f.claims.as_ref();
    let pointer = |p: &str, at: String, errs: &mut Errors| {
        if !p.starts_with('/') {
            errs.push(&at, format!("{p:?} is not a JSON pointer (\"/realm_access/roles\")"));
        }
        p.to_string()
    };
    let pointers = |list: Option<&Vec<String>>, default: &[&str], key: &str, errs: &mut Errors| match list {
        Some(list) => {
            list.iter().enumerate().map(|(i, p)| pointer(p, format!("{path}.claims.{key}[{i}]"), errs)).collect()
        }
        None => default.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    };
    let subject = claims.and_then(|c| c.subject.as_deref()).unwrap_or("/sub");
    let subject = pointer(subject, format!("{path}.claims.subject"), errs);
    let client = pointers(claims.and_then(|c| c.client.as_ref()), &["/azp", "/client_id"], "client", errs);
    let scopes = pointers(claims.and_then(|c| c.scopes.as_ref()), &["/scope", "/scp"], "scopes", errs);
    let roles = pointers(claims.map(|c| &c.roles), &[], "roles", errs);
    let groups = pointers(claims.map(|c| &c.groups), &[], "groups", errs);
    let mut rules = Vec::new();
    for (i, g) in f.grants.iter().flatten().enumerate() {
        let at = format!("{path}.grants[{i}]");
        if g.id.is_empty() || rules.iter().any(|r: &MappingRule| r.id == g.id) {
            errs.push(&format!("{at}.id"), "each grant needs an id of its own");
        }
        let w = &g.when;
        let when: Vec<Condition> = [
            w.scope.clone().map(Condition::Scope),
            w.role.clone().map(Condition::Role),
            w.group.clone().map(Condition::Group),
            w.client.clone().map(Condition::Client),
        ]
        .into_iter()
        .flatten()
        .collect();
        if when.is_empty() {
            errs.warn(&format!("{at}.when"), "no condition: every token of this issuer gets this grant");
        }
        if g.roles.is_empty() {
            errs.push(&format!("{at}.roles"), "list the roles it grants");
        }
        if g.resources.is_empty() {
            errs.push(&format!("{at}.resources"), "list the resources it grants (\"*:*:*\" for all)");
        }
        rules.push(MappingRule {
            id: g.id.clone(),
            when,
            application: g.application.clone(),
            service: g.service.clone().unwrap_or_else(|| "*".into()),
            group: g.group.clone(),
            methods: g.methods.clone().unwrap_or_else(|| vec!["*".into()]),
            roles: g.roles.clone(),
            resources: g.resources.clone(),
        });
    }
    Some(std::sync::Arc::new(ClaimMapping {
        subject,
        client,
        scopes,
        roles,
        groups,
        rules,
        access_rules: f.honour_access_rules.unwrap_or(false),
        at: path.to_string(),
    }))
}

/// Every name a claim mapping grants is the manifest's: its application,
/// service, method group, methods, roles and resource entities.
pub(super) fn check_mappings(keys: &KeySet, manifest: &crate::policy::Manifest, errs: &mut Errors) {
    for m in keys.issuers.iter().filter_map(|i| i.mapping.as_deref()) {
        for (i, r) in m.rules.iter().enumerate() {
            let at = format!("{}.grants[{i}]", m.at);
            let Some(app) = manifest.applications.iter().find(|a| a.application == r.application) else {
                errs.push(&format!("{at}.application"), format!("unknown application {:?}", r.application));
                continue;
            };
            if r.service != "*" && !app.services.iter().any(|s| s.service == r.service) {
                errs.push(&format!("{at}.service"), format!("unknown service {:?}", r.service));
            }
            match app.method_groups.iter().find(|g| g.group == r.group) {
                None => errs.push(&format!("{at}.group"), format!("unknown method group {:?}", r.group)),
                Some(g) => {
                    for (j, m) in r.methods.iter().enumerate() {
                        if m != "*" && !g.methods.iter().any(|d| d.method == *m) {
                            errs.push(&format!("{at}.methods[{j}]"), format!("unknown method {m:?}"));
                        }
                    }
                }
            }
            for (j, role) in r.roles.iter().enumerate() {
                if role != "*" && !app.roles.iter().any(|set| set.roles.iter().any(|x| x == role)) {
                    errs.push(&format!("{at}.roles[{j}]"), format!("unknown role {role:?}"));
                }
            }
            for (j, res) in r.resources.iter().enumerate() {
                let entity = res.split(':').next().unwrap_or_default();
                if !crate::token::mapping::is_resource_template(res) {
                    errs.push(
                        &format!("{at}.resources[{j}]"),
                        "is not entity:owner:id (with ${claim:/pointer} for a claim's value)",
                    );
                } else if entity != "*" && !app.entities.iter().any(|e| e.entity == entity) {
                    errs.push(&format!("{at}.resources[{j}]"), format!("unknown entity {entity:?}"));
                }
            }
        }
    }
}

/// The `issuance` section: how long registration tokens may wait and the
/// tokens they yield may live.
pub(super) fn build_issuance(f: IssuanceFile, errs: &mut Errors) -> RegistrationLimits {
    let limits = RegistrationLimits {
        max_ttl: f.registration_max_ttl.map_or(Duration::from_secs(7 * 86_400), Duration::from).as_secs(),
        max_lifetime: f.registration_max_lifetime.map(|d| Duration::from(d).as_secs()),
    };
    if limits.max_ttl == 0 || limits.max_lifetime == Some(0) {
        errs.push("issuance", "registration_max_ttl and registration_max_lifetime must be at least 1s");
    }
    limits
}
