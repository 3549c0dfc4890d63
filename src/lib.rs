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
//! # Layers
//!
//! From the bottom up; a module imports only modules of lower layers
//! (`tests/it/layers.rs` checks every path in `src/` against this table and
//! fails on an upward import or an import circle; none is left, and its
//! lists of allowed exceptions are empty):
//!
//! | layer | modules | what they are |
//! | --- | --- | --- |
//! | 0 | [`time`], [`clock`], [`reason`], [`http_names`], [`telemetry`] | leaves: the checked Unix time, the one clock, denial reasons, header names, logging |
//! | 1 | [`tls`], [`ratelimit`] | certificates and TLS settings (judged by the clock's time); rate-limit types and limiters |
//! | 2 | [`policy`] | manifest, routes and router, access rules, narrowing, issuance, the grant |
//! | 3 | [`token`] | claims, keys, key ring, signing, verification into a grant, cache |
//! | 4 | [`revocation`] | the revocation set and the feeds that fill it |
//! | 5 | [`config`] | YAML → validated [`config::Config`], every problem with its path |
//! | 6 | [`store`] | token records: models, queries, the writer, SQLite and PostgreSQL |
//! | 7–10 | [`audit`], [`trace`], [`metrics`], [`auth`], the token service ([`service`], with its first start) | the service layer |
//! | 11 | [`runtime`] | the compiled policy in force, swapped by reloads |
//! | 12–14 | [`respond`], [`server`] (the one HTTP server loop), the pure decision, [`explain`] | what the front ends share |
//! | 15 | [`proxy`], [`api`], [`console`], [`kube`], [`admin`], [`reload`], [`echo`] | front ends: thin adapters over the layers below |
//! | 16 | [`app`] | binds the listeners and runs everything |
//! | 17 | [`cli`] | the subcommands (`main.rs` is their crate) |

pub mod admin;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
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
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod token;
pub mod trace;
