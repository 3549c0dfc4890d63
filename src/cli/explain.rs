//! `narrowgate explain`: why a request would be allowed or denied, offline,
//! under a config file (the same code as the admin listener's
//! `POST /explain`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::explain::{Explanation, Question, explain};
use crate::metrics::Metrics;
use crate::runtime::{Runtime, Shared};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The gateway's config file.
    #[arg(long, short)]
    config: PathBuf,
    /// The bearer token to explain the request with; `-` reads it from stdin.
    #[arg(long)]
    token: Option<String>,
    /// A request header, `Name: value` (a credential in `auth-token`, a
    /// cookie…); repeatable.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
    /// The request's method.
    method: String,
    /// The request's path (and query).
    path: String,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let token = match args.token.as_deref() {
        Some("-") => Some(std::io::read_to_string(std::io::stdin()).context("reading the token")?.trim().to_string()),
        other => other.map(str::to_string),
    };
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--header wants `Name: value`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let question = Question { method: args.method, path: args.path, token, headers };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = rt.block_on(async {
        let metrics = Arc::new(Metrics::register(&prometheus::Registry::new())?);
        let runtime = Runtime::new(&config, None, Shared::new(metrics, Arc::default(), Arc::default()));
        let snap = runtime.snapshot();
        // Issuers with a JWKS URL: their keys, once (or the reason there are none).
        if snap.auth.keys().is_remote() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), snap.auth.keys().refetch()).await;
        }
        Ok::<_, anyhow::Error>(explain(&snap, &question, runtime.shared().clock.now()))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(&question.method, &question.path, &answer));
    }
    Ok(())
}

/// The explanation as a few lines for a terminal.
fn render(method: &str, path: &str, e: &Explanation) -> String {
    let mut out = format!("{method} {path} → {} {} {}\n", e.decision, e.status, e.reason);
    if let Some(p) = &e.canonical_path {
        out.push_str(&format!("  canonical path: {p}\n"));
    }
    if let Some(why) = &e.path_refused {
        out.push_str(&format!("  path refused: {why}\n"));
    }
    match &e.route {
        Some(r) if r.public => out.push_str(&format!("  route: {} (public: no token is checked)\n", r.template)),
        Some(r) => {
            out.push_str(&format!("  route: {} ({}, service {})\n", r.template, r.application, r.service));
            out.push_str(&format!(
                "    needs: {}.{}, a role of [{}]",
                r.group.as_deref().unwrap_or("-"),
                r.method.as_deref().unwrap_or("-"),
                r.roles.join(", ")
            ));
            if !r.scopes.is_empty() {
                out.push_str(&format!(", scopes [{}]", r.scopes.join(", ")));
            }
            if let Some((entity, id)) = &r.resource {
                out.push_str(&format!(", resource {entity} {id}"));
            }
            if let Some((tenant, action)) = &r.tenant {
                out.push_str(&format!(", {action} on tenant {tenant}"));
            }
            out.push('\n');
        }
        None if e.nearest_routes.is_empty() => out.push_str("  route: none\n"),
        None => out.push_str(&format!("  route: none; nearest: {}\n", e.nearest_routes.join(" | "))),
    }
    out.push_str(&format!("  credential: {}\n", e.credential));
    if let Some(v) = &e.verification {
        out.push_str(&format!("  token: {}", v.result));
        for (k, val) in [("jti", &v.jti), ("subject", &v.subject), ("issuer", &v.issuer), ("kid", &v.kid)] {
            if let Some(val) = val {
                out.push_str(&format!(", {k} {val}"));
            }
        }
        out.push('\n');
    }
    for r in &e.rules {
        out.push_str(&format!("  rule {}: {}\n", r.id, r.result));
    }
    if let Some(t) = &e.tenant {
        out.push_str(&format!("  tenant: {t}\n"));
    }
    out
}
