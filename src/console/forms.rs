//! The create and registration forms: each read into the token service's
//! own request shape (`service::input`), so one validation decides the
//! console's and the API's.

use super::*;

#[derive(Template)]
#[template(path = "console/new_token.html")]
pub(super) struct NewTokenPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    offer_master: bool,
    apps: Vec<crate::policy::manifest::Application>,
    actions: [&'static str; 6],
    expiries: [(&'static str, &'static str); 5],
    /// What was submitted, when the form comes back refused: it is shown
    /// again as it was filled in.
    asked: Vec<(String, String)>,
}

impl NewTokenPage {
    fn value(&self, name: &str) -> &str {
        self.asked.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    fn has(&self, name: &str, value: &str) -> bool {
        self.asked.iter().any(|(n, v)| n == name && v == value)
    }

    fn expiry_is(&self, value: &str) -> bool {
        match self.value("expiry") {
            "" => value == "24h",
            v => v == value,
        }
    }

    fn app_ticked(&self, i: &usize, kind: &str, value: &str) -> bool {
        self.has(&format!("a{i}.{kind}"), value)
    }

    fn method_ticked(&self, i: &usize, group: &str, method: &str, scope: &str) -> bool {
        if scope.is_empty() {
            self.has(&format!("a{i}.method"), &format!("{group}:{method}"))
        } else {
            self.has(&format!("a{i}.scope"), &format!("{group}:{method}:{scope}"))
        }
    }

    fn resources(&self, i: &usize) -> &str {
        match self.value(&format!("a{i}.resources")) {
            "" => "*:*",
            v => v,
        }
    }

    fn tenant(&self, row: &usize) -> &str {
        self.value(&format!("t{row}.tenant"))
    }

    fn action_ticked(&self, row: &usize, action: &str) -> bool {
        self.has(&format!("t{row}.action"), action)
    }
}

pub(super) fn new_token_form(signed: &Signed, notice: Option<String>, asked: Vec<(String, String)>) -> NewTokenPage {
    NewTokenPage {
        who: signed.who(),
        csrf: signed.csrf(),
        notice,
        // Only a master may mint a master; the service refuses it anyway.
        offer_master: signed.grant.master,
        apps: signed.snap.service.manifest.applications.clone(),
        actions: crate::policy::tenant::ACTIONS,
        expiries: [
            ("1h", "in 1 hour"),
            ("24h", "in 24 hours"),
            ("720h", "in 30 days"),
            ("custom", "on the date below"),
            ("none", "never (reference tokens only)"),
        ],
        // The form token is the session's; it is rendered on its own.
        asked: asked.into_iter().filter(|(n, _)| n != "csrf").collect(),
    }
}

pub(super) async fn new_token_page(State(s): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Ok(signed) => page(StatusCode::OK, &new_token_form(&signed, None, Vec::new())),
        Err(to_sign_in) => *to_sign_in,
    }
}

/// The create form as the token service's create request (the JSON API's
/// own shape, so one validation decides both).
pub(super) fn create_request(
    fields: &[(String, String)],
    now: crate::time::UnixTime,
) -> Result<serde_json::Value, &'static str> {
    use serde_json::{Value, json};
    let one = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    let all = |k: &str| -> Vec<&str> { fields.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect() };
    let mut req = json!({
        "name": one("name").unwrap_or_default(),
        "description": one("description").unwrap_or_default(),
        "role": one("role").unwrap_or("user"),
        "master": one("master") == Some("on"),
        "form": one("form").unwrap_or("jwt"),
    });
    if let Some(app) = one("application") {
        req["application"] = app.into();
    }
    match one("expiry").unwrap_or("24h") {
        "none" => req["lifetime"] = "none".into(),
        "custom" => {
            let date = one("expires_on").ok_or("choose the expiry date")?;
            let day: jiff::civil::Date = date.parse().map_err(|_| "the expiry date is not a date")?;
            let end = day
                .at(23, 59, 59, 0)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map_err(|_| "the expiry date is out of range")?;
            if end.timestamp().as_second() <= now.as_i64() {
                return Err("the expiry date is in the past");
            }
            req["expiresAt"] = end.timestamp().as_second().into();
        }
        preset @ ("1h" | "24h" | "720h") => req["lifetime"] = preset.into(),
        _ => return Err("choose an expiry"),
    }
    // One rule per application with any method ticked.
    let mut rules = Vec::new();
    for i in 0.. {
        let key = |k: &str| format!("a{i}.{k}");
        let Some(application) = one(&key("application")) else { break };
        let methods = all(&key("method"));
        if methods.is_empty() {
            continue;
        }
        let scopes = all(&key("scope"));
        let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
        for gm in methods {
            let Some((group, method)) = gm.split_once(':') else { return Err("a method was not understood") };
            let prefix = format!("{group}:{method}:");
            let picked: Vec<&str> = scopes.iter().filter_map(|sc| sc.strip_prefix(prefix.as_str())).collect();
            let mut m = json!({"method": method});
            if !picked.is_empty() {
                m["scopes"] = picked.into();
            }
            match groups.iter_mut().find(|(g, _)| g == group) {
                Some((_, ms)) => ms.push(m),
                None => groups.push((group.to_string(), vec![m])),
            }
        }
        let resources: Vec<Value> = one(&key("resources"))
            .unwrap_or("*:*")
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| r.split_once(':').map(|(entity, id)| json!({"entity": entity.trim(), "id": id.trim()})))
            .collect::<Option<_>>()
            .ok_or("a resource is not entity:id")?;
        rules.push(json!({
            "application": application,
            "service": one(&key("service")).unwrap_or_default(),
            "methodGroups": groups.into_iter().map(|(group, methods)| json!({"group": group, "methods": methods})).collect::<Vec<_>>(),
            "roles": all(&key("role")),
            "resources": resources,
        }));
    }
    let mut tenants = Vec::new();
    for row in 0..3 {
        if let Some(tenant) = one(&format!("t{row}.tenant")) {
            tenants.push(json!({"tenant": tenant, "allowedActions": all(&format!("t{row}.action"))}));
        }
    }
    if !tenants.is_empty() {
        req["tenantPermissions"] = tenants.into();
    }
    // No rules with tenant permissions: the token grants only those.
    if !rules.is_empty() || req.get("tenantPermissions").is_none() {
        req["accessRules"] = rules.into();
    }
    Ok(req)
}

/// A token just minted (created, or narrowed): its secret, shown once.
#[derive(Template)]
#[template(path = "console/created.html")]
pub(super) struct CreatedPage {
    pub(super) who: Option<String>,
    pub(super) csrf: Option<String>,
    pub(super) notice: Option<String>,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) secret: String,
}

pub(super) async fn create(State(s): State<Console>, req: Request) -> Response {
    let Posted { signed, pairs, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let retry = |status: StatusCode, why: String| page(status, &new_token_form(&signed, Some(why), pairs.clone()));
    let request = match create_request(&pairs, s.service.now()) {
        Ok(r) => r,
        Err(why) => return retry(StatusCode::BAD_REQUEST, format!("Not created: {why}.")),
    };
    let input: CreateRequest = match serde_json::from_value(request) {
        Ok(i) => i,
        Err(_) => return retry(StatusCode::BAD_REQUEST, "Not created: the form was not understood.".into()),
    };
    let created = match input.into_new_token(&signed.grant, s.service.now()) {
        Ok(token) => s.service.create(&signed.snap.service, signed.grant.clone(), token).await,
        Err(e) => Err(e),
    };
    match created.map(|m| (m.secret, m.record)) {
        Ok((secret, record)) => page(
            StatusCode::CREATED,
            &CreatedPage {
                who: signed.who(),
                csrf: signed.csrf(),
                notice: None,
                name: record.name.clone().unwrap_or_else(|| record.id.clone()),
                id: record.id,
                secret,
            },
        ),
        Err(e) => retry(status_of(&e), format!("Not created: {} ({}).", e.message(), e.code())),
    }
}

#[derive(Template)]
#[template(path = "console/registration.html")]
pub(super) struct RegistrationPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/registration_created.html")]
pub(super) struct RegistrationCreatedPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    id: String,
    secret: String,
    expires: String,
}

pub(super) async fn registration_page(State(s): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Ok(signed) => page(StatusCode::OK, &RegistrationPage { who: signed.who(), csrf: signed.csrf(), notice: None }),
        Err(to_sign_in) => *to_sign_in,
    }
}

pub(super) async fn registration(State(s): State<Console>, req: Request) -> Response {
    let Posted { signed, fields, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let retry = |status: StatusCode, why: String| {
        page(status, &RegistrationPage { who: signed.who(), csrf: signed.csrf(), notice: Some(why) })
    };
    let get = |k: &str| fields.get(k).map(|v| v.trim()).unwrap_or_default();
    let mut request = serde_json::json!({"name": get("name"), "role": get("role"), "ttl": get("ttl")});
    if !get("lifetime").is_empty() {
        request["lifetime"] = get("lifetime").into();
    }
    let Ok(input) = serde_json::from_value::<CreateRegistration>(request) else {
        return retry(StatusCode::BAD_REQUEST, "Not created: the form was not understood.".into());
    };
    let created = match input.into_new_registration() {
        Ok(r) => s.service.create_registration(&signed.snap.service, signed.grant.clone(), r).await,
        Err(e) => Err(e),
    };
    match created.map(|m| (m.secret, m.record)) {
        Ok((secret, record)) => page(
            StatusCode::CREATED,
            &RegistrationCreatedPage {
                who: signed.who(),
                csrf: signed.csrf(),
                notice: None,
                id: record.id,
                secret,
                expires: when(Some(record.expires_at)),
            },
        ),
        Err(e) => retry(status_of(&e), format!("Not created: {} ({}).", e.message(), e.code())),
    }
}
