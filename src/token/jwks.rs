//! The JWKS this gateway publishes for the keys it signs with: public
//! parameters only, built once per snapshot.

use bytes::Bytes;

use super::keys::SigningKey;
use super::sign::Signing;

/// Build the JWKS document, once per snapshot.
pub fn build_jwks(signing: Option<&Signing>) -> Bytes {
    let keys: Vec<serde_json::Value> =
        signing.map(|sg| sg.keys.iter().filter_map(|k| public_jwk(k)).collect()).unwrap_or_default();
    Bytes::from(serde_json::json!({ "keys": keys }).to_string())
}

fn public_jwk(key: &SigningKey) -> Option<serde_json::Value> {
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key.encoding_key(), key.algorithm).ok()?;
    let mut v = serde_json::to_value(jwk).ok()?;
    let obj = v.as_object_mut()?;
    // Only public parameters leave the gateway, whatever the library put in.
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        obj.remove(private);
    }
    obj.insert("kid".into(), key.kid.clone().into());
    obj.insert("use".into(), "sig".into());
    Some(v)
}
