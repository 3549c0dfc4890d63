//! `narrowgate token …`: offline tools (`sign`, `inspect`) and the operator
//! commands that call a gateway's token service (see `client`).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::client::{self, ApiArgs, CreateArgs, ListArgs, NarrowArgs};
use crate::config::parse_duration;
use crate::policy::{AccessRule, MethodGroupRule, MethodRule, Pattern, ResourceRule};
use crate::token::claims::{Claims, Role, TokenKind, WireRule, are_resources_narrowed_down};
use crate::token::encoding::b64_decode;
use crate::token::keys::{SigningKey, random_id};
use crate::token::{now_unix, sign};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token with a private key. Either `--claims FILE` (a JSON payload
    /// signed exactly as given) or the flags below.
    Sign(Box<SignArgs>),
    /// Show a token's header and claims, when it expires, and whether its
    /// resources are narrowed down. Verifies nothing. `-` reads stdin.
    Inspect {
        /// The token (a JWT, a reference token `ngr_…` or a Crafter id);
        /// `-` reads it from stdin.
        token: String,
    },
    /// Create a token through the token service (admin or master caller).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        args: CreateArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        args: ListArgs,
    },
    /// Show one token by id.
    Show {
        #[command(flatten)]
        api: ApiArgs,
        /// The token's id (its jti).
        id: String,
    },
    /// Revoke a token by id or by name; every token narrowed from it goes
    /// too. With --issuer, the id is the jti of a token another issuer made.
    Revoke {
        #[command(flatten)]
        api: ApiArgs,
        /// The token's id (its jti).
        #[arg(required_unless_present = "name")]
        id: Option<String>,
        /// The token's name.
        #[arg(long, conflicts_with = "id")]
        name: Option<String>,
        /// The `iss` of the (external) issuer whose token this is.
        #[arg(long, requires = "id", conflicts_with = "name")]
        issuer: Option<String>,
        /// With --issuer: the token's expiry (RFC 3339 or Unix seconds); the
        /// revocation is held until then.
        #[arg(long, requires = "issuer")]
        expires_at: Option<String>,
    },
    /// Narrow the calling token to a subset of its permissions.
    Narrow {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        args: NarrowArgs,
    },
    /// Show the calling token's grant.
    Whoami {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Clone, Debug, clap::Args)]
pub struct SignArgs {
    /// PKCS#8 PEM private key (ES256, ES384 or EdDSA).
    #[arg(long)]
    key: PathBuf,
    /// The key id to put in the header.
    #[arg(long)]
    kid: String,
    /// A JSON file with the whole payload.
    #[arg(long, conflicts_with_all = ["sub", "application"])]
    claims: Option<PathBuf>,
    /// The issuer (`iss`).
    #[arg(long, default_value = "narrowgate")]
    iss: String,
    /// The subject (`sub`); required unless --claims gives the payload.
    #[arg(long)]
    sub: Option<String>,
    /// The audience (`aud`), if the verifying issuer expects one.
    #[arg(long)]
    aud: Option<String>,
    /// Lifetime, e.g. `1h` or `2h45m30s`.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// The token's name.
    #[arg(long)]
    name: Option<String>,
    /// `user` or `admin`.
    #[arg(long, default_value = "user")]
    role: String,
    /// Master rights.
    #[arg(long)]
    master: bool,
    /// One rule per application (`*` for all); repeatable.
    #[arg(long)]
    application: Vec<String>,
    /// Roles granted by each rule; repeatable; default `*`.
    #[arg(long = "grant-role")]
    grant_role: Vec<String>,
    /// `entity:id` resources; repeatable; default every resource.
    #[arg(long)]
    resource: Vec<String>,
    /// How many tokens, one a line (the subject gets `-1`, `-2`, …
    /// appended, and `{i}` in a `--resource` becomes that number):
    /// distinct tokens for load tests, from one process.
    #[arg(long, default_value_t = 1, conflicts_with = "claims")]
    count: usize,
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { api, args } => client::create(&api, &args),
        TokenCommand::List { api, args } => client::list(&api, &args),
        TokenCommand::Show { api, id } => client::show(&api, &id),
        TokenCommand::Revoke { api, id: Some(jti), issuer: Some(issuer), expires_at, .. } => {
            client::revoke_jti(&api, &jti, &issuer, expires_at.as_deref())
        }
        TokenCommand::Revoke { api, id, name, .. } => client::revoke(&api, id.as_deref(), name.as_deref()),
        TokenCommand::Narrow { api, args } => client::narrow(&api, &args),
        TokenCommand::Whoami { api } => client::whoami(&api),
        TokenCommand::Sign(args) => {
            let key = SigningKey::from_pem_file(&args.key, &args.kid)?;
            let token = match &args.claims {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                    let payload: serde_json::Value = serde_json::from_str(&text).context("claims file is not JSON")?;
                    sign::sign(&payload, &key)?
                }
                None if args.count > 1 => {
                    use std::io::Write;
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    let sub = args.sub.clone().unwrap_or_default();
                    let mut each = (*args).clone();
                    for i in 1..=args.count {
                        each.sub = Some(format!("{sub}-{i}"));
                        each.resource = args.resource.iter().map(|r| r.replace("{i}", &i.to_string())).collect();
                        writeln!(out, "{}", sign::sign(&claims_from_flags(&each)?, &key)?)?;
                    }
                    return Ok(out.flush()?);
                }
                None => sign::sign(&claims_from_flags(&args)?, &key)?,
            };
            println!("{token}");
            Ok(())
        }
        TokenCommand::Inspect { token } => {
            let token = if token == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s.trim().to_string()
            } else {
                token
            };
            print!("{}", inspect(&token, now_unix())?);
            Ok(())
        }
    }
}

fn claims_from_flags(args: &SignArgs) -> anyhow::Result<Claims> {
    let Some(sub) = &args.sub else { bail!("--sub is required without --claims") };
    let ttl = parse_duration(&args.ttl).map_err(anyhow::Error::msg)?;
    let role = match args.role.as_str() {
        "user" => Role::User,
        "admin" => Role::Admin,
        other => bail!("--role {other:?}: use user or admin"),
    };
    let resources = if args.resource.is_empty() {
        vec![ResourceRule::any()]
    } else {
        args.resource
            .iter()
            .map(|r| {
                let (entity, id) = r.split_once(':').with_context(|| format!("--resource {r:?}: use entity:id"))?;
                Ok(ResourceRule { entity: Pattern::parse(entity), owner: "$USER_ID$".into(), id: Pattern::parse(id) })
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let roles: Vec<Pattern> = if args.grant_role.is_empty() {
        vec![Pattern::Any]
    } else {
        args.grant_role.iter().map(|r| Pattern::parse(r)).collect()
    };
    let apps = if args.application.is_empty() { vec!["*".to_string()] } else { args.application.clone() };
    let rules = apps
        .iter()
        .map(|app| {
            WireRule::from_rule(&AccessRule {
                id: app.as_str().into(),
                application: Pattern::parse(app),
                service: Pattern::Any,
                method_groups: vec![MethodGroupRule {
                    group: Pattern::Any,
                    methods: vec![MethodRule { method: Pattern::Any, scopes: None }],
                }],
                roles: roles.clone(),
                resources: resources.clone(),
            })
        })
        .collect();
    let now = now_unix();
    Ok(Claims {
        tenant_permissions: vec![],
        cnf: None,
        extra: Default::default(),
        iss: args.iss.clone(),
        sub: sub.clone(),
        aud: args.aud.clone(),
        exp: Some(now + ttl.as_secs()),
        nbf: Some(now),
        iat: now,
        jti: random_id(16)?,
        name: args.name.clone(),
        kind: TokenKind::Access,
        role,
        master: args.master,
        access_rules: rules,
        lineage: vec![],
    })
}

/// A human description of a token, without verifying it.
pub fn inspect(token: &str, now: u64) -> anyhow::Result<String> {
    let token = token.trim();
    if token.starts_with(crate::token::reference::REGISTRATION_PREFIX) {
        return Ok("a narrowgate registration token: single use, exchanged for an access token with \
                   `narrowgate registration redeem`; what it yields is known only to the token service\n"
            .into());
    }
    if crate::token::reference::is_reference(token) {
        return Ok("a narrowgate reference token: an opaque secret, not a JWT; the token service keeps its \
                   grant (`narrowgate token whoami` with it shows what it grants)\n"
            .into());
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 1 && (1..=128).contains(&token.len()) {
        return Ok("not a JWT: an opaque id (a Crafter Profile access token id is one); only the token \
                   service knows what it grants (`narrowgate token whoami` with it)\n"
            .into());
    }
    if parts.len() != 3 {
        bail!("not a JWT: expected three dot-separated parts, found {}", parts.len());
    }
    let decode = |s: &str, what: &str| -> anyhow::Result<serde_json::Value> {
        let bytes = b64_decode(s).with_context(|| format!("{what} is not base64url"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{what} is not JSON"))
    };
    let header = decode(parts[0], "header")?;
    let claims = decode(parts[1], "payload")?;
    let mut out = String::new();
    out.push_str(&format!("header: {}\n", serde_json::to_string_pretty(&header)?));
    out.push_str(&format!("claims: {}\n", serde_json::to_string_pretty(&claims)?));
    match claims.get("exp").and_then(|v| v.as_u64()) {
        Some(exp) if exp > now => out.push_str(&format!("expires: in {}\n", human(exp - now))),
        Some(exp) => out.push_str(&format!("expires: expired {} ago\n", human(now - exp))),
        None => out.push_str("expires: never (no exp claim)\n"),
    }
    let rules: Vec<WireRule> =
        claims.get("accessRules").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    let tenants: Vec<crate::policy::tenant::TenantPermission> =
        claims.get("tenantPermissions").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    out.push_str(&format!(
        "resources narrowed down: {}\n",
        if are_resources_narrowed_down(&rules, &tenants) { "yes" } else { "no" }
    ));
    out.push_str("signature: not verified (inspect only decodes; the gateway verifies)\n");
    Ok(out)
}

fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_names_what_it_cannot_decode() {
        let reference = crate::token::reference::new_secret().expect("secret");
        assert!(inspect(&reference, 0).expect("named").starts_with("a narrowgate reference token"));
        assert!(inspect("ngreg_abc", 0).expect("named").starts_with("a narrowgate registration token"));
        assert!(inspect("9f1c2d3e-crafter-id", 0).expect("named").contains("opaque id"));
        assert!(inspect("a.b", 0).is_err());
        let key = crate::token::testkit::TestKey::es256("k");
        let jwt = key.sign(&crate::token::testkit::payload("alice", 100, 60, serde_json::json!([])));
        let out = inspect(&jwt, 130).expect("a JWT");
        assert!(out.contains("expires: in 30s") && out.contains("signature: not verified"), "{out}");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(65), "1m 5s");
        assert_eq!(human(3 * 3600 + 120), "3h 2m");
        assert_eq!(human(2 * 86_400 + 3600), "2d 1h");
    }
}
