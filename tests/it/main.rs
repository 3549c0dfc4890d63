//! The integration tests: one crate, linked once. Each module is one
//! area's tests (named as the test binaries were); `support` holds the
//! helpers they share (a harness on real sockets, the test PostgreSQL, the
//! polling helpers), `kube_pods` the pods the injector tests share.
//!
//! Run one area with `cargo test --test it -- <module>::` (for example
//! `scripts/test --test it -- revocation_feed:: --nocapture`).

#[path = "../support/mod.rs"]
mod support;

#[path = "../kube_pods/mod.rs"]
mod kube_pods;

mod admin;
mod api;
mod api_errors;
mod audit;
mod authority;
mod bootstrap;
mod cli;
mod console;
mod console_browser;
mod crafter;
mod decision;
mod disk_full;
mod drain;
mod durability;
mod explain;
mod faults;
mod forwarding;
mod grpc;
mod header_policy;
mod hostile;
mod http2;
mod inject;
mod jwks;
mod layers;
mod metaapi;
mod narrow_property;
mod oidc;
mod openapi;
mod pg_failover;
mod pg_outage;
mod prodmanager;
mod proxy_matrix;
mod ratelimit;
mod readme;
mod reload;
mod revocation;
mod revocation_feed;
mod shadow;
mod store;
mod store_safety;
mod time_fields;
mod tls;
mod traces;
mod upgrades;
mod upstreams;
mod vk;
mod webhook;
mod workers;
