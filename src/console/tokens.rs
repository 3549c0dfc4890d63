//! The token list, one token's page (its rules, lineage and children),
//! and revoking it.

use super::*;

/// A token as the list shows it.
pub(super) struct TokenRow {
    id: String,
    name: Option<String>,
    kind: &'static str,
    role: &'static str,
    master: bool,
    application: String,
    created_by: String,
    expires: String,
    state: &'static str,
}

pub(super) fn when(t: Option<crate::time::UnixTime>) -> String {
    match t {
        None => "never".into(),
        Some(t) => t.timestamp().strftime("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

pub(super) fn row(shown: &Shown) -> TokenRow {
    let t = &shown.record;
    TokenRow {
        id: t.id.clone(),
        name: t.name.clone(),
        kind: crate::store::kind_str(t.kind),
        role: crate::store::role_str(t.role),
        master: t.master,
        application: t.application.clone().unwrap_or_else(|| "—".into()),
        created_by: t.created_by.clone().unwrap_or_else(|| "—".into()),
        expires: when(t.expires_at),
        state: shown.state.as_str(),
    }
}

/// The list's filters, as the form shows them.
#[derive(Default)]
pub(super) struct ListFilter {
    name: String,
    application: String,
    kind: String,
    form: String,
    state: String,
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
pub(super) struct TokensPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    filter: ListFilter,
    kinds: [(&'static str, &'static str); 3],
    forms: [(&'static str, &'static str); 3],
    states: [(&'static str, &'static str); 4],
    rows: Vec<TokenRow>,
    first: usize,
    last: usize,
    more: bool,
    prev: Option<String>,
    next: Option<String>,
}

/// Every token the caller may see that matches `filter` (at most [`SCAN`]),
/// with its effective state.
pub(super) async fn scan(
    s: &Console,
    signed: &Signed,
    filter: TokenFilter,
) -> Result<(Vec<Shown>, bool), ServiceError> {
    let mut tokens = s.service.list(&signed.grant, &TokenFilter { limit: SCAN + 1, offset: 0, ..filter }).await?;
    let cut = tokens.len() > SCAN as usize;
    tokens.truncate(SCAN as usize);
    Ok((tokens, cut))
}

pub(super) async fn tokens(State(s): State<Console>, uri: Uri, headers: HeaderMap) -> Response {
    let q = query(&uri);
    let signed = match signed_in(&s, &headers).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return *to_sign_in,
    };
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let kind = match get("kind").as_deref() {
        Some("access") => Some(crate::token::TokenKind::Access),
        Some("narrowed") => Some(crate::token::TokenKind::Narrowed),
        _ => None,
    };
    let wanted_state = get("state").filter(|s| ["live", "expired", "revoked"].contains(&s.as_str()));
    let wanted_form = get("form").filter(|f| f == "jwt" || f == "reference");
    let filter = TokenFilter { name: get("name"), application: get("application"), kind, ..TokenFilter::default() };
    let (all, cut) = match scan(&s, &signed, filter).await {
        Ok(found) => found,
        Err(e) => return service_error(e, &signed),
    };
    let mut rows: Vec<TokenRow> = all
        .iter()
        .filter(|t| wanted_form.as_deref().is_none_or(|f| t.record.form.as_str() == f))
        .map(row)
        .filter(|r| wanted_state.as_deref().is_none_or(|w| r.state == w))
        .collect();
    // Newest first, as an operator scans them.
    rows.reverse();
    let page_no = q.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(0);
    let total = rows.len();
    let start = (page_no * PAGE).min(total);
    let end = (start + PAGE).min(total);
    let rows: Vec<TokenRow> = rows.into_iter().skip(start).take(PAGE).collect();
    let link = |p: usize| {
        let mut link_query = form_urlencoded::Serializer::new(String::new());
        for k in ["name", "application", "kind", "form", "state"] {
            if let Some(v) = get(k) {
                link_query.append_pair(k, &v);
            }
        }
        link_query.append_pair("page", &p.to_string());
        format!("/console/tokens?{}", link_query.finish())
    };
    let filter_shown = ListFilter {
        name: get("name").unwrap_or_default(),
        application: get("application").unwrap_or_default(),
        kind: get("kind").filter(|k| k == "access" || k == "narrowed").unwrap_or_default(),
        form: wanted_form.unwrap_or_default(),
        state: wanted_state.unwrap_or_default(),
    };
    page(
        StatusCode::OK,
        &TokensPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: cut
                .then(|| format!("Showing the first {SCAN} tokens that match; narrow the filters to see others.")),
            filter: filter_shown,
            kinds: [("", "any"), ("access", "access"), ("narrowed", "narrowed")],
            forms: [("", "any"), ("jwt", "JWT"), ("reference", "reference")],
            states: [("", "any"), ("live", "live"), ("expired", "expired"), ("revoked", "revoked")],
            rows,
            first: if total == 0 { 0 } else { start + 1 },
            last: end,
            more: end < total,
            prev: (page_no > 0).then(|| link(page_no - 1)),
            next: (end < total).then(|| link(page_no + 1)),
        },
    )
}

/// A token's details as the page shows them.
pub(super) struct TokenDetail {
    id: String,
    title: String,
    name: String,
    description: String,
    kind: &'static str,
    form: &'static str,
    role: &'static str,
    master: bool,
    application: String,
    subject: String,
    created: String,
    created_by: String,
    expires: String,
    state: &'static str,
    /// The ancestor whose revocation revokes it.
    revoked_by: Option<String>,
    live: bool,
}

pub(super) struct RuleRow {
    id: String,
    application: String,
    service: String,
    methods: String,
    roles: String,
    resources: String,
}

pub(super) struct Child {
    id: String,
    label: String,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "console/token.html")]
pub(super) struct TokenPage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    t: TokenDetail,
    rules: Vec<RuleRow>,
    tenants: Vec<(usize, crate::policy::tenant::TenantPermission)>,
    ancestors: Vec<String>,
    children: Vec<Child>,
}

pub(super) fn rule_rows(grants: &str) -> (Vec<RuleRow>, Vec<crate::policy::tenant::TenantPermission>) {
    let (rules, tenants) = crate::token::claims::decode_grants(grants).unwrap_or_default();
    let rows = rules
        .into_iter()
        .map(|r| RuleRow {
            methods: r
                .method_groups
                .iter()
                .map(|g| {
                    let methods: Vec<String> = g
                        .methods
                        .iter()
                        .map(|m| match &m.scopes {
                            Some(scopes) => format!("{} [{}]", m.method, scopes.join(", ")),
                            None => m.method.clone(),
                        })
                        .collect();
                    format!("{}: {}", g.group, methods.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; "),
            roles: r.roles.join(", "),
            resources: r.resources.join(", "),
            id: r.id,
            application: r.application,
            service: r.service,
        })
        .collect();
    (rows, tenants)
}

/// The tokens whose lineage holds `id` (narrowed from it, or minted under
/// it by a non-master), nearest first.
pub(super) fn descendants<'a>(all: &'a [Shown], id: &str) -> Vec<&'a Shown> {
    let mut found: Vec<&Shown> = all.iter().filter(|t| t.record.lineage.iter().any(|a| a == id)).collect();
    found.sort_by_key(|t| t.record.lineage.len());
    found
}

/// The signed-in caller, the token `id` as the service shows it to them,
/// and every token they may see (for its lineage).
pub(super) async fn with_token(
    s: &Console,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Signed, Shown, Vec<Shown>), Refused> {
    let signed = signed_in(s, headers).await?;
    let record = match s.service.show(&signed.grant, id).await {
        Ok(r) => r,
        Err(e) => return Err(Box::new(service_error(e, &signed))),
    };
    match scan(s, &signed, TokenFilter::default()).await {
        Ok((all, _)) => Ok((signed, record, all)),
        Err(e) => Err(Box::new(service_error(e, &signed))),
    }
}

pub(super) async fn token(State(s): State<Console>, Path(id): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let q = query(&uri);
    let (signed, shown, all) = match with_token(&s, &headers, &id).await {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let record = &shown.record;
    let depth = record.lineage.len();
    let children = descendants(&all, &record.id)
        .into_iter()
        .map(|c| Child {
            id: c.record.id.clone(),
            label: format!(
                "{}{}",
                "— ".repeat(c.record.lineage.len().saturating_sub(depth + 1)),
                c.record.name.clone().unwrap_or_else(|| c.record.id.clone())
            ),
            state: c.state.as_str(),
        })
        .collect();
    let (rules, tenants) = rule_rows(&record.grants);
    let st = shown.state.as_str();
    let revoked_by = match &shown.state {
        crate::service::TokenState::Revoked { by, .. } => by.clone(),
        _ => None,
    };
    let detail = TokenDetail {
        title: record.name.clone().unwrap_or_else(|| record.id.clone()),
        id: record.id.clone(),
        name: record.name.clone().unwrap_or_else(|| "—".into()),
        description: if record.description.is_empty() { "—".into() } else { record.description.clone() },
        kind: crate::store::kind_str(record.kind),
        form: record.form.as_str(),
        role: crate::store::role_str(record.role),
        master: record.master,
        application: record.application.clone().unwrap_or_else(|| "—".into()),
        subject: record.subject.clone(),
        created: when(Some(record.created_at)),
        created_by: record.created_by.clone().unwrap_or_else(|| "—".into()),
        expires: when(record.expires_at),
        state: st,
        revoked_by,
        live: shown.state.is_live(),
    };
    page(
        StatusCode::OK,
        &TokenPage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: (q.contains_key("revoked") && st == "revoked").then(|| "Revoked.".to_string()),
            t: detail,
            rules,
            tenants: tenants.into_iter().enumerate().map(|(i, t)| (i + 1, t)).collect(),
            ancestors: record.lineage.clone(),
            children,
        },
    )
}

#[derive(Template)]
#[template(path = "console/revoke.html")]
pub(super) struct RevokePage {
    who: Option<String>,
    csrf: Option<String>,
    notice: Option<String>,
    id: String,
    title: String,
    descendants: usize,
}

pub(super) async fn revoke_page(State(s): State<Console>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let (signed, shown, all) = match with_token(&s, &headers, &id).await {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let record = shown.record;
    let live = descendants(&all, &record.id).into_iter().filter(|t| t.state.is_live()).count();
    page(
        StatusCode::OK,
        &RevokePage {
            who: signed.who(),
            csrf: signed.csrf(),
            notice: None,
            title: record.name.clone().unwrap_or_else(|| record.id.clone()),
            id: record.id,
            descendants: live,
        },
    )
}

pub(super) async fn revoke(State(s): State<Console>, Path(id): Path<String>, req: Request) -> Response {
    let signed = match posted(&s, req).await {
        Ok(p) => p.signed,
        Err(refused) => return *refused,
    };
    match s.service.revoke(&signed.snap.service, &signed.grant, RevokeTarget::Id(id.clone())).await {
        Ok(_) => {
            let path: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            Redirect::to(&format!("/console/tokens/{path}?revoked=1")).into_response()
        }
        Err(e) => service_error(e, &signed),
    }
}
