//! Failed sign-ins per client: a client may fail `burst` times at once,
//! then once per period of the limit's rate (`console.failed_sign_ins`,
//! 10/h with a burst of 5 by default); past that, its sign-ins are
//! answered 429 with `Retry-After` before its body is read or its token
//! looked at. Only failures count: a client that signs in is never slowed
//! by its successes (their number is bounded per token by the session
//! table instead).
//!
//! GCRA on the gateway's clock (whole seconds), here rather than in
//! `ratelimit` because governor's limiters take a cell at every check —
//! they cannot say whether a client is over without charging it, and
//! successes must not be charged — and because tests move the clock
//! instead of waiting. Who a client is comes from `ratelimit` (an IPv6
//! client is its prefix).
//!
//! Bounded like `ratelimit`'s keyed limits: at most [`MAX_CLIENTS`]
//! clients are tracked, and one whose failures have drained is forgotten
//! without loss. Failures of clients that find the table full share one
//! overflow bucket, which also answers for every client not tracked while
//! the table stays full: limited together, never unlimited (a flood of
//! new addresses buys no more guesses), and the clients already tracked
//! keep their own buckets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::ratelimit::Limit;

/// Clients tracked at most.
pub const MAX_CLIENTS: usize = 10_000;

/// The failed sign-ins of each client.
pub struct Throttle {
    clients: Mutex<Clients>,
    capacity: usize,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::with_capacity(MAX_CLIENTS)
    }
}

struct Clients {
    /// Each client's theoretical arrival time (Unix seconds): when its
    /// bucket is empty again.
    tat: HashMap<IpAddr, u64>,
    /// The bucket of the clients the table had no room for.
    overflow: u64,
    /// When the table was last swept (at most once a second).
    swept_at: u64,
}

/// The limit in whole seconds: what one failure adds, and how much may be
/// owed with one more attempt still allowed.
fn shape(limit: &Limit) -> (u64, u64) {
    let interval = (limit.rate.per / limit.rate.count.get()).as_secs().max(1);
    let burst = u64::from(limit.burst.unwrap_or(limit.rate.count).get());
    (interval, interval.saturating_mul(burst - 1))
}

impl Throttle {
    fn with_capacity(capacity: usize) -> Self {
        Throttle { clients: Mutex::new(Clients { tat: HashMap::new(), overflow: 0, swept_at: 0 }), capacity }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, Clients> {
        // Nothing panics while holding the lock; a number per client
        // cannot be left half-written.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `client` may try to sign in at `now`; if not, how long it
    /// waits (for `Retry-After`).
    pub fn admits(&self, client: IpAddr, now: u64, limit: &Limit) -> Result<(), Duration> {
        let (_, tolerance) = shape(limit);
        let mut c = self.clients();
        let tat = match c.tat.get(&client).copied() {
            Some(tat) => tat,
            None if c.is_full(now, self.capacity) => c.overflow,
            None => return Ok(()),
        };
        match tat.saturating_sub(now).checked_sub(tolerance) {
            Some(wait) if wait > 0 => Err(Duration::from_secs(wait)),
            _ => Ok(()),
        }
    }

    /// Count a failed sign-in of `client` at `now`.
    pub fn failed(&self, client: IpAddr, now: u64, limit: &Limit) {
        let (interval, _) = shape(limit);
        let charge = |tat: u64| tat.max(now).saturating_add(interval);
        let mut c = self.clients();
        if let Some(tat) = c.tat.get_mut(&client) {
            *tat = charge(*tat);
        } else if c.is_full(now, self.capacity) {
            c.overflow = charge(c.overflow);
        } else {
            c.tat.insert(client, charge(now));
        }
    }

    /// How many clients are waiting at `now` (tracked ones; the overflow
    /// bucket counts as one).
    pub fn waiting(&self, now: u64, limit: &Limit) -> usize {
        let (_, tolerance) = shape(limit);
        let c = self.clients();
        let over = |tat: &u64| tat.saturating_sub(now) > tolerance;
        c.tat.values().filter(|t| over(t)).count() + usize::from(over(&c.overflow))
    }
}

impl Clients {
    /// Whether no client can be added: the table at its bound once the
    /// clients whose buckets are empty again are forgotten.
    fn is_full(&mut self, now: u64, capacity: usize) -> bool {
        if self.tat.len() >= capacity && self.swept_at != now {
            self.swept_at = now;
            self.tat.retain(|_, tat| *tat > now);
        }
        self.tat.len() >= capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: &str, burst: u32) -> Limit {
        serde_json::from_value(serde_json::json!({ "rate": rate, "burst": burst })).expect("limit")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_client_fails_its_burst_then_waits_a_period_per_attempt() {
        let t = Throttle::default();
        let l = limit("10/h", 5);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..5 {
            assert_eq!(t.admits(a, 1000, &l), Ok(()));
            t.failed(a, 1000, &l);
        }
        assert_eq!(t.admits(a, 1000, &l), Err(Duration::from_secs(360)), "one failure drains in 6 minutes");
        assert_eq!(t.admits(a, 1359, &l), Err(Duration::from_secs(1)));
        assert_eq!(t.admits(b, 1000, &l), Ok(()), "another client is not slowed");
        assert_eq!(t.waiting(1000, &l), 1);
        assert_eq!(t.admits(a, 1360, &l), Ok(()), "one more attempt");
        t.failed(a, 1360, &l);
        assert_eq!(t.admits(a, 1360, &l), Err(Duration::from_secs(360)), "and then the wait again");
        assert_eq!(t.admits(a, 1360 + 5 * 360, &l), Ok(()));
    }

    #[test]
    fn clients_that_find_the_table_full_share_one_overflow_bucket() {
        let t = Throttle::with_capacity(2);
        let l = limit("1/m", 2);
        for k in ["10.0.0.1", "10.0.0.2"] {
            t.failed(ip(k), 1000, &l);
        }
        assert_eq!(t.admits(ip("10.0.0.9"), 1000, &l), Ok(()), "nothing in the overflow yet");
        // Two new clients fail once each: the overflow's burst is spent.
        t.failed(ip("10.0.0.3"), 1000, &l);
        t.failed(ip("10.0.0.4"), 1000, &l);
        assert!(t.admits(ip("10.0.0.5"), 1000, &l).is_err(), "a new address buys nothing while the table is full");
        assert_eq!(t.admits(ip("10.0.0.1"), 1000, &l), Ok(()), "a tracked client keeps its own bucket");
        // The tracked clients' failures drain: they are forgotten, and a
        // new client has a bucket of its own again.
        assert_eq!(t.admits(ip("10.0.0.5"), 1060, &l), Ok(()));
        t.failed(ip("10.0.0.5"), 1061, &l);
        t.failed(ip("10.0.0.5"), 1061, &l);
        assert!(t.admits(ip("10.0.0.5"), 1061, &l).is_err());
        assert_eq!(t.admits(ip("10.0.0.6"), 1061, &l), Ok(()), "not lumped with 10.0.0.5");
    }
}
