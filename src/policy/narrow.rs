//! Narrowing: a child token's rules from its parent's, never wider.
//!
//! A child is a subset of its parent on every dimension — application,
//! service, method group, method, scopes, roles, resources — and a `*` in the
//! child only stands where the parent has `*`. Every child rule must be
//! covered by one parent rule on all dimensions at once; that is sufficient
//! for "the child allows nothing the parent denies" (a property test checks
//! it against [`evaluate`](super::evaluate)). A request that would widen
//! anything is refused naming the element, never silently trimmed; an
//! element the manifest does not know is refused as malformed.

use super::manifest::Manifest;
use super::rules::{AccessRule, MethodRule, Pattern, ResourceRule};
use crate::time::UnixTime;

/// Why a narrowing request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NarrowError {
    /// An element the manifest does not declare (400). `path` names the
    /// element by its place in the request; `what` is fixed text, so a
    /// message never repeats what the client sent.
    #[error("{path}: {what}")]
    Unknown { path: String, what: &'static str },
    /// An element the parent does not grant (403).
    #[error("{path}: {what}")]
    WouldWiden { path: String, what: &'static str },
    /// The request leaves the child no permission at all (400).
    #[error("the narrowed token would grant nothing")]
    Empty,
    /// A validity that is not a positive number of hours (400).
    #[error("validityInHours: not a positive number of hours (at most ten years)")]
    BadValidity,
}

/// The simplified form: each list present restricts the parent's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Simplified {
    pub applications: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    /// `(entity, id)` pairs.
    pub resources: Option<Vec<(String, String)>>,
}

fn covers(parent: &Pattern, child: &Pattern) -> bool {
    match (parent, child) {
        (Pattern::Any, _) => true,
        (Pattern::Exact(p), Pattern::Exact(c)) => p == c,
        (Pattern::Exact(_), Pattern::Any) => false,
    }
}

/// Scopes: `None` is every scope of the method.
fn scopes_cover(parent: &Option<Vec<Pattern>>, child: &Option<Vec<Pattern>>) -> bool {
    match (parent, child) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(p), Some(c)) => c.iter().all(|s| p.iter().any(|ps| covers(ps, s))),
    }
}

fn method_covered(parent: &AccessRule, group: &Pattern, method: &MethodRule) -> bool {
    parent
        .method_groups
        .iter()
        .filter(|g| covers(&g.group, group))
        .any(|g| g.methods.iter().any(|m| covers(&m.method, &method.method) && scopes_cover(&m.scopes, &method.scopes)))
}

fn resource_covered(parent: &[ResourceRule], r: &ResourceRule) -> bool {
    parent.iter().any(|p| covers(&p.entity, &r.entity) && covers(&p.id, &r.id))
}

/// The first element of `child` that `parent` does not cover, as a path and
/// a description; `None` when covered.
fn uncovered(parent: &AccessRule, child: &AccessRule) -> Option<(String, &'static str)> {
    if !covers(&parent.application, &child.application) {
        return Some(("application".into(), "application is not granted"));
    }
    if !covers(&parent.service, &child.service) {
        return Some(("service".into(), "service is not granted"));
    }
    for (gi, g) in child.method_groups.iter().enumerate() {
        for (mi, m) in g.methods.iter().enumerate() {
            if !method_covered(parent, &g.group, m) {
                return Some((
                    format!("methodGroups[{gi}].methods[{mi}]"),
                    "method (of this group, with these scopes) is not granted",
                ));
            }
        }
    }
    for (i, r) in child.roles.iter().enumerate() {
        if !parent.roles.iter().any(|p| covers(p, r)) {
            return Some((format!("roles[{i}]"), "role is not granted"));
        }
    }
    for (i, r) in child.resources.iter().enumerate() {
        if !resource_covered(&parent.resources, r) {
            return Some((format!("resources[{i}]"), "resource is not granted"));
        }
    }
    None
}

/// Check a detailed child rule set against the parent and the manifest.
pub fn narrow_detailed(
    parent: &[AccessRule],
    child: &[AccessRule],
    manifest: &Manifest,
) -> Result<Vec<AccessRule>, NarrowError> {
    if child.is_empty() || child.iter().any(|r| r.method_groups.is_empty() || r.roles.is_empty()) {
        return Err(NarrowError::Empty);
    }
    for (i, rule) in child.iter().enumerate() {
        check_known(rule, manifest, &format!("accessRules[{i}]"))?;
    }
    for (i, rule) in child.iter().enumerate() {
        if parent.iter().any(|p| uncovered(p, rule).is_none()) {
            continue;
        }
        // Name what the closest parent rule (same application, if any) lacks.
        let closest = parent.iter().find(|p| covers(&p.application, &rule.application)).or(parent.first());
        let (path, what) = closest
            .and_then(|p| uncovered(p, rule))
            .unwrap_or_else(|| ("application".into(), "the parent token grants nothing"));
        return Err(NarrowError::WouldWiden { path: format!("accessRules[{i}].{path}"), what });
    }
    Ok(child.to_vec())
}

/// Apply the simplified form to the parent's rules.
pub fn narrow_simplified(
    parent: &[AccessRule],
    req: &Simplified,
    manifest: &Manifest,
) -> Result<Vec<AccessRule>, NarrowError> {
    let mut rules: Vec<AccessRule> = parent.to_vec();
    if let Some(apps) = &req.applications {
        for (i, app) in apps.iter().enumerate() {
            if !manifest.applications.iter().any(|a| a.application == *app) {
                return Err(NarrowError::Unknown { path: format!("applications[{i}]"), what: "unknown application" });
            }
            if !rules.iter().any(|r| r.application.matches(app)) {
                return Err(NarrowError::WouldWiden {
                    path: format!("applications[{i}]"),
                    what: "application is not granted",
                });
            }
        }
        rules = rules
            .iter()
            .flat_map(|r| {
                apps.iter().filter(|a| r.application.matches(a)).map(move |a| AccessRule {
                    id: a.as_str().into(),
                    application: Pattern::Exact(a.as_str().into()),
                    ..r.clone()
                })
            })
            .collect();
    }
    if let Some(roles) = &req.roles {
        for (i, role) in roles.iter().enumerate() {
            if !manifest.applications.iter().any(|a| a.roles.iter().any(|set| set.roles.contains(role))) {
                return Err(NarrowError::Unknown { path: format!("roles[{i}]"), what: "unknown role" });
            }
            if !rules.iter().any(|r| r.roles.iter().any(|p| p.matches(role))) {
                return Err(NarrowError::WouldWiden { path: format!("roles[{i}]"), what: "role is not granted" });
            }
        }
        rules = rules
            .into_iter()
            .filter_map(|mut r| {
                let kept: Vec<Pattern> = roles
                    .iter()
                    .filter(|role| r.roles.iter().any(|p| p.matches(role)))
                    .map(|role| Pattern::parse(role))
                    .collect();
                (!kept.is_empty()).then(|| {
                    r.roles = kept;
                    r
                })
            })
            .collect();
    }
    if let Some(resources) = &req.resources {
        let wanted: Vec<ResourceRule> = resources
            .iter()
            .enumerate()
            .map(|(i, (entity, id))| {
                if entity != "*"
                    && !manifest.applications.iter().any(|a| a.entities.iter().any(|e| e.entity == *entity))
                {
                    return Err(NarrowError::Unknown {
                        path: format!("resources[{i}].entity"),
                        what: "unknown entity",
                    });
                }
                if id.is_empty() {
                    return Err(NarrowError::Unknown { path: format!("resources[{i}].id"), what: "an id is required" });
                }
                Ok(ResourceRule {
                    entity: Pattern::parse(entity),
                    owner: super::rules::DEFAULT_OWNER.into(),
                    id: Pattern::parse(id),
                })
            })
            .collect::<Result<_, _>>()?;
        for (i, w) in wanted.iter().enumerate() {
            if !rules.iter().any(|r| resource_covered(&r.resources, w)) {
                return Err(NarrowError::WouldWiden {
                    path: format!("resources[{i}]"),
                    what: "resource is not granted",
                });
            }
        }
        rules = rules
            .into_iter()
            .filter_map(|mut r| {
                let kept: Vec<ResourceRule> =
                    wanted.iter().filter(|w| resource_covered(&r.resources, w)).cloned().collect();
                (!kept.is_empty()).then(|| {
                    r.resources = kept;
                    r
                })
            })
            .collect();
    }
    if rules.is_empty() {
        return Err(NarrowError::Empty);
    }
    // Defence in depth: the result must pass the detailed check too.
    for rule in &rules {
        if !parent.iter().any(|p| uncovered(p, rule).is_none()) {
            return Err(NarrowError::WouldWiden {
                path: "accessRules".into(),
                what: "the result is not within the parent",
            });
        }
    }
    Ok(rules)
}

/// Elements of a rule the manifest must know (wildcards always pass).
fn check_known(rule: &AccessRule, manifest: &Manifest, path: &str) -> Result<(), NarrowError> {
    let unknown = |p: String, what: &'static str| Err(NarrowError::Unknown { path: format!("{path}.{p}"), what });
    let apps: Vec<_> = match &rule.application {
        Pattern::Any => manifest.applications.iter().collect(),
        Pattern::Exact(a) => {
            let found: Vec<_> = manifest.applications.iter().filter(|x| x.application == **a).collect();
            if found.is_empty() {
                return unknown("application".into(), "unknown application");
            }
            found
        }
    };
    if let Pattern::Exact(s) = &rule.service
        && !apps.iter().any(|a| a.services.iter().any(|d| d.service == **s))
    {
        return unknown("service".into(), "unknown service");
    }
    for (gi, g) in rule.method_groups.iter().enumerate() {
        let groups: Vec<_> =
            apps.iter().flat_map(|a| a.method_groups.iter()).filter(|d| g.group.matches(&d.group)).collect();
        if groups.is_empty() {
            return unknown(format!("methodGroups[{gi}].group"), "unknown method group");
        }
        for (mi, m) in g.methods.iter().enumerate() {
            let methods: Vec<_> =
                groups.iter().flat_map(|d| d.methods.iter()).filter(|d| m.method.matches(&d.method)).collect();
            if methods.is_empty() {
                return unknown(format!("methodGroups[{gi}].methods[{mi}].method"), "unknown method");
            }
            for (si, s) in m.scopes.iter().flatten().enumerate() {
                if let Pattern::Exact(name) = s
                    && !methods.iter().any(|d| d.scopes.iter().any(|x| x == &**name))
                {
                    return unknown(format!("methodGroups[{gi}].methods[{mi}].scopes[{si}]"), "unknown scope");
                }
            }
        }
    }
    for (i, r) in rule.roles.iter().enumerate() {
        if let Pattern::Exact(name) = r
            && !apps.iter().any(|a| a.roles.iter().any(|set| set.roles.iter().any(|x| x == &**name)))
        {
            return unknown(format!("roles[{i}]"), "unknown role");
        }
    }
    for (i, r) in rule.resources.iter().enumerate() {
        if let Pattern::Exact(e) = &r.entity
            && !apps.iter().any(|a| a.entities.iter().any(|x| x.entity == **e))
        {
            return unknown(format!("resources[{i}].entity"), "unknown entity");
        }
    }
    Ok(())
}

/// The child's expiry: `hours` from `now` (fractions allowed), never after
/// the parent's: asking for more is refused. Without `hours`, 24 hours or
/// the parent's remaining life, whichever is shorter.
pub fn child_expiry(parent_exp: Option<u64>, now: UnixTime, hours: Option<f64>) -> Result<UnixTime, NarrowError> {
    // A parent's expiry past the range of time ends after any child's.
    let parent_exp = parent_exp.map(UnixTime::clamped);
    let Some(hours) = hours else {
        let default = now.saturating_add(std::time::Duration::from_secs(24 * 3600));
        return Ok(parent_exp.map_or(default, |p| p.min(default)));
    };
    if !hours.is_finite() || hours <= 0.0 || hours > 24.0 * 366.0 * 10.0 {
        return Err(NarrowError::BadValidity);
    }
    let validity =
        std::time::Duration::try_from_secs_f64((hours * 3600.0).round()).map_err(|_| NarrowError::BadValidity)?;
    let exp = now.saturating_add(validity);
    match parent_exp {
        Some(p) if exp > p => {
            Err(NarrowError::WouldWiden { path: "validityInHours".into(), what: "the token would outlive its parent" })
        }
        _ => Ok(exp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::manifest::{Application, EntityDef, MethodDef, MethodGroupDef, RoleSetDef, ServiceDef};
    use crate::policy::rules::{Decision, MethodGroupRule, RouteFacts, evaluate};
    use proptest::prelude::*;

    const APPS: [&str; 2] = ["A", "B"];
    const SERVICES: [&str; 2] = ["rest", "ws"];
    const GROUPS: [&str; 2] = ["g1", "g2"];
    const METHODS: [&str; 2] = ["m1", "m2"];
    const SCOPES: [&str; 2] = ["s1", "s2"];
    const ROLES: [&str; 2] = ["reader", "writer"];
    const IDS: [&str; 2] = ["a1", "a2"];

    fn manifest() -> Manifest {
        let app = |name: &str| Application {
            mode: None,
            rate_limit: None,
            upstream: None,
            hosts: Vec::new(),
            id: name.into(),
            application: name.into(),
            description: String::new(),
            services: SERVICES
                .iter()
                .map(|s| ServiceDef { service: s.to_string(), description: String::new() })
                .collect(),
            method_groups: GROUPS
                .iter()
                .map(|g| MethodGroupDef {
                    group: g.to_string(),
                    description: String::new(),
                    methods: METHODS
                        .iter()
                        .map(|m| MethodDef {
                            method: m.to_string(),
                            description: String::new(),
                            scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
                        })
                        .collect(),
                })
                .collect(),
            roles: vec![RoleSetDef {
                roles: ROLES.iter().map(|r| r.to_string()).collect(),
                description: String::new(),
            }],
            entities: vec![EntityDef { entity: "account".into(), description: String::new(), id_description: None }],
            entity_composition_description: None,
        };
        Manifest { applications: APPS.iter().map(|a| app(a)).collect(), routes: vec![] }
    }

    fn p(s: &str) -> Pattern {
        Pattern::parse(s)
    }

    fn rule(
        app: &str,
        service: &str,
        methods: &[(&str, &str, Option<&[&str]>)],
        roles: &[&str],
        res: &[(&str, &str)],
    ) -> AccessRule {
        AccessRule {
            id: app.into(),
            application: p(app),
            service: p(service),
            method_groups: methods
                .iter()
                .map(|(g, m, sc)| MethodGroupRule {
                    group: p(g),
                    methods: vec![MethodRule { method: p(m), scopes: sc.map(|s| s.iter().map(|x| p(x)).collect()) }],
                })
                .collect(),
            roles: roles.iter().map(|r| p(r)).collect(),
            resources: res
                .iter()
                .map(|(e, i)| ResourceRule { entity: p(e), owner: "$USER_ID$".into(), id: p(i) })
                .collect(),
        }
    }

    fn parent() -> Vec<AccessRule> {
        vec![
            rule("A", "*", &[("*", "*", None)], &["reader", "writer"], &[("*", "*")]),
            rule("B", "rest", &[("g1", "m1", Some(&["s1"]))], &["reader"], &[("account", "a1")]),
        ]
    }

    fn widen(path: &str) -> Result<(), String> {
        Err(format!("widen {path}"))
    }

    fn unknown(path: &str) -> Result<(), String> {
        Err(format!("unknown {path}"))
    }

    fn outcome(r: Result<Vec<AccessRule>, NarrowError>) -> Result<(), String> {
        match r {
            Ok(_) => Ok(()),
            Err(NarrowError::WouldWiden { path, .. }) => Err(format!("widen {path}")),
            Err(NarrowError::Unknown { path, .. }) => Err(format!("unknown {path}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn detailed_narrowing_table() {
        let m = manifest();
        let all: &[(&str, &str, Option<&[&str]>)] = &[("*", "*", None)];
        let cases: Vec<(&str, Vec<AccessRule>, Result<(), String>)> = vec![
            ("same as parent", parent(), Ok(())),
            (
                "one method of A",
                vec![rule("A", "rest", &[("g1", "m2", Some(&["s2"]))], &["reader"], &[("account", "a2")])],
                Ok(()),
            ),
            (
                "B as granted",
                vec![rule("B", "rest", &[("g1", "m1", Some(&["s1"]))], &["reader"], &[("account", "a1")])],
                Ok(()),
            ),
            (
                "add an application",
                vec![rule("*", "*", all, &["reader"], &[("*", "*")])],
                widen("accessRules[0].application"),
            ),
            (
                "add a service",
                vec![rule("B", "ws", &[("g1", "m1", Some(&["s1"]))], &["reader"], &[("account", "a1")])],
                widen("accessRules[0].service"),
            ),
            (
                "wildcard service where parent is specific",
                vec![rule("B", "*", &[("g1", "m1", Some(&["s1"]))], &["reader"], &[("account", "a1")])],
                widen("accessRules[0].service"),
            ),
            (
                "another method",
                vec![rule("B", "rest", &[("g1", "m2", Some(&["s1"]))], &["reader"], &[("account", "a1")])],
                widen("accessRules[0].methodGroups[0].methods[0]"),
            ),
            (
                "wildcard method",
                vec![rule("B", "rest", &[("g1", "*", Some(&["s1"]))], &["reader"], &[("account", "a1")])],
                widen("accessRules[0].methodGroups[0].methods[0]"),
            ),
            (
                "all scopes where parent lists some",
                vec![rule("B", "rest", &[("g1", "m1", None)], &["reader"], &[("account", "a1")])],
                widen("accessRules[0].methodGroups[0].methods[0]"),
            ),
            (
                "another scope",
                vec![rule("B", "rest", &[("g1", "m1", Some(&["s2"]))], &["reader"], &[("account", "a1")])],
                widen("accessRules[0].methodGroups[0].methods[0]"),
            ),
            (
                "add a role",
                vec![rule("B", "rest", &[("g1", "m1", Some(&["s1"]))], &["writer"], &[("account", "a1")])],
                widen("accessRules[0].roles[0]"),
            ),
            (
                "wildcard role",
                vec![rule("B", "rest", &[("g1", "m1", Some(&["s1"]))], &["*"], &[("account", "a1")])],
                widen("accessRules[0].roles[0]"),
            ),
            (
                "another resource",
                vec![rule("B", "rest", &[("g1", "m1", Some(&["s1"]))], &["reader"], &[("account", "a2")])],
                widen("accessRules[0].resources[0]"),
            ),
            (
                "wildcard resource",
                vec![rule("B", "rest", &[("g1", "m1", Some(&["s1"]))], &["reader"], &[("account", "*")])],
                widen("accessRules[0].resources[0]"),
            ),
            (
                "unknown application",
                vec![rule("C", "rest", all, &["reader"], &[("*", "*")])],
                unknown("accessRules[0].application"),
            ),
            (
                "unknown group",
                vec![rule("A", "rest", &[("nope", "*", None)], &["reader"], &[("*", "*")])],
                unknown("accessRules[0].methodGroups[0].group"),
            ),
            (
                "unknown scope",
                vec![rule("A", "rest", &[("g1", "m1", Some(&["s9"]))], &["reader"], &[("*", "*")])],
                unknown("accessRules[0].methodGroups[0].methods[0].scopes[0]"),
            ),
            (
                "unknown role",
                vec![rule("A", "rest", all, &["admin"], &[("*", "*")])],
                unknown("accessRules[0].roles[0]"),
            ),
            (
                "unknown entity",
                vec![rule("A", "rest", all, &["reader"], &[("planet", "*")])],
                unknown("accessRules[0].resources[0].entity"),
            ),
            ("nothing", vec![], Err("the narrowed token would grant nothing".into())),
        ];
        for (name, child, want) in cases {
            assert_eq!(outcome(narrow_detailed(&parent(), &child, &m)), want, "{name}");
        }
    }

    #[test]
    fn simplified_narrowing_table() {
        let m = manifest();
        let s = |apps: Option<&[&str]>, roles: Option<&[&str]>, res: Option<&[(&str, &str)]>| Simplified {
            applications: apps.map(|a| a.iter().map(|x| x.to_string()).collect()),
            roles: roles.map(|a| a.iter().map(|x| x.to_string()).collect()),
            resources: res.map(|a| a.iter().map(|(e, i)| (e.to_string(), i.to_string())).collect()),
        };
        let ok = narrow_simplified(&parent(), &s(Some(&["A"]), None, None), &m).expect("apps");
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].application, p("A"));
        let ok = narrow_simplified(&parent(), &s(None, Some(&["writer"]), None), &m).expect("roles");
        assert_eq!((ok.len(), &ok[0].roles), (1, &vec![p("writer")]));
        let ok = narrow_simplified(&parent(), &s(None, None, Some(&[("account", "a1")])), &m).expect("resources");
        assert_eq!(ok.len(), 2, "both rules grant account a1");
        assert!(ok.iter().all(|r| r.resources == vec![ResourceRule::parse("account:$USER_ID$:a1").expect("res")]));
        let cases: Vec<(&str, Simplified, Result<(), String>)> = vec![
            ("unknown application", s(Some(&["C"]), None, None), unknown("applications[0]")),
            ("unknown role", s(None, Some(&["admin"]), None), unknown("roles[0]")),
            ("unknown entity", s(None, None, Some(&[("planet", "x")])), unknown("resources[0].entity")),
            ("role the parent lacks for B only", s(Some(&["B"]), Some(&["writer"]), None), widen("roles[0]")),
            ("resource no rule covers", s(Some(&["B"]), None, Some(&[("account", "a2")])), widen("resources[0]")),
            (
                "wildcard resource over a specific one",
                s(Some(&["B"]), None, Some(&[("account", "*")])),
                widen("resources[0]"),
            ),
            ("empty application list", s(Some(&[]), None, None), Err("the narrowed token would grant nothing".into())),
        ];
        for (name, req, want) in cases {
            assert_eq!(outcome(narrow_simplified(&parent(), &req, &m)), want, "{name}");
        }
    }

    #[test]
    fn validity_never_outlives_the_parent() {
        let t = UnixTime::clamped;
        assert_eq!(child_expiry(None, t(1000), None), Ok(t(1000 + 24 * 3600)));
        assert_eq!(child_expiry(Some(5000), t(1000), None), Ok(t(5000)), "the default never outlives the parent");
        assert_eq!(child_expiry(Some(10_000), t(1000), Some(0.5)), Ok(t(2800)));
        assert!(matches!(child_expiry(Some(2000), t(1000), Some(1.0)), Err(NarrowError::WouldWiden { .. })));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(matches!(child_expiry(None, t(1000), Some(bad)), Err(NarrowError::BadValidity)), "{bad}");
        }
        // A parent that ends past the range of time: the child ends within it.
        assert_eq!(child_expiry(Some(u64::MAX), UnixTime::MAX, Some(1.0)), Ok(UnixTime::MAX));
    }

    // ---- properties -------------------------------------------------------

    fn pat(values: &'static [&'static str]) -> impl Strategy<Value = Pattern> {
        prop_oneof![1 => Just(Pattern::Any), 3 => proptest::sample::select(values).prop_map(Pattern::parse)]
    }

    fn rule_strategy() -> impl Strategy<Value = AccessRule> {
        let method = (pat(&METHODS), proptest::option::weighted(0.6, proptest::collection::vec(pat(&SCOPES), 1..3)))
            .prop_map(|(method, scopes)| MethodRule { method, scopes });
        let group = (pat(&GROUPS), proptest::collection::vec(method, 1..3))
            .prop_map(|(group, methods)| MethodGroupRule { group, methods });
        let resource = (prop_oneof![Just(Pattern::Any), Just(Pattern::parse("account"))], pat(&IDS))
            .prop_map(|(entity, id)| ResourceRule { entity, owner: "$USER_ID$".into(), id });
        (
            pat(&APPS),
            pat(&SERVICES),
            proptest::collection::vec(group, 1..3),
            proptest::collection::vec(pat(&ROLES), 1..3),
            proptest::collection::vec(resource, 1..3),
        )
            .prop_map(|(application, service, method_groups, roles, resources)| AccessRule {
                id: "r".into(),
                application,
                service,
                method_groups,
                roles,
                resources,
            })
    }

    struct Fact {
        app: &'static str,
        service: &'static str,
        group: &'static str,
        method: &'static str,
        scopes: Vec<Box<str>>,
        roles: Vec<Box<str>>,
        resource: Option<(&'static str, &'static str)>,
    }

    impl Fact {
        fn facts(&self) -> RouteFacts<'_> {
            RouteFacts {
                application: self.app,
                service: self.service,
                group: self.group,
                method: self.method,
                scopes: &self.scopes,
                roles: &self.roles,
                resource: self.resource,
                tenant: None,
            }
        }
    }

    /// Every route the universe can express.
    fn universe() -> Vec<Fact> {
        let mut out = Vec::new();
        let scope_sets: [&[&str]; 3] = [&[], &["s1"], &["s1", "s2"]];
        let role_sets: [&[&str]; 3] = [&["reader"], &["writer"], &["reader", "writer"]];
        let resources = [None, Some(("account", "a1")), Some(("account", "a2"))];
        for app in APPS {
            for service in SERVICES {
                for group in GROUPS {
                    for method in METHODS {
                        for scopes in scope_sets {
                            for roles in role_sets {
                                for resource in resources {
                                    out.push(Fact {
                                        app,
                                        service,
                                        group,
                                        method,
                                        scopes: scopes.iter().map(|s| (*s).into()).collect(),
                                        roles: roles.iter().map(|s| (*s).into()).collect(),
                                        resource,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// A random narrowing of one of the parent's rules: wildcards replaced by
    /// names, lists thinned, scope lists introduced or thinned.
    fn derive(parent: &[AccessRule], seed: u64) -> AccessRule {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut r = parent[(next() % parent.len() as u64) as usize].clone();
        let specialize = |pat: &mut Pattern, values: &[&str], n: u64| {
            if pat.is_any() && n.is_multiple_of(2) {
                *pat = Pattern::parse(values[(n / 2 % values.len() as u64) as usize]);
            }
        };
        specialize(&mut r.application, &APPS, next());
        specialize(&mut r.service, &SERVICES, next());
        for g in &mut r.method_groups {
            specialize(&mut g.group, &GROUPS, next());
            for m in &mut g.methods {
                specialize(&mut m.method, &METHODS, next());
                let n = next();
                match &mut m.scopes {
                    None if n % 3 == 0 => m.scopes = Some(vec![Pattern::parse(SCOPES[(n / 3 % 2) as usize])]),
                    Some(list) if list.len() > 1 && n % 2 == 0 => {
                        list.pop();
                    }
                    _ => {}
                }
            }
        }
        if r.roles.len() > 1 && next() % 2 == 0 {
            r.roles.pop();
        }
        for role in &mut r.roles {
            specialize(role, &ROLES, next());
        }
        for res in &mut r.resources {
            let n = next();
            if res.entity.is_any() && n % 2 == 0 {
                res.entity = Pattern::parse("account");
            }
            specialize(&mut res.id, &IDS, next());
        }
        r
    }

    fn allows(rules: &[AccessRule], f: &Fact) -> bool {
        matches!(evaluate(rules, &[], &f.facts()), Decision::Allow(_))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever a detailed request asks, an accepted child never allows a
        /// request its parent denies.
        #[test]
        fn a_detailed_child_never_allows_what_the_parent_denies(
            parent in proptest::collection::vec(rule_strategy(), 1..4),
            child in proptest::collection::vec(rule_strategy(), 1..4),
        ) {
            if let Ok(child) = narrow_detailed(&parent, &child, &manifest()) {
                for f in universe() {
                    prop_assert!(!allows(&child, &f) || allows(&parent, &f));
                }
            }
        }

        /// The same for children derived from the parent by random narrowing
        /// steps, now and then with a random widening step mixed in, so that
        /// most requests are accepted and the property has teeth.
        #[test]
        fn a_derived_child_never_allows_what_the_parent_denies(
            parent in proptest::collection::vec(rule_strategy(), 1..4),
            seeds in proptest::collection::vec(any::<u64>(), 1..4),
            stray in proptest::option::weighted(0.2, rule_strategy()),
        ) {
            let mut child: Vec<AccessRule> = seeds.iter().map(|s| derive(&parent, *s)).collect();
            child.extend(stray);
            if let Ok(child) = narrow_detailed(&parent, &child, &manifest()) {
                for f in universe() {
                    prop_assert!(!allows(&child, &f) || allows(&parent, &f));
                }
            }
        }

        /// A simplified child never allows what the parent denies, and keeps
        /// every request the parent allows within what was asked for.
        #[test]
        fn a_simplified_child_is_exactly_the_kept_part_of_the_parent(
            parent in proptest::collection::vec(rule_strategy(), 1..4),
            apps in proptest::option::of(proptest::sample::subsequence(APPS.to_vec(), 1..=2)),
            roles in proptest::option::of(proptest::sample::subsequence(ROLES.to_vec(), 1..=2)),
            resources in proptest::option::of(proptest::collection::vec(
                (prop_oneof![Just("*"), Just("account")], prop_oneof![Just("*"), Just("a1"), Just("a2")]), 1..3)),
        ) {
            let req = Simplified {
                applications: apps.clone().map(|a| a.iter().map(|s| s.to_string()).collect()),
                roles: roles.clone().map(|a| a.iter().map(|s| s.to_string()).collect()),
                resources: resources.clone().map(|a| a.iter().map(|(e, i)| (e.to_string(), i.to_string())).collect()),
            };
            let Ok(child) = narrow_simplified(&parent, &req, &manifest()) else { return Ok(()) };
            let wanted: Option<Vec<ResourceRule>> = resources.map(|rs| rs.iter().map(|(e, i)| ResourceRule {
                entity: Pattern::parse(e), owner: "$USER_ID$".into(), id: Pattern::parse(i) }).collect());
            for f in universe() {
                let c = allows(&child, &f);
                prop_assert!(!c || allows(&parent, &f), "child allows what the parent denies");
                let kept = parent.iter().any(|p| {
                    allows(std::slice::from_ref(p), &f)
                        && apps.as_ref().is_none_or(|a| a.contains(&f.app))
                        && roles.as_ref().is_none_or(|rs| rs.iter().any(|r| {
                            f.roles.iter().any(|fr| &**fr == *r) && p.roles.iter().any(|pr| pr.matches(r))
                        }))
                        && wanted.as_ref().is_none_or(|ws| ws.iter().any(|w| {
                            resource_covered(&p.resources, w)
                                && match f.resource {
                                    Some((e, id)) => w.entity.matches(e) && w.id.matches(id),
                                    None => w.entity.is_any() && w.id.is_any(),
                                }
                        }))
                });
                prop_assert!(!kept || c, "a kept request is no longer allowed");
            }
        }
    }
}
