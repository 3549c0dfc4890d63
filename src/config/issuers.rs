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
pub use crate::token::sign::{MintError, Signing};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuerFile {
    pub name: String,
    pub issuer: String,
    #[serde(default)]
    pub audience: Vec<String>,
    pub algorithms: Vec<String>,
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
    if f.algorithms.is_empty() {
        errs.push(&format!("{path}.algorithms"), "list the algorithms this issuer signs with");
    }
    if f.issuer.is_empty() {
        errs.push(&format!("{path}.issuer"), "must not be empty");
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
    let issuer = keyset.add_issuer(IssuerPolicy {
        name: f.name.clone(),
        issuer: f.issuer.clone(),
        audience: f.audience.clone(),
        clock_skew_secs: skew.as_secs(),
        allow_missing_exp: f.allow_missing_exp,
        max_lifetime_secs: max_lifetime.map(|d| d.as_secs()),
        // This gateway's own issuer manages; any other only when told so.
        may_manage: f.may_manage.unwrap_or(!f.signing_keys.is_empty()),
    });
    if f.keys.is_empty() && f.jwks_file.is_none() && f.jwks_url.is_none() && f.signing_keys.is_empty() {
        errs.push(path, "needs keys, a jwks_file, a jwks_url or signing_keys");
    }
    let refresh = f.jwks_refresh.map_or(Duration::from_secs(300), Duration::from);
    let min_refetch = f.jwks_min_refetch.map_or(Duration::from_secs(10), Duration::from);
    match &f.jwks_url {
        Some(url) => {
            let upath = format!("{path}.jwks_url");
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
                refresh,
                min_refetch,
            });
        }
        None if f.jwks_refresh.is_some() || f.jwks_min_refetch.is_some() || f.jwks_ca_file.is_some() => {
            errs.push(path, "jwks_refresh, jwks_min_refetch and jwks_ca_file need a jwks_url");
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
