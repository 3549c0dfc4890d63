//! Route matching: method + canonical path → route, with a radix tree per
//! method (cost independent of the number of routes).
//!
//! Two routes that could both match one request are a config error, found
//! here when the router is built, so matching never has to choose.

use std::collections::HashMap;

use super::manifest::Route;

/// A matched route and the raw (still percent-encoded) resource id, if the
/// route names one.
#[derive(Clone, Copy, Debug)]
pub struct RouteMatch<'p> {
    pub route: usize,
    pub resource_id: Option<&'p str>,
    /// The tenant's name, on routes that act on a tenant.
    pub tenant: Option<&'p str>,
}

/// The compiled router: one, or when applications declare the hosts they
/// serve, one per host.
#[derive(Clone, Debug, Default)]
pub struct Router {
    by_method: Vec<(http::Method, matchit::Router<usize>)>,
    /// Host (lowercase, no port) → its router; `None` when no application
    /// declares hosts.
    by_host: Option<HashMap<Box<str>, Router>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Static(String),
    Param,
    CatchAll,
}

/// A route path split into segments, with parameter names in order.
#[derive(Clone, Debug)]
pub struct PathPattern {
    segments: Vec<Segment>,
    pub params: Vec<String>,
}

impl PathPattern {
    /// Parse `/a/{id}/b` or `/files/{*rest}`. Each segment is wholly static or
    /// wholly one parameter; a catch-all may only end the path.
    pub fn parse(path: &str) -> Result<Self, String> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("path {path:?} must start with '/'"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut params: Vec<String> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (name, catch_all) = match inner.strip_prefix('*') {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("parameter {part:?} must be a name of letters, digits and '_'"));
                }
                if params.iter().any(|p| p == name) {
                    return Err(format!("parameter {name:?} appears twice"));
                }
                if catch_all && i + 1 != parts.len() {
                    return Err(format!("catch-all {part:?} must be the last segment"));
                }
                params.push(name.to_string());
                segments.push(if catch_all { Segment::CatchAll } else { Segment::Param });
            } else if part.contains(['{', '}']) {
                return Err(format!("segment {part:?} must be wholly static or one {{parameter}}"));
            } else {
                if !is_canonical_segment(part) {
                    return Err(format!(
                        "segment {part:?} is not in canonical form (no '.', '..', '%', ';' or '\\' segments)"
                    ));
                }
                segments.push(Segment::Static(part.to_string()));
            }
        }
        Ok(PathPattern { segments, params })
    }

    /// The path with parameters renamed by position (`{p0}`, `{p1}`, …), so
    /// that routes differing only in parameter names share tree nodes.
    fn positional(&self) -> String {
        let mut out = String::new();
        let mut n = 0;
        for seg in &self.segments {
            out.push('/');
            match seg {
                Segment::Static(s) => out.push_str(s),
                Segment::Param => {
                    out.push_str(&format!("{{p{n}}}"));
                    n += 1;
                }
                Segment::CatchAll => {
                    out.push_str(&format!("{{*p{n}}}"));
                    n += 1;
                }
            }
        }
        out
    }

    /// Whether some path could match both patterns. Conservative for
    /// catch-alls: a catch-all overlaps anything with a compatible prefix.
    fn overlaps(&self, other: &PathPattern) -> bool {
        let (a, b) = (&self.segments, &other.segments);
        let mut i = 0;
        loop {
            match (a.get(i), b.get(i)) {
                (None, None) => return true,
                (Some(Segment::CatchAll), _) | (_, Some(Segment::CatchAll)) => return true,
                (None, _) | (_, None) => return false,
                (Some(Segment::Static(x)), Some(Segment::Static(y))) if x != y => return false,
                // A parameter never matches an empty segment.
                (Some(Segment::Static(x)), Some(Segment::Param)) | (Some(Segment::Param), Some(Segment::Static(x)))
                    if x.is_empty() =>
                {
                    return false;
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn first_static(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Static(s)) => Some(s),
            _ => None,
        }
    }
}

/// Whether a static route segment is already what canonicalization would
/// produce, so it can match a canonical request path: no dot segments, no
/// escapes, nothing the canonicalizer refuses.
fn is_canonical_segment(seg: &str) -> bool {
    seg != "."
        && seg != ".."
        && seg.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b'='
                        | b':'
                        | b'@'
                )
        })
}

impl Router {
    /// Build the router; every pair of routes that could match one request is
    /// reported as `(i, j)`.
    pub fn build(routes: &[Route]) -> Result<Router, Vec<(usize, usize, String)>> {
        Router::build_only(routes, |_| true)
    }

    /// Build the routers of several hosts: `app_hosts[a]` are the hosts
    /// application `a` serves (lowercase, no port; none: every host). Each
    /// host's router holds the routes of the applications serving it, and
    /// only those must not overlap: two APIs behind one gateway may both
    /// have `GET /health`. Without hosts, [`Router::build`].
    pub fn build_hosted(routes: &[Route], app_hosts: &[Vec<String>]) -> Result<Router, Vec<(usize, usize, String)>> {
        if app_hosts.iter().all(Vec::is_empty) {
            return Router::build(routes);
        }
        let hosts: std::collections::BTreeSet<&str> = app_hosts.iter().flatten().map(String::as_str).collect();
        let (mut by_host, mut errors) = (HashMap::new(), Vec::new());
        for host in hosts {
            let serves = |i: usize| {
                let h = app_hosts.get(routes[i].app_index).map_or(&[][..], Vec::as_slice);
                h.is_empty() || h.iter().any(|x| x == host)
            };
            match Router::build_only(routes, serves) {
                Ok(r) => {
                    by_host.insert(host.into(), r);
                }
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            errors.sort();
            errors.dedup();
            return Err(errors);
        }
        Ok(Router { by_method: Vec::new(), by_host: Some(by_host) })
    }

    /// Whether requests are routed by their host first.
    #[inline]
    pub fn by_host(&self) -> bool {
        self.by_host.is_some()
    }

    /// The router for requests to `host` (lowercase, no port): this one
    /// when no application declares hosts; `None` for a host none does.
    pub fn for_host(&self, host: &str) -> Option<&Router> {
        match &self.by_host {
            None => Some(self),
            Some(table) => table.get(host),
        }
    }

    /// The router of the routes `include` accepts (by index).
    fn build_only(routes: &[Route], include: impl Fn(usize) -> bool) -> Result<Router, Vec<(usize, usize, String)>> {
        let mut errors = Vec::new();
        let mut patterns = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            if !include(i) {
                patterns.push(None);
                continue;
            }
            match PathPattern::parse(&r.path) {
                Ok(p) => patterns.push(Some(p)),
                Err(e) => {
                    errors.push((i, i, e));
                    patterns.push(None);
                }
            }
        }
        // Overlaps can only occur between routes of one method that share a
        // first static segment, or where one starts with a parameter; bucket
        // so that 10k distinct routes do not cost 50M comparisons.
        let mut buckets: HashMap<(&http::Method, Option<&str>), Vec<usize>> = HashMap::new();
        for (i, p) in patterns.iter().enumerate() {
            if let Some(p) = p {
                buckets.entry((&routes[i].method, p.first_static())).or_default().push(i);
            }
        }
        let mut check = |a: usize, b: usize| {
            if let (Some(pa), Some(pb)) = (&patterns[a], &patterns[b])
                && pa.overlaps(pb)
            {
                errors.push((a, b, format!("overlaps route {:?}", routes[a].template)));
            }
        };
        for ((method, first), members) in &buckets {
            for (x, &a) in members.iter().enumerate() {
                for &b in &members[x + 1..] {
                    check(a.min(b), a.max(b));
                }
            }
            if first.is_some()
                && let Some(wild) = buckets.get(&(*method, None))
            {
                for &a in members {
                    for &b in wild {
                        check(a.min(b), a.max(b));
                    }
                }
            }
        }
        if !errors.is_empty() {
            errors.sort();
            return Err(errors);
        }

        let mut by_method: Vec<(http::Method, matchit::Router<usize>)> = Vec::new();
        for (i, (route, pattern)) in routes.iter().zip(&patterns).enumerate() {
            let Some(pattern) = pattern else { continue };
            let pos = match by_method.iter().position(|(m, _)| *m == route.method) {
                Some(p) => p,
                None => {
                    by_method.push((route.method.clone(), matchit::Router::new()));
                    by_method.len() - 1
                }
            };
            if let Err(e) = by_method[pos].1.insert(pattern.positional(), i) {
                errors.push((i, i, format!("cannot be routed: {e}")));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Router { by_method, by_host: None })
    }

    /// Match a canonical path. `HEAD` falls back to `GET` routes. No
    /// allocation: the resource id and tenant borrow from `path`.
    pub fn at<'p>(&self, routes: &[Route], method: &http::Method, path: &'p str) -> Option<RouteMatch<'p>> {
        let lookup = |m: &http::Method| self.by_method.iter().find(|(k, _)| k == m).and_then(|(_, t)| t.at(path).ok());
        let found =
            lookup(method).or_else(|| if *method == http::Method::HEAD { lookup(&http::Method::GET) } else { None })?;
        let route = *found.value;
        let param = |i: usize| found.params.iter().nth(i).map(|(_, v)| v);
        let r = routes.get(route);
        let resource_id = r.and_then(|r| r.resource()).and_then(|spec| param(spec.param_index));
        let tenant = r.and_then(|r| r.tenant()).and_then(|spec| param(spec.param_index));
        Some(RouteMatch { route, resource_id, tenant })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::manifest::{ResourceSpec, RouteAccess};

    fn route(template: &str) -> Route {
        let (method, path) = template.split_once(' ').expect("template");
        let pattern = PathPattern::parse(path).expect("pattern");
        let resource = pattern.params.first().map(|p| ResourceSpec {
            entity: "account".into(),
            param: p.as_str().into(),
            param_index: 0,
        });
        Route {
            template: template.into(),
            method: method.parse().expect("method"),
            path: path.into(),
            app_index: 0,
            application: "app".into(),
            service: "rest".into(),
            access: RouteAccess::Protected {
                group: "g".into(),
                method: "m".into(),
                scopes: vec![],
                roles: vec![],
                resource,
                tenant: None,
            },
            upstream: None,
        }
    }

    #[test]
    fn matches_by_method_and_path() {
        let routes = vec![
            route("GET /accounts/{id}"),
            route("DELETE /accounts/{accountId}"),
            route("GET /accounts/{id}/deals"),
            route("GET /health"),
        ];
        let router = Router::build(&routes).expect("router");
        let m = router.at(&routes, &http::Method::GET, "/accounts/a1").expect("match");
        assert_eq!((m.route, m.resource_id), (0, Some("a1")));
        let m = router.at(&routes, &http::Method::DELETE, "/accounts/a2").expect("match");
        assert_eq!((m.route, m.resource_id), (1, Some("a2")));
        assert_eq!(router.at(&routes, &http::Method::GET, "/accounts/a1/deals").map(|m| m.route), Some(2));
        assert_eq!(router.at(&routes, &http::Method::HEAD, "/health").map(|m| m.route), Some(3));
        assert!(router.at(&routes, &http::Method::POST, "/accounts/a1").is_none());
        assert!(router.at(&routes, &http::Method::GET, "/accounts/").is_none());
        assert!(router.at(&routes, &http::Method::GET, "/nothing").is_none());
    }

    #[test]
    fn overlapping_routes_are_rejected() {
        for (a, b) in [
            ("GET /accounts/{id}", "GET /accounts/current"),
            ("GET /accounts/{id}", "GET /accounts/{other}"),
            ("GET /{section}/list", "GET /accounts/{id}"),
            ("GET /files/{*rest}", "GET /files/a/b"),
            ("GET /x", "GET /x"),
        ] {
            let routes = vec![route(a), route(b)];
            let errs = Router::build(&routes).expect_err(&format!("{a} vs {b}"));
            assert_eq!(errs[0].0, 0, "{a} vs {b}");
            assert_eq!(errs[0].1, 1, "{a} vs {b}");
        }
        for (a, b) in [
            ("GET /accounts/{id}", "POST /accounts/current"),
            ("GET /accounts/{id}", "GET /accounts/{id}/deals"),
            ("GET /a/{x}/b", "GET /a/{y}/c"),
        ] {
            assert!(Router::build(&[route(a), route(b)]).is_ok(), "{a} vs {b}");
        }
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for p in ["nope", "/a/{}", "/a/x{id}", "/a/{*rest}/b", "/a/{id}/{id}", "/a/../b", "/a/%2e"] {
            assert!(PathPattern::parse(p).is_err(), "{p}");
        }
    }
}
