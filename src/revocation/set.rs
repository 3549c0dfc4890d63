//! The revocation set: every revoked token id with its token's expiry, how
//! current it is, and a log of additions the revocation feed serves from.
//!
//! An id is held until its token's expiry and [`EXPIRY_GRACE`] have passed
//! (a token is never honoured past its expiry, its descendants never
//! outlive it, and the grace covers every issuer's clock skew), then
//! forgotten by [`Revocations::sweep`]; an id whose expiry is not known is
//! held for good. A set filled from the network (a follower) is capped:
//! [`Revocations::revoke_within`] refuses to grow past it, and its caller
//! stops confirming the set, so the gateway goes stale and does what
//! `revocation.when_stale` says — never silently forgetting a revocation.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::time::UnixTime;
use crate::token::Grant;

/// What a gateway does when it cannot confirm its revocation set for
/// longer than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staleness {
    pub max: Duration,
    /// `true`: refuse token-checked requests with 503 until confirmed again;
    /// `false`: keep serving from the last known set (logged, and visible
    /// in the metrics for alerting).
    pub refuse: bool,
}

impl Default for Staleness {
    fn default() -> Self {
        Staleness { max: Duration::from_secs(5), refuse: false }
    }
}

/// How long past its token's expiry a revoked id is still held: longer
/// than any issuer's `clock_skew` (at most 5 minutes), so a token accepted
/// a little past its `exp` is still refused.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(600);

/// A revoked id and its token's expiry (`None`: held for good), as the feed
/// sends it.
pub type Held = (Box<str>, Option<UnixTime>);

/// An expiry that is not known, or none: held for good.
const NEVER: u64 = u64::MAX;

/// A follower's set is at its cap: the id could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the revocation set holds its maximum of {max} ids (revocation.follow.max_ids)")]
pub struct SetFull {
    pub max: usize,
}

/// Why a follower refused part of what its source sent (counted, and
/// exported as `narrowgate_revocation_feed_refused{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum FeedRefusal {
    /// A line longer than the follower reads.
    LineTooLong,
    /// An id longer than any jti a token may carry (or empty).
    IdTooLong,
    /// A line that is not one of the feed's.
    Malformed,
    /// An id the capped set had no room for.
    SetFull,
}

#[derive(Debug)]
pub struct Revocations {
    /// Revoked id → its token's expiry (Unix seconds; [`NEVER`]).
    ids: DashMap<Box<str>, u64>,
    /// Lets the common case (nothing revoked) skip the set entirely.
    len: AtomicUsize,
    /// Every id in the order it was added, with its expiry: the feed's
    /// deltas.
    log: RwLock<Vec<(Box<str>, u64)>>,
    /// The log's length, for feed subscribers to wait on.
    added: watch::Sender<usize>,
    staleness: Staleness,
    /// The set is kept current by a follower (PostgreSQL notifications, an
    /// issuer's feed); unfollowed sets are current by construction.
    followed: AtomicBool,
    /// Whether the follower is connected to its source now.
    up: AtomicBool,
    /// Unix milliseconds of the last confirmation; 0: never.
    confirmed_ms: AtomicU64,
    /// When, on the monotonic clock, the set was known complete: the
    /// confirmation's arrival, less how old it was then by the system's
    /// time. Staleness is aged from it, so no step of either machine's
    /// clock makes the set look fresher or staler than it is.
    fresh_mono_ms: AtomicU64,
    /// Set while the set is past `max` staleness, so the crossing is logged
    /// once each way.
    stale_logged: AtomicBool,
    /// How many times the follower (re)connected to its source.
    connects: AtomicU64,
    /// What the follower refused, by [`FeedRefusal`].
    refused: [AtomicU64; 4],
    /// What staleness and confirmations are timed by.
    clock: Arc<Clock>,
}

impl Default for Revocations {
    fn default() -> Self {
        Revocations::new(Staleness::default(), Arc::default())
    }
}

impl Revocations {
    /// An empty set, stale by `staleness` as timed by `clock`.
    pub fn new(staleness: Staleness, clock: Arc<Clock>) -> Self {
        Revocations {
            clock,
            ids: DashMap::new(),
            len: AtomicUsize::new(0),
            log: RwLock::new(Vec::new()),
            added: watch::Sender::new(0),
            staleness,
            followed: AtomicBool::new(false),
            up: AtomicBool::new(false),
            confirmed_ms: AtomicU64::new(0),
            fresh_mono_ms: AtomicU64::new(0),
            stale_logged: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            refused: Default::default(),
        }
    }

    /// Revoke `token_id`, held until its token's expiry (`None`: not known,
    /// held for good). A known expiry replaces an unknown one (a
    /// notification names only the id; the store's resync tells its
    /// expiry); of two known ones the later is kept.
    pub fn revoke(&self, token_id: &str, expires_at: Option<UnixTime>) {
        let exp = expires_at.map_or(NEVER, UnixTime::secs);
        let added = match self.ids.entry(token_id.into()) {
            dashmap::Entry::Occupied(mut held) => {
                let now_known = *held.get() == NEVER && exp != NEVER;
                if now_known || (exp != NEVER && exp > *held.get()) {
                    held.insert(exp);
                }
                false
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(exp);
                true
            }
        };
        if added {
            self.len.fetch_add(1, Ordering::Release);
            // Writers are rare (a revocation); readers of the log are feed
            // subscribers, never the request path.
            if let Ok(mut log) = self.log.write() {
                log.push((token_id.into(), exp));
                self.added.send_replace(log.len());
            }
        }
    }

    /// [`Revocations::revoke`], for a set that holds at most `max` ids
    /// (one filled from the network): an id whose token expired before the
    /// grace is not taken (it is moot), and a new id that finds the set
    /// full, once the expired ones are swept at `now`, is refused and
    /// counted.
    pub fn revoke_within(
        &self,
        token_id: &str,
        expires_at: Option<UnixTime>,
        max: usize,
        now: UnixTime,
    ) -> Result<(), SetFull> {
        if expires_at.is_some_and(|exp| exp < now.saturating_sub(EXPIRY_GRACE)) {
            return Ok(());
        }
        if !self.ids.contains_key(token_id) && self.len() >= max {
            self.sweep(now);
            if self.len() >= max {
                self.refused(FeedRefusal::SetFull);
                return Err(SetFull { max });
            }
        }
        self.revoke(token_id, expires_at);
        Ok(())
    }

    /// Forget the ids whose tokens expired more than [`EXPIRY_GRACE`]
    /// before `now`; how many went.
    pub fn sweep(&self, now: UnixTime) -> usize {
        let before = self.ids.len();
        let keep_after = now.saturating_sub(EXPIRY_GRACE).secs();
        self.ids.retain(|_, exp| *exp >= keep_after);
        let gone = before.saturating_sub(self.ids.len());
        if gone > 0 {
            self.len.store(self.ids.len(), Ordering::Release);
            self.ids.shrink_to_fit();
        }
        gone
    }

    /// Count a refusal of the follower's.
    pub fn refused(&self, why: FeedRefusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many times the follower refused for `why`, since start.
    pub fn refusals(&self, why: FeedRefusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// Whether `id` — a token id, or a lineage's name for a token — has
    /// been revoked. Another issuer's token is named `iss#jti` in a
    /// lineage and revoked by its bare `jti` (`POST /v1/revocations`), so
    /// the part after the first `#` is looked up too: an issuer holds no
    /// `#`, so that part is the whole `jti`. (A bare id holding a `#` may
    /// then be revoked by its tail as well: more, never less.)
    pub fn is_revoked(&self, id: &str) -> bool {
        self.len.load(Ordering::Acquire) != 0 && self.holds(id)
    }

    fn holds(&self, id: &str) -> bool {
        self.ids.contains_key(id) || id.split_once('#').is_some_and(|(_, jti)| self.ids.contains_key(jti))
    }

    /// Whether the grant or any ancestor has been revoked.
    pub fn rejects(&self, grant: &Grant) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.ids.contains_key(&*grant.token_id) || grant.lineage.iter().any(|id| self.holds(id))
    }

    /// How many ids are revoked.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids added from position `from` of the log on that are still
    /// held at `now`, with their expiry (`None`: held for good), and the
    /// log's length (the next position).
    pub fn since(&self, from: usize, now: UnixTime) -> (Vec<Held>, usize) {
        let keep_after = now.saturating_sub(EXPIRY_GRACE).secs();
        match self.log.read() {
            Ok(log) => {
                let held = log.get(from..).unwrap_or_default().iter().filter(|(_, exp)| *exp >= keep_after);
                // Every expiry held came from a UnixTime, or is NEVER.
                (held.map(|(id, exp)| (id.clone(), UnixTime::from_secs(*exp).ok())).collect(), log.len())
            }
            Err(_) => (Vec::new(), from),
        }
    }

    /// Resolves whenever an id is added (for feed subscribers).
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.added.subscribe()
    }

    /// Mark the set as kept current by a follower: from now on it can be
    /// stale.
    pub fn follow(&self) {
        self.followed.store(true, Ordering::Release);
    }

    /// The follower heard from its source: the set is complete as of now.
    pub fn confirm(&self) {
        self.confirm_at(self.now_ms());
    }

    /// The set was complete at `ms` (Unix milliseconds): a source's own
    /// confirmation time, relayed.
    pub fn confirm_at(&self, ms: u64) {
        let age = self.clock.system_ms().saturating_sub(ms);
        self.fresh_mono_ms.fetch_max(self.clock.mono_ms().saturating_sub(age), Ordering::AcqRel);
        self.confirmed_ms.fetch_max(ms, Ordering::AcqRel);
        self.up.store(true, Ordering::Release);
        if self.stale_logged.swap(false, Ordering::AcqRel) {
            tracing::info!("revocations confirmed current again");
        }
    }

    /// The follower (re)connected to its source and resynced.
    pub fn connected(&self) {
        if self.connects.fetch_add(1, Ordering::Relaxed) > 0 {
            tracing::info!("revocation feed re-established and resynced");
        }
    }

    /// How many times the follower has connected to its source.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The follower lost its source.
    pub fn feed_down(&self) {
        self.up.store(false, Ordering::Release);
    }

    /// Whether a follower is connected to its source.
    pub fn feed_up(&self) -> bool {
        !self.is_followed() || self.up.load(Ordering::Acquire)
    }

    pub fn is_followed(&self) -> bool {
        self.followed.load(Ordering::Acquire)
    }

    /// Whether the set has been confirmed at least once (an unfollowed set
    /// always has).
    pub fn is_loaded(&self) -> bool {
        !self.is_followed() || self.confirmed_ms.load(Ordering::Acquire) != 0
    }

    /// Unix milliseconds the set is known complete as of: now for an
    /// unfollowed set, else its last confirmation (0: never).
    pub fn confirmed_ms(&self) -> u64 {
        if self.is_followed() { self.confirmed_ms.load(Ordering::Acquire) } else { self.now_ms() }
    }

    /// Unix seconds of the last confirmation; `None` for an unfollowed set
    /// or before the first.
    pub fn last_confirmed_secs(&self) -> Option<f64> {
        let ms = self.confirmed_ms.load(Ordering::Acquire);
        (self.is_followed() && ms != 0).then(|| ms as f64 / 1000.0)
    }

    /// How long since the set was last confirmed (zero for an unfollowed
    /// set; since ever for one never confirmed).
    pub fn staleness(&self) -> Duration {
        if !self.is_followed() {
            return Duration::ZERO;
        }
        if self.confirmed_ms.load(Ordering::Acquire) == 0 {
            return Duration::from_millis(self.now_ms());
        }
        Duration::from_millis(self.clock.mono_ms().saturating_sub(self.fresh_mono_ms.load(Ordering::Acquire)))
    }

    /// The set's time, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The configured policy.
    pub fn policy(&self) -> Staleness {
        self.staleness
    }

    /// Whether the set is older than the policy allows; logs the crossing.
    pub fn is_stale(&self) -> bool {
        let stale = self.staleness() > self.staleness.max;
        if stale && !self.stale_logged.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                max_staleness = ?self.staleness.max,
                refusing = self.staleness.refuse,
                "revocations could not be confirmed within max_staleness; {}",
                if self.staleness.refuse { "refusing token-checked requests" } else { "serving from the last known set" }
            );
        }
        stale
    }

    /// Whether token-checked requests must be refused now: the policy says
    /// refuse and the set is stale. One load when the policy is to serve.
    #[inline]
    pub fn refuses(&self) -> bool {
        self.staleness.refuse && self.is_stale()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> UnixTime {
        UnixTime::clamped(secs)
    }

    #[test]
    fn a_followed_set_goes_stale_and_the_policy_decides() {
        let clock = Arc::new(Clock::default());
        let serve = Revocations::new(Staleness { max: Duration::from_millis(50), refuse: false }, clock.clone());
        let refuse = Revocations::new(Staleness { max: Duration::from_millis(50), refuse: true }, clock.clone());
        for r in [&serve, &refuse] {
            assert!(r.is_loaded() && !r.is_stale() && !r.refuses(), "unfollowed: always current");
            r.follow();
            assert!(!r.is_loaded() && r.is_stale(), "followed, never confirmed");
            r.confirm();
            assert!(r.is_loaded() && !r.is_stale());
        }
        clock.advance(Duration::from_millis(80));
        assert!(serve.is_stale() && !serve.refuses());
        assert!(refuse.is_stale() && refuse.refuses());
        refuse.confirm();
        assert!(!refuse.refuses());
    }

    #[test]
    fn staleness_is_the_confirmations_age_whatever_the_system_clock_does() {
        let clock = Arc::new(Clock::default());
        let r = Revocations::new(Staleness { max: Duration::from_secs(5), refuse: true }, clock.clone());
        r.follow();
        // A source's confirmation, 2 s old by the system's time when it came.
        r.confirm_at(clock.system_ms() - 2_000);
        assert!((Duration::from_millis(1_990)..Duration::from_millis(2_500)).contains(&r.staleness()));
        // The system's clock stepped back an hour (this machine's gateway
        // is held ahead meanwhile), then forward two: the set is as old as
        // it was.
        for step in [-3_600_000, 7_200_000] {
            clock.step_system(step);
            assert!(!r.is_stale(), "stale after a step of {step} ms: {:?}", r.staleness());
        }
        // One that came 10 s old is stale at once, even at the start.
        let fresh = Revocations::new(Staleness { max: Duration::from_secs(5), refuse: true }, clock.clone());
        fresh.follow();
        fresh.confirm_at(clock.system_ms() - 10_000);
        assert!(fresh.refuses());
        // Time passing ages it.
        clock.advance(Duration::from_secs(4));
        assert!(r.is_stale());
    }

    #[test]
    fn another_issuers_jti_revoked_bare_reaches_the_lineage_entries_naming_it_with_its_issuer() {
        let grant = |lineage: &[&str]| crate::token::testkit::grant("child", lineage);
        let r = Revocations::default();
        r.revoke("unrelated", None);
        let child = grant(&["root", "https://idp.example#j1"]);
        assert!(!r.rejects(&child) && !r.is_revoked("https://idp.example#j1"));
        r.revoke("j1", None);
        assert!(r.rejects(&child) && r.is_revoked("https://idp.example#j1"), "the bare jti");
        // Only the whole jti after the issuer: not a prefix or a part of it.
        for other in [&["https://idp.example#j10"][..], &["https://idp.example#x#j1"], &["j1x"], &["#j"]] {
            assert!(!r.rejects(&grant(other)), "{other:?}");
        }
        // A jti holding a `#` is revoked whole, and an entry naming it too.
        r.revoke("a#b", None);
        assert!(r.rejects(&grant(&["https://idp.example#a#b"])) && r.rejects(&grant(&["a#b"])));
        // The token itself is matched by its id alone.
        assert!(!r.rejects(&crate::token::testkit::grant("x#j1", &[])), "a token's own id is its id");
    }

    #[test]
    fn the_log_lists_each_id_once_in_order() {
        let r = Revocations::default();
        for id in ["a", "b", "a", "c"] {
            r.revoke(id, None);
        }
        let ids = |v: Vec<Held>| v.into_iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>();
        let (all, len) = r.since(0, at(0));
        assert_eq!((ids(all), len), (vec!["a".to_string(), "b".into(), "c".into()], 3));
        assert_eq!(ids(r.since(2, at(0)).0), vec!["c".to_string()]);
        assert_eq!(r.since(9, at(0)), (vec![], 3));
        assert_eq!(*r.subscribe().borrow(), 3);
    }

    #[test]
    fn ids_are_held_until_their_tokens_expire_and_the_grace_passes() {
        let r = Revocations::default();
        let grace = EXPIRY_GRACE.as_secs();
        r.revoke("short", Some(at(1_000)));
        r.revoke("long", Some(at(5_000)));
        r.revoke("unknown", None);
        // A notification without the expiry, then the resync's: the known
        // expiry holds; a second known one never shortens it.
        r.revoke("later-known", None);
        r.revoke("later-known", Some(at(2_000)));
        r.revoke("later-known", Some(at(1_500)));
        assert_eq!(r.sweep(at(1_000 + grace)), 0, "within the grace: held");
        assert!(r.is_revoked("short"));
        assert_eq!(r.since(0, at(1_000 + grace + 1)).0.len(), 3, "the feed no longer sends an expired id");
        assert_eq!(r.sweep(at(1_000 + grace + 1)), 1);
        assert!(!r.is_revoked("short") && r.is_revoked("later-known") && r.len() == 3);
        assert_eq!(r.sweep(at(2_000 + grace + 1)), 1);
        assert_eq!(r.sweep(at(u64::MAX - 1)), 1, "only the one whose expiry is unknown stays");
        assert!(r.is_revoked("unknown") && r.len() == 1);
    }

    #[test]
    fn a_capped_set_refuses_to_grow_past_its_cap_after_sweeping() {
        let r = Revocations::default();
        for i in 0..3 {
            r.revoke_within(&format!("t{i}"), Some(at(100)), 3, at(0)).expect("room");
        }
        assert_eq!(r.revoke_within("t0", Some(at(200)), 3, at(0)), Ok(()), "an id it holds is no growth");
        assert_eq!(r.revoke_within("t3", None, 3, at(0)), Err(SetFull { max: 3 }));
        assert_eq!(r.refusals(FeedRefusal::SetFull), 1);
        assert!(!r.is_revoked("t3") && r.len() == 3);
        // Once t1 and t2 expired (t0 now lives longer), there is room.
        let later = 100 + EXPIRY_GRACE.as_secs() + 1;
        assert_eq!(r.revoke_within("t3", None, 3, at(later)), Ok(()));
        assert!(r.is_revoked("t0") && r.is_revoked("t3") && !r.is_revoked("t1") && r.len() == 2);
    }
}
