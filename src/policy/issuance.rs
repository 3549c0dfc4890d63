//! The authority model: who may mint, narrow and revoke what, as plain
//! functions over grants (no I/O, no HTTP). The token service asks these
//! before every write; handlers and facades never decide it themselves.
//!
//! - Management authority (admin, master) comes only from this gateway's
//!   own issuer or from an issuer configured `may_manage`
//!   ([`Grant::may_manage`]); anyone else's `role: admin` or `master: true`
//!   counts for nothing.
//! - Only a master creates admin or master tokens, and only a master acts
//!   on (revokes) a master token.
//! - A master sees and acts on (views, revokes, narrows) every token; a
//!   non-master admin only on itself and the tokens in its lineage —
//!   those minted under it (directly or through a registration token) and
//!   those narrowed from them — never a master's, never a peer admin's;
//!   any other token only narrows itself. Every front end (the JSON API,
//!   the facades, the console) asks this same rule through the token
//!   service.
//! - What a non-master admin mints, directly or through a registration
//!   token, never outlives it and carries it in its lineage, so revoking
//!   the admin revokes it too. A master may mint tokens that outlive it:
//!   that is what master means.
//! - Registration tokens live at most `registration_max_ttl`, and the token
//!   one yields at most `registration_max_lifetime`.
//! - Narrowing narrows tenant permissions too: a child keeps only those it
//!   asks for, within its parent's.
//! - A minted token fits the proxy's `max_token_bytes`.
//!
//! Errors name the field at fault with fixed text: never the client's
//! values.

use super::grant::{Grant, Role};
use crate::policy::tenant::{self, TenantPermission};
use crate::time::UnixTime;

/// What a token may do to other tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Authority {
    None,
    Admin,
    Master,
}

/// The authority a grant carries: none unless its issuer may confer it.
pub fn authority(g: &Grant) -> Authority {
    if !g.may_manage {
        return Authority::None;
    }
    match (g.master, g.role) {
        (true, _) => Authority::Master,
        (false, Role::Admin) => Authority::Admin,
        (false, Role::User) => Authority::None,
    }
}

/// Why the authority model refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssuanceError {
    #[error("only admin or master tokens manage tokens")]
    AdminRequired,
    #[error("only a master token acts on a master token")]
    MasterRequired,
    /// Not itself, and not in its lineage: as far as the caller is
    /// concerned, no such token (404).
    #[error("no such token within this token's lineage")]
    OutOfReach,
    /// Asks for more than the caller may give (403).
    #[error("{field}: {what}")]
    WouldWiden { field: String, what: &'static str },
    /// Past a configured bound, or malformed (400).
    #[error("{field}: {what}")]
    OutOfBounds { field: &'static str, what: &'static str },
    #[error("the token would be larger than the {limit}-byte limit (server.max_token_bytes)")]
    TooLarge { limit: usize },
    /// Its issuer does not let its tokens, or its client's, be exchanged.
    #[error("this token's issuer does not let it be exchanged")]
    NotExchangeable,
}

fn widen(field: impl Into<String>, what: &'static str) -> IssuanceError {
    IssuanceError::WouldWiden { field: field.into(), what }
}

/// Whether a token may be exchanged for a narrowgate token (RFC 8693):
/// its issuer must list the client it was issued to (`clients`, `"*"`:
/// any); an issuer that lists none lets no token be exchanged.
pub fn may_exchange(clients: Option<&[String]>, client: Option<&str>) -> Result<(), IssuanceError> {
    match clients {
        Some(c) if c.iter().any(|x| x == "*" || Some(x.as_str()) == client) => Ok(()),
        _ => Err(IssuanceError::NotExchangeable),
    }
}

/// The caller's management authority, or [`IssuanceError::AdminRequired`].
pub fn manager(by: &Grant) -> Result<Authority, IssuanceError> {
    match authority(by) {
        Authority::None => Err(IssuanceError::AdminRequired),
        a => Ok(a),
    }
}

/// The lineage a token minted by `by` gets: a non-master's own lineage and
/// name in it (revoking it revokes the token), nothing under a master.
fn lineage_under(by: &Grant, a: Authority) -> Vec<String> {
    if a == Authority::Master {
        return Vec::new();
    }
    descent(by)
}

/// The lineage of a token made from `parent`: `parent`'s, then `parent`
/// as a lineage names it ([`Grant::lineage_id`]). Another issuer's
/// lineage is its word about its own tokens: a bare entry in it is named
/// with that issuer too, so it never spells one of this gateway's ids
/// (revoking the bare id still reaches it).
pub fn descent(parent: &Grant) -> Vec<String> {
    let inherited = parent
        .lineage
        .iter()
        .map(|l| if parent.minted_here || l.contains('#') { l.to_string() } else { format!("{}#{l}", parent.issuer) });
    inherited.chain([parent.lineage_id().into_owned()]).collect()
}

/// Whether `by` is the token whose record is `id`: only a token of this
/// gateway's own issuer has a record (another issuer's `jti` may spell
/// any id).
pub fn is_record(by: &Grant, id: &str) -> bool {
    by.minted_here && *by.token_id == *id
}

/// A non-master's tokens end no later than it does.
fn within_life(
    by: &Grant,
    a: Authority,
    expires_at: Option<UnixTime>,
    field: &'static str,
) -> Result<(), IssuanceError> {
    // A grant's expiry past the range ends later than anything minted.
    match (a, by.expires_at.map(UnixTime::clamped), expires_at) {
        (Authority::Master, _, _) | (_, None, _) => Ok(()),
        (_, Some(limit), Some(exp)) if exp <= limit => Ok(()),
        _ => Err(widen(field, "the token would outlive the token creating it (only a master's may)")),
    }
}

/// What an access token asks for.
#[derive(Clone, Debug)]
pub struct Wanted<'a> {
    pub role: Role,
    pub master: bool,
    /// `None`: never expires.
    pub expires_at: Option<UnixTime>,
    pub tenants: &'a [TenantPermission],
}

/// What a token `by` mints carries besides what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub lineage: Vec<String>,
}

/// May `by` mint an access token like `want`? (Its access rules are checked
/// against the caller's by `policy::narrow`.)
pub fn mint_access(by: &Grant, want: &Wanted<'_>) -> Result<Bounds, IssuanceError> {
    let a = manager(by)?;
    if want.role == Role::Admin && a != Authority::Master {
        return Err(widen("role", "only a master token may create admin tokens"));
    }
    if want.master && a != Authority::Master {
        return Err(widen("master", "only a master token may create master tokens"));
    }
    // Masters hold Crafter's token-management authority and may grant any
    // tenant permissions; anyone else only what it holds itself.
    if a != Authority::Master
        && let Err(e) = tenant::within(want.tenants, &by.tenants)
    {
        return Err(IssuanceError::WouldWiden { field: e.path, what: e.what });
    }
    within_life(by, a, want.expires_at, "expiresAt")?;
    Ok(Bounds { lineage: lineage_under(by, a) })
}

/// A token another token wants to see or act on, as the authority model
/// sees it.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub id: &'a str,
    pub master: bool,
    /// Its ancestors' ids: who minted it (a non-master) and whom it was
    /// narrowed from.
    pub lineage: &'a [String],
}

/// May `by` see and act on (view, revoke, narrow) `target`? A master: any
/// token. A non-master admin: itself and the tokens in its lineage — never
/// a master ([`IssuanceError::MasterRequired`]), never anyone else's
/// ([`IssuanceError::OutOfReach`]). Anyone else: nothing.
pub fn may_act_on(by: &Grant, target: &Target<'_>) -> Result<Authority, IssuanceError> {
    let a = manager(by)?;
    if a == Authority::Master {
        return Ok(a);
    }
    if target.master {
        return Err(IssuanceError::MasterRequired);
    }
    let name = by.lineage_id();
    if is_record(by, target.id) || target.lineage.iter().any(|ancestor| *ancestor == *name) {
        return Ok(a);
    }
    Err(IssuanceError::OutOfReach)
}

/// Which tokens `by` may list: `None` every token (a master), else the
/// lineage name that bounds them (itself and its descendants).
pub fn visible_lineage(by: &Grant) -> Result<Option<std::borrow::Cow<'_, str>>, IssuanceError> {
    match manager(by)? {
        Authority::Master => Ok(None),
        _ => Ok(Some(by.lineage_id())),
    }
}

/// May `by` narrow `target`? Itself, always (narrowing hands out less,
/// and a token holds what it holds); another token only on the terms of
/// [`may_act_on`].
pub fn may_narrow(by: &Grant, target: &Target<'_>) -> Result<(), IssuanceError> {
    if is_record(by, target.id) {
        return Ok(());
    }
    may_act_on(by, target).map(|_| ())
}

/// Configured bounds on registration tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrationLimits {
    /// The longest a registration token may wait to be redeemed, seconds.
    pub max_ttl: u64,
    /// The longest the token it yields may live, seconds; `None`: any,
    /// never expiring included.
    pub max_lifetime: Option<u64>,
}

/// What a registration token asks for.
#[derive(Clone, Copy, Debug)]
pub struct RegistrationWanted {
    pub role: Role,
    pub ttl: u64,
    /// The yielded token's lifetime; `None`: never expires.
    pub lifetime: Option<u64>,
}

/// What a registration token minted by `by` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationBounds {
    /// Its own expiry.
    pub expires_at: UnixTime,
    /// The latest expiry the yielded token may have: its creator's, unless
    /// a master created it.
    pub yield_cap: Option<UnixTime>,
    /// The yielded token's lineage.
    pub lineage: Vec<String>,
}

/// May `by` mint a registration token like `want` at `now`?
pub fn mint_registration(
    by: &Grant,
    want: &RegistrationWanted,
    limits: &RegistrationLimits,
    now: UnixTime,
) -> Result<RegistrationBounds, IssuanceError> {
    let a = manager(by)?;
    if want.role == Role::Admin && a != Authority::Master {
        return Err(widen("role", "only a master token may hand out administrator tokens"));
    }
    if want.ttl == 0 || want.ttl > limits.max_ttl {
        return Err(IssuanceError::OutOfBounds {
            field: "ttl",
            what: "must be positive and at most issuance.registration_max_ttl",
        });
    }
    match (want.lifetime, limits.max_lifetime) {
        (Some(0), _) => {
            return Err(IssuanceError::OutOfBounds { field: "lifetime", what: "must be positive" });
        }
        (Some(l), Some(max)) if l > max => {
            return Err(IssuanceError::OutOfBounds {
                field: "lifetime",
                what: "longer than issuance.registration_max_lifetime",
            });
        }
        (None, Some(_)) => {
            return Err(IssuanceError::OutOfBounds {
                field: "lifetime",
                what: "required: issuance.registration_max_lifetime bounds it",
            });
        }
        // A lifetime that would end past the range of time ends nowhere.
        (Some(l), _) if now.checked_add(l).is_none() => {
            return Err(IssuanceError::OutOfBounds { field: "lifetime", what: "would end after 9999-12-30T22:00:00Z" });
        }
        _ => {}
    }
    let expires_at = now
        .checked_add(want.ttl)
        .ok_or(IssuanceError::OutOfBounds { field: "ttl", what: "would end after 9999-12-30T22:00:00Z" })?;
    within_life(by, a, Some(expires_at), "ttl")?;
    let yield_cap = if a == Authority::Master { None } else { by.expires_at.map(UnixTime::clamped) };
    Ok(RegistrationBounds { expires_at, yield_cap, lineage: lineage_under(by, a) })
}

/// The expiry of the token a registration yields when redeemed at `now`:
/// its lifetime from now, never past the cap its creator set.
pub fn redeemed_expiry(now: UnixTime, lifetime: Option<u64>, cap: Option<UnixTime>) -> Option<UnixTime> {
    match (lifetime.map(|l| now.saturating_add(std::time::Duration::from_secs(l))), cap) {
        (Some(e), Some(c)) => Some(e.min(c)),
        (e, None) => e,
        (None, c) => c,
    }
}

/// The tenant permissions a narrowed child gets: none unless asked for,
/// and what it asks for within its parent's.
pub fn narrowed_tenants(
    parent: &[TenantPermission],
    asked: Option<&[TenantPermission]>,
) -> Result<Vec<TenantPermission>, IssuanceError> {
    let Some(asked) = asked else { return Ok(Vec::new()) };
    tenant::validate(asked).map_err(|e| IssuanceError::OutOfBounds { field: "tenantPermissions", what: e.what })?;
    tenant::within(asked, parent).map_err(|e| IssuanceError::WouldWiden { field: e.path, what: e.what })?;
    Ok(asked.to_vec())
}

/// A minted token must fit the proxy's limit on presented tokens.
pub fn fits(len: usize, limit: usize) -> Result<(), IssuanceError> {
    if len > limit { Err(IssuanceError::TooLarge { limit }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::grant::IdentityValues;

    fn grant(role: Role, master: bool, may_manage: bool, expires_at: Option<u64>) -> Grant {
        Grant {
            token_id: "me".into(),
            subject: "me".into(),
            issuer: "narrowgate".into(),
            kid: None,
            name: None,
            kind: crate::policy::grant::TokenKind::Access,
            role,
            master,
            rules: Default::default(),
            tenants: vec![TenantPermission { tenant: "acme".into(), allowed_actions: vec!["READ_TENANT".into()] }],
            issued_at: None,
            not_before: None,
            expires_at,
            lineage: vec!["root".into()],
            bound_to: None,
            headers: IdentityValues::build("me", "me", &[]).expect("headers"),
            may_manage,
            minted_here: true,
            extra: vec![],
            unmapped: Vec::new(),
        }
    }

    const NOW: u64 = 1_000_000;

    /// `secs` after NOW, as a time.
    fn now_plus(secs: u64) -> UnixTime {
        UnixTime::clamped(NOW + secs)
    }

    fn now() -> UnixTime {
        UnixTime::clamped(NOW)
    }

    #[test]
    fn authority_comes_only_from_an_issuer_that_may_confer_it() {
        let cases = [
            (Role::User, false, true, Authority::None),
            (Role::Admin, false, true, Authority::Admin),
            (Role::Admin, true, true, Authority::Master),
            (Role::User, true, true, Authority::Master),
            (Role::Admin, true, false, Authority::None),
            (Role::Admin, false, false, Authority::None),
        ];
        for (role, master, may_manage, want) in cases {
            assert_eq!(authority(&grant(role, master, may_manage, None)), want, "{role:?} {master} {may_manage}");
        }
        assert_eq!(manager(&grant(Role::Admin, true, false, None)), Err(IssuanceError::AdminRequired));
    }

    #[test]
    fn who_mints_what() {
        let admin = grant(Role::Admin, false, true, Some(NOW + 3600));
        let master = grant(Role::Admin, true, true, Some(NOW + 3600));
        let user = grant(Role::User, false, true, None);
        let external_master = grant(Role::Admin, true, false, None);
        let none: &[TenantPermission] = &[];
        let all = [TenantPermission { tenant: "*".into(), allowed_actions: vec!["*".into()] }];
        struct Case<'a> {
            name: &'a str,
            by: &'a Grant,
            want: Wanted<'a>,
            ok: Result<Vec<&'a str>, &'a str>,
        }
        let w = |role, master, expires_at, tenants| Wanted { role, master, expires_at, tenants };
        let cases = [
            Case {
                name: "admin mints a user token",
                by: &admin,
                want: w(Role::User, false, Some(now_plus(60)), none),
                ok: Ok(vec!["root", "me"]),
            },
            Case {
                name: "admin mints an admin",
                by: &admin,
                want: w(Role::Admin, false, Some(now_plus(60)), none),
                ok: Err("role"),
            },
            Case {
                name: "admin mints a master",
                by: &admin,
                want: w(Role::User, true, Some(now_plus(60)), none),
                ok: Err("master"),
            },
            Case {
                name: "admin's token outlives it",
                by: &admin,
                want: w(Role::User, false, Some(now_plus(7200)), none),
                ok: Err("expiresAt"),
            },
            Case {
                name: "admin's token never expires",
                by: &admin,
                want: w(Role::User, false, None, none),
                ok: Err("expiresAt"),
            },
            Case {
                name: "admin grants a tenant it lacks",
                by: &admin,
                want: w(Role::User, false, Some(now_plus(60)), &all),
                ok: Err("tenantPermissions[0]"),
            },
            Case {
                name: "master mints a master that outlives it",
                by: &master,
                want: w(Role::Admin, true, None, &all),
                ok: Ok(vec![]),
            },
            Case {
                name: "a user mints",
                by: &user,
                want: w(Role::User, false, Some(now_plus(60)), none),
                ok: Err("admin_required"),
            },
            Case {
                name: "an external issuer's master",
                by: &external_master,
                want: w(Role::User, false, Some(now_plus(60)), none),
                ok: Err("admin_required"),
            },
        ];
        for c in cases {
            let got = mint_access(c.by, &c.want);
            match (&got, &c.ok) {
                (Ok(b), Ok(lineage)) => assert_eq!(&b.lineage, lineage, "{}", c.name),
                (Err(IssuanceError::WouldWiden { field, .. }), Err(f)) => assert_eq!(field, f, "{}", c.name),
                (Err(IssuanceError::AdminRequired), Err("admin_required")) => {}
                _ => panic!("{}: got {got:?}", c.name),
            }
        }
    }

    #[test]
    fn a_non_master_acts_only_within_its_lineage_and_a_master_on_anything() {
        let admin = grant(Role::Admin, false, true, None);
        let master = grant(Role::Admin, true, true, None);
        let user = grant(Role::User, false, true, None);
        let external_admin = grant(Role::Admin, true, false, None);
        let lineage = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        struct Case {
            name: &'static str,
            id: &'static str,
            master: bool,
            lineage: Vec<String>,
            admin: Result<(), IssuanceError>,
            master_may: bool,
        }
        let cases = [
            Case {
                name: "itself",
                id: "me",
                master: false,
                lineage: lineage(&["root"]),
                admin: Ok(()),
                master_may: true,
            },
            Case {
                name: "a token it minted",
                id: "t1",
                master: false,
                lineage: lineage(&["root", "me"]),
                admin: Ok(()),
                master_may: true,
            },
            Case {
                name: "a child of one it minted",
                id: "t2",
                master: false,
                lineage: lineage(&["root", "me", "t1"]),
                admin: Ok(()),
                master_may: true,
            },
            Case {
                name: "a peer admin",
                id: "peer",
                master: false,
                lineage: lineage(&["root"]),
                admin: Err(IssuanceError::OutOfReach),
                master_may: true,
            },
            Case {
                name: "a peer's token",
                id: "t3",
                master: false,
                lineage: lineage(&["root", "peer"]),
                admin: Err(IssuanceError::OutOfReach),
                master_may: true,
            },
            Case {
                name: "its own creator",
                id: "root",
                master: false,
                lineage: lineage(&[]),
                admin: Err(IssuanceError::OutOfReach),
                master_may: true,
            },
            Case {
                name: "a master",
                id: "m",
                master: true,
                lineage: lineage(&[]),
                admin: Err(IssuanceError::MasterRequired),
                master_may: true,
            },
            Case {
                name: "a master naming it in its lineage",
                id: "m2",
                master: true,
                lineage: lineage(&["me"]),
                admin: Err(IssuanceError::MasterRequired),
                master_may: true,
            },
            Case {
                name: "a token whose id is a prefix of the admin's",
                id: "m",
                master: false,
                lineage: lineage(&["m", "mee"]),
                admin: Err(IssuanceError::OutOfReach),
                master_may: true,
            },
        ];
        for c in cases {
            let t = Target { id: c.id, master: c.master, lineage: &c.lineage };
            assert_eq!(may_act_on(&admin, &t).map(|_| ()), c.admin, "admin on {}", c.name);
            assert_eq!(may_act_on(&master, &t).is_ok(), c.master_may, "master on {}", c.name);
            assert_eq!(may_act_on(&user, &t).map(|_| ()), Err(IssuanceError::AdminRequired), "user on {}", c.name);
            assert_eq!(may_act_on(&external_admin, &t).map(|_| ()), Err(IssuanceError::AdminRequired), "{}", c.name);
            // Narrowing: the same terms, and any token narrows itself.
            let narrow_user = if c.id == "me" { Ok(()) } else { Err(IssuanceError::AdminRequired) };
            assert_eq!(may_narrow(&user, &t), narrow_user, "user narrows {}", c.name);
            assert_eq!(may_narrow(&admin, &t), c.admin, "admin narrows {}", c.name);
        }
        assert_eq!(visible_lineage(&admin), Ok(Some("me".into())));
        assert_eq!(visible_lineage(&master), Ok(None));

        // Another issuer's admin (trusted to manage) whose jti spells this
        // gateway's "me": its reach is what names it with its issuer, never
        // what names the token "me" of this gateway.
        let foreign =
            Grant { issuer: "https://idp.example".into(), minted_here: false, ..grant(Role::Admin, false, true, None) };
        let its = "https://idp.example#me";
        // Its issuer's bare "root" is that issuer's, never this gateway's.
        assert_eq!(descent(&foreign), vec!["https://idp.example#root".to_string(), its.into()]);
        let forged = Grant { lineage: vec!["other#x".into(), "t1".into()], ..foreign.clone() };
        assert_eq!(descent(&forged), vec!["other#x".to_string(), "https://idp.example#t1".into(), its.into()]);
        assert_eq!(descent(&admin), vec!["root".to_string(), "me".into()], "this gateway's own: as they are");
        assert_eq!(visible_lineage(&foreign), Ok(Some(its.into())));
        for (id, ancestors, reach) in [
            ("me", &["root"][..], Err(IssuanceError::OutOfReach)),
            ("t1", &["root", "me"], Err(IssuanceError::OutOfReach)),
            ("t4", &["root", its], Ok(())),
            ("t5", &["root", its, "t4"], Ok(())),
            ("t6", &["root", "https://other.example#me"], Err(IssuanceError::OutOfReach)),
        ] {
            let lineage = lineage(ancestors);
            let t = Target { id, master: false, lineage: &lineage };
            assert_eq!(may_act_on(&foreign, &t).map(|_| ()), reach, "the foreign admin on {id}");
            assert_eq!(may_narrow(&foreign, &t), reach, "the foreign admin narrows {id}");
            let own = if ancestors.contains(&"me") { Ok(()) } else { Err(IssuanceError::OutOfReach) };
            assert_eq!(may_act_on(&admin, &t).map(|_| ()), if id == "me" { Ok(()) } else { own }, "admin on {id}");
        }
        assert_eq!(visible_lineage(&user), Err(IssuanceError::AdminRequired));
    }

    #[test]
    fn registration_tokens_are_bounded_by_config_and_by_their_creator() {
        let limits = RegistrationLimits { max_ttl: 86_400, max_lifetime: None };
        let admin = grant(Role::Admin, false, true, Some(NOW + 3600));
        let master = grant(Role::Admin, true, true, Some(NOW + 3600));
        let want = |role, ttl, lifetime| RegistrationWanted { role, ttl, lifetime };
        let ok = mint_registration(&admin, &want(Role::User, 600, None), &limits, now()).expect("within");
        assert_eq!(
            ok,
            RegistrationBounds {
                expires_at: now_plus(600),
                yield_cap: Some(now_plus(3600)),
                lineage: vec!["root".into(), "me".into()]
            }
        );
        let m = mint_registration(&master, &want(Role::Admin, 7200, None), &limits, now()).expect("a master's");
        assert_eq!((m.yield_cap, m.lineage.len()), (None, 0));
        let refused = [
            (&admin, want(Role::Admin, 600, None), limits, "role"),
            (&admin, want(Role::User, 7200, None), limits, "ttl"),
            (&master, want(Role::User, 86_401, None), limits, "ttl"),
            (&master, want(Role::User, 0, None), limits, "ttl"),
            (&master, want(Role::User, 60, Some(0)), limits, "lifetime"),
            (
                &master,
                want(Role::User, 60, Some(100)),
                RegistrationLimits { max_ttl: 86_400, max_lifetime: Some(99) },
                "lifetime",
            ),
            (
                &master,
                want(Role::User, 60, None),
                RegistrationLimits { max_ttl: 86_400, max_lifetime: Some(99) },
                "lifetime",
            ),
        ];
        for (by, w, l, field) in refused {
            match mint_registration(by, &w, &l, now()) {
                Err(IssuanceError::WouldWiden { field: f, .. }) => assert_eq!(f, field),
                Err(IssuanceError::OutOfBounds { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{w:?}: {other:?}"),
            }
        }
        assert_eq!(redeemed_expiry(now(), Some(60), Some(now_plus(30))), Some(now_plus(30)), "capped by the creator");
        assert_eq!(redeemed_expiry(now(), Some(60), None), Some(now_plus(60)));
        assert_eq!(redeemed_expiry(now(), None, Some(now_plus(30))), Some(now_plus(30)), "never past the creator");
        assert_eq!(redeemed_expiry(now(), None, None), None);
        assert_eq!(redeemed_expiry(now(), Some(u64::MAX), None), Some(UnixTime::MAX), "clamped, never wrapped");
    }

    #[test]
    fn narrowing_keeps_only_the_tenants_asked_for_within_the_parents() {
        let parent = [TenantPermission { tenant: "acme".into(), allowed_actions: vec!["*".into()] }];
        assert_eq!(narrowed_tenants(&parent, None), Ok(vec![]), "not asked: dropped");
        let read = [TenantPermission { tenant: "acme".into(), allowed_actions: vec!["READ_TENANT".into()] }];
        assert_eq!(narrowed_tenants(&parent, Some(&read)), Ok(read.to_vec()));
        let other = [TenantPermission { tenant: "globex".into(), allowed_actions: vec!["READ_TENANT".into()] }];
        assert!(matches!(narrowed_tenants(&parent, Some(&other)), Err(IssuanceError::WouldWiden { .. })));
        let bad = [TenantPermission { tenant: "acme".into(), allowed_actions: vec!["FLY".into()] }];
        assert!(matches!(narrowed_tenants(&parent, Some(&bad)), Err(IssuanceError::OutOfBounds { .. })));
    }

    #[test]
    fn a_minted_token_fits_the_limit() {
        assert_eq!(fits(8192, 8192), Ok(()));
        assert_eq!(fits(8193, 8192), Err(IssuanceError::TooLarge { limit: 8192 }));
    }
}
