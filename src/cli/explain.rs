//! `narrowgate explain`: why a request would be allowed or denied, offline,
//! under a config file (the same code as the admin listener's
//! `POST /explain`).
//!
//! It loads what the gateway would have: the config's keys, the keys of
//! its JWKS URLs (fetched once), and its store's reference tokens and
//! revocations — the store opened read-only, never created or changed; a
//! missing or unreadable store is an error, unless `--without-store` says
//! to go on without it. What it still cannot know (a store not read, a
//! JWKS URL not reached, an issuer's revocation feed it does not follow)
//! is said in lines of their own, never passed off as a reason.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::explain::{Explanation, Question, explain};
use crate::metrics::Metrics;
use crate::runtime::{Runtime, Shared};
use crate::store::{Mirror, StoreError};

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
    /// A PEM file: the client certificate the request's connection
    /// presents (what a certificate-bound token needs).
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
    /// Do not read the config's store: reference tokens and revocations
    /// are then unknown, and the explanation says so.
    #[arg(long)]
    without_store: bool,
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
                // Never the header itself: it may hold the credential.
                .ok_or_else(|| anyhow::anyhow!("--header wants `Name: value`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client_certificate = match &args.client_cert {
        None => None,
        Some(f) => Some(std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?),
    };
    let question = Question { method: args.method, path: args.path, token, headers, client_certificate };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = rt.block_on(async {
        let metrics = Arc::new(Metrics::register(&prometheus::Registry::new())?);
        let mirror = Mirror::of(&config, Arc::default());
        let mut not_known = Vec::new();
        match (&config.store, args.without_store) {
            (Some(store), false) => {
                crate::store::load_read_only(store, &mirror).await.map_err(|e| match e {
                    // Never guessed: a gateway whose store is missing does not start.
                    StoreError::Missing(why) => anyhow::anyhow!("the config's store: {why}"),
                    e => anyhow::anyhow!(
                        "the config's store cannot be read ({e}); explain reads it as the gateway does (reference \
                         tokens, revocations), or explains without it under --without-store"
                    ),
                })?;
            }
            (Some(_), true) => not_known.push(
                "the store was not read (--without-store): a reference token is unknown here (refused as \
                 invalid_token) and no revocation is seen"
                    .to_string(),
            ),
            (None, _) => {}
        }
        let shared = Shared::new(metrics, mirror.revocations.clone(), mirror.references.clone());
        let runtime = Runtime::new(&config, None, shared);
        let snap = runtime.snapshot();
        // Issuers with a JWKS URL: their keys, once (or the reason there are none).
        if snap.auth.keys().is_remote() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), snap.auth.keys().refetch()).await;
            if snap.auth.keys().degraded() {
                let issuers: Vec<&str> = config.jwks_sources.iter().map(|s| s.name.as_str()).collect();
                not_known.push(format!(
                    "the keys at the JWKS URL of {} could not all be fetched: a token signed with a key only \
                     published there cannot be verified here (keys_unavailable), as on a gateway that cannot \
                     reach it",
                    issuers.join(", ")
                ));
            }
        }
        if config.revocation.follow.is_some() {
            not_known.push(
                "revocations: this gateway follows an issuer's revocation feed, which explain does not read: a \
                 token revoked there (or narrowed from one revoked there) is not seen as revoked here"
                    .to_string(),
            );
        }
        let mut answer = explain(&snap, &question, runtime.shared().clock.now());
        // Said only where a token was checked: nothing else depends on it.
        if answer.verification.as_ref().is_some_and(|v| v.result != crate::reason::Reason::MissingToken.code()) {
            answer.not_known = not_known;
        }
        Ok::<_, anyhow::Error>(answer)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(&answer));
    }
    Ok(())
}

/// The explanation as a few lines for a terminal.
fn render(e: &Explanation) -> String {
    // The target as explain shows it: query credentials redacted.
    let mut out = format!("{} {} → {} {} {}\n", e.method, e.target, e.decision, e.status, e.reason);
    for line in &e.not_known {
        out.push_str(&format!("  not known here: {line}\n"));
    }
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
        if let Some(d) = &v.detail {
            out.push_str(&format!("    {d}\n"));
        }
    }
    for r in &e.rules {
        out.push_str(&format!("  rule {}: {}\n", r.id, r.result));
    }
    if let Some(t) = &e.tenant {
        out.push_str(&format!("  tenant: {t}\n"));
    }
    out
}
