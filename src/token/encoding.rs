//! JWT segment encoding that keeps MetaApi's and ProdManager's clients
//! working.
//!
//! Those clients decode the payload with *standard* base64, which silently
//! drops `-` and `_`. For ASCII input, base64url emits those two characters
//! only for a byte `>`, `?`, `~` or DEL in the third position of a 3-byte
//! group; JSON may escape any character inside a string, so escaping those
//! four (and every non-ASCII character) makes the encoding free of them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a JSON object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Read a JSON object into `T`. Anything else is refused before serde sees
/// it: serde reads a JSON array into a struct's fields by position, so a
/// claims set, header, key set or request body sent as an array would
/// otherwise be accepted in a shape nobody checked.
pub fn from_object<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, ObjectError> {
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ObjectError::NotAnObject);
    }
    Ok(serde_json::from_slice(json)?)
}

/// Serialize to JSON with only ASCII output and `>`, `?`, `~`, DEL escaped.
pub fn to_safe_json<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let raw = serde_json::to_string(value)?;
    let mut out = String::with_capacity(raw.len() + 16);
    let mut units = [0u16; 2];
    for c in raw.chars() {
        match c {
            '>' | '?' | '~' | '\u{7f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if c.is_ascii() => out.push(c),
            c => {
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
        }
    }
    Ok(out)
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url decoding (no padding, canonical trailing bits).
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn safe_json_never_encodes_to_dash_or_underscore(s in ".*", n in 0u64..1_000_000) {
            let v = serde_json::json!({ "s": s, "n": n, "k": ">?~\u{7f}é😀" });
            let json = to_safe_json(&v).expect("json");
            prop_assert!(json.is_ascii());
            let back: serde_json::Value = serde_json::from_str(&json).expect("parse back");
            prop_assert_eq!(&back, &v);
            // Any alignment: prefix with 0..3 bytes.
            for pad in ["", "a", "ab"] {
                let enc = b64(format!("{pad}{json}").as_bytes());
                prop_assert!(!enc.contains('-') && !enc.contains('_'), "{}", enc);
            }
        }
    }
}
