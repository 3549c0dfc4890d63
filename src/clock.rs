//! The time the gateway decides by: every expiry, not-before and lifetime
//! is judged against one [`Clock`], shared by the proxy and the token
//! service, so a test moves it instead of waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Unix seconds: the system clock, moved by an offset only a test sets.
#[derive(Debug, Default)]
pub struct Clock {
    offset: AtomicI64,
}

impl Clock {
    /// The current Unix time, in seconds.
    #[inline]
    pub fn now(&self) -> u64 {
        let offset = self.offset.load(Ordering::Relaxed);
        now_unix().saturating_add_signed(offset)
    }

    /// Move this clock forward by `by` (whole seconds): what expires in
    /// that time has expired.
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        // A clock before 1970 is broken; 0 makes every token look not yet
        // valid or expired-checked against 0, which fails closed for exp.
        .unwrap_or(0)
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
}
