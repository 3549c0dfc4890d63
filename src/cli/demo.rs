//! `narrowgate demo`: the gateway on `config/demo.yaml`, a built-in echo
//! upstream, throwaway keys in a temporary directory, and ready-made tokens
//! and curl lines. Ctrl-C stops it and removes the keys.

use std::net::SocketAddr;

use anyhow::Context;

use crate::config::Config;
use crate::echo::EchoUpstream;
use crate::policy::{AccessRule, MethodGroupRule, MethodRule, Pattern, ResourceRule};
use crate::token::claims::{Claims, Role, TokenKind, WireRule};
use crate::token::keys::{self, SigningKey, random_id};
use crate::token::{now_unix, sign};

/// The demo manifest, built in so `narrowgate demo` runs from anywhere.
const DEMO_YAML: &str = include_str!("../../config/demo.yaml");
/// The revocation-feed reader token `config/enforce-only.yaml` presents:
/// published with the demo, so an enforce-only gateway beside it follows
/// its revocations as written. No secret; never use it elsewhere.
const DEMO_FEED_TOKEN: &str = include_str!("../../config/keys/demo-feed.token");

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
    let yaml = DEMO_YAML.replace(
        "        public_key_file: keys/demo.pub.pem\n",
        "        public_key_file: keys/demo.pub.pem\n    signing_keys:\n      - kid: demo-signer\n        private_key_file: keys/demo-signer.pem\n",
    );
    let mut config = Config::from_yaml(&yaml, dir.path()).map_err(|e| anyhow::anyhow!("demo config: {e}"))?;
    // A throwaway store: the demo may create it (a real gateway's store is
    // created by `narrowgate store init`, never silently at start).
    config.store = Some(crate::config::StoreConfig {
        backend: crate::config::StoreBackend::Sqlite { path: dir.path().join("data/narrowgate.db") },
        resync_interval: std::time::Duration::from_secs(30),
        create_if_missing: true,
    });
    // The admin web console, on the api listener.
    config.console.enabled = true;
    // Enforce-only gateways beside the demo follow its revocation feed.
    config.revocation.feed_readers = vec![sha256(DEMO_FEED_TOKEN.trim())];
    // A throwaway ProdManager application secret; only its digest is configured.
    let pm_secret = random_id(24)?;
    if let Some(apps) = config.facades.prodmanager.as_mut() {
        for app in apps.iter_mut() {
            app.secret_sha256 = sha256(&pm_secret);
        }
    }
    if let Some(p) = args.proxy {
        config.listeners.proxy = p;
    }
    if let Some(a) = args.admin {
        config.listeners.admin = Some(a);
    }
    if let Some(a) = args.api {
        config.listeners.api = Some(a);
    }

    super::runtime(config.server.worker_threads)?.block_on(async move {
        let echo = match EchoUpstream::start(args.upstream).await {
            Ok(echo) => echo,
            Err(e) => {
                eprintln!("# {} is taken ({e}); the echo upstream listens elsewhere", args.upstream);
                EchoUpstream::start("127.0.0.1:0".parse()?).await?
            }
        };
        config.upstream.addresses = vec![echo.addr.to_string().parse()?];
        let mut running = crate::app::start(config).await?;
        let crafter = std::mem::take(&mut running.crafter_tokens);
        let proxy = format!("http://{}", running.proxy_addr);
        let now = now_unix();
        let admin = sign::sign(&demo_claims("demo-admin", Role::Admin, true, vec![AccessRule::everything()], now, 12 * 3600), &signing)?;
        let narrowed = sign::sign(&demo_claims("demo-web-app", Role::User, false, narrowed_rules(), now, 3600), &signing)?;
        let expired = sign::sign(&demo_claims("demo-old", Role::User, false, narrowed_rules(), now - 7200, 3600), &signing)?;
        println!("# narrowgate demo: proxy {proxy}, admin http://{}, echo upstream {}", running.admin_addr.map_or("-".into(), |a| a.to_string()), echo.addr);
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
        println!("# the manifest:          curl -s $NG_API/v1/manifest");
        println!(
            "# the web console:       http://{}/console (sign in with $NG_ADMIN_TOKEN)",
            running.api_addr.map_or("-".into(), |a| a.to_string())
        );
        let exe = std::env::current_exe().map_or_else(|_| "narrowgate".into(), |p| p.display().to_string());
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

fn sha256(secret: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&crate::store::hash_secret(secret));
    out
}
