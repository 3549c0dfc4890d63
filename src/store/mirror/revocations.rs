//! The revocation set: every revoked token id (the set only grows), how
//! current it is, and a log of additions the revocation feed serves from.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashSet;
use tokio::sync::watch;

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

#[derive(Debug)]
pub struct Revocations {
    ids: DashSet<Box<str>>,
    /// Lets the common case (nothing revoked) skip the set entirely.
    len: AtomicUsize,
    /// Every id in the order it was added: the feed's deltas.
    log: RwLock<Vec<Box<str>>>,
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
    /// Set while the set is past `max` staleness, so the crossing is logged
    /// once each way.
    stale_logged: AtomicBool,
    /// How many times the follower (re)connected to its source.
    connects: AtomicU64,
}

impl Default for Revocations {
    fn default() -> Self {
        Revocations::new(Staleness::default())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Revocations {
    pub fn new(staleness: Staleness) -> Self {
        Revocations {
            ids: DashSet::new(),
            len: AtomicUsize::new(0),
            log: RwLock::new(Vec::new()),
            added: watch::Sender::new(0),
            staleness,
            followed: AtomicBool::new(false),
            up: AtomicBool::new(false),
            confirmed_ms: AtomicU64::new(0),
            stale_logged: AtomicBool::new(false),
            connects: AtomicU64::new(0),
        }
    }

    pub fn revoke(&self, token_id: &str) {
        if self.ids.insert(token_id.into()) {
            self.len.fetch_add(1, Ordering::Release);
            // Writers are rare (a revocation); readers of the log are feed
            // subscribers, never the request path.
            if let Ok(mut log) = self.log.write() {
                log.push(token_id.into());
                self.added.send_replace(log.len());
            }
        }
    }

    pub fn is_revoked(&self, token_id: &str) -> bool {
        self.len.load(Ordering::Acquire) != 0 && self.ids.contains(token_id)
    }

    /// Whether the grant or any ancestor has been revoked.
    pub fn rejects(&self, grant: &Grant) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.ids.contains(&*grant.token_id) || grant.lineage.iter().any(|id| self.ids.contains(&**id))
    }

    /// How many ids are revoked.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids added from position `from` of the log on, and the log's
    /// length (the next position).
    pub fn since(&self, from: usize) -> (Vec<Box<str>>, usize) {
        match self.log.read() {
            Ok(log) => (log.get(from..).map(<[_]>::to_vec).unwrap_or_default(), log.len()),
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
        self.confirm_at(now_ms());
    }

    /// The set was complete at `ms` (Unix milliseconds): a source's own
    /// confirmation time, relayed.
    pub fn confirm_at(&self, ms: u64) {
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
        if self.is_followed() { self.confirmed_ms.load(Ordering::Acquire) } else { now_ms() }
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
        Duration::from_millis(now_ms().saturating_sub(self.confirmed_ms.load(Ordering::Acquire)))
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

    #[test]
    fn a_followed_set_goes_stale_and_the_policy_decides() {
        let serve = Revocations::new(Staleness { max: Duration::from_millis(50), refuse: false });
        let refuse = Revocations::new(Staleness { max: Duration::from_millis(50), refuse: true });
        for r in [&serve, &refuse] {
            assert!(r.is_loaded() && !r.is_stale() && !r.refuses(), "unfollowed: always current");
            r.follow();
            assert!(!r.is_loaded() && r.is_stale(), "followed, never confirmed");
            r.confirm();
            assert!(r.is_loaded() && !r.is_stale());
        }
        std::thread::sleep(Duration::from_millis(80));
        assert!(serve.is_stale() && !serve.refuses());
        assert!(refuse.is_stale() && refuse.refuses());
        refuse.confirm();
        assert!(!refuse.refuses());
    }

    #[test]
    fn the_log_lists_each_id_once_in_order() {
        let r = Revocations::default();
        for id in ["a", "b", "a", "c"] {
            r.revoke(id);
        }
        assert_eq!(r.since(0), (vec!["a".into(), "b".into(), "c".into()], 3));
        assert_eq!(r.since(2), (vec!["c".into()], 3));
        assert_eq!(r.since(9), (vec![], 3));
        assert_eq!(*r.subscribe().borrow(), 3);
    }
}
