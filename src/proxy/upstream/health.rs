//! Passive health and the retry budget of one upstream (one worker's
//! pool): what the requests it forwarded say about each address, kept in
//! atomics the worker alone writes.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::{Ejection, Retries};

/// One address's health: its failures in a row, when its ejection ends,
/// and how many ejections in a row it has had (each doubles the next).
#[derive(Debug, Default)]
pub(super) struct Health {
    failures: AtomicU32,
    /// Unix milliseconds, by the gateway's clock; 0: not ejected.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
    /// Requests sent to it whose response has not ended.
    pub(super) outstanding: AtomicUsize,
}

impl Health {
    /// Whether it may be chosen at `now` (ms since the epoch).
    pub(super) fn available(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) <= now
    }

    /// A request it answered well: its run of failures ends, and so does
    /// the doubling of its ejections.
    pub(super) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A failure (no connection, TLS, no response in time, a 5xx): at
    /// `policy`'s count in a row, ejected until `now` plus its backoff.
    /// Whether this failure ejected it.
    pub(super) fn failed(&self, policy: &Ejection, now: u64) -> bool {
        if policy.consecutive_failures == 0 {
            return false;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < policy.consecutive_failures {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let backoff = policy.base.saturating_mul(1 << n).min(policy.max);
        self.ejected_until.store(now.saturating_add(millis(backoff)), Ordering::Relaxed);
        true
    }
}

/// Milliseconds, saturating.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The gateway's time in Unix milliseconds (what ejections end by).
pub(super) fn now_ms(clock: &crate::clock::Clock) -> u64 {
    clock.now_ms()
}

/// The retry budget: each request sent deposits `budget_percent` of a
/// retry, each retry spends one; at most [`RESERVE`] retries are banked.
#[derive(Debug)]
pub(super) struct Budget {
    /// Thousandths of a retry.
    milli: AtomicU64,
    per_request: u64,
}

/// Retries banked at most (and at start): a burst the budget allows.
const RESERVE: u64 = 10_000;

impl Budget {
    pub(super) fn new(retries: &Retries) -> Self {
        Budget { milli: AtomicU64::new(RESERVE), per_request: u64::from(retries.budget_percent) * 10 }
    }

    /// A request was sent.
    pub(super) fn deposit(&self) {
        let now = self.milli.load(Ordering::Relaxed);
        if now < RESERVE {
            self.milli.store((now + self.per_request).min(RESERVE), Ordering::Relaxed);
        }
    }

    /// Spend one retry, if the budget has one.
    pub(super) fn withdraw(&self) -> bool {
        let now = self.milli.load(Ordering::Relaxed);
        if now < 1000 {
            return false;
        }
        self.milli.store(now - 1000, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Ejection {
        Ejection { consecutive_failures: 3, base: Duration::from_secs(10), max: Duration::from_secs(25) }
    }

    #[test]
    fn failures_in_a_row_eject_for_a_growing_backoff_and_a_success_ends_the_run() {
        let h = Health::default();
        let p = policy();
        assert!(!h.failed(&p, 1000) && !h.failed(&p, 1000));
        assert!(h.failed(&p, 1000), "the third in a row ejects");
        assert!(!h.available(1000) && !h.available(10_999) && h.available(11_000));
        // Back, and failing again: twice as long, then capped.
        for _ in 0..3 {
            h.failed(&p, 20_000);
        }
        assert!(!h.available(39_999) && h.available(40_000));
        for _ in 0..3 {
            h.failed(&p, 50_000);
        }
        assert!(!h.available(74_999) && h.available(75_000), "at most max");
        // A success resets both the run and the doubling.
        h.succeeded();
        assert!(!h.failed(&p, 80_000) && !h.failed(&p, 80_000));
        h.succeeded();
        for _ in 0..3 {
            h.failed(&p, 90_000);
        }
        assert!(h.available(100_000), "the base again after a success");
        let never = Ejection { consecutive_failures: 0, ..p };
        assert!((0..100).all(|_| !h.failed(&never, 200_000)));
    }

    #[test]
    fn the_budget_allows_its_share_of_retries_after_its_reserve() {
        let b = Budget::new(&Retries { attempts: 1, statuses: vec![], budget_percent: 20 });
        assert!((0..10).all(|_| b.withdraw()), "the reserve");
        assert!(!b.withdraw());
        for _ in 0..4 {
            b.deposit();
        }
        assert!(!b.withdraw(), "four requests earn 0.8 of a retry");
        b.deposit();
        assert!(b.withdraw() && !b.withdraw(), "five earn one");
    }
}
