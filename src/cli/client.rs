//! The operator commands that talk to a running gateway's token service:
//! `token create|list|show|revoke|narrow|whoami` and
//! `registration create|redeem`. Each is one request to the api listener;
//! the reply is printed as JSON (or, with `--secret-only`, just the new
//! token, for scripts). Errors print the service's code and message and
//! exit non-zero. The caller's token comes from `NARROWGATE_TOKEN` (or
//! `--token`, which other users of the machine may see in the process list).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the token service is, and who is calling.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Base URL of the gateway's api listener.
    #[arg(long, env = "NARROWGATE_API", default_value = "http://127.0.0.1:8081")]
    api: String,
    /// The caller's token; prefer the environment variable.
    #[arg(long, env = "NARROWGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Unique name of the token.
    #[arg(long)]
    name: String,
    /// What the token is for, shown when tokens are listed.
    #[arg(long, default_value = "")]
    description: String,
    /// The application the token is for (informational; rules decide access).
    #[arg(long)]
    application: Option<String>,
    /// `user` or `admin` (admin needs a master caller).
    #[arg(long, default_value = "user")]
    role: String,
    /// Master rights (needs a master caller).
    #[arg(long)]
    master: bool,
    /// How long it lives, like `2h45m30s`, or `none` (reference tokens only).
    #[arg(long, conflicts_with = "expires_at")]
    lifetime: Option<String>,
    /// When it expires: RFC 3339 (`2026-12-31T23:59:59Z`) or Unix seconds.
    #[arg(long)]
    expires_at: Option<String>,
    /// When it starts to be valid: RFC 3339 or Unix seconds.
    #[arg(long)]
    not_before: Option<String>,
    /// A reference token (`ngr_…`, revocable, may never expire) instead of a JWT.
    #[arg(long)]
    reference: bool,
    /// A JSON file with the access rules (MetaApi's detailed form); default:
    /// the caller's own rules.
    #[arg(long, conflicts_with = "tenant_permissions")]
    rules: Option<std::path::PathBuf>,
    /// A JSON file with Crafter-style tenant permissions instead of rules.
    #[arg(long)]
    tenant_permissions: Option<std::path::PathBuf>,
    /// Print only the new token.
    #[arg(long)]
    secret_only: bool,
}

#[derive(Debug, Args)]
pub struct NarrowArgs {
    /// Keep only these applications; repeatable.
    #[arg(long)]
    application: Vec<String>,
    /// Keep only these roles; repeatable.
    #[arg(long)]
    role: Vec<String>,
    /// Keep only these resources, as `entity:id`; repeatable.
    #[arg(long)]
    resource: Vec<String>,
    /// A JSON file with the detailed form (`accessRules`) instead.
    #[arg(long, conflicts_with_all = ["application", "role", "resource"])]
    rules: Option<std::path::PathBuf>,
    /// Validity in hours (fractions allowed); default 24, never past the parent's expiry.
    #[arg(long)]
    validity_hours: Option<f64>,
    /// Print only the new token.
    #[arg(long)]
    secret_only: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the token of this name.
    #[arg(long)]
    name: Option<String>,
    /// Only tokens for this application.
    #[arg(long)]
    application: Option<String>,
    /// `access`, `narrowed` or `registration`.
    #[arg(long)]
    kind: Option<String>,
    /// At most this many tokens.
    #[arg(long)]
    limit: Option<u32>,
    /// Skip this many first.
    #[arg(long)]
    offset: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum RegistrationCommand {
    /// Mint a single-use registration token (admin).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// Name of the access token it will yield.
        #[arg(long)]
        name: String,
        /// `User` or `Administrator`.
        #[arg(long)]
        role: String,
        /// Lifetime of the access token, like `30d` or `none` (the default).
        #[arg(long)]
        lifetime: Option<String>,
        /// How long the registration token may be redeemed, like `2h45m30s`.
        #[arg(long)]
        ttl: String,
        /// Print only the registration token.
        #[arg(long)]
        secret_only: bool,
    },
    /// Exchange a registration token for its access token (no other credential).
    Redeem {
        #[command(flatten)]
        api: ApiArgs,
        /// The registration token; `-` reads it from stdin.
        registration_token: String,
        /// Print only the access token.
        #[arg(long)]
        secret_only: bool,
    },
}

/// A request to the token service and how to print its reply.
pub struct Call {
    method: reqwest::Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    authenticated: bool,
    secret_only: bool,
}

impl Call {
    fn new(method: reqwest::Method, path: impl Into<String>) -> Self {
        Call { method, path: path.into(), query: vec![], body: None, authenticated: true, secret_only: false }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

pub fn create(api: &ApiArgs, a: &CreateArgs) -> anyhow::Result<()> {
    let mut body = json!({
        "name": a.name,
        "description": a.description,
        "role": a.role,
        "master": a.master,
        "form": if a.reference { "reference" } else { "jwt" },
    });
    let set = |body: &mut Value, k: &str, v: Value| {
        body[k] = v;
    };
    if let Some(app) = &a.application {
        set(&mut body, "application", app.as_str().into());
    }
    if let Some(l) = &a.lifetime {
        set(&mut body, "lifetime", l.as_str().into());
    }
    if let Some(t) = &a.expires_at {
        set(&mut body, "expiresAt", time_arg(t));
    }
    if let Some(t) = &a.not_before {
        set(&mut body, "notBefore", time_arg(t));
    }
    if let Some(path) = &a.rules {
        set(&mut body, "accessRules", json_file(path)?);
    }
    if let Some(path) = &a.tenant_permissions {
        set(&mut body, "tenantPermissions", json_file(path)?);
    }
    let mut call = Call::new(reqwest::Method::POST, "/v1/tokens").body(body);
    call.secret_only = a.secret_only;
    send(api, call)
}

pub fn list(api: &ApiArgs, a: &ListArgs) -> anyhow::Result<()> {
    let mut call = Call::new(reqwest::Method::GET, "/v1/tokens");
    for (k, v) in [("name", &a.name), ("application", &a.application), ("kind", &a.kind)] {
        if let Some(v) = v {
            call.query.push((k, v.clone()));
        }
    }
    for (k, v) in [("limit", a.limit), ("offset", a.offset)] {
        if let Some(v) = v {
            call.query.push((k, v.to_string()));
        }
    }
    send(api, call)
}

pub fn show(api: &ApiArgs, id: &str) -> anyhow::Result<()> {
    send(api, Call::new(reqwest::Method::GET, format!("/v1/tokens/{}", path_segment(id)?)))
}

pub fn revoke(api: &ApiArgs, id: Option<&str>, name: Option<&str>) -> anyhow::Result<()> {
    let call = match (id, name) {
        (Some(id), None) => Call::new(reqwest::Method::DELETE, format!("/v1/tokens/{}", path_segment(id)?)),
        (None, Some(name)) => {
            let mut c = Call::new(reqwest::Method::DELETE, "/v1/tokens");
            c.query.push(("name", name.to_string()));
            c
        }
        _ => bail!("give a token id or --name, not both"),
    };
    send(api, call)
}

/// Revoke another issuer's token by its jti.
pub fn revoke_jti(api: &ApiArgs, jti: &str, issuer: &str, expires_at: Option<&str>) -> anyhow::Result<()> {
    let mut body = json!({ "jti": jti, "issuer": issuer });
    if let Some(e) = expires_at {
        body["expiresAt"] = time_arg(e);
    }
    let mut call = Call::new(reqwest::Method::POST, "/v1/revocations");
    call.body = Some(body);
    send(api, call)
}

pub fn narrow(api: &ApiArgs, a: &NarrowArgs) -> anyhow::Result<()> {
    let mut body = match &a.rules {
        Some(path) => json!({ "accessRules": json_file(path)? }),
        None => {
            let mut b = json!({});
            if !a.application.is_empty() {
                b["applications"] = json!(a.application);
            }
            if !a.role.is_empty() {
                b["roles"] = json!(a.role);
            }
            if !a.resource.is_empty() {
                let mut list = Vec::new();
                for r in &a.resource {
                    let Some((entity, id)) = r.split_once(':') else {
                        bail!("--resource {r:?}: expected entity:id");
                    };
                    list.push(json!({ "entity": entity, "id": id }));
                }
                b["resources"] = Value::Array(list);
            }
            b
        }
    };
    if let Some(h) = a.validity_hours {
        body["validityInHours"] = json!(h);
    }
    let mut call = Call::new(reqwest::Method::POST, "/v1/tokens/narrow").body(body);
    call.secret_only = a.secret_only;
    send(api, call)
}

pub fn whoami(api: &ApiArgs) -> anyhow::Result<()> {
    send(api, Call::new(reqwest::Method::GET, "/v1/whoami"))
}

pub fn registration(cmd: RegistrationCommand) -> anyhow::Result<()> {
    match cmd {
        RegistrationCommand::Create { api, name, role, lifetime, ttl, secret_only } => {
            let mut body = json!({ "name": name, "role": role, "ttl": ttl });
            if let Some(l) = lifetime {
                body["lifetime"] = l.into();
            }
            let mut call = Call::new(reqwest::Method::POST, "/v1/registration-tokens").body(body);
            call.secret_only = secret_only;
            send(&api, call)
        }
        RegistrationCommand::Redeem { api, registration_token, secret_only } => {
            let secret = if registration_token == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading stdin")?;
                s.trim().to_string()
            } else {
                registration_token
            };
            let mut call =
                Call::new(reqwest::Method::POST, "/v1/registration-tokens/redeem").body(json!({ "token": secret }));
            call.authenticated = false;
            call.secret_only = secret_only;
            send(&api, call)
        }
    }
}

/// Unix seconds stay a number; anything else goes as the text it is (the
/// service parses RFC 3339 and says what is wrong).
fn time_arg(t: &str) -> Value {
    t.parse::<u64>().map_or_else(|_| Value::from(t), Value::from)
}

fn json_file(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// An id as one path segment: refused if it could change the path.
fn path_segment(id: &str) -> anyhow::Result<&str> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) || id == "." || id == ".."
    {
        bail!("{id:?} is not a token id");
    }
    Ok(id)
}

fn send(api: &ApiArgs, call: Call) -> anyhow::Result<()> {
    let base = api.api.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--api {base:?}: expected an http:// or https:// URL");
    }
    let token = match (&api.token, call.authenticated) {
        (Some(t), true) => Some(t.trim().to_string()),
        (None, true) => bail!("no token: set NARROWGATE_TOKEN (or pass --token)"),
        (_, false) => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, text) = rt.block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        let mut req = client.request(call.method.clone(), format!("{base}{}", call.path)).query(&call.query);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach the token service at {base}"))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the reply")?;
        anyhow::Ok((status, text))
    })?;
    let reply: Option<Value> = serde_json::from_str(&text).ok();
    if !status.is_success() {
        let (code, message) = reply
            .as_ref()
            .map(|v| (v["error"].as_str().unwrap_or("error"), v["message"].as_str().unwrap_or("")))
            .unwrap_or(("error", text.trim()));
        bail!("{} {code}: {message}", status.as_u16());
    }
    match reply {
        None if status == reqwest::StatusCode::NO_CONTENT => println!("done"),
        None => bail!("the token service replied {status} with something that is not JSON"),
        Some(v) if call.secret_only => match v["token"].as_str() {
            Some(t) => println!("{t}"),
            None => bail!("the reply holds no token"),
        },
        Some(v) => println!("{}", serde_json::to_string_pretty(&v)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_steer_the_path() {
        assert!(path_segment("3f2a-b_c.d").is_ok());
        for bad in ["", ".", "..", "a/b", "a?b", "a#b", "%2e%2e", "a b"] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_go_as_numbers_or_text() {
        assert_eq!(time_arg("1700000000"), json!(1_700_000_000u64));
        assert_eq!(time_arg("2026-12-31T23:59:59Z"), json!("2026-12-31T23:59:59Z"));
    }
}
