//! Access rules and their evaluation against a route.
//!
//! An access rule is MetaApi's shape: application, service, method groups
//! (with methods and optional scopes), roles and resources, `*` a wildcard at
//! every level. A request is allowed when one rule covers every fact of its
//! route.

use super::tenant::TenantPermission;
use crate::reason::Reason;

/// One level of a rule: a wildcard or an exact name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    Any,
    Exact(Box<str>),
}

impl Pattern {
    pub fn parse(s: &str) -> Self {
        if s == "*" { Pattern::Any } else { Pattern::Exact(s.into()) }
    }

    #[inline]
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(v) => **v == *value,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Pattern::Any => "*",
            Pattern::Exact(v) => v,
        }
    }

    pub fn is_any(&self) -> bool {
        matches!(self, Pattern::Any)
    }
}

/// A method inside a method group; `scopes: None` grants every scope of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodRule {
    pub method: Pattern,
    pub scopes: Option<Vec<Pattern>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodGroupRule {
    pub group: Pattern,
    pub methods: Vec<MethodRule>,
}

/// A resource: `entity:owner:id` in MetaApi's string form. The owner is kept
/// for the wire form; evaluation looks at entity and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRule {
    pub entity: Pattern,
    pub owner: Box<str>,
    pub id: Pattern,
}

/// The owner MetaApi writes into resource strings: "the token's user".
pub const DEFAULT_OWNER: &str = "$USER_ID$";

impl ResourceRule {
    pub fn any() -> Self {
        ResourceRule { entity: Pattern::Any, owner: DEFAULT_OWNER.into(), id: Pattern::Any }
    }

    /// Parse `entity:owner:id`; the id may itself contain ':'.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, ':');
        let entity = parts.next().filter(|e| !e.is_empty())?;
        let owner = parts.next()?;
        let id = parts.next().filter(|i| !i.is_empty())?;
        Some(ResourceRule { entity: Pattern::parse(entity), owner: owner.into(), id: Pattern::parse(id) })
    }

    /// The `entity:owner:id` form.
    pub fn to_wire(&self) -> String {
        format!("{}:{}:{}", self.entity.as_str(), self.owner, self.id.as_str())
    }
}

/// One access rule of a grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRule {
    pub id: Box<str>,
    pub application: Pattern,
    pub service: Pattern,
    pub method_groups: Vec<MethodGroupRule>,
    pub roles: Vec<Pattern>,
    pub resources: Vec<ResourceRule>,
}

impl AccessRule {
    /// A rule granting everything: what an admin token carries.
    pub fn everything() -> Self {
        AccessRule {
            id: "*".into(),
            application: Pattern::Any,
            service: Pattern::Any,
            method_groups: vec![MethodGroupRule {
                group: Pattern::Any,
                methods: vec![MethodRule { method: Pattern::Any, scopes: None }],
            }],
            roles: vec![Pattern::Any],
            resources: vec![ResourceRule::any()],
        }
    }
}

/// The facts of a matched route that rules are evaluated against.
#[derive(Clone, Copy, Debug)]
pub struct RouteFacts<'a> {
    pub application: &'a str,
    pub service: &'a str,
    pub group: &'a str,
    pub method: &'a str,
    /// Scopes the route requires; all must be granted.
    pub scopes: &'a [Box<str>],
    /// Roles that may call the route; one must be granted.
    pub roles: &'a [Box<str>],
    /// `(entity, id)` of the resource the request touches, if any.
    pub resource: Option<(&'a str, &'a str)>,
    /// `(tenant, action)` when the route acts on a tenant: tenant
    /// permissions may allow it where no access rule does.
    pub tenant: Option<(&'a str, &'a str)>,
}

/// Why no rule allowed the request, with what was missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    /// For `insufficient_role`: the roles any one of which would do.
    pub missing_roles: Vec<Box<str>>,
    /// For `insufficient_scope`: the required scopes not granted.
    pub missing_scopes: Vec<Box<str>>,
    /// The rule that came closest (index into the grant's rules), if any.
    pub closest: Option<usize>,
}

impl Denial {
    pub fn new(reason: Reason) -> Self {
        Denial { reason, missing_roles: Vec::new(), missing_scopes: Vec::new(), closest: None }
    }
}

/// What allowed a request: which of the grant's access rules, or which
/// entry of its tenant permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    Rule(usize),
    TenantPermission(usize),
}

/// The outcome of evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(Allowed),
    Deny(Denial),
}

/// How far a rule got before it failed; a higher stage is a closer miss, and
/// the closest miss names the denial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Application,
    Service,
    Method,
    Resource,
    Role,
    Scope,
    Passed,
}

impl Stage {
    fn reason(self) -> Reason {
        match self {
            Stage::Application => Reason::ApplicationNotAllowed,
            Stage::Service => Reason::ServiceNotAllowed,
            Stage::Method => Reason::MethodNotGranted,
            Stage::Resource => Reason::ResourceNotAllowed,
            Stage::Role => Reason::InsufficientRole,
            Stage::Scope | Stage::Passed => Reason::InsufficientScope,
        }
    }
}

/// Evaluate a grant against a route: allowed when some access rule covers
/// the application, service, method, resource, one of the route's roles and
/// all of its required scopes; or, on a route acting on a tenant, when the
/// first tenant-permission entry for that tenant (Crafter's, not a union)
/// allows the route's action. A token with tenant permissions that do not
/// allow it is denied for that (`tenant_not_allowed`); one without any
/// gets the access rules' closest miss.
pub fn evaluate(rules: &[AccessRule], tenants: &[TenantPermission], facts: &RouteFacts<'_>) -> Decision {
    let denial = match evaluate_rules(rules, facts) {
        Ok(i) => return Decision::Allow(Allowed::Rule(i)),
        Err(denial) => denial,
    };
    if let Some((tenant, action)) = facts.tenant {
        if let Some(i) = super::tenant::deciding(tenants, tenant)
            && tenants[i].allowed_actions.iter().any(|a| a == "*" || a == action)
        {
            return Decision::Allow(Allowed::TenantPermission(i));
        }
        if !tenants.is_empty() {
            return Decision::Deny(Denial::new(Reason::TenantNotAllowed));
        }
    }
    Decision::Deny(denial)
}

/// The index of the first rule that allows the route, or the closest miss.
fn evaluate_rules(rules: &[AccessRule], facts: &RouteFacts<'_>) -> Result<usize, Denial> {
    let mut best: Option<(Stage, usize)> = None;
    for (i, rule) in rules.iter().enumerate() {
        let stage = rule_stage(rule, facts);
        if stage == Stage::Passed {
            return Ok(i);
        }
        if best.is_none_or(|(s, _)| stage > s) {
            best = Some((stage, i));
        }
    }
    // Fail closed: no rule (or none that passed) means deny.
    let (stage, idx) = best.unwrap_or((Stage::Application, 0));
    let mut denial = Denial::new(stage.reason());
    denial.closest = best.map(|(_, i)| i);
    match stage {
        Stage::Role => denial.missing_roles = facts.roles.to_vec(),
        Stage::Scope => {
            if let Some(rule) = rules.get(idx) {
                denial.missing_scopes =
                    facts.scopes.iter().filter(|s| !scope_granted(rule, facts, s)).cloned().collect();
            }
        }
        _ => {}
    }
    Err(denial)
}

/// The first dimension in which a rule fails a route (explain's words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Application,
    Service,
    Group,
    Method,
    Resource,
    Role,
    Scope,
}

impl Dimension {
    /// The dimension in explain's words.
    pub fn word(self) -> &'static str {
        match self {
            Dimension::Application => "application",
            Dimension::Service => "service",
            Dimension::Group => "group",
            Dimension::Method => "method",
            Dimension::Resource => "resource",
            Dimension::Role => "role",
            Dimension::Scope => "scope",
        }
    }
}

/// Why a rule fails a route on its first failing dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Miss {
    /// The route needs a value the rule does not grant (it grants others).
    NotGranted,
    /// The rule grants nothing at all on this dimension (an empty list).
    RuleGrantsNone,
    /// The route names no single value on this dimension (a route without
    /// a resource may touch any of them): only the wildcard covers it.
    RouteNamesNone,
}

/// How one rule fails a route: the first dimension that fails, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub dimension: Dimension,
    pub miss: Miss,
}

/// How one rule fares against a route: `None` if it allows it, else the
/// first dimension that fails and why — the same order and the same
/// judgement as [`evaluate`], told apart where "fails" alone would mislead
/// (a route that names no resource; a rule that grants no role at all).
pub fn first_failure(rule: &AccessRule, facts: &RouteFacts<'_>) -> Option<Failure> {
    let groups = || rule.method_groups.iter().filter(|g| g.group.matches(facts.group));
    let (dimension, miss) = match rule_stage(rule, facts) {
        Stage::Passed => return None,
        Stage::Application => (Dimension::Application, Miss::NotGranted),
        Stage::Service => (Dimension::Service, Miss::NotGranted),
        Stage::Method if rule.method_groups.is_empty() => (Dimension::Group, Miss::RuleGrantsNone),
        Stage::Method if groups().next().is_none() => (Dimension::Group, Miss::NotGranted),
        Stage::Method if groups().all(|g| g.methods.is_empty()) => (Dimension::Method, Miss::RuleGrantsNone),
        Stage::Method => (Dimension::Method, Miss::NotGranted),
        Stage::Resource if rule.resources.is_empty() => (Dimension::Resource, Miss::RuleGrantsNone),
        Stage::Resource if facts.resource.is_none() => (Dimension::Resource, Miss::RouteNamesNone),
        Stage::Resource => (Dimension::Resource, Miss::NotGranted),
        Stage::Role if rule.roles.is_empty() => (Dimension::Role, Miss::RuleGrantsNone),
        Stage::Role if facts.roles.is_empty() => (Dimension::Role, Miss::RouteNamesNone),
        Stage::Role => (Dimension::Role, Miss::NotGranted),
        Stage::Scope => {
            let none = matching_methods(rule, facts).all(|m| m.scopes.as_ref().is_some_and(Vec::is_empty));
            (Dimension::Scope, if none { Miss::RuleGrantsNone } else { Miss::NotGranted })
        }
    };
    Some(Failure { dimension, miss })
}

fn rule_stage(rule: &AccessRule, facts: &RouteFacts<'_>) -> Stage {
    if !rule.application.matches(facts.application) {
        return Stage::Application;
    }
    if !rule.service.matches(facts.service) {
        return Stage::Service;
    }
    if !matching_methods(rule, facts).any(|_| true) {
        return Stage::Method;
    }
    let resource_ok = match facts.resource {
        Some((entity, id)) => rule.resources.iter().any(|r| r.entity.matches(entity) && r.id.matches(id)),
        // A route that names no single resource may touch any of them: only a
        // rule that grants every resource covers it (fail closed).
        None => rule.resources.iter().any(|r| r.entity.is_any() && r.id.is_any()),
    };
    if !resource_ok {
        return Stage::Resource;
    }
    let role_ok = rule.roles.iter().any(|p| match p {
        Pattern::Any => true,
        Pattern::Exact(r) => facts.roles.iter().any(|want| want == r),
    });
    if !role_ok {
        return Stage::Role;
    }
    if !facts.scopes.iter().all(|s| scope_granted(rule, facts, s)) {
        return Stage::Scope;
    }
    Stage::Passed
}

fn matching_methods<'r>(rule: &'r AccessRule, facts: &RouteFacts<'_>) -> impl Iterator<Item = &'r MethodRule> {
    let group = facts.group;
    let method = facts.method;
    rule.method_groups
        .iter()
        .filter(move |g| g.group.matches(group))
        .flat_map(|g| g.methods.iter())
        .filter(move |m| m.method.matches(method))
}

/// A scope is granted when some matching method entry has no scope list (all
/// scopes) or lists it (or `*`).
fn scope_granted(rule: &AccessRule, facts: &RouteFacts<'_>, scope: &str) -> bool {
    matching_methods(rule, facts).any(|m| match &m.scopes {
        None => true,
        Some(list) => list.iter().any(|p| p.matches(scope)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(method, scopes)` pairs of a method group.
    type Methods<'a> = &'a [(&'a str, Option<&'a [&'a str]>)];

    fn rule(
        app: &str,
        service: &str,
        groups: &[(&str, Methods<'_>)],
        roles: &[&str],
        resources: &[&str],
    ) -> AccessRule {
        AccessRule {
            id: app.into(),
            application: Pattern::parse(app),
            service: Pattern::parse(service),
            method_groups: groups
                .iter()
                .map(|(g, ms)| MethodGroupRule {
                    group: Pattern::parse(g),
                    methods: ms
                        .iter()
                        .map(|(m, sc)| MethodRule {
                            method: Pattern::parse(m),
                            scopes: sc.map(|s| s.iter().map(|x| Pattern::parse(x)).collect()),
                        })
                        .collect(),
                })
                .collect(),
            roles: roles.iter().map(|r| Pattern::parse(r)).collect(),
            resources: resources.iter().map(|r| ResourceRule::parse(r).expect("resource")).collect(),
        }
    }

    fn b(v: &[&str]) -> Vec<Box<str>> {
        v.iter().map(|s| (*s).into()).collect()
    }

    struct Case {
        name: &'static str,
        rules: Vec<AccessRule>,
        want: Result<usize, (Reason, Vec<&'static str>, Vec<&'static str>)>,
    }

    #[test]
    fn evaluation_table() {
        let roles = b(&["reader", "writer"]);
        let scopes = b(&["dealing"]);
        let facts = RouteFacts {
            application: "mt-manager-api",
            service: "rest",
            group: "deals",
            method: "openPosition",
            scopes: &scopes,
            roles: &roles,
            resource: Some(("account", "acc-1")),
            tenant: None,
        };
        let all: &[(&str, Option<&[&str]>)] = &[("*", None)];
        let cases = vec![
            Case { name: "no rules", rules: vec![], want: Err((Reason::ApplicationNotAllowed, vec![], vec![])) },
            Case { name: "everything", rules: vec![AccessRule::everything()], want: Ok(0) },
            Case {
                name: "other application",
                rules: vec![rule("metastats-api", "*", &[("*", all)], &["*"], &["*:$USER_ID$:*"])],
                want: Err((Reason::ApplicationNotAllowed, vec![], vec![])),
            },
            Case {
                name: "wrong service",
                rules: vec![rule("mt-manager-api", "ws", &[("*", all)], &["*"], &["*:$USER_ID$:*"])],
                want: Err((Reason::ServiceNotAllowed, vec![], vec![])),
            },
            Case {
                name: "other method",
                rules: vec![rule("*", "*", &[("deals", &[("closePosition", None)])], &["*"], &["*:$USER_ID$:*"])],
                want: Err((Reason::MethodNotGranted, vec![], vec![])),
            },
            Case {
                name: "other resource",
                rules: vec![rule("*", "*", &[("*", all)], &["*"], &["account:$USER_ID$:acc-2"])],
                want: Err((Reason::ResourceNotAllowed, vec![], vec![])),
            },
            Case {
                name: "resource by entity wildcard id",
                rules: vec![rule("*", "*", &[("*", all)], &["*"], &["account:$USER_ID$:*"])],
                want: Ok(0),
            },
            Case {
                name: "role not among the route's",
                rules: vec![rule("*", "*", &[("*", all)], &["admin"], &["*:$USER_ID$:*"])],
                want: Err((Reason::InsufficientRole, vec!["reader", "writer"], vec![])),
            },
            Case {
                name: "scope missing",
                rules: vec![rule("*", "*", &[("deals", &[("*", Some(&["public"]))])], &["reader"], &["*:$USER_ID$:*"])],
                want: Err((Reason::InsufficientScope, vec![], vec!["dealing"])),
            },
            Case {
                name: "scope granted explicitly",
                rules: vec![rule(
                    "*",
                    "*",
                    &[("deals", &[("openPosition", Some(&["dealing"]))])],
                    &["writer"],
                    &["*:$USER_ID$:*"],
                )],
                want: Ok(0),
            },
            Case {
                name: "scope wildcard",
                rules: vec![rule("*", "*", &[("*", &[("*", Some(&["*"]))])], &["writer"], &["*:$USER_ID$:*"])],
                want: Ok(0),
            },
            Case {
                name: "second rule allows",
                rules: vec![
                    rule("metastats-api", "*", &[("*", all)], &["*"], &["*:$USER_ID$:*"]),
                    rule("mt-manager-api", "rest", &[("deals", all)], &["reader"], &["account:$USER_ID$:acc-1"]),
                ],
                want: Ok(1),
            },
            Case {
                name: "closest miss names the denial",
                rules: vec![
                    rule("metastats-api", "*", &[("*", all)], &["*"], &["*:$USER_ID$:*"]),
                    rule("mt-manager-api", "rest", &[("deals", all)], &["admin"], &["*:$USER_ID$:*"]),
                ],
                want: Err((Reason::InsufficientRole, vec!["reader", "writer"], vec![])),
            },
        ];
        for c in cases {
            let got = evaluate(&c.rules, &[], &facts);
            match (&got, &c.want) {
                (Decision::Allow(Allowed::Rule(rule)), Ok(want)) => assert_eq!(rule, want, "{}", c.name),
                (Decision::Deny(d), Err((reason, roles, scopes))) => {
                    assert_eq!(d.reason, *reason, "{}", c.name);
                    assert_eq!(d.missing_roles, b(roles), "{}", c.name);
                    assert_eq!(d.missing_scopes, b(scopes), "{}", c.name);
                }
                _ => panic!("{}: got {got:?}", c.name),
            }
        }
    }

    #[test]
    fn route_without_resource_needs_a_full_wildcard() {
        let roles = b(&["reader"]);
        let facts = RouteFacts {
            application: "a",
            service: "rest",
            group: "g",
            method: "m",
            scopes: &[],
            roles: &roles,
            resource: None,
            tenant: None,
        };
        let all: &[(&str, Option<&[&str]>)] = &[("*", None)];
        let narrowed = rule("*", "*", &[("*", all)], &["*"], &["account:$USER_ID$:acc-1"]);
        assert!(
            matches!(evaluate(&[narrowed], &[], &facts), Decision::Deny(d) if d.reason == Reason::ResourceNotAllowed)
        );
        let wide = rule("*", "*", &[("*", all)], &["*"], &["*:$USER_ID$:*"]);
        assert_eq!(evaluate(&[wide], &[], &facts), Decision::Allow(Allowed::Rule(0)));
    }

    /// `first_failure` names the dimension `evaluate` stops at, and tells a
    /// rule that grants other values from one that grants none at all and
    /// from a route that names none (a route without a resource is not
    /// "another resource"); a route that needs no scope never fails on one.
    #[test]
    fn first_failure_table() {
        let (roles, scopes) = (b(&["reader", "writer"]), b(&["dealing"]));
        fn facts<'a>(
            resource: Option<(&'a str, &'a str)>,
            scopes: &'a [Box<str>],
            roles: &'a [Box<str>],
        ) -> RouteFacts<'a> {
            RouteFacts {
                application: "mt-manager-api",
                service: "rest",
                group: "deals",
                method: "openPosition",
                scopes,
                roles,
                resource,
                tenant: None,
            }
        }
        let one = facts(Some(("account", "acc-1")), &scopes, &roles);
        let no_resource = facts(None, &[], &roles);
        let no_roles = facts(Some(("account", "acc-1")), &[], &[]);
        let all: Methods<'_> = &[("*", None)];
        let any = "*:$USER_ID$:*";
        use Dimension as D;
        use Miss as M;
        struct Case<'a> {
            name: &'a str,
            rule: AccessRule,
            facts: RouteFacts<'a>,
            want: Option<(Dimension, Miss)>,
        }
        let cases = [
            Case { name: "everything", rule: AccessRule::everything(), facts: one, want: None },
            Case {
                name: "other application",
                rule: rule("metastats-api", "*", &[("*", all)], &["*"], &[any]),
                facts: one,
                want: Some((D::Application, M::NotGranted)),
            },
            Case {
                name: "other service",
                rule: rule("*", "ws", &[("*", all)], &["*"], &[any]),
                facts: one,
                want: Some((D::Service, M::NotGranted)),
            },
            Case {
                name: "no method group at all",
                rule: rule("*", "*", &[], &["*"], &[any]),
                facts: one,
                want: Some((D::Group, M::RuleGrantsNone)),
            },
            Case {
                name: "other group",
                rule: rule("*", "*", &[("accounts", all)], &["*"], &[any]),
                facts: one,
                want: Some((D::Group, M::NotGranted)),
            },
            Case {
                name: "the group without methods",
                rule: rule("*", "*", &[("deals", &[])], &["*"], &[any]),
                facts: one,
                want: Some((D::Method, M::RuleGrantsNone)),
            },
            Case {
                name: "other method",
                rule: rule("*", "*", &[("deals", &[("closePosition", None)])], &["*"], &[any]),
                facts: one,
                want: Some((D::Method, M::NotGranted)),
            },
            Case {
                name: "no resource at all",
                rule: rule("*", "*", &[("*", all)], &["*"], &[]),
                facts: one,
                want: Some((D::Resource, M::RuleGrantsNone)),
            },
            Case {
                name: "no resource at all, on a route without one",
                rule: rule("*", "*", &[("*", all)], &["*"], &[]),
                facts: no_resource,
                want: Some((D::Resource, M::RuleGrantsNone)),
            },
            Case {
                name: "other resource",
                rule: rule("*", "*", &[("*", all)], &["*"], &["account:$USER_ID$:acc-2"]),
                facts: one,
                want: Some((D::Resource, M::NotGranted)),
            },
            Case {
                name: "one resource, on a route that names none",
                rule: rule("*", "*", &[("*", all)], &["*"], &["account:$USER_ID$:acc-1"]),
                facts: no_resource,
                want: Some((D::Resource, M::RouteNamesNone)),
            },
            Case {
                name: "every id of one entity, on a route that names none",
                rule: rule("*", "*", &[("*", all)], &["*"], &["account:$USER_ID$:*"]),
                facts: no_resource,
                want: Some((D::Resource, M::RouteNamesNone)),
            },
            Case {
                name: "every resource, on a route that names none",
                rule: rule("*", "*", &[("*", all)], &["reader"], &[any]),
                facts: no_resource,
                want: None,
            },
            Case {
                name: "no role at all",
                rule: rule("*", "*", &[("*", all)], &[], &[any]),
                facts: one,
                want: Some((D::Role, M::RuleGrantsNone)),
            },
            Case {
                name: "other role",
                rule: rule("*", "*", &[("*", all)], &["admin"], &[any]),
                facts: one,
                want: Some((D::Role, M::NotGranted)),
            },
            Case {
                name: "a role, on a route that lists none",
                rule: rule("*", "*", &[("*", all)], &["reader"], &[any]),
                facts: no_roles,
                want: Some((D::Role, M::RouteNamesNone)),
            },
            Case {
                name: "every role, on a route that lists none",
                rule: rule("*", "*", &[("*", all)], &["*"], &[any]),
                facts: no_roles,
                want: None,
            },
            Case {
                name: "no scope at all",
                rule: rule("*", "*", &[("deals", &[("*", Some(&[]))])], &["reader"], &[any]),
                facts: one,
                want: Some((D::Scope, M::RuleGrantsNone)),
            },
            Case {
                name: "other scope",
                rule: rule("*", "*", &[("deals", &[("*", Some(&["public"]))])], &["reader"], &[any]),
                facts: one,
                want: Some((D::Scope, M::NotGranted)),
            },
            Case {
                name: "no scope at all, on a route that needs none",
                rule: rule("*", "*", &[("deals", &[("*", Some(&[]))])], &["reader"], &[any]),
                facts: no_resource,
                want: None,
            },
        ];
        for c in cases {
            let got = first_failure(&c.rule, &c.facts);
            assert_eq!(got.map(|f| (f.dimension, f.miss)), c.want, "{}", c.name);
            // The same judgement as the gateway's.
            let reason = match evaluate(std::slice::from_ref(&c.rule), &[], &c.facts) {
                Decision::Allow(_) => None,
                Decision::Deny(d) => Some(d.reason),
            };
            let want = c.want.map(|(d, _)| match d {
                D::Application => Reason::ApplicationNotAllowed,
                D::Service => Reason::ServiceNotAllowed,
                D::Group | D::Method => Reason::MethodNotGranted,
                D::Resource => Reason::ResourceNotAllowed,
                D::Role => Reason::InsufficientRole,
                D::Scope => Reason::InsufficientScope,
            });
            assert_eq!(reason, want, "{}: evaluate", c.name);
        }
    }

    #[test]
    fn resource_strings_round_trip() {
        for s in ["*:$USER_ID$:*", "account:$USER_ID$:3860c395", "account:u1:id:with:colons"] {
            let r = ResourceRule::parse(s).expect("parse");
            assert_eq!(r.to_wire(), s);
        }
        assert!(ResourceRule::parse("account").is_none());
        assert!(ResourceRule::parse(":x:y").is_none());
        assert!(ResourceRule::parse("a:b:").is_none());
    }
}
