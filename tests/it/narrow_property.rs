//! Narrowing, end to end: for random parents and random narrowing requests
//! sent to the token service, the narrowed token — used on the proxy —
//! never allows a request its parent denies, and allows every request the
//! parent allows that the narrowing asked to keep. A request that asks for
//! more than the parent holds is refused and issues nothing.

use crate::support;

use std::collections::BTreeSet;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{payload, rule};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use support::Harness;

const APPS: [&str; 3] = ["trading-account-management-api", "mt-manager-api", "metastats-api"];
const ROLES: [&str; 2] = ["reader", "writer"];
const ACCOUNTS: [&str; 3] = ["a1", "a2", "a3"];

/// (method, path with `{a}` for the account, application)
const REQUESTS: [(&str, &str, &str); 5] = [
    ("GET", "/users/current/accounts/{a}", APPS[0]),
    ("PUT", "/users/current/accounts/{a}", APPS[0]),
    ("GET", "/mt-manager/accounts/{a}/users/u1", APPS[1]),
    ("POST", "/mt-manager/accounts/{a}/trade", APPS[1]),
    ("GET", "/metastats/users/current/accounts/{a}/metrics", APPS[2]),
];

/// The roles each request's route accepts (config/demo.yaml).
fn route_roles(i: usize) -> &'static [&'static str] {
    match i {
        0 | 2 => &["reader", "writer"],
        1 | 3 => &["writer"],
        _ => &["reader"],
    }
}

#[derive(Clone, Debug)]
struct Case {
    /// The parent: one rule per application, all with these roles
    /// (`None`: `*`) and accounts (`None`: every one).
    parent_apps: BTreeSet<usize>,
    parent_roles: Option<BTreeSet<usize>>,
    parent_accounts: Option<BTreeSet<usize>>,
    /// The simplified narrowing request; `None` keeps that dimension.
    ask_apps: Option<BTreeSet<usize>>,
    ask_roles: Option<BTreeSet<usize>>,
    ask_accounts: Option<BTreeSet<usize>>,
}

fn subset(n: usize) -> impl Strategy<Value = BTreeSet<usize>> {
    proptest::collection::btree_set(0..n, 1..=n)
}

fn case() -> impl Strategy<Value = Case> {
    (
        subset(APPS.len()),
        proptest::option::of(subset(ROLES.len())),
        proptest::option::of(subset(ACCOUNTS.len())),
        proptest::option::of(subset(APPS.len())),
        proptest::option::of(subset(ROLES.len())),
        proptest::option::of(subset(ACCOUNTS.len())),
    )
        .prop_map(|(parent_apps, parent_roles, parent_accounts, ask_apps, ask_roles, ask_accounts)| Case {
            parent_apps,
            parent_roles,
            parent_accounts,
            ask_apps,
            ask_roles,
            ask_accounts,
        })
}

fn names<'a>(set: &BTreeSet<usize>, all: &[&'a str]) -> Vec<&'a str> {
    set.iter().map(|&i| all[i]).collect()
}

/// Whether `ask` stays within `held` (`None` held: everything).
fn within(ask: &Option<BTreeSet<usize>>, held: &Option<BTreeSet<usize>>) -> bool {
    match (ask, held) {
        (Some(a), Some(h)) => a.is_subset(h),
        _ => true,
    }
}

fn kept(ask: &Option<BTreeSet<usize>>, i: usize) -> bool {
    ask.as_ref().is_none_or(|a| a.contains(&i))
}

async fn check(h: &Harness, c: &Case, n: u64) -> Result<(), TestCaseError> {
    let roles: Vec<&str> = c.parent_roles.as_ref().map_or(vec!["*"], |r| names(r, &ROLES));
    let resources: Vec<String> = match &c.parent_accounts {
        None => vec!["*:$USER_ID$:*".into()],
        Some(a) => a.iter().map(|&i| format!("account:$USER_ID$:{}", ACCOUNTS[i])).collect(),
    };
    let resources: Vec<&str> = resources.iter().map(String::as_str).collect();
    let rules: Vec<Value> = c.parent_apps.iter().map(|&i| rule(APPS[i], &roles, &resources)).collect();
    let mut p = payload("alice", now_unix(), 3600, json!(rules));
    p["jti"] = json!(format!("parent-{n}"));
    let parent = format!("Bearer {}", h.sign(&p));

    let mut ask = json!({ "validityInHours": 0.5 });
    if let Some(a) = &c.ask_apps {
        ask["applications"] = json!(names(a, &APPS));
    }
    if let Some(r) = &c.ask_roles {
        ask["roles"] = json!(names(r, &ROLES));
    }
    if let Some(a) = &c.ask_accounts {
        ask["resources"] =
            a.iter().map(|&i| json!({ "entity": "account", "id": ACCOUNTS[i] })).collect::<Vec<_>>().into();
    }
    let resp = h.api_post("/v1/tokens/narrow", &[("Authorization", &parent)], &ask.to_string()).await;

    let parent_apps = Some(c.parent_apps.clone());
    let fits = within(&c.ask_apps, &parent_apps)
        && within(&c.ask_roles, &c.parent_roles)
        && within(&c.ask_accounts, &c.parent_accounts);
    if !fits {
        prop_assert_eq!(resp.status, 403, "asked for more than the parent holds: {}", resp.body);
        prop_assert!(resp.json()["token"].is_null(), "a refused narrowing issued a token");
        return Ok(());
    }
    prop_assert_eq!(resp.status, 200, "a narrowing within the parent is granted: {}", resp.body);
    let child = format!("Bearer {}", resp.json()["token"].as_str().expect("token"));

    for (r, (method, template, app)) in REQUESTS.iter().enumerate() {
        let app_index = APPS.iter().position(|a| a == app).expect("app");
        for (a, account) in ACCOUNTS.iter().enumerate() {
            let path = template.replace("{a}", account);
            let parent_ok = h.request(method, &path, &[("Authorization", &parent)]).await.status == 200;
            let child_ok = h.request(method, &path, &[("Authorization", &child)]).await.status == 200;
            // The child's roles are the parent's, cut to those asked for.
            let role_kept = c
                .ask_roles
                .as_ref()
                .is_none_or(|asked| route_roles(r).iter().any(|rr| asked.iter().any(|&i| ROLES[i] == *rr)));
            let expected = parent_ok && kept(&c.ask_apps, app_index) && kept(&c.ask_accounts, a) && role_kept;
            prop_assert!(!child_ok || parent_ok, "{method} {path}: the child allows what the parent denies");
            prop_assert_eq!(child_ok, expected, "{} {}: child {}, parent {}", method, path, child_ok, parent_ok);
        }
    }
    h.upstream_received();
    Ok(())
}

#[test]
fn narrowed_tokens_never_widen_and_keep_what_was_asked_on_the_proxy() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let h = rt.block_on(Harness::start());
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    let counter = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&case(), |c| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(check(&h, &c, n))
    });
    rt.block_on(h.shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
}
