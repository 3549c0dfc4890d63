//! `narrowgate demo`: the gateway on `config/demo.yaml`, a built-in echo
//! upstream, throwaway keys in a temporary directory, and ready-made tokens
//! and curl lines. Ctrl-C stops it and removes the keys.
//!
//! The config it runs is written into that directory (with the keys and
//! the store it names) and printed as `NG_CONFIG`, so `narrowgate explain
//! --config "$NG_CONFIG"` judges the demo's tokens as its gateway does.

use std::net::SocketAddr;

use anyhow::Context;

use crate::config::Config;
use crate::echo::EchoUpstream;
use crate::policy::{AccessRule, MethodGroupRule, MethodRule, Pattern, ResourceRule};
use crate::token::claims::{Claims, Role, TokenKind, WireRule};
use crate::token::keys::{self, SigningKey, random_id};
use crate::token::reference::hash_hex;
use crate::token::{now_unix, sign};

/// The demo manifest, built in so `narrowgate demo` runs from anywhere.
const DEMO_YAML: &str = include_str!("../../config/demo.yaml");
/// The revocation-feed reader token `config/enforce-only.yaml` presents:
/// published with the demo, so an enforce-only gateway beside it follows
/// its revocations as written.
use crate::config::DEMO_FEED_TOKEN;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Proxy listen address (default from config/demo.yaml).
    #[arg(long)]
    proxy: Option<SocketAddr>,
    /// Admin listen address (default from config/demo.yaml).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Token service listen address (default from config/demo.yaml).
    #[arg(long)]
    api: Option<SocketAddr>,
    /// The built-in echo upstream's address (config/enforce-only.yaml
    /// forwards there too); another one is chosen if it is taken.
    #[arg(long, default_value = "127.0.0.1:3000")]
    upstream: SocketAddr,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = ScratchDir::create().context("creating a temporary directory")?;
    let generated = keys::generate(jsonwebtoken::Algorithm::ES256)?;
    std::fs::create_dir_all(dir.path().join("keys"))?;
    std::fs::write(dir.path().join("keys/demo.pub.pem"), &generated.public_pem)?;
    // The token service signs with a throwaway key of its own and keeps its
    // records in a SQLite file in the same temporary directory. The tokens
    // printed below are signed with it too, so an enforce-only gateway that
    // takes the demo's JWKS (config/enforce-only.yaml) accepts them.
    let signer = keys::generate(jsonwebtoken::Algorithm::ES256)?;
    std::fs::write(dir.path().join("keys/demo-signer.pem"), &signer.private_pem)?;
    let signing = SigningKey::from_pem(signer.private_pem.as_bytes(), "demo-signer")?;
    // A throwaway ProdManager application secret; only its digest is configured.
    let pm_secret = random_id(24)?;
    let mut doc = demo_document(&args, &pm_secret)?;
    // The config the demo runs, written where `narrowgate explain --config
    // "$NG_CONFIG"` finds it, with the keys and the store it names.
    let config_path = dir.path().join("narrowgate.yaml");
    let workers = write_config(&doc, &config_path)?.server.worker_threads;

    super::runtime(workers)?.block_on(async move {
        let echo = match EchoUpstream::start(args.upstream).await {
            Ok(echo) => echo,
            Err(e) => {
                eprintln!("# {} is taken ({e}); the echo upstream listens elsewhere", args.upstream);
                EchoUpstream::start("127.0.0.1:0".parse()?).await?
            }
        };
        doc["upstream"]["addresses"] = serde_json::json!([echo.addr.to_string()]);
        let config = write_config(&doc, &config_path)?;
        let mut running = crate::app::start(config).await?;
        let crafter = std::mem::take(&mut running.crafter_tokens);
        let proxy = format!("http://{}", running.proxy_addr);
        let now = now_unix();
        let admin = sign::sign(&demo_claims("demo-admin", Role::Admin, true, vec![AccessRule::everything()], now, 12 * 3600), &signing)?;
        let narrowed = sign::sign(&demo_claims("demo-web-app", Role::User, false, narrowed_rules(), now, 3600), &signing)?;
        let expired = sign::sign(&demo_claims("demo-old", Role::User, false, narrowed_rules(), now - 7200, 3600), &signing)?;
        println!("# narrowgate demo: proxy {proxy}, admin http://{}, echo upstream {}", running.admin_addr.map_or("-".into(), |a| a.to_string()), echo.addr);
        println!("export NG_CONFIG={}", config_path.display());
        println!("export NG_PROXY={proxy}");
        println!("export NG_API=http://{}", running.api_addr.map_or("-".into(), |a| a.to_string()));
        println!("export NG_ADMIN_TOKEN={admin}");
        println!("export NG_NARROWED_TOKEN={narrowed}");
        println!("export NG_EXPIRED_TOKEN={expired}");
        println!("export NG_PRODMANAGER_SECRET={pm_secret}");
        for (application, id) in &crafter {
            let var = application.to_uppercase().replace('-', "_");
            println!("export NG_CRAFTER_{var}={id}");
        }
        println!();
        println!("# allowed: the narrowed token may read account demo-account-1");
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' -H \"Authorization: Bearer $NG_NARROWED_TOKEN\" $NG_PROXY/users/current/accounts/demo-account-1");
        println!("# denied, 403 resource_not_allowed: another account");
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' -H \"Authorization: Bearer $NG_NARROWED_TOKEN\" $NG_PROXY/users/current/accounts/other-account");
        println!("# denied, 403 insufficient_scope: trading needs the dealing scope");
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' -X POST -H \"auth-token: $NG_NARROWED_TOKEN\" $NG_PROXY/mt-manager/accounts/demo-account-1/trade");
        println!("# denied, 401 expired");
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' -H \"Authorization: Bearer $NG_EXPIRED_TOKEN\" $NG_PROXY/users/current/accounts/demo-account-1");
        println!("# the admin token may do anything");
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' -X POST -H \"Authorization: Bearer $NG_ADMIN_TOKEN\" $NG_PROXY/mt-manager/accounts/demo-account-1/trade");
        println!("# token service: narrow the admin token to reading account demo-account-2 for 30 minutes");
        println!(
            "curl -s -w '  [HTTP %{{http_code}}]\\n' -X POST -H \"Authorization: Bearer $NG_ADMIN_TOKEN\" -d '{{\"applications\":[\"trading-account-management-api\"],\"roles\":[\"reader\"],\"resources\":[{{\"entity\":\"account\",\"id\":\"demo-account-2\"}}],\"validityInHours\":0.5}}' $NG_API/v1/tokens/narrow"
        );
        println!("# create a named token, list tokens, revoke by name");
        println!(
            "curl -s -w '  [HTTP %{{http_code}}]\\n' -X POST -H \"Authorization: Bearer $NG_ADMIN_TOKEN\" -d '{{\"name\":\"reports\",\"lifetime\":\"2h45m30s\"}}' $NG_API/v1/tokens"
        );
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' -H \"Authorization: Bearer $NG_ADMIN_TOKEN\" $NG_API/v1/tokens");
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' -X DELETE -H \"Authorization: Bearer $NG_ADMIN_TOKEN\" \"$NG_API/v1/tokens?name=reports\"");
        println!("# MetaApi clients: narrow with the auth-token header");
        println!(
            "curl -s -w '  [HTTP %{{http_code}}]\\n' -X POST -H \"auth-token: $NG_ADMIN_TOKEN\" -H 'Content-Type: application/json' -d '{{\"roles\":[\"reader\"]}}' \"$NG_API/users/current/narrow-down-auth-token?validity-in-hours=0.5\""
        );
        println!("# ProdManager clients: a token from the application secret, then whoami");
        println!(
            "curl -s -w '  [HTTP %{{http_code}}]\\n' -F secret=$NG_PRODMANAGER_SECRET -F name=reporter1 -F 'description=nightly reports' -F permission=read $NG_API/api/token/create"
        );
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' -H \"Authorization: Token $NG_ADMIN_TOKEN\" $NG_API/api/token/whoami");
        println!("# Crafter Profile clients: list access tokens (master), then a tenant route as the engine");
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' \"$NG_API/api/1/access_token/all.json?accessTokenId=$NG_CRAFTER_PROFILE_ADMIN\"");
        println!("curl -s -w '  [HTTP %{{http_code}}]\\n' \"$NG_PROXY/profile/api/1/tenant/acme?accessTokenId=$NG_CRAFTER_ENGINE\"");
        println!("# what a token grants:   curl -s -H \"Authorization: Bearer $NG_NARROWED_TOKEN\" $NG_API/v1/whoami");
        let exe = std::env::current_exe().map_or_else(|_| "narrowgate".into(), |p| p.display().to_string());
        println!(
            "# why, offline:         {exe} explain --config \"$NG_CONFIG\" --token \"$NG_NARROWED_TOKEN\" GET /users/current/accounts/other-account"
        );
        println!("# the manifest:          curl -s $NG_API/v1/manifest");
        println!(
            "# the web console:       http://{}/console (sign in with $NG_ADMIN_TOKEN)",
            running.api_addr.map_or("-".into(), |a| a.to_string())
        );
        println!("# see a token's claims:  {exe} token inspect $NG_NARROWED_TOKEN");
        println!("# an enforce-only sidecar beside the demo (its keys and revocations from here):");
        println!("#   {exe} serve --config config/enforce-only.yaml");
        println!("#   curl -s -w '  [HTTP %{{http_code}}]\\n' -H \"Authorization: Bearer $NG_NARROWED_TOKEN\" http://127.0.0.1:8180/users/current/accounts/demo-account-1");
        println!("# metrics:               curl -s http://{}/metrics", running.admin_addr.map_or("-".into(), |a| a.to_string()));
        println!("# Ctrl-C stops the demo.");
        super::shutdown_signal().await;
        running.shutdown().await;
        drop(echo);
        Ok::<_, anyhow::Error>(())
    })?;
    drop(dir);
    Ok(())
}

/// config/demo.yaml as the demo runs it, relative to its directory: the
/// throwaway signing key, a SQLite store it may create, the console on,
/// the feed reader `config/enforce-only.yaml` presents, ProdManager's
/// secret by its digest, and the listeners the flags chose.
fn demo_document(args: &DemoArgs, pm_secret: &str) -> anyhow::Result<serde_json::Value> {
    use serde_json::json;
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(DEMO_YAML).map_err(|e| anyhow::anyhow!("demo config: {e}"))?;
    doc["issuers"][0]["signing_keys"] = json!([{ "kid": "demo-signer", "private_key_file": "keys/demo-signer.pem" }]);
    // A throwaway store: the demo may create it (a real gateway's store is
    // created by `narrowgate store init`, never silently at start).
    doc["store"] = json!({ "sqlite": { "path": "data/narrowgate.db", "create_if_missing": true } });
    // The admin web console, on the api listener.
    doc["console"] = json!({ "enabled": true });
    // Enforce-only gateways beside the demo follow its revocation feed.
    doc["revocation"] = json!({ "feed_readers_sha256": [hash_hex(DEMO_FEED_TOKEN.trim())] });
    if let Some(apps) = doc["facades"]["prodmanager"]["applications"].as_array_mut() {
        for app in apps {
            app["secret_sha256"] = json!(hash_hex(pm_secret));
        }
    }
    for (name, addr) in [("proxy", args.proxy), ("admin", args.admin), ("api", args.api)] {
        if let Some(a) = addr {
            doc["listeners"][name] = json!(a.to_string());
        }
    }
    Ok(doc)
}

/// Write the demo's config (JSON, which is YAML) and load it from there.
fn write_config(doc: &serde_json::Value, path: &std::path::Path) -> anyhow::Result<Config> {
    std::fs::write(path, serde_json::to_string_pretty(doc)?)?;
    Config::load(path).map_err(|e| anyhow::anyhow!("demo config: {e}"))
}

/// The demo's throwaway directory (keys, the SQLite store): a new one with
/// a random name, its owner's alone, removed when the demo ends.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn create() -> anyhow::Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!("narrowgate-demo-{}", random_id(12)?));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // Fails if anything is there already: nothing planted is reused.
        builder.create(&path)?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the demo's web-app token may do: read account demo-account-1 in the
/// account API, and call mt-manager methods on it with the `public` scope.
fn narrowed_rules() -> Vec<AccessRule> {
    let account = vec![ResourceRule {
        entity: Pattern::parse("account"),
        owner: "$USER_ID$".into(),
        id: Pattern::parse("demo-account-1"),
    }];
    vec![
        AccessRule {
            id: "trading-account-management-api".into(),
            application: Pattern::parse("trading-account-management-api"),
            service: Pattern::parse("rest"),
            method_groups: vec![MethodGroupRule {
                group: Pattern::Any,
                methods: vec![MethodRule { method: Pattern::Any, scopes: None }],
            }],
            roles: vec![Pattern::parse("reader")],
            resources: account.clone(),
        },
        AccessRule {
            id: "mt-manager-api".into(),
            application: Pattern::parse("mt-manager-api"),
            service: Pattern::Any,
            method_groups: vec![MethodGroupRule {
                group: Pattern::parse("mt-manager"),
                methods: vec![MethodRule { method: Pattern::Any, scopes: Some(vec![Pattern::parse("public")]) }],
            }],
            roles: vec![Pattern::parse("reader"), Pattern::parse("writer")],
            resources: account,
        },
    ]
}

fn demo_claims(sub: &str, role: Role, master: bool, rules: Vec<AccessRule>, start: u64, ttl: u64) -> Claims {
    Claims {
        tenant_permissions: vec![],
        cnf: None,
        extra: Default::default(),
        iss: "narrowgate".into(),
        sub: sub.into(),
        aud: None,
        exp: Some(start + ttl),
        nbf: Some(start),
        iat: start,
        jti: random_id(16).unwrap_or_else(|_| sub.to_string()),
        name: Some(sub.into()),
        kind: TokenKind::Access,
        role,
        master,
        access_rules: rules.iter().map(WireRule::from_rule).collect(),
        lineage: vec![],
    }
}
