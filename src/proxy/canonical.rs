//! Phase 1: canonicalize the request path.
//!
//! The canonical path is what the router matches **and** what the upstream
//! receives, so the gateway and the upstream can never disagree about which
//! resource a request names. Anything that cannot be made unambiguous is
//! rejected rather than guessed at. Pure string work: no HTTP types here.

use std::borrow::Cow;

/// Why a path cannot be canonicalized. Every variant becomes a 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target is not a path starting with '/'")]
    NotOriginForm,
    #[error("an encoded '/' or '\\' in the path is ambiguous")]
    EncodedSeparator,
    #[error("a backslash in the path is ambiguous")]
    Backslash,
    #[error("a ';' in the path is ambiguous")]
    Semicolon,
    #[error("a NUL or control character in the path")]
    ControlCharacter,
    #[error("a raw non-ASCII byte in the path")]
    NonAscii,
    #[error("a malformed percent-escape in the path")]
    BadEscape,
    #[error("percent-escapes in the path are not valid UTF-8")]
    InvalidUtf8,
    #[error("a full-width or half-width form in the path")]
    FullWidth,
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// Whether `b` is an RFC 3986 unreserved character.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Canonicalize a request path (without its query).
///
/// - percent-escapes of unreserved characters are decoded, all others are
///   kept with upper-case hex;
/// - `.` and `..` segments are resolved, repeated slashes merged; a trailing
///   slash is kept;
/// - rejected: a path not starting with `/`, raw or encoded `\`, encoded `/`,
///   `;` (path parameters are read differently by different servers), NUL and
///   control characters, raw non-ASCII, malformed escapes, escapes that are
///   not UTF-8 or that encode full-width/half-width forms (which some
///   backends fold to ASCII delimiters), and `..` above the root.
///
/// Idempotent: `canonicalize(canonicalize(p)) == canonicalize(p)`.
pub fn canonicalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // Validate everything first; remember whether any rewriting is needed so
    // the common clean path is returned borrowed, without allocating.
    let mut needs_rewrite = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (h, l),
                    _ => return Err(PathError::BadEscape),
                };
                let v = match (hex_value(hi), hex_value(lo)) {
                    (Some(h), Some(l)) => h << 4 | l,
                    _ => return Err(PathError::BadEscape),
                };
                check_decoded_byte(v)?;
                if is_unreserved(v) || hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                    needs_rewrite = true;
                }
                if v >= 0x80 {
                    // Validate the whole run of encoded high bytes as UTF-8.
                    let (run_end, decoded) = decode_high_run(bytes, i)?;
                    check_utf8_run(&decoded)?;
                    i = run_end;
                    continue;
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            0x00..=0x20 | 0x7f => return Err(PathError::ControlCharacter),
            0x80..=0xff => return Err(PathError::NonAscii),
            b'/' => {
                // "//", "/./", "/../", and a trailing "/." or "/.." need work.
                let rest = &bytes[i + 1..];
                if rest.first() == Some(&b'/')
                    || rest == b"."
                    || rest == b".."
                    || rest.starts_with(b"./")
                    || rest.starts_with(b"../")
                {
                    needs_rewrite = true;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if !needs_rewrite {
        return Ok(Cow::Borrowed(path));
    }
    rewrite(bytes).map(Cow::Owned)
}

/// Bytes that may never appear in a path, even encoded.
fn check_decoded_byte(v: u8) -> Result<(), PathError> {
    match v {
        b'/' | b'\\' => Err(PathError::EncodedSeparator),
        b';' => Err(PathError::Semicolon),
        0x00..=0x1f | 0x7f => Err(PathError::ControlCharacter),
        _ => Ok(()),
    }
}

/// Decode a run of consecutive `%XX` escapes with values >= 0x80 starting at
/// `start`; returns the index after the run and the decoded bytes.
fn decode_high_run(bytes: &[u8], start: usize) -> Result<(usize, Vec<u8>), PathError> {
    let mut out = Vec::new();
    let mut i = start;
    while i < bytes.len() && bytes[i] == b'%' {
        let (Some(h), Some(l)) =
            (bytes.get(i + 1).and_then(|&b| hex_value(b)), bytes.get(i + 2).and_then(|&b| hex_value(b)))
        else {
            return Err(PathError::BadEscape);
        };
        let v = h << 4 | l;
        if v < 0x80 {
            break;
        }
        out.push(v);
        i += 3;
    }
    Ok((i, out))
}

fn check_utf8_run(decoded: &[u8]) -> Result<(), PathError> {
    let s = std::str::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)?;
    // U+FF00..U+FFEF: full-width ASCII variants and half-width forms. NFKC
    // folds e.g. U+FF0E to '.', U+FF0F to '/'.
    if s.chars().any(|c| ('\u{ff00}'..='\u{ffef}').contains(&c)) {
        return Err(PathError::FullWidth);
    }
    Ok(())
}

/// The slow path: decode unreserved escapes, upper-case the rest, resolve dot
/// segments and merge slashes. Input has already been validated.
fn rewrite(bytes: &[u8]) -> Result<String, PathError> {
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut trailing_slash = false;
    for raw in bytes[1..].split(|&b| b == b'/') {
        let seg = normalize_segment(raw);
        match seg.as_slice() {
            b"" => trailing_slash = true,
            b"." => trailing_slash = true,
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            _ => {
                segments.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(bytes.len());
    for seg in &segments {
        out.push('/');
        // Segments hold only ASCII: escapes stay escaped.
        out.push_str(std::str::from_utf8(seg).map_err(|_| PathError::InvalidUtf8)?);
    }
    if segments.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

fn normalize_segment(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex_value(raw[i + 1]), hex_value(raw[i + 2]))
        {
            let v = h << 4 | l;
            if is_unreserved(v) {
                out.push(v);
            } else {
                out.extend_from_slice(&[b'%', HEX_UPPER[h as usize], HEX_UPPER[l as usize]]);
            }
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// Fully percent-decode one path segment (a route parameter), for comparing
/// it with a resource id. Canonical segments are valid UTF-8 when decoded.
pub fn decode_segment(seg: &str) -> Cow<'_, str> {
    if !seg.contains('%') {
        return Cow::Borrowed(seg);
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        // Cannot happen for a canonical path; keep the escaped form.
        Err(_) => Cow::Borrowed(seg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Case {
        input: &'static str,
        want: Result<&'static str, PathError>,
    }

    #[test]
    fn canonicalization_table() {
        let cases = [
            Case { input: "/", want: Ok("/") },
            Case { input: "/a/b", want: Ok("/a/b") },
            Case { input: "/a/b/", want: Ok("/a/b/") },
            Case { input: "/a//b", want: Ok("/a/b") },
            Case { input: "//a///b//", want: Ok("/a/b/") },
            Case { input: "/a/./b", want: Ok("/a/b") },
            Case { input: "/a/b/.", want: Ok("/a/b/") },
            Case { input: "/a/b/../c", want: Ok("/a/c") },
            Case { input: "/a/b/..", want: Ok("/a/") },
            Case { input: "/a/%2e%2e/c", want: Ok("/c") },
            Case { input: "/a/%2E/c", want: Ok("/a/c") },
            Case { input: "/%61%62c", want: Ok("/abc") },
            Case { input: "/a%7eb", want: Ok("/a~b") },
            Case { input: "/a%20b", want: Ok("/a%20b") },
            Case { input: "/a%3fb", want: Ok("/a%3Fb") },
            Case { input: "/caf%C3%A9", want: Ok("/caf%C3%A9") },
            Case { input: "/..", want: Err(PathError::AboveRoot) },
            Case { input: "/a/../../b", want: Err(PathError::AboveRoot) },
            Case { input: "/%2e%2e/etc", want: Err(PathError::AboveRoot) },
            Case { input: "/a%2Fb", want: Err(PathError::EncodedSeparator) },
            Case { input: "/a%2fb", want: Err(PathError::EncodedSeparator) },
            Case { input: "/a%5Cb", want: Err(PathError::EncodedSeparator) },
            Case { input: "/a\\b", want: Err(PathError::Backslash) },
            Case { input: "/a;jsessionid=x", want: Err(PathError::Semicolon) },
            Case { input: "/a%3Bb", want: Err(PathError::Semicolon) },
            Case { input: "/a%00b", want: Err(PathError::ControlCharacter) },
            Case { input: "/a%0d%0ab", want: Err(PathError::ControlCharacter) },
            Case { input: "/a b", want: Err(PathError::ControlCharacter) },
            Case { input: "/caf\u{e9}", want: Err(PathError::NonAscii) },
            Case { input: "/a\u{ff0e}\u{ff0e}/b", want: Err(PathError::NonAscii) },
            Case { input: "/a%EF%BC%8E%EF%BC%8E/b", want: Err(PathError::FullWidth) },
            Case { input: "/a%EF%BC%8Fb", want: Err(PathError::FullWidth) },
            Case { input: "/a%C3", want: Err(PathError::InvalidUtf8) },
            Case { input: "/a%C3%28", want: Err(PathError::InvalidUtf8) },
            Case { input: "/a%", want: Err(PathError::BadEscape) },
            Case { input: "/a%2", want: Err(PathError::BadEscape) },
            Case { input: "/a%zz", want: Err(PathError::BadEscape) },
            Case { input: "a/b", want: Err(PathError::NotOriginForm) },
            Case { input: "*", want: Err(PathError::NotOriginForm) },
            Case { input: "", want: Err(PathError::NotOriginForm) },
        ];
        for c in cases {
            let got = canonicalize(c.input).map(|p| p.into_owned());
            assert_eq!(got, c.want.map(str::to_string), "input {:?}", c.input);
        }
    }

    #[test]
    fn clean_paths_are_not_copied() {
        assert!(matches!(canonicalize("/users/current/accounts/abc-1"), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonicalize("/a%20b/"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn segments_decode_for_resource_ids() {
        assert_eq!(decode_segment("abc"), "abc");
        assert_eq!(decode_segment("a%20b"), "a b");
        assert_eq!(decode_segment("caf%C3%A9"), "café");
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just("%41".to_string()),
            Just("%7e".to_string()),
            Just("%20".to_string()),
            Just("%3f".to_string()),
            Just("%C3%A9".to_string()),
            "[a-zA-Z0-9_~-]{1,4}",
        ];
        proptest::collection::vec(atom, 0..12).prop_map(|parts| format!("/{}", parts.concat()))
    }

    proptest! {
        #[test]
        fn canonicalization_is_idempotent(path in path_strategy()) {
            if let Ok(once) = canonicalize(&path) {
                let twice = canonicalize(&once).map(|p| p.into_owned());
                prop_assert_eq!(twice, Ok(once.clone().into_owned()));
                prop_assert!(!once.contains("//"));
                prop_assert!(!once.split('/').any(|s| s == "." || s == ".."));
            }
        }

        #[test]
        fn canonicalization_never_panics(path in "\\PC{0,40}") {
            let _ = canonicalize(&path);
        }
    }
}
