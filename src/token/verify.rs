//! Verification: a presented JWT → a [`Grant`], or a reason it is refused.
//!
//! The checks, in order: size; three segments of strict base64url; a header
//! whose `alg` is exactly the one pinned to the key its `kid` selects, with no
//! `crit`; the signature (aws-lc-rs through jsonwebtoken's typed keys); then
//! the claims, each checked for its JSON type as well as its value — `iss`
//! must be a string equal to the issuer's, `aud` a string or an array of
//! strings, `exp`/`nbf`/`iat` numbers — with bounded clock skew.

use serde::Deserialize;
use serde_json::Value;

use super::claims::{Role, TokenKind, WireRule};
use super::encoding::{b64_decode, from_object};
use super::grant::{FACADE_CLAIMS, Grant, IdentityValues};
use super::keyring::KeyRing;
use super::keys::{KeySet, parse_algorithm};
use crate::reason::Reason;

/// Why a token was refused. Logged by variant; never carries token bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("token exceeds the size limit")]
    TooLarge,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("algorithm is not accepted")]
    Algorithm,
    #[error("no key for this token")]
    UnknownKey,
    #[error("header carries critical extensions")]
    Critical,
    #[error("signature does not verify")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token claims to be issued in the future")]
    IssuedInFuture,
    #[error("token lives longer than its issuer allows")]
    Lifetime,
    #[error("token has no expiry")]
    MissingExpiry,
    #[error("issuer does not match")]
    Issuer,
    #[error("audience does not match")]
    Audience,
    #[error("claim {0} has the wrong type or value")]
    Claim(&'static str),
    #[error("no verification keys are loaded")]
    NoKeys,
    /// Its issuer's claim mapping cannot read it.
    #[error(transparent)]
    Mapping(#[from] super::mapping::MappingError),
}

impl VerifyError {
    pub fn reason(&self) -> Reason {
        match self {
            VerifyError::TooLarge => Reason::TokenTooLarge,
            VerifyError::Expired => Reason::Expired,
            VerifyError::NotYetValid => Reason::NotYetValid,
            VerifyError::NoKeys => Reason::KeysUnavailable,
            VerifyError::UnknownKey => Reason::UnknownKey,
            _ => Reason::InvalidToken,
        }
    }
}

/// Default upper bound on a token's length.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Verifies tokens against the keys of a [`KeyRing`].
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: std::sync::Arc<KeyRing>,
    max_token_bytes: usize,
    /// Rule sets shared between the grants it makes.
    rule_sets: std::sync::Arc<super::grant::RuleSets>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
    /// RFC 7797 unencoded payloads are not supported.
    #[serde(default)]
    b64: Option<Value>,
}

/// Registered claims kept as raw JSON so their types can be checked; the
/// narrowgate claims are typed. Unknown claims are ignored (external
/// issuers add their own); a duplicated claim fails to parse.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    jti: Option<Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<TokenKind>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    master: Option<bool>,
    #[serde(default, rename = "accessRules")]
    access_rules: Option<Vec<WireRule>>,
    #[serde(default)]
    lineage: Option<Vec<String>>,
    #[serde(default, rename = "tenantPermissions")]
    tenant_permissions: Option<Vec<crate::policy::tenant::TenantPermission>>,
    #[serde(default)]
    cnf: Option<Value>,
    // The facade claims a grant keeps (`grant::FACADE_CLAIMS`).
    #[serde(default)]
    description: Option<Value>,
    #[serde(default)]
    permissions: Option<Value>,
    #[serde(default)]
    version: Option<Value>,
}

impl Verifier {
    /// A verifier of fixed keys.
    pub fn new(keys: KeySet, max_token_bytes: usize) -> Self {
        Self::with_ring(KeyRing::new(keys, Vec::new()), max_token_bytes)
    }

    /// A verifier of the keys `ring` holds at each call.
    pub fn with_ring(keys: std::sync::Arc<KeyRing>, max_token_bytes: usize) -> Self {
        Verifier { keys, max_token_bytes, rule_sets: Default::default() }
    }

    /// The largest token it verifies.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    pub fn ring(&self) -> &std::sync::Arc<KeyRing> {
        &self.keys
    }

    /// Verify `token` at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, VerifyError> {
        if token.len() > self.max_token_bytes {
            return Err(VerifyError::TooLarge);
        }
        let keys = self.keys.current();
        if keys.is_empty() {
            // Cannot decide: 503, not 401.
            return Err(VerifyError::NoKeys);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(VerifyError::Malformed);
        };
        if s64.is_empty() {
            return Err(VerifyError::Malformed);
        }
        let header_bytes = b64_decode(h64).ok_or(VerifyError::Malformed)?;
        let header: Header = from_object(&header_bytes).map_err(|_| VerifyError::Malformed)?;
        if header.crit.is_some() {
            // We implement no header extension, so any `crit` must be refused
            // (RFC 7515 §4.1.11).
            return Err(VerifyError::Critical);
        }
        if header.b64.is_some() {
            return Err(VerifyError::Critical);
        }
        // "none", "None", and anything unknown stop here.
        let alg = parse_algorithm(&header.alg).ok_or(VerifyError::Algorithm)?;
        let key = keys.find(header.kid.as_deref()).ok_or(VerifyError::UnknownKey)?;
        if key.algorithm != alg {
            // The algorithm is pinned per key: an HS256 token aimed at an EC
            // or RSA key's bytes is refused here, before any crypto.
            return Err(VerifyError::Algorithm);
        }
        let signing_input_len = h64.len() + 1 + p64.len();
        let signing_input = &token.as_bytes()[..signing_input_len];
        if !signature_valid(key, s64, signing_input, alg) {
            return Err(VerifyError::Signature);
        }

        let payload = b64_decode(p64).ok_or(VerifyError::Malformed)?;
        // A claims set is a JSON object (RFC 7519 §7.2), never an array
        // read into the fields by position.
        let raw: RawClaims = from_object(&payload).map_err(|_| VerifyError::Malformed)?;
        let policy = keys.issuers.get(key.issuer).ok_or(VerifyError::UnknownKey)?;
        let skew = policy.clock_skew_secs;

        let iss = string_claim(&raw.iss, "iss")?.ok_or(VerifyError::Issuer)?;
        if iss != policy.issuer {
            return Err(VerifyError::Issuer);
        }
        check_audience(&raw.aud, &policy.audience)?;
        let exp = time_claim(&raw.exp, "exp")?;
        let nbf = time_claim(&raw.nbf, "nbf")?;
        let iat = time_claim(&raw.iat, "iat")?;
        match exp {
            Some(exp) if now > exp.saturating_add(skew) => return Err(VerifyError::Expired),
            Some(_) => {}
            None if policy.allow_missing_exp => {}
            None => return Err(VerifyError::MissingExpiry),
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(skew)
        {
            return Err(VerifyError::NotYetValid);
        }
        if let Some(iat) = iat
            && iat > now.saturating_add(skew)
        {
            return Err(VerifyError::IssuedInFuture);
        }
        if let Some(max) = policy.max_lifetime_secs {
            // Without both ends the lifetime cannot be judged: refused.
            match (exp, iat) {
                (Some(exp), Some(iat)) if exp.saturating_sub(iat) <= max => {}
                _ => return Err(VerifyError::Lifetime),
            }
        }
        // An identity provider's token: its claims mapped to access rules
        // by its issuer's mapping (the payload read once more, whole: the
        // mapping's pointers may name any claim).
        let mapped = match &policy.mapping {
            Some(m) => {
                let claims: Value = serde_json::from_slice(&payload).map_err(|_| VerifyError::Malformed)?;
                Some(m.apply(&claims)?)
            }
            None => None,
        };
        let honour_own = policy.mapping.as_ref().is_none_or(|m| m.access_rules);
        let subject = match &mapped {
            Some(m) => m.subject.as_str(),
            None => string_claim(&raw.sub, "sub")?.ok_or(VerifyError::Claim("sub"))?,
        };
        let token_id = match string_claim(&raw.jti, "jti")? {
            Some(jti) if !jti.is_empty() && jti.len() <= super::MAX_JTI => jti.to_string(),
            // Empty, or longer than any revocation may name: refused, so
            // that every token honoured can be revoked.
            Some(_) => return Err(VerifyError::Claim("jti")),
            // Without a jti, derive a stable id from header and payload (not
            // the signature, which ECDSA lets an attacker re-encode).
            None => fingerprint(signing_input),
        };
        let own = raw.access_rules.as_deref().filter(|_| honour_own).unwrap_or_default();
        let wire = match &mapped {
            Some(m) if own.is_empty() => std::borrow::Cow::Borrowed(m.rules.as_slice()),
            Some(m) => std::borrow::Cow::Owned([m.rules.as_slice(), own].concat()),
            None => std::borrow::Cow::Borrowed(own),
        };
        let (rules, rule_roles) = self.rule_sets.intern(&wire).ok_or(VerifyError::Claim("accessRules"))?;
        let headers = IdentityValues::with_roles(subject, &token_id, rule_roles).ok_or(VerifyError::Claim("sub"))?;
        // A binding the gateway cannot read (another confirmation method,
        // a thumbprint that is not one) refuses the token: ignoring it
        // would honour a stolen bound token.
        let bound_to = match raw.cnf {
            None => None,
            Some(v) => Some(
                serde_json::from_value::<super::claims::Confirmation>(v)
                    .ok()
                    .and_then(|c| c.thumbprint())
                    .ok_or(VerifyError::Claim("cnf"))?,
            ),
        };
        Ok(Grant {
            token_id: token_id.into(),
            subject: subject.into(),
            issuer: iss.into(),
            kid: key.kid.as_deref().map(Into::into),
            name: raw.name.map(Into::into),
            kind: raw.kind.unwrap_or_default(),
            role: raw.role.unwrap_or_default(),
            master: raw.master.unwrap_or(false),
            rules,
            tenants: raw.tenant_permissions.filter(|_| honour_own).unwrap_or_default(),
            issued_at: iat,
            not_before: nbf,
            expires_at: exp,
            lineage: raw.lineage.unwrap_or_default().into_iter().map(Into::into).collect(),
            bound_to,
            headers,
            may_manage: policy.may_manage,
            minted_here: policy.minted_here,
            extra: FACADE_CLAIMS
                .into_iter()
                .zip([raw.description, raw.permissions, raw.version])
                .filter_map(|(name, v)| v.map(|v| (name, v)))
                .collect(),
            unmapped: mapped
                .map(|m| m.unmet.into_iter().map(|(id, why)| (id.into(), why.into())).collect())
                .unwrap_or_default(),
        })
    }
}

/// Whether `s64` signs `signing_input` under `key`: through the key parsed
/// once where there is one (the signature decoded on the stack), else
/// through jsonwebtoken.
fn signature_valid(
    key: &super::keys::VerificationKey,
    s64: &str,
    signing_input: &[u8],
    alg: jsonwebtoken::Algorithm,
) -> bool {
    use base64::Engine;
    match &key.parsed {
        Some(parsed) => {
            // P-384's 96 bytes are the longest signature verified here.
            let mut sig = [0u8; 96];
            match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(s64, &mut sig) {
                Ok(n) => parsed.verify_sig(signing_input, &sig[..n]).is_ok(),
                Err(_) => false,
            }
        }
        None => matches!(jsonwebtoken::crypto::verify(s64, signing_input, &key.key, alg), Ok(true)),
    }
}

fn string_claim<'a>(v: &'a Option<Value>, name: &'static str) -> Result<Option<&'a str>, VerifyError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(VerifyError::Claim(name)),
    }
}

/// A NumericDate: a non-negative finite JSON number, fractions truncated.
fn time_claim(v: &Option<Value>, name: &'static str) -> Result<Option<u64>, VerifyError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(Some(u));
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && (0.0..1.0e15).contains(&f) => Ok(Some(f as u64)),
                _ => Err(VerifyError::Claim(name)),
            }
        }
        Some(_) => Err(VerifyError::Claim(name)),
    }
}

fn check_audience(aud: &Option<Value>, expected: &[String]) -> Result<(), VerifyError> {
    let present: Vec<&str> = match aud {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().ok_or(VerifyError::Claim("aud"))).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(VerifyError::Claim("aud")),
    };
    if expected.is_empty() {
        // RFC 7519 §4.1.3: a token meant for some audience is not for us
        // unless we are configured to be that audience.
        return if present.is_empty() { Ok(()) } else { Err(VerifyError::Audience) };
    }
    if present.iter().any(|a| expected.iter().any(|e| e == a)) { Ok(()) } else { Err(VerifyError::Audience) }
}

fn fingerprint(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::testkit::{self, TestKey, payload, rule, sign_raw, unsigned};
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    struct Case {
        name: &'static str,
        token: String,
        want: Result<(), VerifyError>,
    }

    fn with(mut p: Value, key: &str, v: Value) -> Value {
        p[key] = v;
        p
    }

    fn without(mut p: Value, key: &str) -> Value {
        p.as_object_mut().expect("object").remove(key);
        p
    }

    /// `token` with its signature segment changed by `f`.
    fn resigned(token: &str, f: impl FnOnce(&mut String)) -> String {
        let (input, sig) = token.rsplit_once('.').expect("three segments");
        let mut sig = sig.to_string();
        f(&mut sig);
        format!("{input}.{sig}")
    }

    #[test]
    fn verification_table() {
        let es = TestKey::es256("es");
        let ed = TestKey::eddsa("ed");
        let rs = TestKey::rs256("rs");
        let stranger = TestKey::es256("es"); // same kid, different key
        let verifier = Verifier::new(testkit::keyset(&[&es, &ed, &rs], testkit::issuer_policy()), 8192);
        let good = payload("alice", NOW, 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]));

        let cases = vec![
            Case { name: "valid ES256", token: es.sign(&good), want: Ok(()) },
            Case { name: "valid EdDSA", token: ed.sign(&good), want: Ok(()) },
            Case { name: "valid RS256", token: rs.sign(&good), want: Ok(()) },
            Case {
                name: "alg none",
                token: unsigned(&json!({"alg": "none", "kid": "es"}), &good),
                want: Err(VerifyError::Malformed),
            },
            Case {
                name: "alg none with a signature segment",
                token: format!("{}x", unsigned(&json!({"alg": "none", "kid": "es"}), &good)),
                want: Err(VerifyError::Algorithm),
            },
            Case {
                name: "alg None",
                token: format!("{}x", unsigned(&json!({"alg": "None", "kid": "es"}), &good)),
                want: Err(VerifyError::Algorithm),
            },
            Case {
                name: "HS256 signed with the EC public key",
                token: sign_raw(
                    &json!({"alg": "HS256", "kid": "es"}),
                    &good,
                    &EncodingKey::from_secret(&es.public),
                    Algorithm::HS256,
                ),
                want: Err(VerifyError::Algorithm),
            },
            Case {
                name: "HS256 signed with the RSA public key",
                token: sign_raw(
                    &json!({"alg": "HS256", "kid": "rs"}),
                    &good,
                    &EncodingKey::from_secret(&rs.public),
                    Algorithm::HS256,
                ),
                want: Err(VerifyError::Algorithm),
            },
            Case {
                name: "ES256 header on the EdDSA key",
                token: sign_raw(&json!({"alg": "ES256", "kid": "ed"}), &good, &es.encoding, Algorithm::ES256),
                want: Err(VerifyError::Algorithm),
            },
            Case { name: "signed by an unknown key", token: stranger.sign(&good), want: Err(VerifyError::Signature) },
            Case {
                name: "unknown kid",
                token: sign_raw(&json!({"alg": "ES256", "kid": "nope"}), &good, &es.encoding, Algorithm::ES256),
                want: Err(VerifyError::UnknownKey),
            },
            Case {
                name: "no kid with several keys",
                token: sign_raw(&json!({"alg": "ES256"}), &good, &es.encoding, Algorithm::ES256),
                want: Err(VerifyError::UnknownKey),
            },
            Case {
                name: "expired",
                token: es.sign(&with(good.clone(), "exp", json!(NOW - 31))),
                want: Err(VerifyError::Expired),
            },
            Case {
                name: "expired within skew",
                token: es.sign(&with(good.clone(), "exp", json!(NOW - 29))),
                want: Ok(()),
            },
            Case {
                name: "nbf in the future",
                token: es.sign(&with(good.clone(), "nbf", json!(NOW + 120))),
                want: Err(VerifyError::NotYetValid),
            },
            Case {
                name: "no exp",
                token: es.sign(&without(good.clone(), "exp")),
                want: Err(VerifyError::MissingExpiry),
            },
            Case {
                name: "exp as a string",
                token: es.sign(&with(good.clone(), "exp", json!("1900000000"))),
                want: Err(VerifyError::Claim("exp")),
            },
            Case {
                name: "wrong iss",
                token: es.sign(&with(good.clone(), "iss", json!("someone-else"))),
                want: Err(VerifyError::Issuer),
            },
            Case {
                name: "iss as an array",
                token: es.sign(&with(good.clone(), "iss", json!(["narrowgate"]))),
                want: Err(VerifyError::Claim("iss")),
            },
            Case { name: "no iss", token: es.sign(&without(good.clone(), "iss")), want: Err(VerifyError::Issuer) },
            Case {
                name: "aud present but none expected",
                token: es.sign(&with(good.clone(), "aud", json!("api"))),
                want: Err(VerifyError::Audience),
            },
            Case {
                name: "aud of the wrong type",
                token: es.sign(&with(good.clone(), "aud", json!(42))),
                want: Err(VerifyError::Claim("aud")),
            },
            Case {
                name: "aud array holding a non-string",
                token: es.sign(&with(good.clone(), "aud", json!(["api", 7]))),
                want: Err(VerifyError::Claim("aud")),
            },
            Case {
                name: "unknown crit",
                token: sign_raw(
                    &json!({"alg": "ES256", "kid": "es", "crit": ["exp-ext"], "exp-ext": 1}),
                    &good,
                    &es.encoding,
                    Algorithm::ES256,
                ),
                want: Err(VerifyError::Critical),
            },
            Case {
                name: "b64 false",
                token: sign_raw(
                    &json!({"alg": "ES256", "kid": "es", "b64": false}),
                    &good,
                    &es.encoding,
                    Algorithm::ES256,
                ),
                want: Err(VerifyError::Critical),
            },
            Case { name: "too large", token: "a".repeat(9000), want: Err(VerifyError::TooLarge) },
            Case { name: "two segments", token: "abc.def".into(), want: Err(VerifyError::Malformed) },
            Case { name: "five segments (JWE)", token: "a.b.c.d.e".into(), want: Err(VerifyError::Malformed) },
            Case { name: "header not base64", token: "!!!.abc.def".into(), want: Err(VerifyError::Malformed) },
            Case {
                name: "payload tampered",
                token: {
                    let t = es.sign(&good);
                    let other = es.sign(&with(good.clone(), "sub", json!("mallory")));
                    let p: Vec<&str> = t.split('.').collect();
                    let q: Vec<&str> = other.split('.').collect();
                    format!("{}.{}.{}", p[0], q[1], p[2])
                },
                want: Err(VerifyError::Signature),
            },
            // The signature as the parsed-key path decodes it: every way of
            // spelling it other than the one signed is refused.
            Case {
                name: "ES256 signature with a byte more",
                token: resigned(&es.sign(&good), |s| s.push_str("AA")),
                want: Err(VerifyError::Signature),
            },
            Case {
                name: "ES256 signature far too long",
                token: resigned(&es.sign(&good), |s| *s = s.repeat(3)),
                want: Err(VerifyError::Signature),
            },
            Case {
                name: "ES256 signature cut short",
                token: resigned(&es.sign(&good), |s| s.truncate(40)),
                want: Err(VerifyError::Signature),
            },
            Case {
                name: "ES256 signature padded",
                token: resigned(&es.sign(&good), |s| s.push('=')),
                want: Err(VerifyError::Signature),
            },
            Case {
                name: "ES256 signature empty of meaning",
                token: resigned(&es.sign(&good), |s| *s = "A".repeat(86)),
                want: Err(VerifyError::Signature),
            },
            Case {
                name: "EdDSA signature with a byte more",
                token: resigned(&ed.sign(&good), |s| s.push_str("AA")),
                want: Err(VerifyError::Signature),
            },
            Case {
                name: "EdDSA signature in standard base64",
                token: resigned(&ed.sign(&good), |s| *s = s.replace('-', "+").replace('_', "/") + "+/"),
                want: Err(VerifyError::Signature),
            },
            Case {
                name: "malformed resource string",
                token: es.sign(&with(good.clone(), "accessRules", json!([rule("*", &["*"], &["account"])]))),
                want: Err(VerifyError::Claim("accessRules")),
            },
            Case {
                name: "accessRules of the wrong shape",
                token: es.sign(&with(good.clone(), "accessRules", json!({"application": "*"}))),
                want: Err(VerifyError::Malformed),
            },
            Case {
                // serde reads a sequence into a struct by position: the
                // array would pass as iss, sub, aud, exp, … with master true.
                name: "claims as a JSON array, validly signed",
                token: es.sign(&json!([
                    "narrowgate",
                    "mallory",
                    null,
                    NOW + 3600,
                    null,
                    NOW,
                    "j1",
                    null,
                    "access",
                    "admin",
                    true,
                    [rule("*", &["*"], &["*:$USER_ID$:*"])],
                    [],
                    null
                ])),
                want: Err(VerifyError::Malformed),
            },
            Case {
                name: "claims as a JSON string",
                token: es.sign(&json!("narrowgate")),
                want: Err(VerifyError::Malformed),
            },
            Case {
                name: "header as a JSON array",
                token: sign_raw(&json!(["ES256", "es"]), &good, &es.encoding, Algorithm::ES256),
                want: Err(VerifyError::Malformed),
            },
            Case {
                name: "iat in the future beyond the skew",
                token: es.sign(&with(good.clone(), "iat", json!(NOW + 31))),
                want: Err(VerifyError::IssuedInFuture),
            },
            Case {
                name: "iat in the future within the skew",
                token: es.sign(&with(good.clone(), "iat", json!(NOW + 29))),
                want: Ok(()),
            },
            Case {
                name: "sub with a newline",
                token: es.sign(&with(good.clone(), "sub", json!("a\nb"))),
                want: Err(VerifyError::Claim("sub")),
            },
        ];
        for c in cases {
            let got = verifier.verify(&c.token, NOW).map(|_| ());
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn audience_and_missing_exp_follow_the_issuer_policy() {
        let es = TestKey::es256("es");
        let mut policy = testkit::issuer_policy();
        policy.audience = vec!["trading".into()];
        policy.allow_missing_exp = true;
        let verifier = Verifier::new(testkit::keyset(&[&es], policy), 8192);
        let good = payload("alice", NOW, 3600, json!([]));
        let no_exp = without(with(good.clone(), "aud", json!(["other", "trading"])), "exp");
        let grant = verifier.verify(&es.sign(&no_exp), NOW).expect("accepted");
        assert_eq!(grant.expires_at, None);
        assert_eq!(
            verifier.verify(&es.sign(&with(good.clone(), "aud", json!("other"))), NOW).err(),
            Some(VerifyError::Audience)
        );
        assert_eq!(verifier.verify(&es.sign(&good), NOW).err(), Some(VerifyError::Audience));
        // With a single key, a token without kid selects it.
        let t =
            sign_raw(&json!({"alg": "ES256"}), &with(good, "aud", json!("trading")), &es.encoding, Algorithm::ES256);
        assert!(verifier.verify(&t, NOW).is_ok());
    }

    #[test]
    fn an_issuer_may_bound_a_tokens_lifetime() {
        let es = TestKey::es256("es");
        let mut policy = testkit::issuer_policy();
        policy.max_lifetime_secs = Some(3600);
        let verifier = Verifier::new(testkit::keyset(&[&es], policy), 8192);
        let within = payload("alice", NOW, 3600, json!([]));
        assert!(verifier.verify(&es.sign(&within), NOW).is_ok());
        let longer = payload("alice", NOW, 3601, json!([]));
        assert_eq!(verifier.verify(&es.sign(&longer), NOW).err(), Some(VerifyError::Lifetime));
        // Backdating iat does not buy a longer life: exp − iat is measured.
        let backdated = with(payload("alice", NOW, 60, json!([])), "iat", json!(NOW - 7200));
        assert_eq!(verifier.verify(&es.sign(&backdated), NOW).err(), Some(VerifyError::Lifetime));
        // Without iat the lifetime cannot be judged.
        let no_iat = without(within, "iat");
        assert_eq!(verifier.verify(&es.sign(&no_iat), NOW).err(), Some(VerifyError::Lifetime));
        assert_eq!(VerifyError::Lifetime.reason(), Reason::InvalidToken);
        assert_eq!(VerifyError::IssuedInFuture.reason(), Reason::InvalidToken);
    }

    #[test]
    fn grant_carries_the_claims() {
        let es = TestKey::es256("es");
        let verifier = Verifier::new(testkit::keyset(&[&es], testkit::issuer_policy()), 8192);
        let mut p = payload("alice", NOW, 3600, json!([rule("metastats-api", &["reader"], &["account:$USER_ID$:a1"])]));
        p["lineage"] = json!(["root", "parent"]);
        p["kind"] = json!("narrowed");
        let g = verifier.verify(&es.sign(&p), NOW).expect("valid");
        assert_eq!(&*g.subject, "alice");
        assert_eq!(g.kind, TokenKind::Narrowed);
        assert_eq!(g.lineage.len(), 2);
        assert_eq!(g.rules.len(), 1);
        assert_eq!(g.headers.rule_roles[0], "reader");
        assert_eq!(g.expires_at, Some(NOW + 3600));
    }

    #[test]
    fn missing_jti_gets_a_stable_id_independent_of_the_signature() {
        let es = TestKey::es256("es");
        let verifier = Verifier::new(testkit::keyset(&[&es], testkit::issuer_policy()), 8192);
        let p = without(payload("alice", NOW, 3600, json!([])), "jti");
        // ECDSA signatures are randomized: two signatures, one id.
        let a = verifier.verify(&es.sign(&p), NOW).expect("valid");
        let b = verifier.verify(&es.sign(&p), NOW).expect("valid");
        assert_eq!(a.token_id, b.token_id);
    }
}
