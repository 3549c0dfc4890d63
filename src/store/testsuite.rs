//! The store test suite: the [`Store`] on every backend must pass it.
//! Run from `tests/it/store.rs` against SQLite and PostgreSQL alike.

use std::sync::Arc;

use super::*;

/// A time the suite writes (within range by construction).
fn at(secs: i64) -> UnixTime {
    UnixTime::from_i64(secs).expect("a test time")
}

fn token(id: &str, name: Option<&str>, app: Option<&str>, kind: TokenKind, created_at: i64) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        name: name.map(Into::into),
        description: format!("token {id}"),
        kind,
        role: Role::User,
        master: false,
        application: app.map(Into::into),
        subject: format!("sub-{id}"),
        grants: r#"[{"application":"*"}]"#.into(),
        form: TokenForm::Jwt,
        secret_hash: None,
        not_before: Some(at(created_at)),
        expires_at: Some(at(created_at + 3600)),
        parent_id: None,
        lineage: vec![],
        created_by: Some("admin".into()),
        created_at: at(created_at),
        revoked_at: None,
        external_id: None,
    }
}

/// A token record for tests outside the suite.
pub fn sample_token(id: &str) -> TokenRecord {
    token(id, Some(id), None, TokenKind::Access, 100)
}

fn registration(id: &str, secret: &str, expires_at: i64) -> RegistrationRecord {
    RegistrationRecord {
        id: id.into(),
        secret_hash: hash_secret(secret),
        name: format!("from-{id}"),
        role: Role::Admin,
        grants: r#"[{"application":"from-registration"}]"#.into(),
        lifetime_secs: None,
        expires_at: at(expires_at),
        created_by: Some("admin".into()),
        created_at: at(1000),
        used_at: None,
        redeemed_token: None,
        lineage: vec!["creator".into()],
        expires_cap: Some(at(9000)),
        revoked_at: None,
    }
}

fn redeemed(reg: &RegistrationRecord, id: &str, now: i64) -> TokenRecord {
    let mut t = token(id, Some(&reg.name), None, TokenKind::Access, now);
    t.role = reg.role;
    t.grants = reg.grants.clone();
    t.expires_at = reg.lifetime_secs.and_then(|l| at(now).checked_add(l));
    t.created_by = reg.created_by.clone();
    t
}

/// Records go in and come back out unchanged; names and ids are unique.
pub async fn records_round_trip(s: &Store) {
    let mut t = token("t1", Some("first"), Some("metastats-api"), TokenKind::Access, 100);
    t.master = true;
    t.role = Role::Admin;
    t.lineage = vec!["root".into(), "parent".into()];
    t.form = TokenForm::Reference;
    t.secret_hash = Some(hash_secret("ng_secret"));
    t.expires_at = None;
    s.insert_token(&t).await.expect("insert");
    assert_eq!(s.token("t1").await.expect("get"), Some(t.clone()));
    assert_eq!(s.token_by_name("first").await.expect("by name"), Some(t.clone()));
    assert_eq!(s.token("nope").await.expect("get"), None);
    let dup_name = token("t2", Some("first"), None, TokenKind::Access, 101);
    assert!(matches!(s.insert_token(&dup_name).await, Err(StoreError::Conflict(_))));
    let dup_id = token("t1", Some("other"), None, TokenKind::Access, 101);
    assert!(matches!(s.insert_token(&dup_id).await, Err(StoreError::Conflict(_))));
    // Unnamed tokens may be many.
    s.insert_token(&token("u1", None, None, TokenKind::Narrowed, 102)).await.expect("unnamed");
    s.insert_token(&token("u2", None, None, TokenKind::Narrowed, 103)).await.expect("unnamed");
    assert_eq!(s.count_tokens().await.expect("count"), 3);
}

/// Filters and pages.
pub async fn listing_filters_and_pages(s: &Store) {
    for i in 0..5 {
        let app = if i % 2 == 0 { "a" } else { "b" };
        s.insert_token(&token(&format!("l{i}"), Some(&format!("list-{i}")), Some(app), TokenKind::Access, 200 + i))
            .await
            .expect("insert");
    }
    s.insert_token(&token("ln", None, Some("a"), TokenKind::Narrowed, 300)).await.expect("insert");
    let ids = |v: Vec<TokenRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let all = ids(s.list_tokens(&TokenFilter::default()).await.expect("list"));
    assert_eq!(all, ["l0", "l1", "l2", "l3", "l4", "ln"]);
    let a =
        ids(s.list_tokens(&TokenFilter { application: Some("a".into()), ..Default::default() }).await.expect("list"));
    assert_eq!(a, ["l0", "l2", "l4", "ln"]);
    let narrowed = TokenFilter { kind: Some(TokenKind::Narrowed), ..Default::default() };
    assert_eq!(ids(s.list_tokens(&narrowed).await.expect("list")), ["ln"]);
    let named = TokenFilter { name: Some("list-3".into()), ..Default::default() };
    assert_eq!(ids(s.list_tokens(&named).await.expect("list")), ["l3"]);
    let page2 = TokenFilter { limit: 2, offset: 2, ..Default::default() };
    assert_eq!(ids(s.list_tokens(&page2).await.expect("list")), ["l2", "l3"]);

    // What a non-master admin sees: itself and the tokens whose lineage
    // holds it, by exact element — never a prefix, a suffix, or ids that
    // LIKE's wildcards or JSON's quoting would let match.
    let family: [(&str, &[&str]); 9] = [
        ("adm", &["root"]),
        ("adm-child", &["root", "adm"]),
        ("adm-grandchild", &["root", "adm", "adm-child"]),
        ("peer", &["root"]),
        ("peer-child", &["root", "peer"]),
        ("prefix", &["root", "adm-x"]),
        ("suffix", &["root", "x-adm"]),
        ("wild", &["root", "a%m", "a_m"]),
        ("quoted", &["root", "\"adm\"", "adm\\"]),
    ];
    for (i, (id, lineage)) in family.iter().enumerate() {
        let mut t = token(id, None, None, TokenKind::Access, 400 + i as i64);
        t.lineage = lineage.iter().map(|l| l.to_string()).collect();
        s.insert_token(&t).await.expect("insert");
    }
    let within = |id: &str| TokenFilter { within_lineage_of: Some(id.into()), ..Default::default() };
    assert_eq!(ids(s.list_tokens(&within("adm")).await.expect("list")), ["adm", "adm-child", "adm-grandchild"]);
    assert_eq!(ids(s.list_tokens(&within("peer")).await.expect("list")), ["peer", "peer-child"]);
    assert_eq!(ids(s.list_tokens(&within("a%m")).await.expect("list")), ["wild"]);
    assert_eq!(ids(s.list_tokens(&within("a_m")).await.expect("list")), ["wild"]);
    assert_eq!(ids(s.list_tokens(&within("\"adm\"")).await.expect("list")), ["quoted"]);
    assert_eq!(ids(s.list_tokens(&within("adm\\")).await.expect("list")), ["quoted"]);
    assert_eq!(ids(s.list_tokens(&within("\",\"")).await.expect("list")), Vec::<String>::new());
    assert_eq!(ids(s.list_tokens(&within("%")).await.expect("list")), Vec::<String>::new());
    assert_eq!(s.list_tokens(&within("root")).await.expect("list").len(), family.len());
}

/// Revocation marks once; the mirror's resync sees it.
pub async fn revocation_is_recorded(s: &Store) {
    let mut never = token("r1", None, None, TokenKind::Access, 400);
    never.expires_at = None;
    s.insert_token(&never).await.expect("insert");
    let exp = crate::token::now_unix() as i64 + 3600;
    let mut reference = token("r2", None, None, TokenKind::Access, 401);
    reference.expires_at = Some(at(exp));
    reference.form = TokenForm::Reference;
    reference.secret_hash = Some(hash_secret("ng_r2"));
    s.insert_token(&reference).await.expect("insert");
    assert_eq!(s.reference_tokens().await.expect("refs").len(), 1);
    assert!(s.revoke("r1", at(500)).await.expect("revoke"));
    assert!(!s.revoke("r1", at(501)).await.expect("again"), "a second revoke changes nothing");
    assert!(!s.revoke("missing", at(502)).await.expect("unknown"));
    assert!(s.revoke("r2", at(503)).await.expect("revoke"));
    let mut revoked = s.revoked_ids(UnixTime::clamped(crate::clock::now_unix())).await.expect("ids");
    revoked.sort();
    assert_eq!(revoked, [("r1".to_string(), None), ("r2".to_string(), Some(at(exp)))], "with their expiries");
    assert_eq!(s.token("r1").await.expect("get").and_then(|t| t.revoked_at), Some(at(500)));
    // Revoked reference tokens stay mirrored (with their revocation), so
    // they are refused as revoked; a forgotten secret is mirrored no more.
    let refs = s.reference_tokens().await.expect("refs");
    assert_eq!((refs.len(), refs[0].revoked_at), (1, Some(at(503))));
    s.forget_secret("r2").await.expect("forget");
    assert!(s.reference_tokens().await.expect("refs").is_empty(), "no secret, nothing to mirror");
}

/// Another issuer's tokens are revoked by jti, until they expire.
pub async fn external_jtis_are_revoked_until_they_expire(s: &Store) {
    let now = crate::token::now_unix() as i64;
    let jti = |id: &str, expires_at: Option<i64>| JtiRevocation {
        jti: id.into(),
        issuer: "https://idp.example".into(),
        expires_at: expires_at.map(at),
        revoked_at: at(now),
        revoked_by: Some("admin".into()),
    };
    assert!(s.revoke_jti(&jti("ext-live", Some(now + 3600))).await.expect("revoke"));
    assert!(!s.revoke_jti(&jti("ext-live", Some(now + 7200))).await.expect("again"), "once");
    assert!(s.revoke_jti(&jti("ext-forever", None)).await.expect("revoke"));
    assert!(s.revoke_jti(&jti("ext-expired", Some(now - 3600))).await.expect("revoke"));
    let mut own = token("own", None, None, TokenKind::Access, 100);
    own.expires_at = Some(at(now + 60));
    s.insert_token(&own).await.expect("insert");
    assert!(s.revoke("own", at(200)).await.expect("revoke"));
    // A token of this store expired long ago (its descendants with it).
    s.insert_token(&token("own-expired", None, None, TokenKind::Access, 100)).await.expect("insert");
    assert!(s.revoke("own-expired", at(200)).await.expect("revoke"));
    // One that expired within the grace is still held (clock skew).
    let mut just = token("own-just-expired", None, None, TokenKind::Access, 100);
    just.expires_at = Some(at(now - 60));
    s.insert_token(&just).await.expect("insert");
    assert!(s.revoke("own-just-expired", at(200)).await.expect("revoke"));
    let mut revoked: Vec<String> = s
        .revoked_ids(UnixTime::clamped(crate::clock::now_unix()))
        .await
        .expect("ids")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    revoked.sort();
    assert_eq!(
        revoked,
        ["ext-forever", "ext-live", "own", "own-just-expired"],
        "an expired token needs no revocation, once the grace has passed"
    );
}

/// A revoked token's name is free again; a live one's is not.
pub async fn names_are_unique_among_live_tokens(s: &Store) {
    s.insert_token(&token("n1", Some("reports"), None, TokenKind::Access, 100)).await.expect("insert");
    assert!(matches!(
        s.insert_token(&token("n2", Some("reports"), None, TokenKind::Access, 101)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.revoke("n1", at(150)).await.expect("revoke"));
    s.insert_token(&token("n2", Some("reports"), None, TokenKind::Access, 200)).await.expect("the name is free again");
    assert_eq!(s.token_by_name("reports").await.expect("get").map(|t| t.id).as_deref(), Some("n2"), "the live one");
    assert!(matches!(
        s.insert_token(&token("n3", Some("reports"), None, TokenKind::Access, 201)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.revoke("n2", at(250)).await.expect("revoke"));
    assert_eq!(s.token_by_name("reports").await.expect("get").map(|t| t.id).as_deref(), Some("n2"), "the latest");
}

/// Registration tokens keep their bounds, and a revoked one is not redeemed.
pub async fn registration_tokens_are_revocable(s: &Store) {
    s.insert_registration(&registration("g9", "reg-secret-9", 5000)).await.expect("insert");
    s.insert_registration(&registration("g10", "reg-secret-10", 5000)).await.expect("insert");
    assert!(s.revoke_registration("g9", at(1000)).await.expect("revoke"));
    assert!(!s.revoke_registration("g9", at(1001)).await.expect("again"), "once");
    assert!(!s.revoke_registration("missing", at(1001)).await.expect("unknown"));
    let r = s.redeem(&hash_secret("reg-secret-9"), at(1100), |r| Ok(redeemed(r, "never", 1100))).await;
    assert!(matches!(r, Err(RedeemError::Revoked)), "{r:?}");
    let mut seen = None;
    let t = s
        .redeem(&hash_secret("reg-secret-10"), at(1100), |r| {
            seen = Some((r.lineage.clone(), r.expires_cap));
            Ok(redeemed(r, "from-g10", 1100))
        })
        .await
        .expect("redeem");
    assert_eq!(seen, Some((vec!["creator".to_string()], Some(at(9000)))), "the bounds come back");
    assert_eq!(t.id, "from-g10");
    assert!(!s.revoke_registration("g10", at(1200)).await.expect("used"), "a used one is not revoked");
}

/// Redeeming: once, not after expiry, not unknown secrets.
pub async fn registration_tokens_redeem_once(s: &Store) {
    s.insert_registration(&registration("g1", "reg-secret-1", 2000)).await.expect("insert");
    s.insert_registration(&registration("g2", "reg-secret-2", 1500)).await.expect("insert");
    let t =
        s.redeem(&hash_secret("reg-secret-1"), at(1600), |r| Ok(redeemed(r, "from-g1", 1600))).await.expect("redeem");
    assert_eq!((t.name.as_deref(), t.role, t.expires_at), (Some("from-g1"), Role::Admin, None));
    assert_eq!(t.grants, r#"[{"application":"from-registration"}]"#, "the registration's rules reach the token");
    assert_eq!(s.token("from-g1").await.expect("get"), Some(t));
    assert!(matches!(
        s.redeem(&hash_secret("reg-secret-1"), at(1601), |r| Ok(redeemed(r, "x", 1601))).await,
        Err(RedeemError::Used)
    ));
    assert!(matches!(
        s.redeem(&hash_secret("reg-secret-2"), at(1600), |r| Ok(redeemed(r, "y", 1600))).await,
        Err(RedeemError::Expired)
    ));
    assert!(matches!(
        s.redeem(&hash_secret("nope"), at(1600), |r| Ok(redeemed(r, "z", 1600))).await,
        Err(RedeemError::Unknown)
    ));
    assert_eq!(s.token("x").await.expect("get"), None, "a failed redeem issues nothing");
    // Registration tokens are never listed.
    assert!(s.list_tokens(&TokenFilter::default()).await.expect("list").iter().all(|t| t.id != "g1" && t.id != "g2"));
}

/// A redeem whose token cannot be recorded leaves the registration unused.
pub async fn a_failed_redeem_rolls_back(s: &Store) {
    s.insert_token(&token("taken", Some("from-g3"), None, TokenKind::Access, 1)).await.expect("insert");
    s.insert_registration(&registration("g3", "reg-secret-3", 5000)).await.expect("insert");
    let clash = s.redeem(&hash_secret("reg-secret-3"), at(1700), |r| Ok(redeemed(r, "new-id", 1700))).await;
    assert!(matches!(clash, Err(RedeemError::Store(StoreError::Conflict(_)))), "{clash:?}");
    // Still redeemable: the claim was rolled back with the failed insert.
    let ok = s
        .redeem(&hash_secret("reg-secret-3"), at(1701), |r| {
            let mut t = redeemed(r, "new-id", 1701);
            t.name = Some("from-g3-second".into());
            Ok(t)
        })
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    // A builder that refuses leaves the registration token unused.
    s.insert_registration(&registration("g4", "reg-secret-4", 5000)).await.expect("insert");
    let refused = s.redeem(&hash_secret("reg-secret-4"), at(1800), |_| Err(RedeemError::Revoked)).await;
    assert!(matches!(refused, Err(RedeemError::Revoked)), "{refused:?}");
    let ok = s.redeem(&hash_secret("reg-secret-4"), at(1801), |r| Ok(redeemed(r, "from-g4", 1801))).await;
    assert!(ok.is_ok(), "{ok:?}");
}

/// Of `n` concurrent redeems of one registration token exactly one wins.
pub async fn concurrent_redeems_yield_one_token(s: Arc<Store>, n: usize) {
    s.insert_registration(&registration("race", "reg-race", UnixTime::MAX.as_i64())).await.expect("insert");
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.redeem(&hash_secret("reg-race"), at(2000), move |r| {
                let mut t = redeemed(r, &format!("race-{i}"), 2000);
                t.name = Some(format!("race-winner-{i}"));
                Ok(t)
            })
            .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => won += 1,
            Err(RedeemError::Used) => {}
            Err(e) => panic!("unexpected redeem failure: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one redeem may win");
    let issued = s.list_tokens(&TokenFilter::default()).await.expect("list");
    assert_eq!(issued.iter().filter(|t| t.id.starts_with("race-")).count(), 1);
}

/// Client-chosen credential ids (Crafter): unique while live, found only
/// while live, and free to be used again once the token is revoked and its
/// secret forgotten.
pub async fn external_ids_are_unique_while_live(s: &Store) {
    let crafter = |id: &str, external: &str, at: i64| {
        let mut t = token(id, None, Some("engine"), TokenKind::Access, at);
        t.form = TokenForm::Reference;
        t.secret_hash = Some(hash_secret(external));
        t.external_id = Some(external.into());
        t
    };
    let first = crafter("j1", "e8f5170c-877b", 100);
    s.insert_token(&first).await.expect("insert");
    s.insert_token(&crafter("j2", "another-id", 101)).await.expect("insert");
    assert_eq!(s.token_by_external_id("e8f5170c-877b").await.expect("get"), Some(first.clone()));
    assert_eq!(s.token_by_external_id("nope").await.expect("get"), None);
    let all: Vec<String> = s.external_tokens().await.expect("all").into_iter().map(|t| t.id).collect();
    assert_eq!(all, ["j1", "j2"]);
    assert!(matches!(s.insert_token(&crafter("j3", "e8f5170c-877b", 102)).await, Err(StoreError::Conflict(_))));

    // Forgetting is only for revoked tokens.
    s.forget_secret("j1").await.expect("forget");
    assert_eq!(s.token("j1").await.expect("get").and_then(|t| t.external_id).as_deref(), Some("e8f5170c-877b"));
    assert!(s.revoke("j1", at(200)).await.expect("revoke"));
    assert_eq!(s.token_by_external_id("e8f5170c-877b").await.expect("get"), None, "gone once revoked");
    s.forget_secret("j1").await.expect("forget");
    let old = s.token("j1").await.expect("get").expect("kept");
    assert_eq!((old.secret_hash, old.external_id, old.revoked_at), (None, None, Some(at(200))));
    s.insert_token(&crafter("j4", "e8f5170c-877b", 300)).await.expect("the id is free again");
    assert_eq!(s.token_by_external_id("e8f5170c-877b").await.expect("get").map(|t| t.id).as_deref(), Some("j4"));
    assert!(s.token("j1").await.expect("get").is_some_and(|t| t.revoked_at.is_some()));
}

/// Concurrent writes (group-committed in batches): each caller gets its
/// own write's outcome. Of many inserts of one name exactly one wins; the
/// others are conflicts, and so is a revocation of a token that is not
/// there or not live; a write that fails for another reason (a
/// registration token naming a token that does not exist) fails alone,
/// and every other write of its batch is stored.
pub async fn concurrent_writes_get_their_own_outcomes(s: Arc<Store>, n: usize) {
    s.insert_token(&token("victim", None, None, TokenKind::Access, 50)).await.expect("insert");
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let same = token(&format!("same-{i}"), Some("contested"), None, TokenKind::Access, 100);
            let distinct = token(&format!("w-{i}"), None, None, TokenKind::Narrowed, 100 + i as i64);
            let (same, distinct) = (s.insert_token(&same), s.insert_token(&distinct));
            let revoke = s.revoke("victim", at(200 + i as i64));
            let mut broken = registration(&format!("broken-{i}"), &format!("reg-broken-{i}"), UnixTime::MAX.as_i64());
            broken.redeemed_token = Some("no-such-token".into());
            let (same, distinct, revoke, broken) = tokio::join!(same, distinct, revoke, s.insert_registration(&broken));
            (same, distinct, revoke, broken)
        }));
    }
    let (mut won, mut revoked) = (0, 0);
    for t in tasks {
        let (same, distinct, revoke, broken) = t.await.expect("join");
        match same {
            Ok(()) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("an insert of a taken name failed otherwise: {e}"),
        }
        distinct.expect("a distinct token is stored whatever else its batch held");
        revoked += usize::from(revoke.expect("revoke"));
        assert!(broken.is_err(), "a registration token naming no token is refused");
    }
    assert_eq!(won, 1, "exactly one insert of a name wins");
    assert_eq!(revoked, 1, "exactly one revocation finds the token live");
    let stored = s.list_tokens(&TokenFilter { limit: 1000, ..TokenFilter::default() }).await.expect("list");
    assert_eq!(stored.iter().filter(|t| t.id.starts_with("w-")).count(), n);
    assert_eq!(stored.iter().filter(|t| t.name.as_deref() == Some("contested")).count(), 1);
    assert!(s.token("victim").await.expect("get").expect("kept").revoked_at.is_some());
    assert!(!s.revoke("nope", at(300)).await.expect("revoke"), "an unknown token is not revoked");
}

fn session(key: u8, token: &str, created: i64, seen: i64) -> SessionRecord {
    SessionRecord {
        key: vec![key; 32],
        token_id: token.into(),
        sealed: vec![key, 0, 1, 2],
        created_at: at(created),
        last_seen: at(seen),
    }
}

fn bounds(per_token: usize, total: usize, now: i64) -> SessionBounds {
    SessionBounds { per_token, total, idle_before: at(now - 100), opened_before: at(now - 1000) }
}

/// Console sessions: found by key, touched, ended, and bounded as the
/// console's table is (per token, then the table: ended ones first, then
/// the least recently used of the token holding the most).
pub async fn console_sessions_are_kept_and_bounded(s: &Store) {
    let now = 10_000;
    s.insert_session(&session(1, "t1", now, now)).await.expect("insert");
    assert_eq!(s.session(&[1; 32]).await.expect("read"), Some(session(1, "t1", now, now)));
    assert_eq!(s.session(&[9; 32]).await.expect("read"), None);
    assert!(s.touch_session(&[1; 32], at(now + 5)).await.expect("touch"));
    assert!(s.touch_session(&[1; 32], at(now + 2)).await.expect("an older touch changes nothing"));
    assert!(!s.touch_session(&[9; 32], at(now)).await.expect("no such session"));
    assert_eq!(s.session(&[1; 32]).await.expect("read").map(|r| r.last_seen), Some(at(now + 5)));
    s.delete_session(&[1; 32]).await.expect("delete");
    assert_eq!(s.session(&[1; 32]).await.expect("read"), None);

    // The token's own bound: its least recently used go.
    for k in 1..=3 {
        s.insert_session(&session(k, "t1", now, now + i64::from(k))).await.expect("insert");
    }
    s.make_session_room("t1", bounds(3, 100, now)).await.expect("room");
    assert_eq!(s.session(&[1; 32]).await.expect("read"), None, "t1's least recently used");
    assert!(s.session(&[2; 32]).await.expect("read").is_some());
    assert_eq!(s.live_session_tokens(bounds(3, 100, now)).await.expect("count").len(), 2);

    // A full table: the ended ones first (idle, or too old)…
    s.insert_session(&session(4, "t2", now, now - 500)).await.expect("insert");
    s.insert_session(&session(5, "t2", now - 5000, now)).await.expect("insert");
    assert_eq!(s.live_session_tokens(bounds(3, 100, now)).await.expect("count").len(), 2, "ended ones are not counted");
    s.make_session_room("t3", bounds(3, 4, now)).await.expect("room");
    assert_eq!(s.session(&[4; 32]).await.expect("read"), None);
    assert_eq!(s.session(&[5; 32]).await.expect("read"), None);
    assert!(s.session(&[2; 32]).await.expect("read").is_some(), "live sessions kept while there is room");
    // …then the least recently used of the token holding the most.
    s.insert_session(&session(6, "t3", now, now)).await.expect("insert");
    s.insert_session(&session(7, "t4", now, now)).await.expect("insert");
    // t4 would tie t1 with two: its own goes.
    s.make_session_room("t4", bounds(3, 4, now)).await.expect("room");
    assert_eq!(s.session(&[7; 32]).await.expect("read"), None, "the newcomer's own on a tie");
    s.insert_session(&session(7, "t4", now, now)).await.expect("insert");
    // A token with none: t1's least recently used.
    s.make_session_room("t5", bounds(3, 4, now)).await.expect("room");
    assert_eq!(s.session(&[2; 32]).await.expect("read"), None, "t1 holds the most");
    assert!(s.session(&[3; 32]).await.expect("read").is_some());
    assert_eq!(s.live_session_tokens(bounds(3, 4, now)).await.expect("count").len(), 3);
}
