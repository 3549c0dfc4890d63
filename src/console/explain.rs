//! Why a request would be allowed or denied, under the policy in force.

use super::*;

#[derive(Template)]
#[template(path = "console/explain.html")]
pub(super) struct ExplainPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    method: String,
    path: String,
    answer: Option<crate::explain::Explanation>,
}

pub(super) async fn explain_page(State(s): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Ok(signed) => page(
            StatusCode::OK,
            &ExplainPage {
                who: signed.who(),
                csrf: signed.csrf(),
                notice: None,
                method: "GET".into(),
                path: "/".into(),
                answer: None,
            },
        ),
        Err(to_sign_in) => *to_sign_in,
    }
}

pub(super) async fn explain(State(s): State<Console>, req: Request) -> Response {
    let Posted { signed, fields, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let get = |k: &str| fields.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let method = if get("method").is_empty() { "GET".to_string() } else { get("method").to_ascii_uppercase() };
    let question = crate::explain::Question {
        method: method.clone(),
        path: get("path"),
        token: Some(get("token")).filter(|t| !t.is_empty()),
        headers: Vec::new(),
        client_certificate: None,
    };
    let answer = crate::explain::explain(&signed.snap, &question, s.runtime.shared().clock.now());
    page(
        StatusCode::OK,
        &ExplainPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: None,
            method,
            // Shown back with its query credentials redacted.
            path: answer.target.clone(),
            answer: Some(answer),
        },
    )
}
