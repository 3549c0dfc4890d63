//! narrowgate: an enforcement gateway.
//!
//! For every request it validates the bearer token, evaluates the access
//! rules the token carries against what the request does, and forwards or
//! rejects it.
//!
//! ```text
//!  client ──► proxy listener (hyper)
//!               1 canonicalize ─ 2 route ─ 3 credential ─ 4 verify (cache)
//!               ─ 5 revocation ─ 6 evaluate ─ 7 forward ─ 8 log/metrics
//!                                                 │
//!                                                 ▼
//!                                             upstream
//! ```
//!
//! Module map (dependencies point one way: `config` → `token`, `policy` →
//! `proxy` → `app` → `main`):
//!
//! - [`config`]: YAML → validated [`config::Config`], every problem reported
//!   with its path;
//! - [`token`]: claims, keys, signing, verification → [`token::Grant`], cache;
//! - [`policy`]: manifest, routes and router, access rules and evaluation;
//! - [`proxy`]: the data plane, one phase per step above;
//! - [`revocation`]: the in-memory revocation set the request path reads;
//! - [`admin`], [`metrics`], [`telemetry`]: operations;
//! - [`time`]: the one checked Unix-time type, from the wire to the store;
//! - [`app`]: binds the listeners and runs everything;
//! - [`echo`]: the demo's built-in upstream, also the tests' real upstream;
//! - [`cli`]: the subcommands.

pub mod admin;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod config;
pub mod echo;
pub mod explain;
pub mod http_names;
pub mod kube;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod reason;
pub mod reload;
pub mod respond;
pub mod revocation;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod token;
