//! Tokens from an identity provider the gateway did not configure key by
//! key, against a real one: panva's oidc-provider (tests/oidc/provider.mjs,
//! from npm) over HTTPS, whose clients get JWT access tokens by client
//! credentials. The gateway knows the issuer by its URL alone (OpenID
//! Connect discovery): it reads the discovery document, follows its
//! `jwks_uri`, follows a key rotation at the provider, and refuses a
//! provider whose document names another issuer (the mix-up defence).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{Harness, eventually_async, metric, send_raw, web_rules};
use crate::tls::{Pki, run, write_pair};

const SECRET: &str = "a-client-secret-for-the-oidc-tests-only";
const AUDIENCE: &str = "https://api.test";

/// A running provider: its port, its CA file, and the process.
struct Provider {
    port: u16,
    _child: tokio::process::Child,
}

impl Provider {
    /// The provider on `port` naming itself `issuer` (its own URL unless a
    /// test says otherwise), signing with fresh keys named `kids`.
    async fn start(pki: &Pki, port: u16, issuer: &str, kids: &[&str]) -> Provider {
        // Its own accessRules (honoured as any issuer's are without a
        // claim mapping).
        let clients = [("svc", json!({ "accessRules": web_rules() }))];
        Provider::with_clients(pki, port, issuer, kids, &clients).await
    }

    /// The provider with `clients`: (client id, the extra claims of its
    /// access tokens); each may ask for scope `accounts:read`.
    async fn with_clients(pki: &Pki, port: u16, issuer: &str, kids: &[&str], clients: &[(&str, Value)]) -> Provider {
        let (cert, key) = write_pair(pki.dir.path(), "idp", &pki.ca.server(&["127.0.0.1"]));
        let clients: Vec<Value> = clients
            .iter()
            .map(|(id, claims)| {
                json!({ "client_id": id, "client_secret": SECRET, "scope": "accounts:read other", "claims": claims })
            })
            .collect();
        let config = json!({
            "port": port, "issuer": issuer, "cert": cert, "key": key, "kids": kids, "resource": AUDIENCE,
            "clients": clients,
        });
        let file = pki.dir.path().join(format!("idp-{port}.json"));
        std::fs::write(&file, config.to_string()).expect("provider config");
        let node = std::env::var("NG_NODE").expect("NG_NODE is not set: scripts/test installs the OpenID provider");
        let script = std::env::var("NG_OIDC_PROVIDER").expect("NG_OIDC_PROVIDER is not set");
        let mut child = tokio::process::Command::new(node)
            .arg(script)
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the provider starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        assert!(matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"), "{ready:?}");
        Provider { port, _child: child }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// An access token from its token endpoint (client credentials).
    async fn token(&self, pki: &Pki) -> String {
        self.token_for(pki, "svc", "accounts:read").await
    }

    /// An access token of `client`, with `scope`.
    async fn token_for(&self, pki: &Pki, client: &str, scope: &str) -> String {
        let out = run(tokio::process::Command::new("curl").args([
            "-sS",
            "--cacert",
            &pki.s("ca.pem"),
            "-u",
            &format!("{client}:{SECRET}"),
            "-d",
            "grant_type=client_credentials",
            "-d",
            &format!("scope={scope}"),
            &format!("{}/token", self.url()),
        ]))
        .await;
        let body: Value = serde_json::from_slice(&out.stdout).expect("a JSON answer");
        body["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {body}")).to_string()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// The demo gateway with the provider at `url` as an issuer known by its
/// URL alone (and the test CA for its certificate).
async fn gateway(pki: &Pki, url: &str) -> Harness {
    mapped_gateway(pki, url, json!({})).await
}

/// [`gateway`], the issuer's entry extended by `more` (a claim mapping).
async fn mapped_gateway(pki: &Pki, url: &str, more: Value) -> Harness {
    provider_gateway(pki, url, more, |_| {}, |_| {}).await
}

/// The demo gateway trusting the provider at `url` (its entry extended by
/// `more`), the config then edited by `edit_doc` and `edit_config`.
async fn provider_gateway(
    pki: &Pki,
    url: &str,
    more: Value,
    edit_doc: impl FnOnce(&mut crate::support::ConfigDoc),
    edit_config: impl FnOnce(&mut narrowgate::config::Config),
) -> Harness {
    let (url, ca) = (url.to_string(), pki.s("ca.pem"));
    Harness::start_with(
        move |doc| {
            let mut issuer = json!({
                "name": "idp", "issuer": url, "discovery": true, "audience": [AUDIENCE],
                "jwks_ca_file": ca, "jwks_min_refetch": "100ms",
            });
            if let (Some(entry), Some(more)) = (issuer.as_object_mut(), more.as_object()) {
                entry.extend(more.clone());
            }
            if let Some(issuers) = doc.at("issuers").as_array_mut() {
                issuers.push(issuer);
            }
            edit_doc(doc);
        },
        edit_config,
    )
    .await
}

async fn account(h: &Harness, token: &str) -> crate::support::Response {
    h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test]
#[ignore = "needs the OpenID provider (oidc-provider from npm): scripts/test installs it"]
async fn an_issuer_known_by_its_url_alone_is_discovered_and_its_key_rotation_followed() {
    let pki = Pki::new();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let provider = Provider::start(&pki, port, &url, &["k1"]).await;
    let h = gateway(&pki, &url).await;
    eventually_async(Duration::from_secs(10), || async { (h.admin_get("/readyz").await.status == 200).then_some(()) })
        .await;

    // A token the provider issued: allowed by its rules, as itself.
    let first = provider.token(&pki).await;
    let r = account(&h, &first).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = h.upstream_received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-narrowgate-subject"), Some("svc"));
    assert!(metric(h.admin, r#"narrowgate_jwks_fetches_total{issuer="idp",result="ok"}"#).await >= Some(1.0));

    // The provider rotates: k1 is gone, k2 signs. Its first token is
    // allowed at once (an unknown kid reads the discovery document and the
    // keys again); a token of the withdrawn key no longer is.
    drop(provider);
    let provider = Provider::start(&pki, port, &url, &["k2"]).await;
    let second = provider.token(&pki).await;
    let r = account(&h, &second).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = account(&h, &first).await;
    assert_eq!((r.status, r.reason()), (401, "unknown_key".to_string()), "{}", r.body);
    assert_eq!(h.upstream_received().len(), 1, "only the new key's token was forwarded");
    h.shutdown().await;
}

#[tokio::test]
#[ignore = "needs the OpenID provider (oidc-provider from npm): scripts/test installs it"]
async fn a_provider_whose_discovery_document_names_another_issuer_is_not_trusted() {
    let pki = Pki::new();
    let port = free_port();
    // The provider at this URL says it is another issuer: its keys are
    // not this issuer's, whatever its tokens say.
    let provider = Provider::start(&pki, port, "https://idp.other.test", &["k1"]).await;
    let h = gateway(&pki, &provider.url()).await;
    eventually_async(Duration::from_secs(10), || async {
        metric(h.admin, r#"narrowgate_jwks_fetches_total{issuer="idp",result="error"}"#).await.filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(h.admin_get("/readyz").await.status, 503, "not ready without the issuer's keys");
    let token = provider.token(&pki).await;
    let r = account(&h, &token).await;
    assert_eq!((r.status, r.reason()), (503, "keys_unavailable".to_string()), "{}", r.body);
    assert!(h.upstream_received().is_empty());
    assert_eq!(metric(h.admin, r#"narrowgate_jwks_fetches_total{issuer="idp",result="ok"}"#).await, None);
    h.shutdown().await;
}

/// The claim mapping of the mapping test: scope `accounts:read` reads the
/// account its token names; role `admin` may delete any.
fn mapping() -> Value {
    json!({
        "claims": { "roles": ["/realm_access/roles"] },
        "grants": [
            { "id": "read-own-account", "when": { "scope": "accounts:read" },
              "application": "trading-account-management-api", "service": "rest", "group": "account-management",
              "methods": ["getAccount"], "roles": ["reader"], "resources": ["account:*:${claim:/account_id}"] },
            { "id": "admins-delete", "when": { "role": "admin" },
              "application": "trading-account-management-api", "group": "account-management",
              "methods": ["deleteAccount"], "roles": ["writer"], "resources": ["account:*:*"] },
        ],
    })
}

async fn send(h: &Harness, method: &str, path: &str, token: &str) -> (u16, String) {
    let r = h.request(method, path, &[("Authorization", &format!("Bearer {token}"))]).await;
    (r.status, r.reason())
}

#[tokio::test]
#[ignore = "needs the OpenID provider (oidc-provider from npm): scripts/test installs it"]
async fn a_providers_scopes_and_roles_allow_exactly_what_the_mapping_says() {
    let pki = Pki::new();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let clients = [
        ("reader", json!({ "account_id": "a1" })),
        ("admin", json!({ "account_id": "a1", "realm_access": { "roles": ["admin"] } })),
        // A role list that is not a list: refused, never read as one role.
        ("wrong-type", json!({ "account_id": "a1", "realm_access": { "roles": "admin" } })),
        // Claims that would widen the resource if pasted in.
        ("star", json!({ "account_id": "*" })),
        ("dots", json!({ "account_id": ".." })),
        ("separator", json!({ "account_id": "a1:x" })),
        ("no-account", json!({})),
        // Its own accessRules: not honoured beside a mapping (by default).
        ("own-rules", json!({ "accessRules": web_rules() })),
    ];
    let provider = Provider::with_clients(&pki, port, &url, &["k1"], &clients).await;
    let h = mapped_gateway(&pki, &url, mapping()).await;
    eventually_async(Duration::from_secs(10), || async { (h.admin_get("/readyz").await.status == 200).then_some(()) })
        .await;
    let token = |client: &'static str, scope: &'static str| provider.token_for(&pki, client, scope);
    let (reader, admin) = (token("reader", "accounts:read").await, token("admin", "accounts:read").await);
    let account = |id: &str| format!("/users/current/accounts/{id}");

    // Route by route: the reader reads its own account only, deletes none.
    assert_eq!(send(&h, "GET", &account("a1"), &reader).await, (200, String::new()));
    assert_eq!(send(&h, "GET", &account("a2"), &reader).await.1, "resource_not_allowed");
    assert_eq!(send(&h, "DELETE", &account("a1"), &reader).await.1, "method_not_granted");
    assert_eq!(send(&h, "GET", "/users/current/accounts", &reader).await.1, "method_not_granted");
    // Without the scope, nothing.
    let unscoped = token("reader", "other").await;
    assert_eq!(send(&h, "GET", &account("a1"), &unscoped).await.1, "application_not_allowed");
    // The admin role deletes any account, and reads its own.
    assert_eq!(send(&h, "DELETE", &account("a2"), &admin).await, (200, String::new()));
    assert_eq!(send(&h, "GET", &account("a1"), &admin).await.0, 200);
    let got: Vec<(String, String, Option<String>)> = h
        .upstream_received()
        .iter()
        .map(|r| (r.method.clone(), r.target.clone(), r.header("x-narrowgate-roles").map(str::to_string)))
        .collect();
    assert_eq!(
        got,
        [
            ("GET".to_string(), account("a1"), Some("reader".to_string())),
            ("DELETE".to_string(), account("a2"), Some("writer".to_string())),
            ("GET".to_string(), account("a1"), Some("reader".to_string())),
        ]
    );

    // A claim of the wrong type refuses the token; a claim that would
    // widen the resource, or a missing one, grants nothing; the token's
    // own accessRules are not honoured.
    let wrong = token("wrong-type", "accounts:read").await;
    assert_eq!(send(&h, "GET", &account("a1"), &wrong).await, (401, "invalid_token".to_string()));
    for client in ["star", "dots", "separator", "no-account", "own-rules"] {
        let t = token(client, "accounts:read").await;
        for id in ["a1", "*", "..", "a1:x"] {
            let (status, _) = send(&h, "GET", &account(id), &t).await;
            assert!(status == 403 || status == 400, "{client} {id}: {status}");
        }
    }
    assert!(h.upstream_received().is_empty(), "nothing else reached the upstream");

    // Explain names the mapping rule that granted, and the one that did not.
    let body = json!({ "method": "DELETE", "path": account("a1"), "token": reader }).to_string();
    let r = send_raw(
        h.admin,
        crate::support::raw_body_request("POST", "/explain", None, "application/json", &body).as_bytes(),
    )
    .await;
    let rules = r.json()["rules"].clone();
    assert_eq!(rules[0]["id"], "read-own-account", "{rules}");
    assert_eq!(rules[1]["id"], "admins-delete", "{rules}");
    assert_eq!(rules[1]["result"], "not granted by the claim mapping: the token has no role admin", "{rules}");
    h.shutdown().await;
}

#[test]
fn discovery_and_claim_mapping_mistakes_are_config_errors_with_their_paths() {
    let errors = |issuer: Value| {
        crate::support::config_errors(&move |doc| {
            if let Some(issuers) = doc.at("issuers").as_array_mut() {
                issuers.push(issuer.clone());
            }
        })
    };
    let base = || json!({ "name": "idp", "issuer": "https://idp.example", "discovery": true });
    assert_eq!(errors(base()), "");
    let with = |more: Value| {
        let mut i = base();
        if let (Some(entry), Some(more)) = (i.as_object_mut(), more.as_object()) {
            entry.extend(more.clone());
        }
        errors(i)
    };
    let grant = |edit: Value| {
        let mut g = json!({ "id": "g", "when": { "scope": "s" }, "application": "trading-account-management-api",
            "group": "account-management", "roles": ["reader"], "resources": ["account:*:${claim:/account_id}"] });
        if let (Some(g), Some(edit)) = (g.as_object_mut(), edit.as_object()) {
            g.extend(edit.clone());
        }
        with(json!({ "grants": [g] }))
    };
    assert_eq!(grant(json!({})), "");
    for (edit, error) in [
        (json!({ "application": "nope" }), "issuers[1].grants[0].application: unknown application \"nope\""),
        (json!({ "service": "grpc" }), "issuers[1].grants[0].service: unknown service \"grpc\""),
        (json!({ "group": "nope" }), "issuers[1].grants[0].group: unknown method group \"nope\""),
        (json!({ "methods": ["getAccount", "nope"] }), "issuers[1].grants[0].methods[1]: unknown method \"nope\""),
        (json!({ "roles": ["owner"] }), "issuers[1].grants[0].roles[0]: unknown role \"owner\""),
        (json!({ "resources": ["order:*:*"] }), "issuers[1].grants[0].resources[0]: unknown entity \"order\""),
        (
            json!({ "resources": ["account:*:${claim:account_id}"] }),
            "issuers[1].grants[0].resources[0]: is not entity:owner:id",
        ),
        (json!({ "resources": [] }), "issuers[1].grants[0].resources: list the resources it grants"),
        (json!({ "id": "" }), "issuers[1].grants[0].id: each grant needs an id of its own"),
    ] {
        let e = grant(edit.clone());
        assert!(e.contains(error), "{edit}: {e}");
    }
    for (more, error) in [
        (
            json!({ "discovery": true, "jwks_url": "https://idp.example/jwks" }),
            "issuers[1].jwks_url: give the jwks_url or discovery, not both",
        ),
        (json!({ "issuer": "idp" }), "issuers[1].issuer: discovery needs the issuer's URL"),
        (json!({ "issuer": "https://idp.example/#x" }), "issuers[1].issuer: must not hold a '#'"),
        (
            json!({ "claims": { "roles": ["/roles"] } }),
            "issuers[1].claims: says where claims are, but no grants use them",
        ),
        (json!({ "honour_access_rules": true }), "issuers[1].honour_access_rules: applies beside grants"),
        (json!({ "exchange": { "clients": [] } }), "issuers[1].exchange.clients: list the clients"),
        (
            json!({ "claims": { "roles": ["realm_access.roles"] }, "grants": [] }),
            "issuers[1].claims.roles[0]: \"realm_access.roles\" is not a JSON pointer",
        ),
    ] {
        let e = with(more.clone());
        assert!(e.contains(error), "{more}: {e}");
    }
    // Without discovery the algorithms must be listed.
    let e = errors(json!({ "name": "idp", "issuer": "https://idp.example", "jwks_url": "https://idp.example/jwks" }));
    assert!(e.contains("issuers[1].algorithms: list the algorithms"), "{e}");
}

/// `POST /v1/oauth/token` with `form` (`application/x-www-form-urlencoded`
/// unless `content_type` says otherwise): the status and the JSON body.
async fn exchange(h: &Harness, form: &[(&str, &str)], content_type: &str) -> (u16, Value, String) {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let len = body.len().to_string();
    let headers = [
        ("Host", "gateway.test"),
        ("Content-Type", content_type),
        ("Content-Length", len.as_str()),
        ("Connection", "close"),
    ];
    let r = send_raw(h.api, crate::support::raw_request("POST", "/v1/oauth/token", &headers, &body).as_bytes()).await;
    let json = r.json();
    (r.status, json, r.body)
}

const FORM: &str = "application/x-www-form-urlencoded";
const GRANT: (&str, &str) = ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange");
const JWT_TYPE: (&str, &str) = ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt");

#[tokio::test]
#[ignore = "needs the OpenID provider (oidc-provider from npm): scripts/test installs it"]
async fn a_providers_token_is_exchanged_for_a_narrower_token_that_dies_with_it_on_every_gateway() {
    let pki = Pki::new();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let clients = [
        ("reader", json!({ "account_id": "a1" })),
        ("admin", json!({ "account_id": "a1", "realm_access": { "roles": ["admin"] } })),
        ("stranger", json!({ "account_id": "a1" })),
    ];
    let provider = Provider::with_clients(&pki, port, &url, &["k1"], &clients).await;
    let mut more = mapping();
    more["exchange"] = json!({ "clients": ["reader", "admin"] });
    let dir = tempfile::tempdir().expect("tempdir");
    // The feed reader token an enforce-only sidecar follows the feed with.
    let feed_token = format!("feed-{}", narrowgate::token::keys::random_id(24).expect("random"));
    let reader_digest: String =
        narrowgate::store::hash_secret(&feed_token).iter().map(|b| format!("{b:02x}")).collect();
    let token_file = dir.path().join("feed.token");
    std::fs::write(&token_file, &feed_token).expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let h = provider_gateway(
        &pki,
        &url,
        more,
        // narrowgate's own tokens may be exchanged too (by anyone); a
        // sidecar reads its revocation feed.
        |doc| {
            doc.set("issuers.0.exchange", json!({ "clients": ["*"] }));
            doc.merge_yaml(&format!("revocation:\n  feed_readers_sha256: [\"{reader_digest}\"]"));
        },
        crate::support::sqlite_store(dir.path().join("ng.db")),
    )
    .await;
    eventually_async(Duration::from_secs(10), || async { (h.admin_get("/readyz").await.status == 200).then_some(()) })
        .await;
    let token = |client: &'static str| provider.token_for(&pki, client, "accounts:read");
    let (reader, admin, stranger) = (token("reader").await, token("admin").await, token("stranger").await);
    let account = |id: &str| format!("/users/current/accounts/{id}");

    // The admin's provider token deletes; exchanged for scope
    // accounts:read alone, it only reads.
    assert_eq!(send(&h, "DELETE", &account("a2"), &admin).await.0, 200);
    let (status, body, _) =
        exchange(&h, &[GRANT, ("subject_token", &admin), JWT_TYPE, ("scope", "accounts:read")], FORM).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["token_type"], &body["issued_token_type"]),
        (&json!("Bearer"), &json!("urn:ietf:params:oauth:token-type:jwt"))
    );
    let reading = body["access_token"].as_str().expect("a token").to_string();
    assert_eq!(send(&h, "GET", &account("a1"), &reading).await.0, 200);
    assert_eq!(send(&h, "DELETE", &account("a2"), &reading).await.1, "method_not_granted");

    // The reader's, for the trading API, for six minutes (within the
    // provider token's ten: asked for longer, it is refused), acting as
    // its subject.
    let long = json!({ "validityInHours": 0.5 }).to_string();
    let (status, body, _) =
        exchange(&h, &[GRANT, ("subject_token", &reader), JWT_TYPE, ("narrowing", &long)], FORM).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    let narrowing = json!({ "validityInHours": 0.1 }).to_string();
    let (status, body, _) = exchange(
        &h,
        &[
            GRANT,
            ("subject_token", &reader),
            JWT_TYPE,
            ("resource", "trading-account-management-api"),
            ("narrowing", &narrowing),
        ],
        FORM,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 300 && s <= 360), "{body}");
    let child = body["access_token"].as_str().expect("a token").to_string();
    h.upstream_received();
    assert_eq!(send(&h, "GET", &account("a1"), &child).await.0, 200);
    let got = h.upstream_received();
    assert_eq!(got[0].header("x-narrowgate-subject"), Some("reader"));

    // The child cannot be widened by exchanging it again.
    for wider in [json!({ "roles": ["writer"] }), json!({ "applications": ["mt-manager-api"] })] {
        let wider = wider.to_string();
        let (status, body, _) =
            exchange(&h, &[GRANT, ("subject_token", &child), JWT_TYPE, ("narrowing", &wider)], FORM).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{wider}: {body}");
    }
    // Narrower, it can.
    let (status, body, _) = exchange(
        &h,
        &[GRANT, ("subject_token", &child), JWT_TYPE, ("narrowing", r#"{"validityInHours": 0.05}"#)],
        FORM,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let grandchild = body["access_token"].as_str().expect("a token").to_string();

    // An enforce-only sidecar (its own process: the issuer's keys by URL,
    // its revocations by the feed) honours the exchanged tokens…
    let sidecar = crate::support::serve_process(&crate::support::enforcer_config(
        dir.path(),
        "sidecar",
        h.echo.addr,
        &format!("http://{}/.well-known/jwks.json", h.api),
        &[format!("http://{}/v1/revocations", h.api)],
        "feed.token",
        "",
    ))
    .await;
    for t in [&child, &grandchild] {
        assert_eq!(sidecar.call("GET", &account("a1"), t).await.status, 200);
    }

    // Revoking the provider token's jti kills what it was exchanged for,
    // and what that was exchanged for, here and on the sidecar.
    let claims = narrowgate::token::mapping::payload_of(&reader).expect("a JWT");
    let jti = claims["jti"].as_str().expect("jti").to_string();
    // Their lineage names the provider's token by its issuer and jti.
    let claims_of = |t: &str| narrowgate::token::mapping::payload_of(t).expect("a JWT");
    assert_eq!(claims_of(&child)["lineage"], json!([format!("{url}#{jti}")]));
    assert_eq!(claims_of(&grandchild)["lineage"], json!([format!("{url}#{jti}"), claims_of(&child)["jti"]]));
    let revoke = json!({ "jti": jti, "issuer": url }).to_string();
    let r = h.api_post("/v1/revocations", &[("Authorization", &crate::support::master(&h))], &revoke).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for t in [&child, &grandchild] {
        assert_eq!(send(&h, "GET", &account("a1"), t).await, (401, "revoked".to_string()));
    }
    crate::support::eventually_async(Duration::from_secs(5), || async {
        let (c, g) =
            (sidecar.call("GET", &account("a1"), &child).await, sidecar.call("GET", &account("a1"), &grandchild).await);
        (c.status == 401 && g.status == 401 && c.reason() == "revoked").then_some(())
    })
    .await;

    // RFC 6749 §5.2 errors, none of which holds the token sent.
    for (form, content_type, status, error) in [
        (
            vec![("grant_type", "client_credentials"), ("subject_token", &*reader), JWT_TYPE],
            FORM,
            400,
            "unsupported_grant_type",
        ),
        (vec![GRANT, JWT_TYPE], FORM, 400, "invalid_request"),
        (vec![GRANT, ("subject_token", &*admin), ("subject_token_type", "urn:x")], FORM, 400, "invalid_request"),
        (vec![GRANT, ("subject_token", &*admin), JWT_TYPE, JWT_TYPE], FORM, 400, "invalid_request"),
        (vec![GRANT, ("subject_token", &*admin), JWT_TYPE, ("actor_token", &*admin)], FORM, 400, "invalid_request"),
        (vec![GRANT, ("subject_token", &*admin), JWT_TYPE], "application/json", 400, "invalid_request"),
        (vec![GRANT, ("subject_token", "not.a.token"), JWT_TYPE], FORM, 400, "invalid_grant"),
        (vec![GRANT, ("subject_token", &*reader), JWT_TYPE], FORM, 400, "invalid_grant"),
        (vec![GRANT, ("subject_token", &*stranger), JWT_TYPE], FORM, 400, "unauthorized_client"),
        (vec![GRANT, ("subject_token", &*admin), JWT_TYPE, ("scope", "other")], FORM, 400, "invalid_scope"),
        (vec![GRANT, ("subject_token", &*child), JWT_TYPE, ("scope", "accounts:read")], FORM, 400, "invalid_grant"),
    ] {
        let (got, body, raw) = exchange(&h, &form, content_type).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{form:?}: {body}");
        assert!(body["error_description"].is_string(), "{body}");
        for (_, v) in &form {
            assert!(v.len() < 40 || !raw.contains(v), "{error}: the answer holds what was sent");
        }
    }
    h.shutdown().await;
}
