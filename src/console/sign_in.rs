//! Signing in (an admin or master token exchanged for a session, the
//! client throttled after failures) and out.

use super::*;

#[derive(Template)]
#[template(path = "console/sign_in.html")]
pub(super) struct SignInPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
}

pub(super) async fn sign_in_page(State(s): State<Console>, uri: Uri) -> Response {
    let q = query(&uri);
    let notice = match q.get("ended").map(String::as_str) {
        Some("session") => Some("Your session ended. Sign in again.".to_string()),
        Some("token") => Some("Your session ended: the token it was opened with is no longer valid.".to_string()),
        Some("out") => Some("Signed out.".to_string()),
        _ => None,
    };
    sign_in_form(StatusCode::OK, notice, s.snapshot().console.secure_cookie)
}

/// The sign-in form with a fresh form token, also set as a cookie the
/// form must match (there is no session yet to hold it).
pub(super) fn sign_in_form(status: StatusCode, notice: Option<String>, secure: bool) -> Response {
    let Ok(token) = session::random_token() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut resp = page(status, &SignInPage { who: None, csrf: Some(token.clone()), notice });
    if let Ok(cookie) = HeaderValue::from_str(&session::sign_in_cookie(&token, secure)) {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    resp
}

/// Sign in: a client past its failed sign-ins is answered 429 first,
/// before its body is read or its token looked at; then the form's origin
/// and token, then the token itself. A refusal after the token was looked
/// at counts as a failure of the client; a sign-in does not.
pub(super) async fn sign_in(State(s): State<Console>, req: Request) -> Response {
    let snap = s.snapshot();
    let console = &snap.console;
    let client = client(&snap, &req);
    let refused = |status: StatusCode, why: &str| {
        sign_in_form(status, Some(format!("Not signed in: {why}.")), console.secure_cookie)
    };
    let audit = |result: &'static str, by: Option<&Grant>| {
        s.runtime.shared().action(crate::audit::ActionEvent {
            action: crate::audit::Action::ConsoleSignIn,
            kind: None,
            result,
            by: by.map(|g| g.token_id.to_string()),
            by_subject: by.map(|g| g.subject.to_string()),
            target: None,
            config_hash: None,
        });
    };
    // Fail closed: a client that failed too often waits, whatever it sends.
    if let Err(wait) = s.console.failures.admits(client, s.service.now().secs(), &console.failed_sign_ins) {
        audit(crate::reason::Reason::RateLimited.code(), None);
        let secs = wait.as_secs();
        let mut resp = refused(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many failed sign-ins from your address; try again in {secs} seconds"),
        );
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    let headers = req.headers().clone();
    let body = match form_body(req, None).await {
        Ok(b) => b,
        Err(too_large) => return *too_large,
    };
    let fields = form(&body);
    // Fail closed: a form from elsewhere, or without its page's token, is
    // refused before the token is looked at (and is no failed guess).
    if !same_origin(&headers, console.secure_cookie)
        || !session::sign_in_token_ok(&headers, fields.get("csrf").map(String::as_str))
    {
        return refused(StatusCode::FORBIDDEN, "the form did not come from this console's own page; try again");
    }
    let failed = |status: StatusCode, why: &str, result: &'static str, by: Option<&Grant>| {
        s.console.failures.failed(client, s.service.now().secs(), &console.failed_sign_ins);
        audit(result, by);
        refused(status, why)
    };
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return failed(StatusCode::UNAUTHORIZED, "that is not a token", "invalid_token", None);
    };
    let mut credential = HeaderMap::new();
    credential.insert(header::AUTHORIZATION, value);
    let grant = match snap.auth.authenticate_fetching(&credential, None, None).await {
        Ok(g) => g,
        Err(reason) => {
            let why = format!("the token was refused ({})", reason.code());
            return failed(StatusCode::UNAUTHORIZED, &why, reason.code(), None);
        }
    };
    if let Err(e) = s.service.manager(&grant) {
        let why = "the console needs an administrator or master token";
        return failed(StatusCode::FORBIDDEN, why, e.code(), Some(&grant));
    }
    let (id, _) = match s.console.sessions.open(credential, &grant, s.service.now().secs(), console).await {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(error = %e, "console: a sign-in could not open its session");
            audit("store_unavailable", Some(&grant));
            return refused(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    audit("ok", Some(&grant));
    let mut resp = Redirect::to("/console/tokens").into_response();
    for cookie in
        [session::set_cookie(&id, console.secure_cookie), session::clear_sign_in_cookie(console.secure_cookie)]
    {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

pub(super) async fn sign_out(State(s): State<Console>, req: Request) -> Response {
    let Posted { signed, headers, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    if let Some(id) = session::cookie(&headers)
        && s.console.sessions.end(id).await.is_err()
    {
        // Not ended everywhere: it must not look as if it were.
        let why = "You are not signed out: the store could not be reached to end the session. Try again.";
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Not signed out", why, Some(&signed));
    }
    let mut resp = Redirect::to("/console/sign-in?ended=out").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie(signed.snap.console.secure_cookie)) {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    resp
}
