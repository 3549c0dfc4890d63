//! Find the credential among the configured sources (request phase 3).
//!
//! Two different credentials in one request are an error, never a choice:
//! the gateway would otherwise check one token while the upstream might read
//! the other.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

use crate::config::CredentialSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialError {
    /// Two different credentials, or a source given twice.
    Conflict,
    /// A credential that cannot be read (non-ASCII, empty Bearer).
    Malformed,
}

/// The credential, if any, from the configured sources.
pub fn extract<'a>(
    sources: &[CredentialSource],
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Option<Cow<'a, str>>, CredentialError> {
    let mut found: Option<Cow<'a, str>> = None;
    for src in sources {
        let got = match src {
            CredentialSource::Bearer => bearer(headers)?,
            CredentialSource::Header(name) => single_header(headers, name)?,
            CredentialSource::Query(param) => query.map(|q| query_param(q, param)).transpose()?.flatten(),
            CredentialSource::Cookie(name) => cookie(headers, name)?,
        };
        if let Some(token) = got {
            match &found {
                Some(prev) if *prev != token => return Err(CredentialError::Conflict),
                Some(_) => {}
                None => found = Some(token),
            }
        }
    }
    Ok(found)
}

fn bearer(headers: &HeaderMap) -> Result<Option<Cow<'_, str>>, CredentialError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(CredentialError::Conflict);
    }
    let s = value.to_str().map_err(|_| CredentialError::Malformed)?;
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, …) is the upstream's business.
        return Ok(None);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(CredentialError::Malformed);
    }
    Ok(Some(Cow::Borrowed(token)))
}

fn single_header<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Result<Option<Cow<'a, str>>, CredentialError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(CredentialError::Conflict);
    }
    let s = value.to_str().map_err(|_| CredentialError::Malformed)?.trim();
    if s.is_empty() {
        return Err(CredentialError::Malformed);
    }
    Ok(Some(Cow::Borrowed(s)))
}

fn query_param<'a>(query: &'a str, param: &str) -> Result<Option<Cow<'a, str>>, CredentialError> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !is_param(k, param) {
            continue;
        }
        if found.is_some() {
            return Err(CredentialError::Conflict);
        }
        if v.is_empty() {
            return Err(CredentialError::Malformed);
        }
        found = Some(percent_decode(v)?);
    }
    Ok(found)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<Cow<'a, str>>, CredentialError> {
    let mut found: Option<Cow<'a, str>> = None;
    for value in headers.get_all(COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        for pair in s.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else { continue };
            if k.trim() != name {
                continue;
            }
            if found.is_some() {
                return Err(CredentialError::Conflict);
            }
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(v);
            if v.is_empty() {
                return Err(CredentialError::Malformed);
            }
            found = Some(Cow::Borrowed(v));
        }
    }
    Ok(found)
}

/// `query` with the value of every parameter the gateway would read as a
/// credential (`params`, in any spelling [`is_param`] accepts) replaced by
/// `…`: how a request is shown without its credential.
pub fn redact_query<'a>(query: &'a str, params: &[String]) -> Cow<'a, str> {
    let named = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        params.iter().any(|p| is_param(key, p))
    };
    if !query.split('&').any(named) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if named(pair) => format!("{k}=…"),
            _ => pair.to_string(),
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// Whether a query key names `param`, as written or percent-encoded (an
/// upstream that decodes keys would read `access%5Ftoken` as
/// `access_token`: the gateway must see it as the credential too).
pub fn is_param(key: &str, param: &str) -> bool {
    key == param || (key.contains('%') && percent_decode(key).is_ok_and(|k| k == param))
}

fn percent_decode(v: &str) -> Result<Cow<'_, str>, CredentialError> {
    if !v.contains('%') && !v.contains('+') {
        return Ok(Cow::Borrowed(v));
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = v.get(i + 1..i + 3).ok_or(CredentialError::Malformed)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| CredentialError::Malformed)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| CredentialError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn sources() -> Vec<CredentialSource> {
        vec![
            CredentialSource::Bearer,
            CredentialSource::Header(http::HeaderName::from_static("auth-token")),
            CredentialSource::Query("access_token".into()),
            CredentialSource::Cookie("ng".into()),
        ]
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn query_credentials_are_redacted_in_every_spelling_the_gateway_reads() {
        let params = ["accessTokenId".to_string(), "access_token".to_string()];
        let cases = [
            ("nothing to redact", "a=1&b=2", "a=1&b=2"),
            ("one", "a=1&accessTokenId=s3cret&b=2", "a=1&accessTokenId=…&b=2"),
            ("two names", "access_token=s3cret&accessTokenId=s3cret", "access_token=…&accessTokenId=…"),
            ("percent-encoded key", "%61ccess_token=s3cret", "%61ccess_token=…"),
            ("encoded underscore", "access%5Ftoken=s3cret&x=1", "access%5Ftoken=…&x=1"),
            ("given twice", "access_token=s3cret&access_token=other", "access_token=…&access_token=…"),
            ("a key without a value", "access_token", "access_token"),
            ("a longer name is another parameter", "access_tokens=x", "access_tokens=x"),
        ];
        for (name, query, want) in cases {
            assert_eq!(redact_query(query, &params), want, "{name}");
        }
    }

    #[test]
    fn extraction_table() {
        type Want = Result<Option<&'static str>, CredentialError>;
        let cases: Vec<(&str, HeaderMap, Option<&str>, Want)> = vec![
            ("none", headers(&[]), None, Ok(None)),
            ("bearer", headers(&[("authorization", "Bearer abc")]), None, Ok(Some("abc"))),
            ("bearer any case", headers(&[("authorization", "bEaReR  abc")]), None, Ok(Some("abc"))),
            ("basic is not ours", headers(&[("authorization", "Basic Zm9v")]), None, Ok(None)),
            ("empty bearer", headers(&[("authorization", "Bearer ")]), None, Err(CredentialError::Malformed)),
            (
                "two authorization",
                headers(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]),
                None,
                Err(CredentialError::Conflict),
            ),
            ("auth-token", headers(&[("auth-token", "abc")]), None, Ok(Some("abc"))),
            (
                "bearer and same auth-token",
                headers(&[("authorization", "Bearer abc"), ("auth-token", "abc")]),
                None,
                Ok(Some("abc")),
            ),
            (
                "bearer and other auth-token",
                headers(&[("authorization", "Bearer abc"), ("auth-token", "xyz")]),
                None,
                Err(CredentialError::Conflict),
            ),
            ("query", headers(&[]), Some("a=1&access_token=abc"), Ok(Some("abc"))),
            ("query twice", headers(&[]), Some("access_token=abc&access_token=abc"), Err(CredentialError::Conflict)),
            ("query, key percent-encoded", headers(&[]), Some("access%5Ftoken=abc"), Ok(Some("abc"))),
            (
                "query twice, once encoded",
                headers(&[]),
                Some("access_token=abc&%61ccess_token=xyz"),
                Err(CredentialError::Conflict),
            ),
            (
                "query vs header",
                headers(&[("auth-token", "abc")]),
                Some("access_token=xyz"),
                Err(CredentialError::Conflict),
            ),
            ("cookie", headers(&[("cookie", "a=1; ng=abc")]), None, Ok(Some("abc"))),
            ("cookie twice", headers(&[("cookie", "ng=abc; ng=abd")]), None, Err(CredentialError::Conflict)),
        ];
        for (name, h, q, want) in cases {
            let got = extract(&sources(), &h, q).map(|o| o.map(|c| c.into_owned()));
            assert_eq!(got, want.map(|o| o.map(str::to_string)), "{name}");
        }
    }
}
