//! Loading configs: what is accepted, and every problem reported with its path.

use std::time::Duration;

use super::*;
use crate::token::keys;

fn key_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
    std::fs::write(dir.path().join("k.pub.pem"), k.public_pem).expect("write");
    std::fs::write(dir.path().join("secret"), "0123456789abcdef0123456789abcdef").expect("write");
    dir
}

const GOOD: &str = r#"
listeners: { proxy: "127.0.0.1:0", admin: "127.0.0.1:0" }
upstream: { addresses: ["127.0.0.1:3000"] }
issuers:
  - name: ng
    issuer: narrowgate
    algorithms: [ES256]
    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]
applications:
  - application: trading-account-management-api
    services: [{ service: rest }]
    method_groups:
      - group: account-management
        methods: [{ method: getAccount }, { method: trade, scopes: [dealing] }]
    roles: [{ roles: [reader, writer] }]
    entities: [{ entity: account }]
    routes:
      - route: GET /users/current/accounts/{accountId}
        group: account-management
        method: getAccount
        resource: { entity: account, id: "{accountId}" }
        roles: [reader]
      - route: GET /health
        public: true
"#;

#[test]
fn a_good_config_loads() {
    let dir = key_dir();
    let c = Config::from_yaml(GOOD, dir.path()).expect("valid");
    assert_eq!(c.manifest.routes.len(), 2);
    assert_eq!(c.keys.keys.len(), 1);
    assert_eq!(
        c.credentials,
        vec![CredentialSource::Bearer, CredentialSource::Header(HeaderName::from_static("auth-token"))]
    );
    assert_eq!(c.unmatched, Unmatched::Deny);
    assert_eq!(c.mode, crate::policy::Mode::Enforce);
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let dir = key_dir();
    let bad = r#"
listeners: { proxy: "localhost:eighty" }
upstream: { addresses: ["127.0.0.1:3000"], read_timeout: "soon" }
colour: blue
issuers:
  - name: ng
    issuer: narrowgate
    algorithms: [ES256, HS256, XX999]
    keys:
      - { kid: k1, algorithm: ES256, public_key_file: missing.pem }
      - { kid: k2, algorithm: HS256, public_key_file: k.pub.pem }
cache: { capacity: 10, max_tll: 5m }
applications:
  - application: trading-account-management-api
    services: [{ service: rest }]
    method_groups:
      - group: account-management
        methods: [{ method: getAccount }]
    roles: [{ roles: [reader] }]
    entities: [{ entity: account }]
    routes:
      - route: GET /users/current/accounts/{accountId}
        group: account-management
        method: getAccount
        resource: { entity: account, id: "{acountId}" }
        roles: [reader]
      - route: GET /users/current/accounts/{id}
        group: account-management
        method: getAccount
        roles: [admin]
        colour: red
      - route: GET /users/current/accounts/{x}
        group: account-management
        method: getAccount
        scopes: [dealing]
        roles: [reader]
      - route: GET /users/current/accounts/current
        group: account-management
        method: getAccount
        roles: [reader]
      - route: GET /users/current/accounts/{accountId}
        group: account-management
        method: getAccount
        roles: [reader]
"#;
    let errs = Config::from_yaml(bad, dir.path()).expect_err("invalid").0;
    let expect = [
        "colour: unknown key",
        "listeners.proxy: \"localhost:eighty\" is not an address",
        "upstream.read_timeout: \"soon\"",
        "issuers[0].algorithms[2]: \"XX999\" is not a supported algorithm",
        "issuers[0].keys[0]: cannot read",
        "issuers[0].keys[1]: HS256 keys need secret_file",
        "cache.max_tll: unknown field",
        "applications[0].routes[0].resource.id: unknown path parameter \"acountId\"",
        "applications[0].routes[1].colour: unknown field",
        "applications[0].routes[2].scopes[0]: \"dealing\" is not a scope of method \"getAccount\"",
        "applications[0].routes[4] (GET /users/current/accounts/{accountId}): overlaps route \"GET /users/current/accounts/current\" at applications[0].routes[3]",
    ];
    for want in expect {
        assert!(errs.iter().any(|e| e.starts_with(want)), "missing {want:?} in:\n{}", errs.join("\n"));
    }
}

#[test]
fn public_routes_take_no_access_fields() {
    let dir = key_dir();
    let text = GOOD.replace("        public: true", "        public: true\n        roles: [reader]");
    let errs = Config::from_yaml(&text, dir.path()).expect_err("invalid").0;
    assert!(errs.iter().any(|e| e.starts_with("applications[0].routes[1].roles: a public route")), "{errs:?}");
}

#[test]
fn hmac_secrets_only_from_secret_files() {
    let dir = key_dir();
    let text = GOOD.replace("algorithms: [ES256]", "algorithms: [HS256]").replace(
        "{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }",
        "{ kid: k1, algorithm: HS256, secret_file: k.pub.pem }",
    );
    let errs = Config::from_yaml(&text, dir.path()).expect_err("a PEM file is no HMAC secret").0;
    assert!(errs.iter().any(|e| e.contains("not a valid HS256 key")), "{errs:?}");
    let ok = text.replace("secret_file: k.pub.pem", "secret_file: secret");
    assert!(Config::from_yaml(&ok, dir.path()).is_ok());
}

#[test]
fn facades_and_tenant_routes_are_checked() {
    let dir = key_dir();
    let tenant_route = |id: &str, action: &str| {
        GOOD.replace(
                "        resource: { entity: account, id: \"{accountId}\" }\n",
                &format!("        resource: {{ entity: account, id: \"{{accountId}}\" }}\n        tenant: {{ id: \"{id}\", action: {action} }}\n"),
            )
    };
    let c = Config::from_yaml(&tenant_route("{accountId}", "READ_TENANT"), dir.path()).expect("valid");
    assert_eq!(c.manifest.routes[0].tenant().map(|t| &*t.action), Some("READ_TENANT"));
    let errs = Config::from_yaml(&tenant_route("{tenant}", "FLY"), dir.path()).expect_err("bad").0;
    for want in ["routes[0].tenant.action: \"FLY\" is not one of", "routes[0].tenant.id: \"{tenant}\" must name"] {
        assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
    }
    let facades = |f: &str| GOOD.replace("applications:", &format!("facades:\n{f}applications:"));
    let errs = Config::from_yaml(&facades("  metaapi: true\n  crafter: true\n"), dir.path()).expect_err("no api").0;
    for want in ["facades.metaapi: needs listeners.api", "facades.crafter: needs listeners.api"] {
        assert!(errs.iter().any(|e| e.starts_with(want)), "{want}: {errs:?}");
    }
    let bearer_only =
        facades("  metaapi: true\n").replace("applications:", "credentials: [{ source: bearer }]\napplications:");
    let errs = Config::from_yaml(&bearer_only, dir.path()).expect_err("no auth-token").0;
    assert!(errs.iter().any(|e| e.starts_with("facades.metaapi: MetaApi clients send")), "{errs:?}");
    let pm = "  prodmanager:\n    applications:\n      - application: nope\n        secret_sha256: \"abc\"\n        permissions: {}\n";
    let errs = Config::from_yaml(&facades(pm), dir.path()).expect_err("bad prodmanager").0;
    assert!(errs.iter().any(|e| e.contains("applications[0].application: \"nope\" is not an application")), "{errs:?}");
    let pm = "  prodmanager:\n    applications:\n      - application: trading-account-management-api\n        secret_sha256: \"xyz\"\n        permissions:\n          read: { method_groups: [nope], roles: [admin] }\n";
    let errs = Config::from_yaml(&facades(pm), dir.path()).expect_err("bad prodmanager").0;
    for want in
        ["secret_sha256: must be 64 hex digits", "permissions.read.method_groups[0]", "permissions.read.roles[0]"]
    {
        assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
    }
}

#[test]
fn jwks_urls_are_checked() {
    let dir = key_dir();
    let idp = |extra: &str| {
        GOOD.replace(
            "applications:",
            &format!("  - name: idp\n    issuer: https://idp.example\n    algorithms: [ES256]\n{extra}applications:"),
        )
    };
    let c = Config::from_yaml(&idp("    jwks_url: https://idp.example/jwks\n"), dir.path()).expect("valid");
    assert_eq!(c.jwks_sources.len(), 1);
    assert_eq!((c.jwks_sources[0].issuer, c.jwks_sources[0].refresh), (1, Duration::from_secs(300)));
    for (extra, expected) in [
        ("    jwks_url: ftp://idp.example/jwks\n", "issuers[1].jwks_url: must be an absolute http"),
        ("    jwks_url: /jwks\n", "issuers[1].jwks_url: must be an absolute http"),
        (
            "    jwks_url: http://idp/j\n    jwks_refresh: 1m\n    jwks_min_refetch: 2m\n",
            "issuers[1].jwks_min_refetch: must be at least 100ms and at most jwks_refresh",
        ),
        (
            "    keys: []\n    jwks_refresh: 1m\n",
            "issuers[1]: jwks_refresh, jwks_min_refetch and jwks_ca_file need a jwks_url",
        ),
        (
            "    keys: []\n    jwks_ca_file: ca.pem\n",
            "issuers[1]: jwks_refresh, jwks_min_refetch and jwks_ca_file need a jwks_url",
        ),
        ("    jwks_url: https://idp.example/jwks\n    jwks_ca_file: missing.pem\n", "issuers[1].jwks_ca_file: "),
        ("", "issuers[1]: needs keys, a jwks_file, a jwks_url, signing_keys or discovery"),
    ] {
        let errs = Config::from_yaml(&idp(extra), dir.path()).expect_err(extra).0;
        assert!(errs.iter().any(|e| e.starts_with(expected)), "{extra}: {errs:?}");
    }
    // Plain http:// is a warning unless the host is loopback.
    for (url, warned) in [
        ("http://idp.example/jwks", true),
        ("http://10.0.0.7:8080/jwks", true),
        ("http://127.0.0.1:8080/jwks", false),
        ("http://[::1]:8080/jwks", false),
        ("http://localhost:8080/jwks", false),
        ("https://idp.example/jwks", false),
    ] {
        let c = Config::from_yaml(&idp(&format!("    jwks_url: {url}\n")), dir.path()).expect(url);
        let w = c.warnings.iter().any(|w| w.starts_with("issuers[1].jwks_url: plain http://"));
        assert_eq!(w, warned, "{url}: {:?}", c.warnings);
    }
}

#[test]
fn external_issuers_load_keys_from_a_jwks_file() {
    let dir = key_dir();
    let g = keys::generate(jsonwebtoken::Algorithm::EdDSA).expect("key");
    let enc = jsonwebtoken::EncodingKey::from_ed_pem(g.private_pem.as_bytes()).expect("enc");
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::EdDSA).expect("jwk"),
    )
    .expect("json");
    jwk["kid"] = "idp-1".into();
    std::fs::write(dir.path().join("idp.jwks.json"), serde_json::json!({ "keys": [jwk] }).to_string()).expect("write");
    let text = GOOD.replace(
            "applications:",
            "  - name: idp\n    issuer: https://idp.example\n    audience: [trading]\n    algorithms: [EdDSA]\n    jwks_file: idp.jwks.json\napplications:",
        );
    let c = Config::from_yaml(&text, dir.path()).expect("valid");
    assert_eq!(c.keys.issuers.len(), 2);
    let key = c.keys.find(Some("idp-1")).expect("jwks key loaded");
    assert_eq!((key.algorithm, key.issuer), (jsonwebtoken::Algorithm::EdDSA, 1));
    assert_eq!(c.keys.issuers[1].audience, ["trading"]);
    let dup = text.replace("kid: k1", "kid: idp-1");
    let errs = Config::from_yaml(&dup, dir.path()).expect_err("duplicate kid").0;
    assert!(errs.iter().any(|e| e.contains("kid \"idp-1\" is used by more than one key")), "{errs:?}");
}

#[test]
fn signing_keys_are_loaded_and_their_public_halves_trusted() {
    let dir = key_dir();
    let mut kids = Vec::new();
    for alg in [jsonwebtoken::Algorithm::ES256, jsonwebtoken::Algorithm::EdDSA] {
        let g = keys::generate(alg).expect("key");
        std::fs::write(dir.path().join(format!("{}.pem", g.kid)), &g.private_pem).expect("write");
        kids.push(g.kid);
    }
    // (Quoted: a generated kid may be all digits, which YAML reads as a
    // number.)
    let text = GOOD.replace("algorithms: [ES256]", "algorithms: [ES256, EdDSA]").replace(
            "    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]",
            &format!(
                "    keys: [{{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }}]\n    signing_keys:\n      - {{ kid: \"{a}\", private_key_file: \"{a}.pem\" }}\n      - {{ kid: \"{b}\", private_key_file: \"{b}.pem\" }}\n    active_signing_key: \"{b}\"",
                a = kids[0],
                b = kids[1]
            ),
        );
    let c = Config::from_yaml(&text, dir.path()).expect("valid");
    let signing = c.signing.as_ref().expect("signing");
    assert_eq!((signing.issuer.as_str(), signing.active_key().kid.as_str()), ("narrowgate", kids[1].as_str()));
    assert_eq!(signing.active_key().algorithm, jsonwebtoken::Algorithm::EdDSA);
    // Tokens signed with either key verify against the config's keys.
    let verifier = crate::token::Verifier::new(c.keys.clone(), 8192);
    let now = crate::token::now_unix();
    for key in &signing.keys {
        let t = crate::token::sign::sign(&crate::token::testkit::payload("a", now, 60, serde_json::json!([])), key)
            .expect("sign");
        assert!(verifier.verify(&t, now).is_ok(), "{}", key.kid);
    }
    let bad = text.replace(&format!("active_signing_key: \"{}\"", kids[1]), "active_signing_key: nope");
    let errs = Config::from_yaml(&bad, dir.path()).expect_err("unknown active").0;
    assert!(errs.iter().any(|e| e.starts_with("issuers[0].active_signing_key")), "{errs:?}");
    let es_only = text.replace("algorithms: [ES256, EdDSA]", "algorithms: [ES256]");
    let errs = Config::from_yaml(&es_only, dir.path()).expect_err("EdDSA not allowed").0;
    assert!(errs.iter().any(|e| e.starts_with("issuers[0].signing_keys[1]")), "{errs:?}");
}

#[test]
fn the_store_section_is_validated() {
    let dir = key_dir();
    let with = |store: &str| GOOD.replace("applications:", &format!("store: {store}\napplications:"));
    let c = Config::from_yaml(&with("{ sqlite: {} }"), dir.path()).expect("valid");
    match c.store {
        Some(StoreConfig { backend: StoreBackend::Sqlite { path }, resync_interval, create_if_missing }) => {
            assert_eq!(path, dir.path().join("data/narrowgate.db"));
            assert_eq!(resync_interval, Duration::from_secs(30));
            assert!(!create_if_missing, "a store is created only when asked");
        }
        other => panic!("{other:?}"),
    }
    assert!(Config::from_yaml(GOOD, dir.path()).expect("valid").store.is_none());
    let secret_url = "mysql://user:hunter2@db/ng";
    let errs = Config::from_yaml(&with(&format!("{{ postgres: {{ url: \"{secret_url}\" }} }}")), dir.path())
        .expect_err("not postgres")
        .0;
    assert!(errs.iter().any(|e| e.starts_with("store.postgres.url:")), "{errs:?}");
    assert!(!errs.join("\n").contains("hunter2"), "the URL's password was echoed");
    let errs = Config::from_yaml(&with("{ sqlite: { resync_interval: 1ms } }"), dir.path()).expect_err("too short").0;
    assert!(errs.iter().any(|e| e.starts_with("store.resync_interval")), "{errs:?}");
    let errs = Config::from_yaml(&with("{ redis: {} }"), dir.path()).expect_err("unknown").0;
    assert!(errs.iter().any(|e| e.starts_with("store")), "{errs:?}");
}

/// The first admin credential: the operator's digest, or a file for a
/// generated one — not both, never the all-zero placeholder, never
/// malformed (and the value is not echoed).
#[test]
fn the_bootstrap_credential_is_a_digest_or_a_file() {
    let dir = key_dir();
    let with = |store: &str| GOOD.replace("applications:", &format!("store: {store}\napplications:"));
    let digest = crate::token::reference::hash_hex("an operator's secret");
    let c = Config::from_yaml(
        &with(&format!("{{ postgres: {{ url: \"postgres://db/ng\", bootstrap_token_sha256: \"{digest}\" }} }}")),
        dir.path(),
    )
    .expect("valid");
    assert_eq!(c.bootstrap.token_sha256, Some(crate::token::reference::hash("an operator's secret")));
    assert_eq!(c.bootstrap.token_file, None);
    let c =
        Config::from_yaml(&with("{ sqlite: { bootstrap_token_file: data/admin-token } }"), dir.path()).expect("valid");
    assert_eq!((c.bootstrap.token_file, c.bootstrap.token_sha256), (Some(dir.path().join("data/admin-token")), None));
    let zeros = "0".repeat(64);
    let cases = [
        (
            format!("{{ sqlite: {{ bootstrap_token_sha256: \"{digest}\", bootstrap_token_file: t }} }}"),
            "store.sqlite.bootstrap_token_file:",
        ),
        (
            format!("{{ sqlite: {{ bootstrap_token_sha256: \"{zeros}\" }} }}"),
            "store.sqlite.bootstrap_token_sha256: is the placeholder",
        ),
        (
            "{ postgres: { url: \"postgres://db/ng\", bootstrap_token_sha256: \"ngr_secret\" } }".to_string(),
            "store.postgres.bootstrap_token_sha256: must be 64 hex digits",
        ),
    ];
    for (store, want) in cases {
        let errs = Config::from_yaml(&with(&store), dir.path()).expect_err(want).0;
        assert!(errs.iter().any(|e| e.starts_with(want)), "{want}: {errs:?}");
        assert!(!errs.join("\n").contains("ngr_secret"), "the value was echoed: {errs:?}");
    }
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
#[test]
fn secret_files_others_can_read_are_warned_about() {
    let dir = key_dir();
    let g = keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
    std::fs::write(dir.path().join("signer.pem"), &g.private_pem).expect("write");
    let text = GOOD.replace(
            "    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]",
            "    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]\n    signing_keys: [{ kid: s1, private_key_file: signer.pem }]\n  - name: hs\n    issuer: hs-issuer\n    algorithms: [HS256]\n    keys: [{ kid: h1, algorithm: HS256, secret_file: secret }]",
        );
    for (mode, warned) in [(0o644, true), (0o640, true), (0o604, true), (0o600, false), (0o400, false)] {
        chmod(&dir.path().join("signer.pem"), mode);
        chmod(&dir.path().join("secret"), mode);
        let c = Config::from_yaml(&text, dir.path()).expect("valid: a warning is not an error");
        let w = c.warnings.join("\n");
        assert_eq!(w.contains("issuers[0].signing_keys[0].private_key_file:"), warned, "{mode:o}: {w}");
        assert_eq!(w.contains("issuers[1].keys[0].secret_file:"), warned, "{mode:o}: {w}");
        assert!(!w.contains("BEGIN"), "key material in a warning");
    }
    // A public key may be read by anyone.
    chmod(&dir.path().join("k.pub.pem"), 0o644);
    assert!(Config::from_yaml(GOOD, dir.path()).expect("valid").warnings.is_empty());
}

#[test]
fn the_mode_is_enforce_unless_shadow_is_asked_for() {
    let dir = key_dir();
    let c = Config::from_yaml(GOOD, dir.path()).expect("loads");
    assert_eq!(c.mode, crate::policy::Mode::Enforce);
    let shadow = GOOD.replace("applications:", "mode: shadow\napplications:");
    assert_eq!(Config::from_yaml(&shadow, dir.path()).expect("loads").mode, crate::policy::Mode::Shadow);
    let per_app =
        GOOD.replace("    services: [{ service: rest }]", "    mode: shadow\n    services: [{ service: rest }]");
    let c = Config::from_yaml(&per_app, dir.path()).expect("loads");
    assert_eq!(c.manifest.applications[0].mode, Some(crate::policy::Mode::Shadow));
    assert!(
        !serde_json::to_string(&c.manifest.applications).expect("json").contains("mode"),
        "not in MetaApi's manifest"
    );
    for bad in ["mode: off\napplications:", "enforcement: false\napplications:"] {
        let errs = Config::from_yaml(&GOOD.replace("applications:", bad), dir.path()).expect_err("refused");
        assert!(errs.0.iter().any(|e| e.starts_with("mode") || e.starts_with("enforcement: unknown key")), "{errs}");
    }
}

#[test]
fn an_issuers_own_tokens_pass_its_own_checks() {
    let dir = key_dir();
    let g = keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
    std::fs::write(dir.path().join("signer.pem"), &g.private_pem).expect("write");
    let text = GOOD.replace(
            "    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]",
            "    audience: [trading, reports]\n    max_lifetime: 2h\n    signing_keys: [{ kid: s1, private_key_file: signer.pem }]",
        );
    let c = Config::from_yaml(&text, dir.path()).expect("valid");
    let signing = c.signing.as_ref().expect("signing");
    assert_eq!(signing.audience.as_deref(), Some("trading"));
    assert_eq!(signing.max_lifetime_secs, Some(7200));
    let now = crate::token::now_unix();
    let claims = |ttl: u64| crate::token::Claims {
        iss: "anything".into(),
        sub: "a".into(),
        aud: None,
        exp: Some(now + ttl),
        nbf: Some(now),
        iat: now,
        jti: format!("j{ttl}"),
        name: None,
        kind: crate::token::TokenKind::Access,
        role: crate::token::Role::User,
        master: false,
        access_rules: vec![],
        tenant_permissions: vec![],
        lineage: vec![],
        cnf: None,
        extra: Default::default(),
    };
    // Minted: iss and aud stamped, so its own verifier accepts it.
    let t = signing.sign(&mut claims(3600)).expect("minted");
    let grant = crate::token::Verifier::new(c.keys.clone(), 8192).verify(&t, now).expect("its own checks pass");
    assert_eq!(&*grant.issuer, "narrowgate");
    // Longer than max_lifetime: never minted.
    assert!(matches!(signing.sign(&mut claims(7201)), Err(MintError::TooLong { max_secs: 7200 })));

    let contradiction = text.replace("max_lifetime: 2h", "max_lifetime: 2h\n    allow_missing_exp: true");
    let errs = Config::from_yaml(&contradiction, dir.path()).expect_err("no exp vs max lifetime").0;
    assert!(errs.iter().any(|e| e.starts_with("issuers[0].max_lifetime")), "{errs:?}");
    let errs =
        Config::from_yaml(&text.replace("max_lifetime: 2h", "max_lifetime: 0s"), dir.path()).expect_err("zero").0;
    assert!(errs.iter().any(|e| e.starts_with("issuers[0].max_lifetime")), "{errs:?}");
}

#[test]
fn an_unusable_key_in_a_jwks_file_is_a_warning_and_a_file_of_none_an_error() {
    let dir = key_dir();
    let g = keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(g.private_pem.as_bytes()).expect("enc");
    let mut good = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::ES256).expect("jwk"),
    )
    .expect("json");
    good["kid"] = "idp-1".into();
    let mut for_encryption = good.clone();
    for_encryption["kid"] = "idp-enc".into();
    for_encryption["use"] = "enc".into();
    let text = GOOD.replace(
            "applications:",
            "  - name: idp\n    issuer: https://idp.example\n    algorithms: [ES256]\n    jwks_file: idp.jwks.json\napplications:",
        );
    let write = |keys: serde_json::Value| {
        std::fs::write(dir.path().join("idp.jwks.json"), serde_json::json!({ "keys": keys }).to_string())
            .expect("write")
    };
    write(serde_json::json!([for_encryption, good]));
    let c = Config::from_yaml(&text, dir.path()).expect("valid");
    assert!(c.keys.find(Some("idp-1")).is_some() && c.keys.find(Some("idp-enc")).is_none());
    assert!(
        c.warnings.iter().any(|w| w.starts_with("issuers[1].jwks_file: key skipped") && w.contains("idp-enc")),
        "{:?}",
        c.warnings
    );
    write(serde_json::json!([for_encryption]));
    let errs = Config::from_yaml(&text, dir.path()).expect_err("no usable key").0;
    assert!(errs.iter().any(|e| e.starts_with("issuers[1].jwks_file: holds no usable key")), "{errs:?}");
}

#[test]
fn broken_yaml_is_an_error_not_a_panic() {
    let dir = key_dir();
    for text in ["", "[1, 2", "listeners: [", "- a\n- b", "\u{0}"] {
        assert!(Config::from_yaml(text, dir.path()).is_err(), "{text:?}");
    }
}

#[test]
fn the_application_name_the_metrics_use_for_no_route_is_reserved() {
    let dir = key_dir();
    let yaml = GOOD.replace("application: trading-account-management-api", "application: none");
    let errs = Config::from_yaml(&yaml, dir.path()).expect_err("refused");
    assert!(errs.0.iter().any(|e| e.starts_with("applications[0].application: \"none\" is reserved")), "{errs}");
}

#[test]
fn a_file_that_is_not_the_config_is_never_quoted() {
    const SECRET: &str = "hunter2-s3cr3t";
    struct Case {
        name: &'static str,
        text: String,
        /// Where the parser stops, when it is not YAML at all.
        at: Option<&'static str>,
    }
    let cases = [
        Case { name: "an .env file", text: format!("DB_USER=app\nDB_PASSWORD={SECRET}\n"), at: None },
        Case { name: "an .env file with a quote", text: format!("A=\"{SECRET}\nB='x\n"), at: None },
        Case { name: "an unclosed flow", text: format!("password: [{SECRET}\n  user: {{"), at: Some("line") },
        Case { name: "a tab where YAML wants spaces", text: format!("a:\n\tpassword: {SECRET}\n"), at: Some("line") },
        Case { name: "an unclosed quote", text: format!("token: \"{SECRET}\nnext: 1\n  - x: '"), at: Some("line") },
        Case { name: "a key file", text: format!("-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END"), at: None },
        Case { name: "a document of secrets", text: format!("{SECRET}: {SECRET}\n"), at: None },
    ];
    for c in cases {
        let problems = Config::from_yaml(&c.text, Path::new(".")).expect_err(c.name).0;
        let all = problems.join("\n");
        assert!(!all.contains(SECRET), "{}: quoted the file: {all}", c.name);
        assert!(!all.contains("DB_PASSWORD") && !all.contains("BEGIN"), "{}: {all}", c.name);
        if let Some(at) = c.at {
            assert!(all.contains("not valid YAML") && all.contains(at), "{}: {all}", c.name);
        }
    }
}

#[test]
fn a_body_idle_timeout_is_five_minutes_unless_set_and_never_zero() {
    let dir = key_dir();
    let c = Config::from_yaml(GOOD, dir.path()).expect("valid");
    assert_eq!(c.upstream.body_idle_timeout, std::time::Duration::from_secs(300));
    let set = GOOD
        .replace(r#"addresses: ["127.0.0.1:3000"] }"#, r#"addresses: ["127.0.0.1:3000"], body_idle_timeout: 90s }"#);
    let c = Config::from_yaml(&set, dir.path()).expect("valid");
    assert_eq!(c.upstream.body_idle_timeout, std::time::Duration::from_secs(90));
    let zero =
        GOOD.replace(r#"addresses: ["127.0.0.1:3000"] }"#, r#"addresses: ["127.0.0.1:3000"], body_idle_timeout: 0s }"#);
    let errs = Config::from_yaml(&zero, dir.path()).expect_err("zero").0;
    assert!(errs.iter().any(|e| e.to_string().contains("upstream.body_idle_timeout")), "{errs:?}");
}
