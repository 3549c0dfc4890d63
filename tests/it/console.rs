//! The admin web console over real HTTP on the api listener (the browser
//! tests drive the same pages in Chromium): sign-in and sessions, the
//! token list and details, revocation with its CSRF and origin checks,
//! markup rendered as text, the headers every page carries, and the
//! console's own bounds: sessions per token and in all, failed sign-ins
//! per client, form bodies, `Origin` and `Referer`, `Secure` cookies.

use crate::support;

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;
use support::Harness;

struct Console {
    h: Harness,
    http: reqwest::Client,
    admin: String,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
        self.body[at..].split('"').next().expect("value").to_string()
    }
}

impl Console {
    async fn start() -> Console {
        Console::start_with(|_| {}, |_| {}).await
    }

    /// The console with a store, after `edit_doc` and `edit_console`.
    async fn start_with(
        edit_doc: impl FnOnce(&mut support::ConfigDoc),
        edit_console: impl FnOnce(&mut narrowgate::config::ConsoleConfig),
    ) -> Console {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("ng.db");
        std::mem::forget(dir);
        let mut c = Console::on_store(edit_doc, edit_console, support::sqlite_store(db), None).await;
        c.admin = c.h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).expect("bootstrapped");
        c
    }

    /// The console on a store `store` sets (a new one bootstraps; `admin`
    /// for one that exists).
    async fn on_store(
        edit_doc: impl FnOnce(&mut support::ConfigDoc),
        edit_console: impl FnOnce(&mut narrowgate::config::ConsoleConfig),
        store: impl Fn(&mut narrowgate::config::Config),
        admin: Option<String>,
    ) -> Console {
        let h = Harness::start_with(edit_doc, move |c| {
            store(c);
            c.console.enabled = true;
            edit_console(&mut c.console);
        })
        .await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Console { h, http, admin: admin.unwrap_or_default() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.h.api)
    }

    /// The console's own origin (plain HTTP).
    fn origin(&self) -> String {
        format!("http://{}", self.h.api)
    }

    /// A browser at another loopback address (another client).
    fn client_at(ip: &str) -> reqwest::Client {
        let ip: IpAddr = ip.parse().expect("an address");
        reqwest::Client::builder()
            .local_address(ip)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    async fn read(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Page { status, headers, body: resp.text().await.unwrap_or_default() }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut req = self.http.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        Console::read(req.send().await.expect("GET")).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        self.post_via(&self.http, path, cookie, fields, &headers).await
    }

    /// Post a form through `http` with these headers besides the cookie.
    async fn post_via(
        &self,
        http: &reqwest::Client,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let mut req = http.post(self.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        Console::read(req.send().await.expect("POST")).await
    }

    /// Post the sign-in form with `token`, as its page sets it up (the
    /// form's token in a field and a cookie), from `origin`.
    async fn sign_in_post(&self, token: &str, origin: &str) -> Page {
        self.sign_in_via(&self.http, token, &[("origin", origin)]).await
    }

    /// The sign-in form fetched and posted with `token` through `http`,
    /// with `headers`.
    async fn sign_in_via(&self, http: &reqwest::Client, token: &str, headers: &[(&str, &str)]) -> Page {
        let form = Console::read(http.get(self.url("/console/sign-in")).send().await.expect("GET")).await;
        let pre = form.headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("the form's cookie");
        let pre = pre.split(';').next().expect("pair").to_string();
        self.post_via(http, "/console/sign-in", Some(&pre), &[("csrf", &form.csrf()), ("token", token)], headers).await
    }

    /// Sign in with `token`; the session cookie (`name=value`).
    async fn sign_in(&self, token: &str) -> String {
        let origin = format!("http://{}", self.h.api);
        let page = self.sign_in_post(token, &origin).await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert_eq!(page.location(), "/console/tokens");
        let set = page.headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("a session cookie").to_string();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/console"), "{set}");
        assert!(!set.contains(token), "the token is never the cookie");
        set.split(';').next().expect("pair").to_string()
    }

    /// A call to the JSON API with `token`.
    async fn api(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> support::Response {
        let auth = format!("Bearer {token}");
        match body {
            Some(b) => self.h.api_post(path, &[("Authorization", &auth)], b).await,
            None => self.h.api_request(method, path, &[("Authorization", &auth)]).await,
        }
    }

    async fn create(&self, body: &str) -> Value {
        let resp = self.api("POST", "/v1/tokens", &self.admin, Some(body)).await;
        assert_eq!(resp.status, 201, "{}", resp.body);
        resp.json()
    }
}

#[tokio::test]
async fn the_console_is_off_unless_enabled() {
    let h = Harness::start().await;
    let resp = h.api_request("GET", "/console/sign-in", &[]).await;
    assert_eq!(resp.status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn sign_in_lists_tokens_and_refuses_what_it_should() {
    let c = Console::start().await;
    // Not signed in: to the sign-in page.
    let page = c.get("/console/tokens", None).await;
    assert_eq!((page.status, page.location()), (303, "/console/sign-in"));
    let page = c.get("/console/sign-in", None).await;
    assert_eq!(page.status, 200);
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("referrer-policy", "same-origin"),
    ] {
        assert_eq!(page.headers.get(name).and_then(|v| v.to_str().ok()), Some(value), "{name}");
    }
    let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(!page.body.contains("<script>") && !page.body.contains(" style="), "no inline script or style");

    // Refused sign-ins: garbage, a user token, another site's form.
    let origin = format!("http://{}", c.h.api);
    let page = c.sign_in_post("not-a-token<b>", &origin).await;
    assert_eq!(page.status, 401);
    assert!(
        !page.headers.get_all("set-cookie").iter().any(|v| v.to_str().unwrap_or_default().starts_with("ng_console="))
    );
    assert!(!page.body.contains("not-a-token"), "the input is not echoed");
    let user = c.create(r#"{"name":"plain-user","lifetime":"1h"}"#).await;
    let user_token = user["token"].as_str().expect("token");
    let page = c.sign_in_post(user_token, &origin).await;
    assert_eq!(page.status, 403, "a user token does not open the console");
    let page = c.sign_in_post(&c.admin, "http://evil.example").await;
    assert_eq!(page.status, 403, "a sign-in posted from another site");
    let page = c.post("/console/sign-in", None, &[("token", &c.admin)], Some(&origin)).await;
    assert_eq!(page.status, 403, "a sign-in without the form's token (login CSRF)");
    let page = c
        .post(
            "/console/sign-in",
            Some("ng_console_sign_in=abc"),
            &[("csrf", "abd"), ("token", &c.admin)],
            Some(&origin),
        )
        .await;
    assert_eq!(page.status, 403, "a sign-in whose form token is not its cookie's");
    assert!(
        !page.headers.get_all("set-cookie").iter().any(|v| v.to_str().unwrap_or_default().starts_with("ng_console="))
    );

    // The admin signs in and sees the tokens.
    let cookie = c.sign_in(&c.admin).await;
    let page = c.get("/console/tokens", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("plain-user"));
    assert!(!page.body.contains(&c.admin), "the sign-in token is never rendered");
    assert!(!page.body.contains(user_token), "no token value is listed");
    // A forged cookie is not a session.
    let page = c.get("/console/tokens", Some("ng_console=forged")).await;
    assert_eq!((page.status, page.location()), (303, "/console/sign-in?ended=session"));
    // Filters.
    let page = c.get("/console/tokens?name=plain-user", Some(&cookie)).await;
    assert!(page.body.contains("plain-user"));
    let page = c.get("/console/tokens?name=nobody", Some(&cookie)).await;
    assert!(page.body.contains("No tokens match."));
    let page = c.get("/console/tokens?state=revoked", Some(&cookie)).await;
    assert!(!page.body.contains("plain-user"));
    let page = c.get("/console/tokens?form=reference", Some(&cookie)).await;
    assert!(!page.body.contains("plain-user"), "a JWT is not a reference token");
    let page = c.get("/console/tokens?form=jwt&name=plain-user", Some(&cookie)).await;
    assert!(page.body.contains("plain-user"));

    // The details page.
    let id = user["id"].as_str().expect("id");
    let page = c.get(&format!("/console/tokens/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(id) && page.body.contains("Revoke"));
    c.h.shutdown().await;
}

#[tokio::test]
async fn markup_in_every_field_is_rendered_as_text() {
    let c = Console::start().await;
    let evil = "<script>alert(1)</script>";
    let made = c
        .create(&format!(
            r#"{{"name":"x{evil}","description":"d{evil}\"'&","application":"a{evil}","lifetime":"1h","tenantPermissions":[{{"tenant":"t{evil}","allowedActions":["READ_TENANT"]}}]}}"#
        ))
        .await;
    let cookie = c.sign_in(&c.admin).await;
    // A refused form comes back filled in: escaped too.
    let form = c.get("/console/tokens/new", Some(&cookie)).await;
    let csrf = form.csrf();
    let origin = format!("http://{}", c.h.api);
    let attack = format!("\"><b id=x>{evil}");
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", attack.as_str()),
        ("form", "jwt"),
        ("expiry", "none"),
        ("t0.tenant", attack.as_str()),
    ];
    let refused = c.post("/console/tokens/new", Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(refused.status, 400);
    assert!(!refused.body.contains("<b id=x>") && !refused.body.contains("<script>alert"), "{}", refused.body);
    let id = made["id"].as_str().expect("id");
    for path in ["/console/tokens".to_string(), format!("/console/tokens/{id}"), format!("/console/tokens/{id}/revoke")]
    {
        let page = c.get(&path, Some(&cookie)).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(!page.body.contains("<script>alert"), "{path}: markup rendered as markup");
        let shown = ["&lt;script&gt;alert(1)&lt;/script&gt;", "&#60;script&#62;alert(1)&#60;/script&#62;"];
        assert!(shown.iter().any(|t| page.body.contains(t)), "{path}: the text is shown, escaped: {}", page.body);
    }
    c.h.shutdown().await;
}

#[tokio::test]
async fn revoking_needs_the_form_token_and_counts_what_dies_with_it() {
    let c = Console::start().await;
    let parent = c.create(r#"{"name":"parent-app","lifetime":"1h","role":"admin"}"#).await;
    let parent_token = parent["token"].as_str().expect("token").to_string();
    // A child minted under the (non-master) admin carries it in its lineage.
    let resp = c.api("POST", "/v1/tokens", &parent_token, Some(r#"{"name":"child-app","lifetime":"1h"}"#)).await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    let child = resp.json();
    let cookie = c.sign_in(&c.admin).await;
    let id = parent["id"].as_str().expect("id");

    let page = c.get(&format!("/console/tokens/{id}"), Some(&cookie)).await;
    assert!(page.body.contains("child-app"), "the lineage shows the child");
    let page = c.get(&format!("/console/tokens/{id}/revoke"), Some(&cookie)).await;
    assert!(page.body.contains("<strong>1</strong> token(s)"), "{}", page.body);
    let csrf = page.csrf();

    let path = format!("/console/tokens/{id}/revoke");
    let origin = format!("http://{}", c.h.api);
    let refused = c.post(&path, Some(&cookie), &[], Some(&origin)).await;
    assert_eq!(refused.status, 403, "no form token");
    let refused = c.post(&path, Some(&cookie), &[("csrf", "forged")], Some(&origin)).await;
    assert_eq!(refused.status, 403, "a wrong form token");
    let refused = c.post(&path, Some(&cookie), &[("csrf", &csrf)], Some("http://evil.example")).await;
    assert_eq!(refused.status, 403, "another site's form");
    let refused = c.post(&path, None, &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!(refused.status, 303, "no session: to the sign-in page");
    let show = c.api("GET", &format!("/v1/tokens/{id}"), &c.admin, None).await;
    assert!(show.json()["revokedAt"].is_null(), "nothing was revoked yet");

    let done = c.post(&path, Some(&cookie), &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!((done.status, done.location()), (303, format!("/console/tokens/{id}?revoked=1").as_str()));
    let show = c.api("GET", &format!("/v1/tokens/{id}"), &c.admin, None).await;
    assert!(show.json()["revokedAt"].is_number(), "revoked through the same service");
    // The child dies with it, on the proxy too.
    let child_token = child["token"].as_str().expect("token");
    let who = c.api("GET", "/v1/whoami", child_token, None).await;
    assert_eq!(who.status, 401);
    c.h.shutdown().await;
}

#[tokio::test]
async fn sessions_end_at_sign_out_when_idle_and_when_their_token_dies() {
    let c = Console::start().await;
    let origin = format!("http://{}", c.h.api);
    // Sign-out.
    let cookie = c.sign_in(&c.admin).await;
    let page = c.get("/console/tokens", Some(&cookie)).await;
    let csrf = page.csrf();
    let out = c.post("/console/sign-out", Some(&cookie), &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!((out.status, out.location()), (303, "/console/sign-in?ended=out"));
    assert!(out.headers.get("set-cookie").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("Max-Age=0")));
    let page = c.get("/console/tokens", Some(&cookie)).await;
    assert_eq!(page.status, 303, "the session is gone on the server, whatever the browser keeps");

    // Idle for longer than the idle timeout (15 minutes by default).
    let cookie = c.sign_in(&c.admin).await;
    c.h.advance(Duration::from_secs(14 * 60));
    assert_eq!(c.get("/console/tokens", Some(&cookie)).await.status, 200);
    c.h.advance(Duration::from_secs(16 * 60));
    let page = c.get("/console/tokens", Some(&cookie)).await;
    assert_eq!((page.status, page.location()), (303, "/console/sign-in?ended=session"));

    // The sign-in token revoked: its sessions end at once (the table lets
    // them go as the revocation arrives).
    let ops = c.create(r#"{"name":"ops-admin","lifetime":"2h","role":"admin"}"#).await;
    let cookie = c.sign_in(ops["token"].as_str().expect("token")).await;
    assert_eq!(c.get("/console/tokens", Some(&cookie)).await.status, 200);
    let resp = c.api("DELETE", &format!("/v1/tokens/{}", ops["id"].as_str().expect("id")), &c.admin, None).await;
    assert_eq!(resp.status, 204);
    let page = c.get("/console/tokens", Some(&cookie)).await;
    assert_eq!((page.status, page.location()), (303, "/console/sign-in?ended=session"));
    let page = c.get("/console/sign-in?ended=session", None).await;
    assert!(page.body.contains("Your session ended"));

    // The sign-in token expired: the session ends with it.
    let brief = c.create(r#"{"name":"brief-admin","lifetime":"1h","role":"admin"}"#).await;
    let cookie = c.sign_in(brief["token"].as_str().expect("token")).await;
    for _ in 0..4 {
        c.h.advance(Duration::from_secs(14 * 60));
        assert_eq!(c.get("/console/tokens", Some(&cookie)).await.status, 200, "used within the idle timeout");
    }
    c.h.advance(Duration::from_secs(14 * 60));
    let page = c.get("/console/tokens", Some(&cookie)).await;
    assert_eq!((page.status, page.location()), (303, "/console/sign-in?ended=session"));
    let page = c.get("/console/sign-in?ended=token", None).await;
    assert!(page.body.contains("no longer valid"));
    c.h.shutdown().await;
}

#[tokio::test]
async fn the_vendored_script_is_served_from_the_binary() {
    let c = Console::start().await;
    let resp = c.http.get(c.url("/console/static/htmx.min.js")).send().await.expect("GET");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/javascript"));
    let bytes = resp.bytes().await.expect("body");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
        "htmx 2.0.11 as vendored (assets/console/VENDORED.md)"
    );
    let css = c.http.get(c.url("/console/static/console.css")).send().await.expect("GET");
    assert_eq!(css.status(), 200);
    c.h.shutdown().await;
}

#[tokio::test]
async fn tokens_are_created_from_the_manifest_and_shown_once() {
    let c = Console::start().await;
    let origin = format!("http://{}", c.h.api);
    let cookie = c.sign_in(&c.admin).await;
    let form = c.get("/console/tokens/new", Some(&cookie)).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("name=\"master\""), "a master is offered master");
    assert!(form.body.contains("account-management:getAccount"), "methods come from the manifest");
    let csrf = form.csrf();

    // A reference token for one account, through the proxy afterwards.
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "reader-app"),
        ("role", "user"),
        ("form", "reference"),
        ("expiry", "24h"),
        ("a0.application", "trading-account-management-api"),
        ("a0.service", "rest"),
        ("a0.method", "account-management:getAccount"),
        ("a0.role", "reader"),
        ("a0.resources", "account:a1"),
    ];
    let made = c.post("/console/tokens/new", Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let at = made.body.find("ngr_").expect("the value is shown");
    let secret: String =
        made.body[at..].chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '-').collect();
    assert!(made.body.contains("the only time the token is shown"));
    c.h.upstream_received();
    let allowed = c.h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {secret}"))]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let denied = c.h.get("/users/current/accounts/a2", &[("Authorization", &format!("Bearer {secret}"))]).await;
    assert_eq!((denied.status, denied.reason()), (403, "resource_not_allowed".to_string()));
    // The upstream saw the allowed request only, as the console's token,
    // and never the token itself.
    let seen = c.h.upstream_received();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, "/users/current/accounts/a1");
    assert!(seen[0].headers.iter().all(|(_, v)| !v.contains(&secret)), "the credential is not forwarded");
    assert!(seen[0].header("x-narrowgate-token-id").is_some_and(|id| !id.is_empty()));
    // Never again: not on the list, not on its page.
    let list = c.get("/console/tokens", Some(&cookie)).await;
    assert!(list.body.contains("reader-app") && !list.body.contains(&secret));
    let id_at = list.body.find("/console/tokens/").expect("a link");
    let _ = id_at;
    for t in
        c.api("GET", "/v1/tokens?name=reader-app", &c.admin, None).await.json()["tokens"].as_array().expect("tokens")
    {
        let page = c.get(&format!("/console/tokens/{}", t["id"].as_str().expect("id")), Some(&cookie)).await;
        assert!(!page.body.contains(&secret), "the value is never shown again");
        assert!(page.body.contains("account-management: getAccount") && page.body.contains("account:$USER_ID$:a1"));
    }

    // A JWT with Crafter-style tenant permissions only.
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "tenant-app"),
        ("form", "jwt"),
        ("expiry", "1h"),
        ("t0.tenant", "acme"),
        ("t0.action", "READ_TENANT"),
        ("t0.action", "MANAGE_PROFILES"),
        ("t1.tenant", "*"),
        ("t1.action", "READ_TENANT"),
    ];
    let made = c.post("/console/tokens/new", Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let listed = c.api("GET", "/v1/tokens?name=tenant-app", &c.admin, None).await.json();
    let tp = &listed["tokens"][0]["tenantPermissions"];
    assert_eq!(tp[0]["tenant"], "acme");
    assert_eq!(tp[0]["allowedActions"], serde_json::json!(["READ_TENANT", "MANAGE_PROFILES"]));
    assert_eq!(tp[1]["tenant"], "*", "in the order entered");

    // Refused: no form token; a JWT that never expires; nothing granted.
    let refused = c.post("/console/tokens/new", Some(&cookie), &[("name", "x"), ("expiry", "1h")], Some(&origin)).await;
    assert_eq!(refused.status, 403);
    let never = [("csrf", csrf.as_str()), ("name", "forever-jwt"), ("form", "jwt"), ("expiry", "none")];
    let refused = c.post("/console/tokens/new", Some(&cookie), &never, Some(&origin)).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("Not created"));
    assert!(refused.body.contains("value=\"forever-jwt\""), "the form comes back as it was filled in");
    assert!(refused.body.contains("<option value=\"none\" selected>"), "{}", refused.body);
    let nothing = [("csrf", csrf.as_str()), ("name", "empty"), ("expiry", "1h")];
    assert_eq!(c.post("/console/tokens/new", Some(&cookie), &nothing, Some(&origin)).await.status, 400);
    c.h.shutdown().await;
}

#[tokio::test]
async fn a_non_master_admin_is_not_offered_master_and_cannot_post_it() {
    let c = Console::start().await;
    let origin = format!("http://{}", c.h.api);
    let ops = c.create(r#"{"name":"ops","lifetime":"2h","role":"admin"}"#).await;
    let cookie = c.sign_in(ops["token"].as_str().expect("token")).await;
    let form = c.get("/console/tokens/new", Some(&cookie)).await;
    assert!(!form.body.contains("name=\"master\""), "not offered");
    let csrf = form.csrf();
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "sneaky-master"),
        ("role", "user"),
        ("master", "on"),
        ("form", "reference"),
        ("expiry", "1h"),
        ("t0.tenant", "acme"),
        ("t0.action", "READ_TENANT"),
    ];
    let refused = c.post("/console/tokens/new", Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let notice = refused.body.split("class=\"notice\"").nth(1).unwrap_or_default();
    assert!(notice.contains("Not created") && notice.contains("master"), "{notice}");
    let listed = c.api("GET", "/v1/tokens?name=sneaky-master", &c.admin, None).await.json();
    assert_eq!(listed["tokens"], serde_json::json!([]), "nothing was minted");
    c.h.shutdown().await;
}

#[tokio::test]
async fn registration_tokens_manifest_and_status() {
    let c = Console::start().await;
    let origin = format!("http://{}", c.h.api);
    let cookie = c.sign_in(&c.admin).await;
    // A registration token: shown once, redeemable once.
    let form = c.get("/console/registration", Some(&cookie)).await;
    assert_eq!(form.status, 200);
    let csrf = form.csrf();
    let fields =
        [("csrf", csrf.as_str()), ("name", "ml-client"), ("role", "User"), ("ttl", "2h45m30s"), ("lifetime", "720h")];
    let made = c.post("/console/registration", Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let at = made.body.find("ngreg_").expect("the value is shown");
    let secret: String =
        made.body[at..].chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '-').collect();
    let redeemed = c.h.api_post("/v1/registration-tokens/redeem", &[], &format!(r#"{{"token":"{secret}"}}"#)).await;
    assert_eq!(redeemed.status, 201, "{}", redeemed.body);
    let again = c.h.api_post("/v1/registration-tokens/redeem", &[], &format!(r#"{{"token":"{secret}"}}"#)).await;
    assert_ne!(again.status, 201, "single use");
    let list = c.get("/console/tokens", Some(&cookie)).await;
    assert!(!list.body.contains(&secret), "registration tokens are never listed");
    let bad = [("csrf", csrf.as_str()), ("name", "x"), ("role", "User"), ("ttl", "soon")];
    let refused = c.post("/console/registration", Some(&cookie), &bad, Some(&origin)).await;
    assert_eq!(refused.status, 400, "{}", refused.body);

    // The manifest and the routes.
    let page = c.get("/console/manifest", Some(&cookie)).await;
    assert_eq!(page.status, 200);
    for expected in ["trading-account-management-api", "GET /users/current/accounts/{accountId}", "public: no token"] {
        assert!(page.body.contains(expected), "{expected}");
    }
    // Status: the config in force, the keys, the store.
    let page = c.get("/console/status", Some(&cookie)).await;
    assert_eq!(page.status, 200);
    let hash = c.h.running().runtime.snapshot().hash.clone();
    assert!(page.body.contains(&hash), "the config hash");
    assert!(page.body.contains("signer") && page.body.contains("reachable"), "{}", page.body);
    c.h.shutdown().await;
}

/// `(method, path, status)` of every preview row on a page.
fn preview_rows(body: &str) -> Vec<(String, String, u16)> {
    body.split("class=\"preview-row\"")
        .skip(1)
        .map(|row| {
            let attr = |name: &str| {
                let at = row.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
                row[at..].split('"').next().expect("value").replace("&#123;", "{").replace("&#125;", "}")
            };
            (attr("data-method"), attr("data-path"), attr("data-status").parse().expect("status"))
        })
        .collect()
}

#[tokio::test]
async fn a_narrowed_child_does_what_its_preview_says() {
    let c = Console::start().await;
    let origin = format!("http://{}", c.h.api);
    let parent = c
        .create(
            r#"{"name":"wide-app","lifetime":"2h","accessRules":[{"application":"trading-account-management-api","service":"rest",
                "methodGroups":[{"group":"account-management","methods":[{"method":"getAccount"},{"method":"getAccounts"}]}],
                "roles":["reader","writer"],"resources":[{"entity":"*","id":"*"}]}]}"#,
        )
        .await;
    let id = parent["id"].as_str().expect("id");
    let cookie = c.sign_in(&c.admin).await;
    let form = c.get(&format!("/console/tokens/{id}/narrow"), Some(&cookie)).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.csrf();
    let path = format!("/console/tokens/{id}/narrow");
    let asked = |action: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("application", "trading-account-management-api".to_string()),
            ("role", "reader".to_string()),
            ("resources", "account:a1".to_string()),
            ("validity", "1".to_string()),
            ("action", action.to_string()),
        ]
    };
    let fields = asked("preview");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let shown = c.post(&path, Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    let rows = preview_rows(&shown.body);
    assert!(rows.iter().any(|(_, p, s)| p == "/users/current/accounts/a1" && *s == 200), "{rows:?}");
    assert!(rows.iter().any(|(_, p, s)| p.ends_with("/not-one-of-them") && *s == 403), "{rows:?}");
    assert!(!shown.body.contains("id=\"secret\""), "a preview mints nothing");

    let fields = asked("create");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let made = c.post(&path, Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let at = made.body.find("id=\"secret\"").expect("the value");
    let child: String =
        made.body[at..].split('>').nth(1).expect("text").split('<').next().expect("value").trim().to_string();
    assert_eq!(child.split('.').count(), 3, "a JWT");
    // Every preview row, against the proxy: what the preview said, and
    // the upstream sees exactly the rows the preview allowed.
    c.h.upstream_received();
    for (method, path, status) in &rows {
        let resp = c.h.request(method, path, &[("Authorization", &format!("Bearer {child}"))]).await;
        assert_eq!(resp.status, *status, "{method} {path}: the preview said {status}: {}", resp.body);
    }
    let forwarded: Vec<String> = c.h.upstream_received().into_iter().map(|r| r.target).collect();
    let allowed: Vec<String> = rows.iter().filter(|(_, _, s)| *s == 200).map(|(_, p, _)| p.clone()).collect();
    assert_eq!(forwarded, allowed);
    // The child dies with its parent.
    c.api("DELETE", &format!("/v1/tokens/{id}"), &c.admin, None).await;
    let resp = c.h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {child}"))]).await;
    assert_eq!(resp.status, 401);
    let refused = c.get(&format!("/console/tokens/{id}/narrow"), Some(&cookie)).await;
    assert_eq!(refused.status, 403, "a revoked token is not narrowed");
    c.h.shutdown().await;
}

#[tokio::test]
async fn a_denial_is_explained_without_showing_the_token() {
    let c = Console::start().await;
    let origin = format!("http://{}", c.h.api);
    let made = c
        .create(
            r#"{"name":"one-account","lifetime":"1h","accessRules":[{"application":"trading-account-management-api","service":"rest",
                "methodGroups":[{"group":"account-management","methods":[{"method":"getAccount"}]}],
                "roles":["reader"],"resources":[{"entity":"account","id":"a1"}]}]}"#,
        )
        .await;
    let token = made["token"].as_str().expect("token");
    let cookie = c.sign_in(&c.admin).await;
    let form = c.get("/console/explain", Some(&cookie)).await;
    let csrf = form.csrf();
    let fields = [("csrf", csrf.as_str()), ("method", "get"), ("path", "/users/current/accounts/a2"), ("token", token)];
    let page = c.post("/console/explain", Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("deny (resource_not_allowed), HTTP 403"), "{}", page.body);
    assert!(page.body.contains("fails on resource"));
    assert!(!page.body.contains(token), "the token is not shown back");
    // A token in the query: explained, and the path is shown back redacted.
    let in_query = format!("/users/current/accounts/a2?accessTokenId={token}");
    let fields = [("csrf", csrf.as_str()), ("method", "get"), ("path", in_query.as_str())];
    let page = c.post("/console/explain", Some(&cookie), &fields, Some(&origin)).await;
    assert!(page.body.contains("deny (resource_not_allowed), HTTP 403"), "{}", page.body);
    assert!(page.body.contains("accessTokenId=…"), "{}", page.body);
    assert!(!page.body.contains(token), "the token in the query is not shown back");
    // The proxy agrees.
    let resp = c.h.get("/users/current/accounts/a2", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(resp.status, 403);
    c.h.shutdown().await;
}

/// How many tokens the master lists.
async fn count(c: &Console) -> Option<usize> {
    c.api("GET", "/v1/tokens?limit=1000", &c.admin, None).await.json()["tokens"].as_array().map(Vec::len)
}

/// The fields of the narrow form the console renders, as a browser would
/// post them.
fn narrow_fields(csrf: &str) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", csrf.to_string()),
        ("application", "trading-account-management-api".to_string()),
        ("role", "reader".to_string()),
        ("resources", "account:a1".to_string()),
        ("validity", "1".to_string()),
        ("action", "create".to_string()),
    ]
}

/// Every console action is the API's own call with the API's own
/// authority: a non-master admin sees, narrows and revokes only itself and
/// its lineage — nothing of a peer admin's, a user's from elsewhere, or a
/// master's — whatever it types into the address bar or posts.
#[tokio::test]
async fn the_console_acts_only_where_the_api_would() {
    let c = Console::start().await;
    let origin = format!("http://{}", c.h.api);
    let ops = c.create(r#"{"name":"ops-a","lifetime":"3h","role":"admin"}"#).await;
    let peer = c.create(r#"{"name":"ops-b","lifetime":"3h","role":"admin"}"#).await;
    let (ops_token, peer_token) = (ops["token"].as_str().expect("t"), peer["token"].as_str().expect("t"));
    let mine = c.api("POST", "/v1/tokens", ops_token, Some(r#"{"name":"mine","lifetime":"2h"}"#)).await.json();
    let theirs = c.api("POST", "/v1/tokens", peer_token, Some(r#"{"name":"theirs","lifetime":"1h"}"#)).await.json();
    let masters = c.create(r#"{"name":"masters-user","lifetime":"1h"}"#).await;
    let before = count(&c).await;
    let cookie = c.sign_in(ops_token).await;

    // The list: its own family only.
    let list = c.get("/console/tokens", Some(&cookie)).await;
    assert!(list.body.contains(">mine<") && list.body.contains(">ops-a<"), "{}", list.body);
    for other in ["theirs", "ops-b", "masters-user"] {
        assert!(!list.body.contains(&format!(">{other}<")), "{other} is listed to ops-a");
    }
    // A form token of its own, from a page it may open.
    let own_form = c.get(&format!("/console/tokens/{}/narrow", mine["id"].as_str().expect("id")), Some(&cookie)).await;
    assert_eq!(own_form.status, 200, "{}", own_form.body);
    let csrf = own_form.csrf();

    // Out of reach: every page and every post, as if it did not exist.
    for (what, victim) in [("a peer admin's token", &theirs), ("a peer admin", &peer), ("a master's token", &masters)] {
        let id = victim["id"].as_str().expect("id");
        for page in ["", "/narrow", "/revoke"] {
            let got = c.get(&format!("/console/tokens/{id}{page}"), Some(&cookie)).await;
            assert_eq!(got.status, 404, "GET {what}{page}: {}", got.body);
        }
        let fields = narrow_fields(&csrf);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let made = c.post(&format!("/console/tokens/{id}/narrow"), Some(&cookie), &fields, Some(&origin)).await;
        assert_eq!(made.status, 404, "narrow {what}: {}", made.body);
        assert!(!made.body.contains("id=\"secret\""), "narrow {what}: a token was shown");
        let revoked =
            c.post(&format!("/console/tokens/{id}/revoke"), Some(&cookie), &[("csrf", &csrf)], Some(&origin)).await;
        assert_eq!(revoked.status, 404, "revoke {what}: {}", revoked.body);
    }
    // The store holds what it held; the victims still work on the proxy.
    assert_eq!(count(&c).await, before, "nothing was minted");
    for victim in [&theirs, &masters] {
        let token = victim["token"].as_str().expect("token");
        assert_eq!(
            c.h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).await.status,
            200
        );
    }
    assert_eq!(c.h.upstream_received().len(), 2);

    // Within its lineage the console does what the API does: a child of
    // its own token, in its lineage, that dies with it.
    let fields = narrow_fields(&csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mine_id = mine["id"].as_str().expect("id");
    let made = c.post(&format!("/console/tokens/{mine_id}/narrow"), Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let at = made.body.find("id=\"secret\"").expect("the value");
    let child: String =
        made.body[at..].split('>').nth(1).expect("text").split('<').next().expect("value").trim().to_string();
    let who = c.api("GET", "/v1/whoami", &child, None).await.json();
    assert_eq!(who["lineage"], serde_json::json!([ops["id"], mine["id"]]), "{who}");
    assert_eq!(
        c.api("DELETE", &format!("/v1/tokens/{}", ops["id"].as_str().expect("id")), &c.admin, None).await.status,
        204
    );
    assert_eq!(c.api("GET", "/v1/whoami", &child, None).await.reason(), "revoked");
    c.h.shutdown().await;
}

/// A token whose ancestor was revoked is refused by the proxy, and every
/// view of it says so — the API, the console's list and page — with the
/// ancestor named; nothing is narrowed from it any more.
#[tokio::test]
async fn a_token_revoked_with_its_ancestor_shows_revoked_everywhere() {
    let c = Console::start().await;
    let origin = format!("http://{}", c.h.api);
    let ops = c.create(r#"{"name":"ops","lifetime":"2h","role":"admin"}"#).await;
    let ops_id = ops["id"].as_str().expect("id").to_string();
    let user = c
        .api("POST", "/v1/tokens", ops["token"].as_str().expect("t"), Some(r#"{"name":"heir","lifetime":"1h"}"#))
        .await;
    let user = user.json();
    let user_id = user["id"].as_str().expect("id").to_string();
    let cookie = c.sign_in(&c.admin).await;
    let page = c.get(&format!("/console/tokens/{user_id}"), Some(&cookie)).await;
    assert!(page.body.contains("/narrow\">Narrow…"), "offered while live");
    let csrf = page.csrf();

    assert_eq!(c.api("DELETE", &format!("/v1/tokens/{ops_id}"), &c.admin, None).await.status, 204);
    let token = user["token"].as_str().expect("token");
    assert_eq!(
        c.h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).await.status,
        401
    );
    // The API.
    let shown = c.api("GET", &format!("/v1/tokens/{user_id}"), &c.admin, None).await.json();
    assert_eq!(
        (shown["state"].as_str(), shown["revokedBy"].as_str()),
        (Some("revoked"), Some(ops_id.as_str())),
        "{shown}"
    );
    assert!(shown["revokedAt"].is_number(), "{shown}");
    let listed = c.api("GET", "/v1/tokens?name=heir", &c.admin, None).await.json();
    assert_eq!(listed["tokens"][0]["state"], "revoked", "{listed}");
    // The console: the list (and its filter), the page, no Narrow….
    let list = c.get("/console/tokens?state=live", Some(&cookie)).await;
    assert!(!list.body.contains(">heir<"), "listed as live");
    let list = c.get("/console/tokens?state=revoked", Some(&cookie)).await;
    assert!(list.body.contains(">heir<"), "not listed as revoked: {}", list.body);
    let page = c.get(&format!("/console/tokens/{user_id}"), Some(&cookie)).await;
    assert!(page.body.contains("revoked (with its ancestor"), "{}", page.body);
    assert!(page.body.contains(&ops_id));
    assert!(!page.body.contains("Narrow…"), "not offered once revoked");
    let form = c.get(&format!("/console/tokens/{user_id}/narrow"), Some(&cookie)).await;
    assert_eq!(form.status, 403, "{}", form.body);
    let fields = narrow_fields(&csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let made = c.post(&format!("/console/tokens/{user_id}/narrow"), Some(&cookie), &fields, Some(&origin)).await;
    assert_eq!(made.status, 403, "{}", made.body);
    let r = c.api("POST", &format!("/v1/tokens/{user_id}/narrow"), &c.admin, Some(r#"{"roles":["reader"]}"#)).await;
    assert_eq!((r.status, r.reason().as_str()), (410, "not_live"), "{}", r.body);
    c.h.shutdown().await;
}

/// The open sessions the status page counts.
async fn sessions_open(c: &Console, cookie: &str) -> usize {
    status_figure(c, cookie, "data-open").await
}

/// A figure of the status page, by its attribute.
async fn status_figure(c: &Console, cookie: &str, attribute: &str) -> usize {
    let page = c.get("/console/status", Some(cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let at = page.body.find(&format!("{attribute}=\"")).expect("the figure") + attribute.len() + 2;
    page.body[at..].split('"').next().expect("value").parse().expect("a number")
}

/// One admin token signing in again and again holds five sessions (its
/// least recently used ones end, nobody else's); revoking it through the
/// API ends them at once and frees their room.
#[tokio::test]
async fn a_flooding_token_holds_its_bound_and_its_revocation_frees_the_table() {
    let c = Console::start().await;
    let ops = c.create(r#"{"name":"ops","lifetime":"2h","role":"admin"}"#).await;
    let (ops_id, ops_token) = (ops["id"].as_str().expect("id"), ops["token"].as_str().expect("token"));
    let peer = c.create(r#"{"name":"peer","lifetime":"2h","role":"admin"}"#).await;
    let master = c.sign_in(&c.admin).await;
    let peer_session = c.sign_in(peer["token"].as_str().expect("token")).await;

    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(c.sign_in(ops_token).await);
    }
    assert_eq!(sessions_open(&c, &master).await, 1 + 1 + 5, "the flooding token holds five sessions");
    assert_eq!(c.get("/console/tokens", Some(&peer_session)).await.status, 200, "nobody else's ended");
    for (i, cookie) in flood.iter().enumerate() {
        let page = c.get("/console/tokens", Some(cookie)).await;
        let want = if i < 35 { (303, "/console/sign-in?ended=session") } else { (200, "") };
        assert_eq!((page.status, page.location()), want, "the flood's session {i}");
    }

    let resp = c.api("DELETE", &format!("/v1/tokens/{ops_id}"), &c.admin, None).await;
    assert_eq!(resp.status, 204);
    assert_eq!(sessions_open(&c, &master).await, 2, "its five sessions are gone");
    for cookie in &flood[35..] {
        let page = c.get("/console/tokens", Some(cookie)).await;
        assert_eq!((page.status, page.location()), (303, "/console/sign-in?ended=session"));
    }
    let shown = c.api("GET", &format!("/v1/tokens/{ops_id}"), &c.admin, None).await.json();
    assert_eq!(shown["state"].as_str(), Some("revoked"), "the store holds the revocation: {shown}");
    assert_eq!(c.sign_in_post(ops_token, &c.origin()).await.status, 401, "and it signs in no more");
    // Another token signs in; the peer is still signed in.
    let other = c.create(r#"{"name":"ops-2","lifetime":"2h","role":"admin"}"#).await;
    let cookie = c.sign_in(other["token"].as_str().expect("token")).await;
    assert_eq!(c.get("/console/tokens", Some(&cookie)).await.status, 200);
    assert_eq!(c.get("/console/tokens", Some(&peer_session)).await.status, 200);
    assert_eq!(sessions_open(&c, &master).await, 3);
    c.h.shutdown().await;
}

/// A full table is never a lockout: admin tokens signing in to their
/// bound fill it, and a master and a peer still sign in and stay signed
/// in while the flood goes on — the room comes from the tokens holding
/// the most sessions, which then displace only themselves.
#[tokio::test]
async fn a_full_table_makes_room_from_the_tokens_holding_the_most() {
    let c = Console::start_with(
        |_| {},
        |console| {
            console.max_sessions = 12;
            console.max_sessions_per_token = 3;
        },
    )
    .await;
    let mut flood = Vec::new();
    for i in 0..6 {
        let made = c.create(&format!(r#"{{"name":"flood-{i}","lifetime":"2h","role":"admin"}}"#)).await;
        flood.push(made["token"].as_str().expect("token").to_string());
    }
    for token in &flood {
        for _ in 0..3 {
            c.sign_in(token).await;
        }
    }
    let master = c.sign_in(&c.admin).await;
    assert_eq!(sessions_open(&c, &master).await, 12, "the table is full, and the master signed in");
    let peer = c.create(r#"{"name":"peer","lifetime":"2h","role":"admin"}"#).await;
    let peer_session = c.sign_in(peer["token"].as_str().expect("token")).await;
    for _ in 0..3 {
        for token in &flood {
            c.sign_in(token).await;
        }
    }
    assert_eq!(sessions_open(&c, &master).await, 12);
    for (who, cookie) in [("the master", &master), ("a peer", &peer_session)] {
        assert_eq!(c.get("/console/tokens", Some(cookie)).await.status, 200, "{who} is still signed in");
    }
    c.h.shutdown().await;
}

/// Failed sign-ins count per client address: after five, that client's
/// sign-ins get 429 with `Retry-After` — with the right token too, and
/// with a body too large to read, since neither is looked at — while
/// another client and sign-ins that succeed go on. Behind a trusted proxy
/// the client is the address it forwards; anyone else's
/// `X-Forwarded-For` is not believed.
#[tokio::test]
async fn failed_sign_ins_are_throttled_per_client() {
    let c = Console::start_with(
        |doc| {
            doc.set("trusted_proxies", serde_json::json!(["127.0.0.5/32"]));
        },
        |_| {},
    )
    .await;
    let origin = c.origin();
    let from_page = [("origin", origin.as_str())];
    let (guesser, neighbour, regular) =
        (Console::client_at("127.0.0.2"), Console::client_at("127.0.0.3"), Console::client_at("127.0.0.4"));
    let ops = c.create(r#"{"name":"ops","lifetime":"2h","role":"admin"}"#).await;
    let watcher = c.sign_in(ops["token"].as_str().expect("token")).await;
    for i in 0..5 {
        let page = c.sign_in_via(&guesser, "ngr_not-a-token", &from_page).await;
        assert_eq!(page.status, 401, "failure {i}: {}", page.body);
    }
    let page = c.sign_in_via(&guesser, &c.admin, &from_page).await;
    assert_eq!(page.status, 429, "the right token is not looked at: {}", page.body);
    // A failure drains in 6 min, counted from the first one (in whole
    // seconds: the failures may straddle a second boundary).
    let retry = page.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    assert!(retry.is_some_and(|r| (355..=360).contains(&r)), "a failure drains in 6 min: {retry:?}");
    assert!(page.body.contains("too many failed sign-ins"));
    let cookies: Vec<&str> = page.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(!cookies.iter().any(|v| v.starts_with("ng_console=")), "no session: {cookies:?}");
    let big = "x".repeat(100 * 1024);
    let page = c.post_via(&guesser, "/console/sign-in", None, &[("pad", &big)], &from_page).await;
    assert_eq!(page.status, 429, "nor is its body read (413 otherwise)");
    assert_eq!(sessions_open(&c, &watcher).await, 1, "no session was opened");

    assert_eq!(c.sign_in_via(&neighbour, "ngr_not-a-token", &from_page).await.status, 401, "another client");
    for i in 0..8 {
        assert_eq!(c.sign_in_via(&regular, &c.admin, &from_page).await.status, 303, "success {i} is not throttled");
    }
    assert_eq!(status_figure(&c, &watcher, "data-waiting").await, 1, "one client waits");

    // Six minutes on, the guesser may try once more.
    c.h.advance(Duration::from_secs(360));
    assert_eq!(c.sign_in_via(&guesser, &c.admin, &from_page).await.status, 303);

    // Behind a trusted proxy, clients are told apart by X-Forwarded-For.
    let proxy = Console::client_at("127.0.0.5");
    let forwarded = |ip: &'static str| [("origin", origin.clone()), ("x-forwarded-for", format!("203.0.113.9, {ip}"))];
    for _ in 0..5 {
        let headers = forwarded("198.51.100.1");
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(c.sign_in_via(&proxy, "ngr_not-a-token", &headers).await.status, 401);
    }
    for (ip, via, want) in [
        ("198.51.100.1", &proxy, 429),
        ("198.51.100.2", &proxy, 401),
        // An untrusted peer's forwarded address is its own word: not believed.
        ("198.51.100.1", &Console::client_at("127.0.0.6"), 401),
    ] {
        let headers = forwarded(ip);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(c.sign_in_via(via, "ngr_not-a-token", &headers).await.status, want, "{ip}");
    }
    c.h.shutdown().await;
}

/// A form post as raw bytes: the body with a `Content-Length`, or chunked.
fn raw_form_post(c: &Console, path: &str, cookie: &str, body: &str, chunked: bool) -> Vec<u8> {
    let (host, origin) = (c.h.api.to_string(), format!("http://{}", c.h.api));
    let mut headers = vec![
        ("Host", host.as_str()),
        ("Origin", origin.as_str()),
        ("Cookie", cookie),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Connection", "close"),
    ];
    let len = body.len().to_string();
    if chunked {
        headers.push(("Transfer-Encoding", "chunked"));
        let mut chunks = String::new();
        for chunk in body.as_bytes().chunks(10_000) {
            chunks.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), String::from_utf8_lossy(chunk)));
        }
        chunks.push_str("0\r\n\r\n");
        support::raw_request("POST", path, &headers, &chunks).into_bytes()
    } else {
        headers.push(("Content-Length", len.as_str()));
        support::raw_request("POST", path, &headers, body).into_bytes()
    }
}

/// `fields`, then a padding field that brings the body to `len` bytes.
fn padded(fields: &[(&str, &str)], len: usize) -> String {
    let mut body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    body.push_str("&pad=");
    let pad = len.checked_sub(body.len()).expect("room for the padding");
    body.push_str(&"x".repeat(pad));
    body
}

/// Every console form is read with the JSON API's limit, 64 KiB: a body
/// of exactly that is read and acted on, one byte more gets 413 and
/// nothing is done — with a `Content-Length` or chunked, on the sign-in
/// form and on a signed-in form alike.
#[tokio::test]
async fn console_forms_are_read_with_the_api_body_limit() {
    const LIMIT: usize = 64 * 1024;
    let c = Console::start().await;
    for chunked in [false, true] {
        for (len, want) in [(LIMIT, 303), (LIMIT + 1, 413)] {
            let form = c.get("/console/sign-in", None).await;
            let pre = form.headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("the form's cookie");
            let pre = pre.split(';').next().expect("pair");
            let body = padded(&[("csrf", &form.csrf()), ("token", &c.admin)], len);
            let resp = support::send_raw(c.h.api, &raw_form_post(&c, "/console/sign-in", pre, &body, chunked)).await;
            assert_eq!(resp.status, want, "sign-in, {len} bytes, chunked: {chunked}");
            let session = resp.headers.iter().any(|(k, v)| k == "set-cookie" && v.starts_with("ng_console="));
            assert_eq!(session, want == 303, "a session only when the form was read");
        }
    }

    let cookie = c.sign_in(&c.admin).await;
    for chunked in [false, true] {
        for (len, want) in [(LIMIT, 303), (LIMIT + 1, 413)] {
            let victim = c.create(&format!(r#"{{"name":"victim-{len}-{chunked}","lifetime":"1h"}}"#)).await;
            let (id, token) = (victim["id"].as_str().expect("id"), victim["token"].as_str().expect("token"));
            let csrf = c.get(&format!("/console/tokens/{id}/revoke"), Some(&cookie)).await.csrf();
            let body = padded(&[("csrf", &csrf)], len);
            let path = format!("/console/tokens/{id}/revoke");
            let resp = support::send_raw(c.h.api, &raw_form_post(&c, &path, &cookie, &body, chunked)).await;
            assert_eq!(resp.status, want, "revoke, {len} bytes, chunked: {chunked}: {}", resp.body);
            let shown = c.api("GET", &format!("/v1/tokens/{id}"), &c.admin, None).await.json();
            assert_eq!(shown["revokedAt"].is_number(), want == 303, "{len} bytes, chunked: {chunked}: {shown}");
            let on_proxy =
                c.h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).await;
            assert_eq!(on_proxy.status, if want == 303 { 401 } else { 200 });
        }
    }
    c.h.shutdown().await;
}

/// A post that changes something must come from the console's own origin:
/// its `Origin` when it sends one, else its `Referer`. Another origin's,
/// `null`, another scheme or port, not a URL, sent twice, or neither
/// header: refused, and nothing changed in the store.
#[tokio::test]
async fn a_form_post_must_come_from_this_origin_by_origin_or_referer() {
    let c = Console::start().await;
    let here = c.origin();
    let api = c.h.api;
    let victim = c.create(r#"{"name":"victim","lifetime":"1h"}"#).await;
    let (id, token) = (victim["id"].as_str().expect("id"), victim["token"].as_str().expect("token"));
    let cookie = c.sign_in(&c.admin).await;
    let path = format!("/console/tokens/{id}/revoke");
    let csrf = c.get(&path, Some(&cookie)).await.csrf();
    let other_port = format!("http://{}:{}/console/tokens", api.ip(), api.port() + 1);
    let refused: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("another site's Origin", vec![("origin", "http://evil.example".into())]),
        ("Origin: null", vec![("origin", "null".into())]),
        ("this host over https", vec![("origin", format!("https://{api}"))]),
        ("an Origin with a path", vec![("origin", format!("{here}/console"))]),
        ("two Origins", vec![("origin", here.clone()), ("origin", "http://evil.example".into())]),
        (
            "another site's Origin with this origin's Referer",
            vec![("origin", "http://evil.example".into()), ("referer", format!("{here}/console/tokens"))],
        ),
        ("another site's Referer", vec![("referer", "http://evil.example/console/tokens".into())]),
        ("a Referer of another port", vec![("referer", other_port)]),
        ("a Referer of this host over https", vec![("referer", format!("https://{api}/console/tokens"))]),
        ("a Referer that is not a URL", vec![("referer", "not a url".into())]),
        ("a relative Referer", vec![("referer", "/console/tokens".into())]),
        ("neither Origin nor Referer", vec![]),
    ];
    for (what, headers) in &refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = c.post_via(&c.http, &path, Some(&cookie), &[("csrf", &csrf)], &headers).await;
        assert_eq!(page.status, 403, "{what}: {}", page.body);
        assert!(page.body.contains("Refused"), "{what}");
    }
    let shown = c.api("GET", &format!("/v1/tokens/{id}"), &c.admin, None).await.json();
    assert!(shown["revokedAt"].is_null(), "nothing was revoked: {shown}");
    let bearer = format!("Bearer {token}");
    assert_eq!(c.h.get("/users/current/accounts/a1", &[("Authorization", &bearer)]).await.status, 200);

    // This origin's Referer, without an Origin: done.
    let referer = format!("{here}/console/tokens/{id}/revoke");
    let page = c.post_via(&c.http, &path, Some(&cookie), &[("csrf", &csrf)], &[("referer", &referer)]).await;
    assert_eq!((page.status, page.location()), (303, format!("/console/tokens/{id}?revoked=1").as_str()));
    let shown = c.api("GET", &format!("/v1/tokens/{id}"), &c.admin, None).await.json();
    assert!(shown["revokedAt"].is_number(), "{shown}");
    assert_eq!(c.h.get("/users/current/accounts/a1", &[("Authorization", &bearer)]).await.status, 401);

    // The sign-in form alike.
    assert_eq!(c.sign_in_via(&c.http, &c.admin, &[]).await.status, 403, "neither header");
    let page = c.sign_in_via(&c.http, &c.admin, &[("referer", &format!("{here}/console/sign-in"))]).await;
    assert_eq!(page.status, 303, "this origin's Referer");
    c.h.shutdown().await;
}

/// Every cookie the console sets or clears — the sign-in form's, set and
/// cleared, and the session's, set and cleared — is `Secure` exactly when
/// `console.secure_cookie` says users reach it over HTTPS; its origin is
/// then `https://`, and the other scheme's is another origin.
#[tokio::test]
async fn every_console_cookie_is_secure_when_secure_cookie_is_set() {
    for secure in [false, true] {
        let c = Console::start_with(|_| {}, |console| console.secure_cookie = secure).await;
        let (scheme, other) = if secure { ("https", "http") } else { ("http", "https") };
        let origin = format!("{scheme}://{}", c.h.api);
        let cookies = |what: &str, page: &Page, want: &[&str]| {
            let set: Vec<&str> = page.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
            assert_eq!(set.len(), want.len(), "{what}: {set:?}");
            for (cookie, prefix) in set.iter().zip(want) {
                assert!(cookie.starts_with(prefix), "{what}: {cookie}");
                assert_eq!(cookie.ends_with("; Secure"), secure, "{what}, secure_cookie {secure}: {cookie}");
            }
        };
        cookies("the sign-in form", &c.get("/console/sign-in", None).await, &["ng_console_sign_in="]);
        let refused = c.sign_in_post("ngr_not-a-token", &origin).await;
        assert_eq!(refused.status, 401);
        cookies("a refused sign-in's new form", &refused, &["ng_console_sign_in="]);
        let signed_in = c.sign_in_post(&c.admin, &origin).await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        cookies("a sign-in", &signed_in, &["ng_console=", "ng_console_sign_in=;"]);
        let session = signed_in.headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("cookie");
        let session = session.split(';').next().expect("pair").to_string();
        let csrf = c.get("/console/tokens", Some(&session)).await.csrf();
        let out = c.post("/console/sign-out", Some(&session), &[("csrf", &csrf)], Some(&origin)).await;
        assert_eq!(out.status, 303);
        cookies("a sign-out", &out, &["ng_console=;"]);
        let elsewhere = c.sign_in_post(&c.admin, &format!("{other}://{}", c.h.api)).await;
        assert_eq!(elsewhere.status, 403, "secure_cookie {secure}: {other} is another origin");
        c.h.shutdown().await;
    }
}

/// What a SQLite store's files hold (the database and its write-ahead log).
fn database_bytes(db: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap_or_default();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    bytes.extend(std::fs::read(wal).unwrap_or_default());
    bytes
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_session_outlives_a_restart_and_the_store_holds_it_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ng.db");
    let mut c = Console::on_store(|_| {}, |_| {}, support::sqlite_store(db.clone()), None).await;
    let admin = c.h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).expect("bootstrapped");
    c.admin = admin.clone();
    let cookie = c.sign_in(&admin).await;
    let before = c.get("/console/tokens", Some(&cookie)).await;
    assert_eq!(before.status, 200);
    // The store holds neither the sign-in token nor the cookie.
    let bytes = database_bytes(&db);
    let id = cookie.split_once('=').expect("name=value").1;
    assert!(!bytes.is_empty());
    assert!(!holds(&bytes, &admin), "the sign-in token is in the store");
    assert!(!holds(&bytes, admin.split('.').next_back().unwrap_or(&admin)), "a part of the token is in the store");
    assert!(!holds(&bytes, id), "the session's cookie is in the store");
    c.h.shutdown().await;

    // Restarted on the same store: still signed in, and the same form
    // token (the session, not a new one).
    let c = Console::on_store(|_| {}, |_| {}, support::sqlite_store(db.clone()), Some(admin.clone())).await;
    let page = c.get("/console/tokens", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.location());
    assert_eq!(page.csrf(), before.csrf(), "the same session, its form token kept");
    // A cookie the store never saw, or the real one a character off (no
    // row is found by its hash), opens nothing.
    let forged = format!("ng_console={}", "A".repeat(43));
    assert_eq!(c.get("/console/tokens", Some(&forged)).await.location(), "/console/sign-in?ended=session");
    let last = id.chars().last().expect("a character");
    let off = format!("ng_console={}{}", &id[..id.len() - 1], if last == 'A' { 'B' } else { 'A' });
    assert_eq!(c.get("/console/tokens", Some(&off)).await.location(), "/console/sign-in?ended=session");
    // Sign-out ends it in the store too: after another restart it is gone.
    let form = c.get("/console/tokens", Some(&cookie)).await;
    let out = c.post("/console/sign-out", Some(&cookie), &[("csrf", &form.csrf())], Some(&c.origin())).await;
    assert_eq!(out.status, 303, "{}", out.body);
    c.h.shutdown().await;
    let c = Console::on_store(|_| {}, |_| {}, support::sqlite_store(db), Some(admin)).await;
    assert_eq!(c.get("/console/tokens", Some(&cookie)).await.location(), "/console/sign-in?ended=session");
    c.h.shutdown().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test starts one"]
async fn two_replicas_share_sessions_and_a_revocation_or_sign_out_ends_them_on_both() {
    use std::time::Duration;
    let url = support::fresh_postgres_database().await;
    let store = move || {
        let url = url.clone();
        move |c: &mut narrowgate::config::Config| {
            c.store = Some(narrowgate::config::StoreConfig {
                backend: narrowgate::config::StoreBackend::Postgres {
                    url: url.clone(),
                    timeout: Duration::from_secs(1),
                },
                resync_interval: Duration::from_secs(30),
                create_if_missing: true,
            })
        }
    };
    let mut a = Console::on_store(|_| {}, |_| {}, store(), None).await;
    let root = a.h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).expect("bootstrapped");
    a.admin = root.clone();
    let b = Console::on_store(|_| {}, |_| {}, store(), Some(root.clone())).await;

    // An admin token of its own signs in on a; b knows the session. (A
    // reference token: each test replica signs JWTs with a key of its own.)
    let made = a.create(r#"{"name": "operator", "role": "admin", "lifetime": "1h", "form": "reference"}"#).await;
    let operator = made["token"].as_str().expect("token").to_string();
    let cookie = a.sign_in(&operator).await;
    assert_eq!(a.get("/console/tokens", Some(&cookie)).await.status, 200);
    // (Once b's mirror holds the new token: within the revocation bound.)
    support::eventually_async(Duration::from_secs(5), || async {
        let page = b.get("/console/tokens", Some(&cookie)).await;
        assert_ne!(page.location(), "/console/sign-in?ended=session", "the other replica knows it");
        (page.status == 200).then_some(())
    })
    .await;

    // Revoked through a: ended on b within the revocation bound.
    let id = made["id"].as_str().expect("id");
    assert!(a.api("DELETE", &format!("/v1/tokens/{id}"), &root, None).await.status < 300);
    support::eventually_async(Duration::from_secs(5), || async {
        let page = b.get("/console/tokens", Some(&cookie)).await;
        page.location().starts_with("/console/sign-in?ended=").then_some(())
    })
    .await;
    assert!(a.get("/console/tokens", Some(&cookie)).await.location().starts_with("/console/sign-in?ended="));

    // Signed out on b: ended on a, which held it in its own table too.
    let second = b.sign_in(&root).await;
    assert_eq!(a.get("/console/tokens", Some(&second)).await.status, 200);
    let form = b.get("/console/tokens", Some(&second)).await;
    let out = b.post("/console/sign-out", Some(&second), &[("csrf", &form.csrf())], Some(&b.origin())).await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(a.get("/console/tokens", Some(&second)).await.location(), "/console/sign-in?ended=session");
    a.h.shutdown().await;
    b.h.shutdown().await;
}

#[tokio::test]
async fn a_full_store_frees_a_revoked_tokens_sessions_before_a_live_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ng.db");
    let mut c = Console::on_store(
        |_| {},
        |console| {
            console.max_sessions = 4;
            console.max_sessions_per_token = 5;
        },
        support::sqlite_store(db),
        None,
    )
    .await;
    c.admin = c.h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).expect("bootstrapped");
    let made = |name: &str| format!(r#"{{"name": "{name}", "role": "admin", "lifetime": "1h"}}"#);
    let a = c.create(&made("a")).await;
    let b = c.create(&made("b")).await;
    let (a_token, b_token) = (a["token"].as_str().expect("a"), b["token"].as_str().expect("b"));
    // b's first: were the revoked rows left, the tie between a and b
    // (two each) would fall on b, the first opened.
    let b_sessions = [c.sign_in(b_token).await, c.sign_in(b_token).await];
    let a_sessions = [c.sign_in(a_token).await, c.sign_in(a_token).await];
    let revoked = c.api("DELETE", &format!("/v1/tokens/{}", a["id"].as_str().expect("id")), &c.admin, None).await;
    assert_eq!(revoked.status, 204);
    // The table is full (four rows); the newcomer takes a revoked token's
    // room, never a live session's.
    let master = c.sign_in(&c.admin).await;
    assert_eq!(c.get("/console/tokens", Some(&master)).await.status, 200);
    for cookie in &b_sessions {
        assert_eq!(c.get("/console/tokens", Some(cookie)).await.status, 200, "a live session kept");
    }
    for cookie in &a_sessions {
        assert!(c.get("/console/tokens", Some(cookie)).await.location().starts_with("/console/sign-in?ended="));
    }
    c.h.shutdown().await;
}
