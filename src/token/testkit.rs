//! Keys and token crafting for tests and benchmarks: every algorithm the
//! verifier supports, and signing of arbitrary (also hostile) headers and
//! payloads. Not used by the gateway itself.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

use super::encoding::{b64, to_safe_json};
use super::keys::{self, IssuerPolicy, KeySet, VerificationKey};

/// A key pair (or HMAC secret) with its kid and pinned algorithm.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public key PEM (or, for HMAC, the secret).
    pub public: Vec<u8>,
    /// The private key PEM (empty for HMAC).
    pub private_pem: String,
}

impl TestKey {
    pub fn es256(kid: &str) -> Self {
        Self::generated(kid, Algorithm::ES256)
    }

    pub fn eddsa(kid: &str) -> Self {
        Self::generated(kid, Algorithm::EdDSA)
    }

    fn generated(kid: &str, alg: Algorithm) -> Self {
        let g = keys::generate(alg).expect("key generation");
        let (encoding, decoding) = match alg {
            Algorithm::EdDSA => (
                EncodingKey::from_ed_pem(g.private_pem.as_bytes()).expect("ed private"),
                DecodingKey::from_ed_pem(g.public_pem.as_bytes()).expect("ed public"),
            ),
            _ => (
                EncodingKey::from_ec_pem(g.private_pem.as_bytes()).expect("ec private"),
                DecodingKey::from_ec_pem(g.public_pem.as_bytes()).expect("ec public"),
            ),
        };
        TestKey {
            kid: kid.into(),
            alg,
            encoding,
            decoding,
            public: g.public_pem.into_bytes(),
            private_pem: g.private_pem,
        }
    }

    pub fn rs256(kid: &str) -> Self {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa generation");
        let private: aws_lc_rs::encoding::Pkcs8V1Der<'_> = kp.as_der().expect("rsa pkcs8");
        let public = kp.public_key().as_der().expect("rsa spki");
        let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec()));
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec()));
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("rsa private"),
            decoding: DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("rsa public"),
            public: public_pem.into_bytes(),
            private_pem,
        }
    }

    pub fn hs256(kid: &str, secret: &[u8]) -> Self {
        TestKey {
            kid: kid.into(),
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            public: secret.to_vec(),
            private_pem: String::new(),
        }
    }

    /// The verification key for a [`KeySet`].
    pub fn verification_key(&self, issuer: usize) -> VerificationKey {
        VerificationKey::new(Some(self.kid.clone()), self.alg, self.decoding.clone(), issuer)
    }

    /// The header narrowgate would write for this key.
    pub fn header(&self) -> Value {
        json!({ "alg": alg_name(self.alg), "typ": "JWT", "kid": self.kid })
    }

    /// Sign `payload` with this key under its normal header.
    pub fn sign(&self, payload: &Value) -> String {
        sign_raw(&self.header(), payload, &self.encoding, self.alg)
    }
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::RS256 => "RS256",
        Algorithm::HS256 => "HS256",
        _ => "unsupported",
    }
}

/// Sign any header and payload with `key` using `alg`, whatever the header
/// claims: for crafting hostile tokens.
pub fn sign_raw(header: &Value, payload: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let mut input = b64(to_safe_json(header).expect("header json").as_bytes());
    input.push('.');
    input.push_str(&b64(to_safe_json(payload).expect("payload json").as_bytes()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{sig}")
}

/// An unsigned token (`alg` as given, empty signature segment).
pub fn unsigned(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}.",
        b64(to_safe_json(header).expect("header json").as_bytes()),
        b64(to_safe_json(payload).expect("payload json").as_bytes())
    )
}

/// A grant of this gateway's own issuer for token `id` under `lineage`
/// (root first): no rules, no expiry, a user's.
pub fn grant(id: &str, lineage: &[&str]) -> crate::policy::grant::Grant {
    crate::policy::grant::Grant {
        token_id: id.into(),
        subject: id.into(),
        issuer: "narrowgate".into(),
        kid: None,
        name: None,
        kind: crate::policy::grant::TokenKind::Access,
        role: crate::policy::grant::Role::User,
        master: false,
        rules: std::sync::Arc::default(),
        tenants: Vec::new(),
        issued_at: None,
        not_before: None,
        expires_at: None,
        lineage: lineage.iter().map(|l| (*l).into()).collect(),
        bound_to: None,
        headers: crate::policy::grant::IdentityValues::build(id, id, &[]).expect("headers"),
        may_manage: true,
        minted_here: true,
        extra: Vec::new(),
        unmapped: Vec::new(),
    }
}

/// The default test issuer: `iss` "narrowgate", 30 s skew, `exp` required.
pub fn issuer_policy() -> IssuerPolicy {
    IssuerPolicy {
        name: "narrowgate".into(),
        issuer: "narrowgate".into(),
        audience: vec![],
        clock_skew_secs: 30,
        allow_missing_exp: false,
        max_lifetime_secs: None,
        may_manage: true,
        minted_here: true,
        mapping: None,
        exchange: None,
    }
}

/// A key set with one issuer trusting `keys`.
pub fn keyset(keys: &[&TestKey], policy: IssuerPolicy) -> KeySet {
    let mut set = KeySet::default();
    let issuer = set.add_issuer(policy);
    for k in keys {
        set.add_key(k.verification_key(issuer)).expect("unique kid");
    }
    set
}

/// A narrowgate payload valid from `now` for `ttl` seconds with `rules`.
pub fn payload(sub: &str, now: u64, ttl: u64, rules: Value) -> Value {
    json!({
        "iss": "narrowgate",
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": format!("jti-{sub}-{now}"),
        "kind": "access",
        "role": "user",
        "master": false,
        "accessRules": rules,
        "lineage": [],
    })
}

/// A rule granting every method of `application` with `roles` on `resources`.
pub fn rule(application: &str, roles: &[&str], resources: &[&str]) -> Value {
    json!({
        "id": application,
        "application": application,
        "service": "*",
        "methodGroups": [{ "group": "*", "methods": [{ "method": "*" }] }],
        "roles": roles,
        "resources": resources,
    })
}
