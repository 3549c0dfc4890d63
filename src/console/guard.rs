//! The guard every console page passes: the signed-in session, its token
//! authenticated again under the policy in force, and for a state-changing
//! form its origin, its CSRF token and its body within the API's limit;
//! the client a failed sign-in is counted against.

use super::*;
use crate::reason::Reason;

/// A signed-in request: its session, the policy in force and the grant
/// of the token the session was opened with, authenticated again now.
pub(super) struct Signed {
    pub(super) session: Arc<Session>,
    pub(super) snap: Arc<Snapshot>,
    pub(super) grant: Arc<Grant>,
}

impl Signed {
    pub(super) fn who(&self) -> Option<String> {
        Some(self.session.label.clone())
    }

    pub(super) fn csrf(&self) -> Option<String> {
        Some(self.session.csrf.clone())
    }
}

/// A response that ends the request early (boxed: it is large).
pub(super) type Refused = Box<Response>;

/// The signed-in caller, or the way to the sign-in page.
pub(super) async fn signed_in(s: &Console, headers: &HeaderMap) -> Result<Signed, Refused> {
    let snap = s.snapshot();
    let Some(id) = session::cookie(headers) else {
        return Err(Box::new(Redirect::to("/console/sign-in").into_response()));
    };
    // No such session: it was idle or too old, signed out, or ended with
    // its token (revoked, expired) or to make room for a sign-in.
    let Some(session) = s.console.sessions.get(id, s.service.now().secs(), &snap.console).await else {
        return Err(Box::new(Redirect::to("/console/sign-in?ended=session").into_response()));
    };
    // The sign-in token, judged again under the policy in force.
    let grant = match snap.auth.authenticate_fetching(&session.credential, None, None).await {
        Ok(g) if s.service.manager(&g).is_ok() => g,
        refused => {
            // Revoked, expired, or no longer an administrator: ended on
            // every replica. Refused for anything else (a key or reference
            // token this replica has not caught up with), ended here only.
            let definitive = matches!(refused, Ok(_) | Err(Reason::Revoked | Reason::Expired));
            if definitive {
                // (A store that cannot delete it is logged; the token is
                // refused on every replica anyway.)
                let _ = s.console.sessions.end(id).await;
            } else {
                s.console.sessions.end_here(id);
            }
            return Err(Box::new(Redirect::to("/console/sign-in?ended=token").into_response()));
        }
    };
    Ok(Signed { session, snap, grant })
}

/// A form's fields.
pub(super) fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A form's fields in order, repeated names kept (checkbox groups).
pub(super) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A request's query parameters.
pub(super) fn query(uri: &Uri) -> HashMap<String, String> {
    form(uri.query().unwrap_or_default().as_bytes())
}

/// A state-changing request must come from this origin and carry the
/// session's CSRF token.
pub(super) fn checked(headers: &HeaderMap, signed: &Signed, fields: &HashMap<String, String>) -> Result<(), Refused> {
    let submitted =
        fields.get("csrf").map(String::as_str).or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    // Fail closed: from elsewhere, or without the form's token, nothing is done.
    if !same_origin(headers, signed.snap.console.secure_cookie) || !session::csrf_ok(&signed.session, submitted) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form did not come from this console's own page (its security token was missing or wrong). Reload the page and try again.",
            Some(signed),
        )));
    }
    Ok(())
}

/// A signed-in form post: the caller, the request's headers and the
/// form's fields (`pairs` in order, repeated names kept, for checkbox
/// groups), once its origin and CSRF token are checked.
pub(super) struct Posted {
    pub(super) signed: Signed,
    pub(super) headers: HeaderMap,
    pub(super) fields: HashMap<String, String>,
    pub(super) pairs: Vec<(String, String)>,
}

/// Read a signed-in form post the way the JSON API reads a body
/// (`authorized_body`): the session first, so an anonymous client is sent
/// away before its body is read; the body within the API's limit; and the
/// session's token authenticated again once the body is in, under the
/// policy in force then (a token revoked while the body trickled in does
/// nothing).
pub(super) async fn posted(s: &Console, req: Request) -> Result<Posted, Refused> {
    let headers = req.headers().clone();
    let first = signed_in(s, &headers).await?;
    let body = form_body(req, Some(&first)).await?;
    let signed = signed_in(s, &headers).await?;
    let pairs = form_pairs(&body);
    let fields: HashMap<String, String> = pairs.iter().cloned().collect();
    checked(&headers, &signed, &fields)?;
    Ok(Posted { signed, headers, fields, pairs })
}

/// A form's body, read with the JSON API's own limit ([`MAX_BODY`], 64
/// KiB, with or without `Content-Length`): past it, 413 and nothing done.
pub(super) async fn form_body(req: Request, signed: Option<&Signed>) -> Result<Bytes, Refused> {
    axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| {
        let message = format!("the body is larger than {MAX_BODY} bytes");
        Box::new(error_page(ApiCode::PayloadTooLarge.status(), "Too large", &message, signed))
    })
}

/// Whether a state-changing request comes from this console's own origin:
/// `https://` the request's `Host` with `console.secure_cookie` (users
/// reach it over HTTPS), else `http://` it. The request's `Origin` decides
/// when it has one (`null` is no origin of ours); without it, its
/// `Referer` must be a URL of this origin. A browser sends at least one of
/// them with every form it posts and every post a page's script makes
/// (the console's `Referrer-Policy: same-origin` keeps the `Referer` on
/// its own requests), so a request with neither did not come from one of
/// its pages: refused, as is a header sent twice or one that is not a URL
/// (fail closed).
pub(super) fn same_origin(headers: &HeaderMap, secure: bool) -> bool {
    let scheme = if secure { "https" } else { "http" };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let one = |name: header::HeaderName| {
        let mut values = headers.get_all(name).into_iter();
        match (values.next(), values.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.to_str().ok()),
            (Some(_), Some(_)) => Some(None),
        }
    };
    let of_this_origin = |url: &str, whole: bool| {
        let Ok(uri) = url.parse::<Uri>() else { return false };
        // An origin is scheme://host[:port] and nothing else; a referer
        // may go on with a path and query.
        let exact = !whole || url.len() == scheme.len() + 3 + uri.authority().map_or(0, |a| a.as_str().len());
        exact
            && uri.scheme_str() == Some(scheme)
            && uri.authority().is_some_and(|a| a.as_str().eq_ignore_ascii_case(host))
    };
    match (one(header::ORIGIN), one(header::REFERER)) {
        (Some(origin), _) => origin.is_some_and(|o| of_this_origin(o, true)),
        (None, Some(referer)) => referer.is_some_and(|r| of_this_origin(r, false)),
        (None, None) => false,
    }
}

/// The client a request comes from, as failed sign-ins are counted: the
/// connection's address or — when that is one of `trusted_proxies` — the
/// nearest address in `X-Forwarded-For` that is not (a proxy in front of
/// the console would otherwise make all its users one client), stopping
/// at a hop that is not an address; an IPv6 client is its prefix
/// (`rate_limits.client_ipv6_prefix`).
pub(super) fn client(snap: &Snapshot, req: &Request) -> IpAddr {
    // No connection address (a router driven without sockets): every such
    // request is one client.
    let peer = req
        .extensions()
        .get::<ConnectInfo<IpAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.to_canonical());
    let mut client = peer;
    if snap.is_trusted(peer) {
        let hops: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !snap.is_trusted(client) {
                break;
            }
        }
    }
    snap.limits.client(client)
}
