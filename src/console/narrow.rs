//! Narrowing a token the caller may act on: the form, its preview (the
//! child's rules, minted nowhere) and the API's own narrow call.

use super::*;

/// One line of a narrowing preview: a route, a concrete request to it, and
/// what the child would get.
pub(super) struct PreviewRow {
    route: String,
    method: String,
    path: String,
    status: u16,
    verdict: String,
}

#[derive(Template)]
#[template(path = "console/narrow.html")]
pub(super) struct NarrowPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    id: String,
    title: String,
    apps: Vec<(usize, String, bool)>,
    roles: Vec<(usize, String, bool)>,
    resources: String,
    validity: String,
    preview: Vec<PreviewRow>,
}

/// What the narrow form asked for.
#[derive(Default)]
pub(super) struct NarrowForm {
    applications: Vec<String>,
    roles: Vec<String>,
    resources: String,
    validity: String,
}

/// The parent the page shows: one the signed-in token may see (the
/// service's rule), and live. Its rules offer the form's choices and the
/// preview; whether the narrowing may be done is the service's to decide
/// again when it is posted, exactly as for `POST /v1/tokens/{id}/narrow`.
pub(super) async fn narrowable(
    s: &Console,
    signed: Signed,
    id: &str,
) -> Result<(Signed, TokenRecord, Arc<Grant>), Refused> {
    let shown = match s.service.show(&signed.grant, id).await {
        Ok(r) => r,
        Err(e) => return Err(Box::new(service_error(e, &signed))),
    };
    let refuse =
        |why: &str| Err(Box::new(error_page(StatusCode::FORBIDDEN, "Cannot narrow this token", why, Some(&signed))));
    if !shown.state.is_live() {
        return refuse("It is revoked (itself or an ancestor) or expired.");
    }
    let issuer = signed.snap.service.signing.as_ref().map(|sg| sg.issuer.clone()).unwrap_or_default();
    let Some(parent) = crate::store::mirror::grant_of(&shown.record, &issuer) else {
        return refuse("Its access rules could not be read.");
    };
    Ok((signed, shown.record, Arc::new(parent)))
}

pub(super) fn parent_choices(parent: &Grant) -> (Vec<String>, Vec<String>) {
    let mut apps: Vec<String> = Vec::new();
    let mut roles: Vec<String> = Vec::new();
    for r in parent.rules.iter() {
        let wire = crate::token::WireRule::from_rule(r);
        if !apps.contains(&wire.application) {
            apps.push(wire.application);
        }
        for role in wire.roles {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    (apps, roles)
}

pub(super) fn narrow_page_of(
    signed: &Signed,
    record: &TokenRecord,
    parent: &Grant,
    asked: &NarrowForm,
    notice: Option<String>,
    preview: Vec<PreviewRow>,
) -> NarrowPage {
    let (apps, roles) = parent_choices(parent);
    let first = asked.applications.is_empty() && asked.roles.is_empty();
    NarrowPage {
        who: signed.who(),
        csrf: signed.csrf(),
        notice,
        id: record.id.clone(),
        title: record.name.clone().unwrap_or_else(|| record.id.clone()),
        apps: ticks(apps, &asked.applications, first),
        roles: ticks(roles, &asked.roles, first),
        resources: asked.resources.clone(),
        validity: asked.validity.clone(),
        preview,
    }
}

/// Checkbox rows `(index, value, ticked)`: all ticked on a fresh form,
/// else what was asked.
pub(super) fn ticks(values: Vec<String>, asked: &[String], fresh: bool) -> Vec<(usize, String, bool)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let on = fresh || asked.contains(&v);
            (i, v, on)
        })
        .collect()
}

pub(super) async fn narrow_page(State(s): State<Console>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&s, &headers).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return *to_sign_in,
    };
    match narrowable(&s, signed, &id).await {
        Ok((signed, record, parent)) => {
            page(StatusCode::OK, &narrow_page_of(&signed, &record, &parent, &NarrowForm::default(), None, Vec::new()))
        }
        Err(refused) => *refused,
    }
}

/// The simplified narrowing the form asks for, within `parent`'s choices
/// (all ticked: no restriction on that dimension).
pub(super) fn simplified(
    asked: &NarrowForm,
    parent: &Grant,
) -> Result<crate::policy::narrow::Simplified, &'static str> {
    let (apps, roles) = parent_choices(parent);
    if asked.applications.is_empty() {
        return Err("tick at least one application");
    }
    let resources = if asked.resources.trim().is_empty() {
        None
    } else {
        Some(
            asked
                .resources
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| r.split_once(':').map(|(e, i)| (e.trim().to_string(), i.trim().to_string())))
                .collect::<Option<Vec<_>>>()
                .ok_or("a resource is not entity:id")?,
        )
    };
    Ok(crate::policy::narrow::Simplified {
        applications: (asked.applications.len() < apps.len()).then(|| asked.applications.clone()),
        roles: (asked.roles.len() < roles.len() || asked.roles.is_empty()).then(|| asked.roles.clone()),
        resources,
    })
}

/// What a child with `rules` may call: each protected route, tried with
/// each resource id the narrowing names and with one it does not.
pub(super) fn preview(
    snap: &Snapshot,
    rules: &[crate::policy::AccessRule],
    asked: &[(String, String)],
) -> Vec<PreviewRow> {
    const OTHER: &str = "not-one-of-them";
    let mut rows = Vec::new();
    for route in &snap.routes {
        let crate::policy::manifest::RouteAccess::Protected { resource, .. } = &route.access else { continue };
        let mut probes: Vec<Option<&str>> = match resource {
            Some(spec) => asked
                .iter()
                .filter(|(e, _)| *e == *spec.entity || e == "*")
                .map(|(_, id)| Some(id.as_str()))
                .filter(|id| *id != Some("*"))
                .collect(),
            None => vec![None],
        };
        if resource.is_some() {
            probes.push(Some(OTHER));
        }
        for probe in probes {
            let Some(facts) = route.facts(probe, None) else { continue };
            let decision = crate::policy::evaluate(rules, &[], &facts);
            let allowed = matches!(decision, crate::policy::Decision::Allow(_));
            let mut path = String::new();
            for (i, segment) in route.path.split('/').enumerate() {
                if i > 0 {
                    path.push('/');
                }
                match (segment.strip_prefix('{').and_then(|p| p.strip_suffix('}')), resource) {
                    (Some(param), Some(spec)) if param == &*spec.param => path.push_str(probe.unwrap_or("x")),
                    (Some(_), _) => path.push('x'),
                    (None, _) => path.push_str(segment),
                }
            }
            let on = match (resource, probe) {
                (Some(spec), Some(OTHER)) => format!(" for any other {}", spec.entity),
                (Some(spec), Some(id)) => format!(" for {} {id}", spec.entity),
                _ => String::new(),
            };
            rows.push(PreviewRow {
                route: route.template.to_string(),
                method: route.method.to_string(),
                path,
                status: if allowed { 200 } else { 403 },
                verdict: if allowed { format!("allowed{on}") } else { format!("denied{on}") },
            });
        }
    }
    rows
}

pub(super) async fn narrow(State(s): State<Console>, Path(id): Path<String>, req: Request) -> Response {
    let Posted { signed, fields, pairs, .. } = match posted(&s, req).await {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let (signed, record, parent) = match narrowable(&s, signed, &id).await {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let all = |k: &str| -> Vec<String> { pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect() };
    let asked = NarrowForm {
        applications: all("application"),
        roles: all("role"),
        resources: fields.get("resources").cloned().unwrap_or_default(),
        validity: fields.get("validity").map(|v| v.trim().to_string()).unwrap_or_default(),
    };
    let retry = |status: StatusCode, why: String| {
        page(status, &narrow_page_of(&signed, &record, &parent, &asked, Some(why), Vec::new()))
    };
    let wanted = match simplified(&asked, &parent) {
        Ok(w) => w,
        Err(why) => return retry(StatusCode::BAD_REQUEST, format!("Not narrowed: {why}.")),
    };
    let validity = match asked.validity.as_str() {
        "" => None,
        v => match v.parse::<f64>() {
            Ok(h) if h > 0.0 => Some(h),
            _ => {
                return retry(
                    StatusCode::BAD_REQUEST,
                    "Not narrowed: the validity is not a positive number of hours.".into(),
                );
            }
        },
    };
    if fields.get("action").map(String::as_str) == Some("preview") {
        // The child's rules as the service would compute them, minted nowhere.
        return match crate::policy::narrow::narrow_simplified(&parent.rules, &wanted, &signed.snap.service.manifest) {
            Ok(rules) => {
                let rows = preview(&signed.snap, &rules, wanted.resources.as_deref().unwrap_or_default());
                page(StatusCode::OK, &narrow_page_of(&signed, &record, &parent, &asked, None, rows))
            }
            Err(e) => retry(StatusCode::BAD_REQUEST, format!("Not narrowed: {e}.")),
        };
    }
    // The API's own call (`POST /v1/tokens/{id}/narrow`): the service
    // decides whether the signed-in token may narrow this one.
    let request = crate::service::NarrowRequest {
        token: Some(record.id.clone()),
        narrowing: crate::service::Narrowing::Simplified(wanted),
        tenants: None,
        validity_hours: validity,
        // A bound parent's child stays bound; the console binds nothing new.
        bind_to: None,
    };
    match s.service.narrow(&signed.snap.service, signed.grant.clone(), request).await {
        Ok(crate::service::MintedToken { secret, record: child }) => page(
            StatusCode::CREATED,
            &super::forms::CreatedPage {
                who: signed.who(),
                csrf: signed.csrf(),
                notice: None,
                name: child
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("a child of {}", record.name.as_deref().unwrap_or(&record.id))),
                id: child.id,
                secret,
            },
        ),
        Err(e) => retry(status_of(&e), format!("Not narrowed: {} ({}).", e.message(), e.code())),
    }
}
