//! The time the gateway decides by: every expiry, not-before and lifetime
//! is judged against one [`Clock`], shared by the proxy and the token
//! service, and every timer whose passing changes a decision (the key
//! ring's refetch backoff, the revocation set's staleness) reads it too,
//! so a test moves it instead of waiting. Latency measurements and the
//! connection pools' idle timers read the system's monotonic clock
//! directly: no decision depends on them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The system clock, moved by an offset only a test sets.
#[derive(Debug, Default)]
pub struct Clock {
    /// Milliseconds added to the system's time.
    offset_ms: AtomicI64,
}

impl Clock {
    /// The current Unix time, in seconds.
    #[inline]
    pub fn now(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// The current Unix time, in milliseconds.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        now_unix_ms().saturating_add_signed(self.offset_ms.load(Ordering::Relaxed))
    }

    /// The current time as a `SystemTime` (audit lines, `Retry-After`
    /// times).
    pub fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms())
    }

    /// A monotonic reading for intervals and backoffs (it never steps back
    /// when the system's time is set), moved forward with the clock.
    pub fn instant(&self) -> Instant {
        let ahead = u64::try_from(self.offset_ms.load(Ordering::Relaxed)).unwrap_or(0);
        let now = Instant::now();
        now.checked_add(Duration::from_millis(ahead)).unwrap_or(now)
    }

    /// Move this clock forward by `by` (to the millisecond): what expires
    /// or backs off in that time has.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn now_unix() -> u64 {
    now_unix_ms() / 1000
}

/// Milliseconds since the Unix epoch, from the system clock. A clock
/// before 1970 is broken; 0 makes every token look expired-checked against
/// 0, which fails closed for `exp`.
pub fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_follows_the_system_until_moved() {
        let clock = Clock::default();
        let before = now_unix();
        assert!((before..=before + 1).contains(&clock.now()));
        clock.advance(Duration::from_secs(3600));
        assert!((before + 3600..=before + 3601).contains(&clock.now()));
    }

    #[test]
    fn every_reading_moves_with_the_clock_to_the_millisecond() {
        let clock = Clock::default();
        let (ms, instant) = (clock.now_ms(), clock.instant());
        clock.advance(Duration::from_millis(350));
        assert!(clock.now_ms() >= ms + 350);
        assert!(clock.instant().duration_since(instant) >= Duration::from_millis(350));
        let since = clock.system_time().duration_since(UNIX_EPOCH).expect("after 1970");
        assert!(u64::try_from(since.as_millis()).expect("ms") >= ms + 350);
    }
}
