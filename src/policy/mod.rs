//! Policy: the manifest, access rules, their evaluation, and route matching.
//!
//! Plain data and pure functions. Nothing here knows about sockets, hyper or
//! axum, so it can be tested and benchmarked alone. A denial is a value
//! ([`Decision::Deny`]), never an `Err`.

pub mod grant;
pub mod issuance;
pub mod manifest;
pub mod narrow;
pub mod router;
pub mod rules;
pub mod tenant;

pub use manifest::{Manifest, Mode, ResourceSpec, Route, RouteAccess};
pub use router::{RouteMatch, Router};
pub use rules::{
    AccessRule, Allowed, Decision, Denial, MethodGroupRule, MethodRule, Pattern, ResourceRule, RouteFacts, evaluate,
};
