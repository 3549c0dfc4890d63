//! Verification and signing keys.
//!
//! Every verification key is pinned to one algorithm and built with the typed
//! constructor for that algorithm's key type, so an RSA or EC public key can
//! never be used as an HMAC secret (the classic `alg` confusion). Keys are
//! loaded when the config is; verification does no I/O.

use std::collections::HashMap;
use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, KeyPair};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// Errors loading or generating keys. Messages name files and kids, never
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{what} is not a valid {alg:?} key")]
    Invalid { what: String, alg: Algorithm },
    #[error("{0}")]
    Jwks(String),
    #[error("unsupported algorithm {0}")]
    Unsupported(String),
    #[error("key generation failed")]
    Generate,
}

/// What one issuer's tokens must satisfy besides a valid signature.
#[derive(Clone, Debug)]
pub struct IssuerPolicy {
    /// A name for logs and metrics.
    pub name: String,
    /// The expected `iss`.
    pub issuer: String,
    /// Accepted audiences; empty means tokens must carry no `aud`.
    pub audience: Vec<String>,
    pub clock_skew_secs: u64,
    pub allow_missing_exp: bool,
    /// The longest `exp − iat` accepted; `None`: any.
    pub max_lifetime_secs: Option<u64>,
    /// Whether its tokens may carry management authority (admin, master):
    /// this gateway's own issuer, or one the config explicitly trusts so.
    pub may_manage: bool,
    /// Whether this gateway mints its tokens (holds its signing keys).
    pub minted_here: bool,
    /// How its tokens' claims map to access rules (an identity provider's
    /// tokens); `None`: they carry narrowgate's `accessRules`.
    pub mapping: Option<std::sync::Arc<super::mapping::ClaimMapping>>,
    /// The clients whose tokens may be exchanged for narrowgate tokens
    /// (RFC 8693; `"*"`: any); `None`: no token of it may be.
    pub exchange: Option<Vec<String>>,
}

/// One verification key.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// Index of the issuer in [`KeySet::issuers`].
    pub issuer: usize,
    /// The key parsed once, for the algorithms verified through it (EC and
    /// EdDSA): parsing the key on every verification, as the generic path
    /// does, is a measurable part of a cold request.
    pub parsed: Option<std::sync::Arc<aws_lc_rs::signature::ParsedPublicKey>>,
}

impl VerificationKey {
    pub fn new(kid: Option<String>, algorithm: Algorithm, key: DecodingKey, issuer: usize) -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey};
        let verification: Option<&'static dyn aws_lc_rs::signature::VerificationAlgorithm> = match algorithm {
            Algorithm::ES256 => Some(&ECDSA_P256_SHA256_FIXED),
            Algorithm::ES384 => Some(&ECDSA_P384_SHA384_FIXED),
            Algorithm::EdDSA => Some(&ED25519),
            _ => None,
        };
        // A key that does not parse here is left to the generic path, which
        // refuses its signatures.
        let parsed = verification
            .zip(key.try_get_as_bytes().ok())
            .and_then(|(alg, bytes)| ParsedPublicKey::new(alg, bytes).ok())
            .map(std::sync::Arc::new);
        VerificationKey { kid, algorithm, key, issuer, parsed }
    }
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Every issuer and key the gateway trusts.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    pub issuers: Vec<IssuerPolicy>,
    pub keys: Vec<VerificationKey>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    pub fn add_issuer(&mut self, policy: IssuerPolicy) -> usize {
        self.issuers.push(policy);
        self.issuers.len() - 1
    }

    /// Add a key; a duplicate kid is refused (key selection must be unique).
    pub fn add_key(&mut self, key: VerificationKey) -> Result<(), String> {
        if let Some(kid) = &key.kid {
            if self.by_kid.contains_key(kid) {
                return Err(format!("kid {kid:?} is used by more than one key"));
            }
            self.by_kid.insert(kid.clone(), self.keys.len());
        }
        self.keys.push(key);
        Ok(())
    }

    /// The key a token names by `kid`; without a `kid`, the only key there is.
    pub fn find(&self, kid: Option<&str>) -> Option<&VerificationKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid).map(|&i| &self.keys[i]),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Parse an algorithm name as written in config or a JWT header.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => return None,
    })
}

pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })
}

/// Load a public key (or, for HS*, a secret) with the constructor its
/// algorithm calls for.
pub fn load_decoding_key(path: &Path, alg: Algorithm) -> Result<DecodingKey, KeyError> {
    decoding_key(&read(path)?, alg, &path.display().to_string())
}

/// A public key (or, for HS*, a secret) from the bytes of its file, named
/// `what` in errors.
pub fn decoding_key(bytes: &[u8], alg: Algorithm, what: &str) -> Result<DecodingKey, KeyError> {
    let invalid = || KeyError::Invalid { what: what.to_string(), alg };
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(bytes).map_err(|_| invalid()),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(bytes).map_err(|_| invalid()),
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(bytes).map_err(|_| invalid()),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            // A PEM file is never an HMAC secret.
            if bytes.starts_with(b"-----BEGIN") || bytes.len() < 32 {
                return Err(invalid());
            }
            Ok(DecodingKey::from_secret(bytes))
        }
        _ => Err(KeyError::Unsupported(format!("{alg:?}"))),
    }
}

/// The usable keys of a JWKS document, and why each other key was skipped.
#[derive(Debug, Default)]
pub struct JwksKeys {
    pub keys: Vec<VerificationKey>,
    /// One line per skipped key: its position, kid and the reason.
    pub skipped: Vec<String>,
}

/// The smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// The RSA algorithms narrowgate verifies (an RSA key fits each).
const RSA: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

/// Every asymmetric algorithm narrowgate verifies.
pub(crate) const ASYMMETRIC: [Algorithm; 9] =
    [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, RSA[0], RSA[1], RSA[2], RSA[3], RSA[4], RSA[5]];

/// Keys of a JWKS document. A key is used only for what it is published
/// for and only as what it is: it needs a `kid`; a `use`, if given, of
/// `sig`; `key_ops`, if given, including `verify`; a public key type
/// narrowgate verifies (EC P-256/P-384, Ed25519, RSA of at least 2048 bits;
/// never `oct`: a JWKS is public); and an `alg` that fits its type and
/// curve (without one, the issuer's single allowed algorithm of that type).
/// A key failing any of this is skipped with its reason; it never makes
/// the rest of the set unusable. Only a document that is not a JWK Set at
/// all is an error.
pub fn keys_from_jwks(json: &str, allowed: &[Algorithm], issuer: usize) -> Result<JwksKeys, KeyError> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = super::encoding::from_object(json.as_bytes())
        .map_err(|e| KeyError::Jwks(format!("not a JWKS document: {e}")))?;
    let mut out = JwksKeys::default();
    for (i, value) in doc.keys.iter().enumerate() {
        match usable_key(value, allowed, issuer) {
            Ok(key) => out.keys.push(key),
            Err(why) => {
                let kid = value.get("kid").and_then(|k| k.as_str()).map(|k| k.chars().take(64).collect::<String>());
                out.skipped.push(format!("keys[{i}] (kid {kid:?}): {why}"));
            }
        }
    }
    Ok(out)
}

/// One JWK as a verification key, or why it cannot be one.
fn usable_key(value: &serde_json::Value, allowed: &[Algorithm], issuer: usize) -> Result<VerificationKey, String> {
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|_| "an unsupported or malformed key".to_string())?;
    let kid = jwk.common.key_id.clone().ok_or("no kid")?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("published for a use other than signatures (use is not \"sig\")".into()),
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("key_ops does not include \"verify\"".into());
    }
    // The algorithms this key's type and curve can verify.
    let fits: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("an EC curve narrowgate does not verify".into()),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return Err("an OKP curve narrowgate does not verify".into()),
        },
        AlgorithmParameters::RSA(rsa) => {
            if rsa_bits(&rsa.n).is_none_or(|bits| bits < MIN_RSA_BITS) {
                return Err(format!("an RSA key shorter than {MIN_RSA_BITS} bits"));
            }
            &RSA
        }
        AlgorithmParameters::OctetKey(_) => return Err("a symmetric key; a JWKS may only hold public keys".into()),
        _ => return Err("a key type narrowgate does not verify".into()),
    };
    let alg = match jwk.common.key_algorithm {
        Some(ka) => match key_algorithm(ka) {
            Some(a) if fits.contains(&a) => a,
            Some(a) => return Err(format!("alg {a:?} does not fit the key's type")),
            None => return Err("an alg narrowgate does not verify".into()),
        },
        None => {
            let fitting: Vec<_> = allowed.iter().filter(|a| fits.contains(a)).collect();
            match fitting.as_slice() {
                [one] => **one,
                [] => return Err("no alg, and none of the issuer's algorithms fits the key".into()),
                _ => return Err("no alg, and the issuer allows several for this key type".into()),
            }
        }
    };
    if !allowed.contains(&alg) {
        return Err(format!("alg {alg:?} is not among the issuer's algorithms"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "malformed key parameters".to_string())?;
    Ok(VerificationKey::new(Some(kid), alg, key, issuer))
}

/// The bit length of a base64url RSA modulus.
fn rsa_bits(n: &str) -> Option<usize> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')).ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    Some((bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize)
}

fn key_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        _ => return None,
    })
}

/// A private key narrowgate signs with.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    key: EncodingKey,
    /// The public half, for verification and the JWKS.
    public: DecodingKey,
    /// The public half as SPKI PEM.
    pub public_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Load a PKCS#8 PEM private key; its algorithm (ES256, ES384, EdDSA) is
    /// read from the key itself.
    pub fn from_pem_file(path: &Path, kid: &str) -> Result<Self, KeyError> {
        let bytes = read(path)?;
        Self::from_pem(&bytes, kid)
            .map_err(|_| KeyError::Invalid { what: path.display().to_string(), alg: Algorithm::ES256 })
    }

    pub fn from_pem(pem_bytes: &[u8], kid: &str) -> Result<Self, KeyError> {
        let invalid = || KeyError::Invalid { what: format!("private key {kid:?}"), alg: Algorithm::ES256 };
        let parsed = pem::parse(pem_bytes).map_err(|_| invalid())?;
        let der = parsed.contents();
        let spki = |r: Result<_, _>| -> Result<Vec<u8>, KeyError> {
            let der: aws_lc_rs::encoding::PublicKeyX509Der<'static> = r.map_err(|_| invalid())?;
            Ok(der.as_ref().to_vec())
        };
        let (algorithm, key, public_der) =
            if let Ok(kp) = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
                (Algorithm::ES256, EncodingKey::from_ec_der(der), spki(kp.public_key().as_der())?)
            } else if let Ok(kp) = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, der) {
                (Algorithm::ES384, EncodingKey::from_ec_der(der), spki(kp.public_key().as_der())?)
            } else if let Ok(kp) = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                (Algorithm::EdDSA, EncodingKey::from_ed_der(der), spki(kp.public_key().as_der())?)
            } else {
                return Err(invalid());
            };
        // Through PEM, so the public key takes the same typed path as one
        // loaded from a file.
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der));
        let public = match algorithm {
            Algorithm::EdDSA => DecodingKey::from_ed_pem(public_pem.as_bytes()),
            _ => DecodingKey::from_ec_pem(public_pem.as_bytes()),
        }
        .map_err(|_| invalid())?;
        Ok(SigningKey { kid: kid.to_string(), algorithm, key, public, public_pem })
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }

    /// The public half, as a verification key for `issuer`.
    pub fn verification_key(&self, issuer: usize) -> Result<VerificationKey, KeyError> {
        Ok(VerificationKey::new(Some(self.kid.clone()), self.algorithm, self.public.clone(), issuer))
    }
}

/// A freshly generated key pair, PEM-encoded.
pub struct GeneratedKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub private_pem: String,
    pub public_pem: String,
}

/// Generate an ES256, ES384 or EdDSA key pair with a random kid.
pub fn generate(alg: Algorithm) -> Result<GeneratedKey, KeyError> {
    let (private_der, public_der): (Vec<u8>, Vec<u8>) = match alg {
        Algorithm::ES256 => {
            let kp =
                sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| KeyError::Generate)?;
            let private = kp.to_pkcs8v1().map_err(|_| KeyError::Generate)?;
            let public = kp.public_key().as_der().map_err(|_| KeyError::Generate)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        Algorithm::ES384 => {
            let kp =
                sig::EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).map_err(|_| KeyError::Generate)?;
            let private = kp.to_pkcs8v1().map_err(|_| KeyError::Generate)?;
            let public = kp.public_key().as_der().map_err(|_| KeyError::Generate)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        Algorithm::EdDSA => {
            let kp = sig::Ed25519KeyPair::generate().map_err(|_| KeyError::Generate)?;
            let private = kp.to_pkcs8v1().map_err(|_| KeyError::Generate)?;
            let public = kp.public_key().as_der().map_err(|_| KeyError::Generate)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        other => return Err(KeyError::Unsupported(format!("{other:?}"))),
    };
    let kid = random_id(8)?;
    Ok(GeneratedKey {
        kid,
        algorithm: alg,
        private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", private_der)),
        public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public_der)),
    })
}

/// `n` random bytes as lower-case hex.
pub fn random_id(n: usize) -> Result<String, KeyError> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| KeyError::Generate)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random UUID (version 4, RFC 9562 variant), as Crafter's ids are.
pub fn random_uuid() -> Result<String, KeyError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| KeyError::Generate)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;

    fn jwk_json(alg: Algorithm, kid: Option<&str>, with_alg: bool) -> serde_json::Value {
        let g = generate(alg).expect("key");
        let enc = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(g.private_pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(g.private_pem.as_bytes()),
        }
        .expect("encoding key");
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&enc, alg).expect("jwk")).expect("json");
        match kid {
            Some(k) => jwk["kid"] = k.into(),
            None => {
                jwk.as_object_mut().expect("object").remove("kid");
            }
        }
        if !with_alg {
            jwk.as_object_mut().expect("object").remove("alg");
        }
        jwk
    }

    fn kids(set: &JwksKeys) -> Vec<(Option<&str>, Algorithm)> {
        set.keys.iter().map(|k| (k.kid.as_deref(), k.algorithm)).collect()
    }

    #[test]
    fn jwks_keys_need_a_kid_a_fitting_alg_and_no_secrets() {
        let es = jwk_json(Algorithm::ES256, Some("a"), true);
        let ed = jwk_json(Algorithm::EdDSA, Some("b"), false);
        let set = serde_json::json!({ "keys": [es, ed] }).to_string();
        let keys = keys_from_jwks(&set, &[Algorithm::ES256, Algorithm::EdDSA], 0).expect("valid jwks");
        assert_eq!(kids(&keys), [(Some("a"), Algorithm::ES256), (Some("b"), Algorithm::EdDSA)]);
        assert!(keys.skipped.is_empty());
        assert!(keys_from_jwks("not json", &[Algorithm::ES256], 0).is_err());
        assert!(keys_from_jwks("[{\"keys\": []}]", &[Algorithm::ES256], 0).is_err(), "a JWKS is an object");
        assert!(keys_from_jwks("{\"keys\": 7}", &[Algorithm::ES256], 0).is_err());
    }

    #[test]
    fn an_unusable_key_is_skipped_and_never_spoils_the_rest() {
        let good = || jwk_json(Algorithm::ES256, Some("good"), true);
        let with = |mut v: serde_json::Value, k: &str, x: serde_json::Value| {
            v[k] = x;
            v
        };
        let rsa_1024 = serde_json::json!({
            "kty": "RSA", "kid": "rsa-small", "alg": "RS256", "e": "AQAB",
            "n": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xC5u8; 128]),
        });
        let rsa_2048 = serde_json::json!({
            "kty": "RSA", "kid": "rsa", "alg": "RS256", "e": "AQAB",
            "n": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xC5u8; 256]),
        });
        let p384 = jwk_json(Algorithm::ES384, Some("p384"), false);
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("use enc", with(jwk_json(Algorithm::ES256, Some("enc"), true), "use", "enc".into())),
            (
                "key_ops without verify",
                with(jwk_json(Algorithm::ES256, Some("ops"), true), "key_ops", serde_json::json!(["sign"])),
            ),
            ("alg of another type", with(jwk_json(Algorithm::ES256, Some("rs"), true), "alg", "RS256".into())),
            ("alg of another curve", with(jwk_json(Algorithm::ES256, Some("crv"), true), "alg", "ES384".into())),
            ("P-384 key claiming ES256", with(p384, "alg", "ES256".into())),
            ("EdDSA alg on an EC key", with(jwk_json(Algorithm::ES256, Some("ed"), true), "alg", "EdDSA".into())),
            (
                "an alg narrowgate does not know",
                with(jwk_json(Algorithm::ES256, Some("k"), true), "alg", "ES256K".into()),
            ),
            ("an RSA key beside EC ones (issuer: ES256 only)", rsa_2048),
            ("a short RSA key", rsa_1024),
            (
                "a symmetric key",
                serde_json::json!({ "kty": "oct", "kid": "s", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "HS256" }),
            ),
            (
                "an unknown key type",
                serde_json::json!({ "kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AAAA" }),
            ),
            ("an unsupported curve", serde_json::json!({ "kty": "OKP", "kid": "x", "crv": "X25519", "x": "AAAA" })),
            ("no kid", jwk_json(Algorithm::ES256, None, true)),
            ("not an object", serde_json::json!("a key")),
        ];
        for (name, bad) in cases {
            let set = serde_json::json!({ "keys": [bad, good()] }).to_string();
            let keys = keys_from_jwks(&set, &[Algorithm::ES256], 0).expect("the set stays usable");
            assert_eq!(kids(&keys), [(Some("good"), Algorithm::ES256)], "{name}");
            assert_eq!(keys.skipped.len(), 1, "{name}: {:?}", keys.skipped);
        }
        // The same keys are fine where they fit: an issuer allowing RS256
        // takes the 2048-bit RSA key, and key_ops with verify is accepted.
        let ok = serde_json::json!({ "keys": [
            with(jwk_json(Algorithm::ES256, Some("ops"), true), "key_ops", serde_json::json!(["verify"])),
            with(jwk_json(Algorithm::ES256, Some("sig"), true), "use", "sig".into()),
        ]});
        let keys = keys_from_jwks(&ok.to_string(), &[Algorithm::ES256], 0).expect("valid");
        assert_eq!(keys.keys.len(), 2, "{:?}", keys.skipped);
    }
}
